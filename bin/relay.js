#!/usr/bin/env node
// Entry point for `npx relay`: runs the compiled CLI (built by `npm ci` / `npm run build`;
// scripts/bundle-cli.mjs explains the bundle).
import '../dist/src/cli/main.bundle.js';
