#!/usr/bin/env node
// Entry point of the `lifeboat` command; the code is compiled to dist/ by `npm ci` (prepare) or `npm run build`.
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
