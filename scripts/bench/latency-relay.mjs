#!/usr/bin/env node
/**
 * A TCP relay that delays every chunk by a fixed time in each direction, in order: a model of a
 * network between the client and a server on this machine (init-bench.sh --latency, cutover-bench.mjs
 * LATENCY_MS).
 *
 *   node latency-relay.mjs <server port> <delay ms>
 *
 * Listens on a free port of 127.0.0.1 and prints it on stdout; relays to 127.0.0.1:<server port>.
 * Node's timers have a resolution of 1 ms, so the delay is whole milliseconds (a round trip of
 * 2 × delay, like servers in neighbouring zones of a cloud region). Runs until killed.
 *
 * The benchmarks import `throughRelay` instead, which starts this file as a child process (so its CPU
 * counts as "others", not as any contender's).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** Chunks go out `delayMs` after they came in; timers of equal delay fire in the order they were set. */
function relay(from, to, delayMs) {
  from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs));
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), delayMs + 1));
}

/**
 * How a benchmark reaches `cluster` over a `delayMs` relay of its own: host, port, password and url(db) (what
 * the contenders use), and `kill` to stop the relay. The caller kills it on every exit path.
 */
export async function throughRelay(cluster, delayMs) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), String(cluster.port), String(delayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (b) => resolve(Number(String(b).trim())));
    child.once('exit', (code) => reject(new Error(`latency relay exited (${code})`)));
  });
  const host = '127.0.0.1';
  return {
    host, port, password: cluster.password,
    url: (db) => `postgresql://postgres:${encodeURIComponent(cluster.password)}@${host}:${port}/${db}?sslmode=disable`,
    kill: () => child.kill(),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [serverPort, delayMs] = process.argv.slice(2).map(Number);
  if (!(serverPort > 0) || !(delayMs >= 1)) {
    console.error('usage: latency-relay.mjs <server port> <delay ms ≥ 1>');
    process.exit(2);
  }
  const server = net.createServer((client) => {
    const upstream = net.connect(serverPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    relay(client, upstream, delayMs);
    relay(upstream, client, delayMs);
  });
  server.listen(0, '127.0.0.1', () => console.log(server.address().port));
}
