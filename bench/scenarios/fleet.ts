import type { Scenario } from '../lib/context.js';
export const fleet: Scenario = { name: 'fleet', summary: 'todo', quick: true, budgetS: [60, 60], async run() {} };
