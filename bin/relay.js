#!/usr/bin/env node
// Entry point for `npx relay`: runs the compiled CLI (built by `npm ci` / `npm run build`).
import '../dist/src/cli/main.js';
