/**
 * Everything pgferry prints goes through an Output: human text on stdout,
 * logs and progress on stderr, and with --json only the JSON document on
 * stdout. Every string is redacted on the way out. Colours only on a TTY
 * without NO_COLOR / --no-color.
 */
import { styleText } from 'node:util';
import type { Writable } from 'node:stream';
import { redact, redactValue } from '../../postgres/redact.js';

export type Style = 'green' | 'yellow' | 'red' | 'dim' | 'bold' | 'cyan';

export interface OutputOptions {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  /** false disables colour; undefined decides from the terminal and environment. */
  color?: boolean;
  stdout?: Writable & { isTTY?: boolean };
  stderr?: Writable & { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
}

export class Output {
  readonly json: boolean;
  readonly verbose: boolean;
  readonly quiet: boolean;
  /** stdout is an interactive terminal (and CI is not set): spinners and task trees allowed. */
  readonly tty: boolean;
  readonly color: boolean;
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };

  constructor(opts: OutputOptions = {}) {
    const env = opts.env ?? process.env;
    this.stdout = opts.stdout ?? process.stdout;
    this.stderr = opts.stderr ?? process.stderr;
    this.json = !!opts.json;
    this.verbose = !!opts.verbose;
    this.quiet = !!opts.quiet;
    this.tty = !!this.stdout.isTTY && !env.CI && env.TERM !== 'dumb';
    const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
    this.color = opts.color === false || noColor ? false : env.FORCE_COLOR ? env.FORCE_COLOR !== '0' : this.tty;
  }

  style(style: Style, text: string): string {
    if (!this.color) return text;
    return styleText(style, text);
  }

  /** Status symbols, the same in colour and plain. */
  symbol(status: 'ok' | 'warn' | 'fail' | 'skip'): string {
    switch (status) {
      case 'ok':
        return this.style('green', '✓');
      case 'warn':
        return this.style('yellow', '!');
      case 'fail':
        return this.style('red', '✗');
      default:
        return this.style('dim', '-');
    }
  }

  /** Human result text on stdout (suppressed with --json). */
  print(text = ''): void {
    if (this.json) return;
    this.stdout.write(redact(text) + '\n');
  }

  /** Progress and information on stderr (suppressed by --quiet). */
  info(text: string): void {
    if (this.quiet) return;
    this.stderr.write(redact(text) + '\n');
  }

  /** Details shown with --verbose. */
  debug(text: string): void {
    if (!this.verbose) return;
    this.stderr.write(this.style('dim', redact(text)) + '\n');
  }

  warn(text: string): void {
    this.stderr.write(`${this.style('yellow', 'warning:')} ${redact(text)}\n`);
  }

  error(text: string, hint?: string): void {
    this.stderr.write(`${this.style('red', 'error:')} ${redact(text)}\n`);
    if (hint) this.stderr.write(`${this.style('dim', 'hint:')} ${redact(hint)}\n`);
  }

  /** The JSON document of a --json run: the only thing on stdout. */
  emitJson(doc: unknown): void {
    this.stdout.write(JSON.stringify(redactValue(doc), null, 2) + '\n');
  }
}
