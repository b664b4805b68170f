#!/usr/bin/env node
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2));
// Let stdout drain before exiting (pipes to `cat`, `jq`, …).
process.exitCode = code;
setTimeout(() => process.exit(code), 0).unref();
