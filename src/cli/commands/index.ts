/** Every registered subcommand, in the order of the pipeline. Register only commands that work. */
import type { CommandDefinition } from '../define.js';
import { cleanupCommand } from './cleanup.js';
import { cutoverCommand } from './cutover.js';
import { demoCommand } from './demo.js';
import { initCommand } from './init.js';
import { listCommand } from './list.js';
import { sequencesCommand } from './sequences.js';
import { statusCommand } from './status.js';
import { syncCommand } from './sync.js';
import { validateCommand } from './validate.js';
import { verifyCommand } from './verify.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandDefinition<any>[] = [validateCommand, listCommand, initCommand, syncCommand, statusCommand, sequencesCommand, verifyCommand, cutoverCommand, cleanupCommand, demoCommand];
