/**
 * A real terminal for tests: a detached tmux session running one shell
 * command, keys sent as a person types them, and the screen read back with
 * capture-pane. Every wait polls with a deadline; sessions are killed by
 * `killAll()` (call it in afterAll).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

const sessions = new Set<string>();
let counter = 0;

export function tmuxAvailable(): boolean {
  return spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status === 0;
}

/**
 * A tmux server of this test process's own (-L): with the default server shared by every test file, one
 * file's last kill-session could stop the server while another file's new-session was connecting to it
 * ("server exited unexpectedly").
 */
const SOCKET = ['-L', `pgferry-test-${process.pid}`];

function tmux(...args: string[]): string {
  return execFileSync('tmux', [...SOCKET, ...args], { encoding: 'utf8' });
}

export interface Terminal {
  name: string;
  /** Send keys as tmux names them ('Enter', 'Space', 'Down', 'C-c') or literal text with { literal: true }. */
  keys(...keys: string[]): void;
  type(text: string): void;
  screen(): string;
  /** Wait until the screen matches; returns the screen. Throws with the screen on timeout. */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  kill(): void;
}

/** Start `command` (a shell command line) in a new terminal of the given size. */
/** Variables never passed into the terminal: CI would turn interactive mode off, the others would change what is tested. */
const UNSET = ['CI', 'NO_COLOR', 'FORCE_COLOR', 'PGFERRY_SOURCE', 'PGFERRY_TARGET', 'PGPASSWORD', 'PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE'];

export function openTerminal(command: string, opts: { cwd?: string; env?: Record<string, string>; width?: number; height?: number } = {}): Terminal {
  const name = `pgferry-test-${process.pid}-${++counter}`;
  const q = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
  const envArgs = [...UNSET.filter((k) => !(k in (opts.env ?? {}))).map((k) => `-u ${k}`), ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${q(v)}`)];
  // The tmux server may have been started with another environment (CI=true): say it explicitly.
  // The shell stays after the command so that its exit code can be read from the screen.
  const line = `env ${envArgs.join(' ')} ${command}; echo "EXIT:$?"; sleep 600`;
  tmux('new-session', '-d', '-s', name, '-x', String(opts.width ?? 200), '-y', String(opts.height ?? 50), '-c', opts.cwd ?? process.cwd(), line);
  sessions.add(name);
  const term: Terminal = {
    name,
    keys: (...keys) => void tmux('send-keys', '-t', name, ...keys),
    type: (text) => void tmux('send-keys', '-t', name, '-l', text),
    screen: () => tmux('capture-pane', '-p', '-J', '-t', name, '-S', '-200'),
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < deadline) {
        last = term.screen();
        if (typeof pattern === 'string' ? last.includes(pattern) : pattern.test(last)) return last;
        await sleep(100);
      }
      throw new Error(`timed out waiting for ${String(pattern)}; the screen shows:\n${last}`);
    },
    kill() {
      sessions.delete(name);
      spawnSync('tmux', [...SOCKET, 'kill-session', '-t', name], { stdio: 'ignore' });
    },
  };
  return term;
}

export function killAll(): void {
  for (const name of [...sessions]) {
    sessions.delete(name);
    spawnSync('tmux', [...SOCKET, 'kill-session', '-t', name], { stdio: 'ignore' });
  }
}
