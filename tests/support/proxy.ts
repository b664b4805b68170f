/**
 * A small TCP proxy for tests that drop connections on command: clients
 * connect to `port`, every connection is relayed to the server behind it,
 * and `cut()` destroys every live connection at once (both halves), as a
 * network failure or a firewall reset would. New connections keep working
 * after a cut: a client that reconnects gets through.
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Connections relayed since the start (cut or not). */
  accepted(): number;
  /** Connections open now. */
  live(): number;
  /** Destroy every live connection; returns how many were cut. */
  cut(): number;
  close(): Promise<void>;
}

export async function startProxy(upstreamHost: string, upstreamPort: number): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; server: net.Socket }>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect({ host: upstreamHost, port: upstreamPort });
    const pair = { client, server: upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const cut = (): number => {
    const n = pairs.size;
    for (const p of [...pairs]) {
      p.client.destroy();
      p.server.destroy();
    }
    pairs.clear();
    return n;
  };
  return {
    port,
    accepted: () => accepted,
    live: () => pairs.size,
    cut,
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `url` with its port replaced by the proxy's (host 127.0.0.1). */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}
