import type { Scenario } from '../lib/context.js';
export const small: Scenario = { name: 'small', summary: 'todo', quick: true, budgetS: [60, 60], async run() {} };
