import type { Scenario } from '../lib/context.js';
export const seed: Scenario = { name: 'seed', summary: 'todo', quick: true, budgetS: [60, 60], async run() {} };
