#!/usr/bin/env node
/**
 * A TCP relay that delays every chunk by a fixed time in each direction, in order: a model of a
 * network between the client and a server on this machine (init-bench.sh --latency).
 *
 *   node latency-relay.mjs <server port> <delay ms>
 *
 * Listens on a free port of 127.0.0.1 and prints it on stdout; relays to 127.0.0.1:<server port>.
 * Node's timers have a resolution of 1 ms, so the delay is whole milliseconds (a round trip of
 * 2 × delay, like servers in neighbouring zones of a cloud region). Runs until killed.
 */
import net from 'node:net';

const [serverPort, delayMs] = process.argv.slice(2).map(Number);
if (!(serverPort > 0) || !(delayMs >= 1)) {
  console.error('usage: latency-relay.mjs <server port> <delay ms ≥ 1>');
  process.exit(2);
}

/** Chunks go out `delayMs` after they came in; timers of equal delay fire in the order they were set. */
function relay(from, to) {
  from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs));
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), delayMs + 1));
}

const server = net.createServer((client) => {
  const upstream = net.connect(serverPort, '127.0.0.1');
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  relay(client, upstream);
  relay(upstream, client);
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
