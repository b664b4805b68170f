import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectError, ExitCode, PgferryError, UsageError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { CANONICAL_SETTINGS, connect, withClient, withTransaction, type Client } from '../../src/postgres/connect.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { quoteIdent, quoteLiteral } from '../../src/postgres/identifiers.js';
import { connectError, isConnectFailure, isRetryable, operationError, sqlstate } from '../../src/postgres/errors.js';
import { assertDistinct, probeServer, sameDatabase, sameServer, type ServerIdentity } from '../../src/postgres/probe.js';
import { escapePassfileField } from '../../src/postgres/pgpass.js';
import { redact } from '../../src/postgres/redact.js';
import { runTool } from '../../src/postgres/tools.js';
import { enableTls, makeCertificates, type Certificates } from '../fixtures/tls.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const AWKWARD = `p@ss:w/o#rd?%&'"\\ ünï`;
const AWK_USER = "awk'ward user";

const { start } = useClusters();
let plain: LocalCluster;
let tls: LocalCluster;
let certs: Certificates;
let otherCa: Certificates;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-connect-'));
/** An environment with nothing of the developer's: an empty HOME, no PG* variables. */
const cleanEnv = { HOME: tmp };

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  const certDir = mkdtempSync(path.join(tmp, 'certs-'));
  certs = makeCertificates(certDir, { dns: ['localhost'], ip: ['127.0.0.1'] });
  otherCa = makeCertificates(certDir, { dns: ['localhost'], ip: ['127.0.0.1'] }, 'other-');
  const both = { listen_addresses: "'127.0.0.1,::1'" };
  [plain, tls] = await Promise.all([start({ name: 'conn', settings: both }), start({ name: 'conntls', settings: both })]);
  for (const c of [plain, tls]) {
    await c.query(`CREATE ROLE ${quoteIdent(AWK_USER)} LOGIN PASSWORD ${quoteLiteral(AWKWARD)}`);
  }
  // "plainonly" may log in to "postgres" without TLS only, and nowhere with TLS.
  await tls.query('CREATE ROLE plainonly LOGIN PASSWORD \'plain-pw\'');
  await enableTls(tls, certs, [
    'hostssl all plainonly 127.0.0.1/32 reject',
    'hostnossl postgres plainonly 127.0.0.1/32 scram-sha-256',
  ]);
});

function resolve(s: string, env: NodeJS.ProcessEnv = cleanEnv): ResolvedConnInfo {
  return resolveConnInfo(parseConnInfo(s), env);
}

async function whoAmI(r: ResolvedConnInfo): Promise<{ user: string; app: string; ssl: boolean; addr: string | null }> {
  return withClient(r, async (c) => {
    const { rows } = await c.query<{ user: string; app: string; ssl: boolean; addr: string | null }>(
      `SELECT current_user AS user, a.application_name AS app, coalesce(s.ssl, false) AS ssl, host(a.client_addr) AS addr
         FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) WHERE a.pid = pg_backend_pid()`,
    );
    return rows[0]!;
  });
}

async function connectFailure(r: ResolvedConnInfo): Promise<PgferryError> {
  try {
    const c = await connect(r, { label: 'source' });
    await c.end();
  } catch (err) {
    expect(err).toBeInstanceOf(PgferryError);
    return err as PgferryError;
  }
  throw new Error('expected the connection to fail');
}

function expectNoSecret(err: PgferryError, secret: string): void {
  for (const text of [err.message, err.hint ?? '', redact(err.message), redact(err.hint ?? '')]) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(encodeURIComponent(secret));
  }
}

describe('connections to a plain server', () => {
  it('sets application_name to pgferry and sends the canonical session settings', async () => {
    const r = plain.conn();
    await withClient(
      r,
      async (c) => {
        const { rows } = await c.query<{ app: string; tz: string; ds: string; ist: string; efd: string; bo: string }>(
          `SELECT (SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS app,
                  current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds,
                  current_setting('IntervalStyle') AS ist, current_setting('extra_float_digits') AS efd,
                  current_setting('bytea_output') AS bo`,
        );
        expect(rows[0]).toEqual({ app: 'pgferry', tz: 'UTC', ds: 'ISO, MDY', ist: 'postgres', efd: '3', bo: 'hex' });
      },
      { settings: CANONICAL_SETTINGS },
    );
  });

  it('passes options from the connection string with the settings', async () => {
    const r = resolve(`${plain.url()}&options=${encodeURIComponent('-c work_mem=5MB')}`);
    await withClient(
      r,
      async (c) => {
        const { rows } = await c.query<{ wm: string; tz: string }>("SELECT current_setting('work_mem') AS wm, current_setting('TimeZone') AS tz");
        expect(rows[0]).toEqual({ wm: '5MB', tz: 'Asia/Tokyo' });
      },
      { settings: { TimeZone: 'Asia/Tokyo' } },
    );
  });

  it('opens sessions with JIT off, unless the connection string turns it on', async () => {
    const jitOf = (url: string) =>
      withClient(resolve(url), async (c) => (await c.query<{ setting: string; source: string }>("SELECT setting, source FROM pg_settings WHERE name = 'jit'")).rows[0]);
    expect(await jitOf(plain.url())).toEqual({ setting: 'off', source: 'client' });
    // Without the startup setting the session would have the server's default, on.
    expect(await jitOf(`${plain.url()}&options=${encodeURIComponent('-c jit=on')}`)).toEqual({ setting: 'on', source: 'client' });
  });

  describe('a password with every awkward character', () => {
    const base = () => `host=127.0.0.1 port=${plain.port} dbname=postgres sslmode=disable user='${AWK_USER.replace(/'/g, "\\'")}'`;

    it('works percent-encoded in a URL', async () => {
      const url = `postgresql://${encodeURIComponent(AWK_USER)}:${encodeURIComponent(AWKWARD)}@127.0.0.1:${plain.port}/postgres?sslmode=disable`;
      const r = resolve(url);
      expect(r.passwordSource).toBe('connection string');
      expect((await whoAmI(r)).user).toBe(AWK_USER);
    });

    it('works quoted in a keyword string', async () => {
      const quoted = `'${AWKWARD.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
      expect((await whoAmI(resolve(`${base()} password=${quoted}`))).user).toBe(AWK_USER);
    });

    it('works from PGPASSWORD', async () => {
      const r = resolve(base(), { ...cleanEnv, PGPASSWORD: AWKWARD });
      expect(r.passwordSource).toBe('PGPASSWORD');
      expect((await whoAmI(r)).user).toBe(AWK_USER);
    });

    it('works from PGPASSFILE and from ~/.pgpass', async () => {
      const line = ['127.0.0.1', String(plain.port), '*', AWK_USER, AWKWARD].map(escapePassfileField).join(':');
      const file = path.join(tmp, 'pgpassfile');
      writeFileSync(file, `# comment\n${line}\n`, { mode: 0o600 });
      const fromFile = resolve(base(), { ...cleanEnv, PGPASSFILE: file });
      expect(fromFile.passwordSource).toBe('password file');
      expect((await whoAmI(fromFile)).user).toBe(AWK_USER);

      const home = mkdtempSync(path.join(tmp, 'home-'));
      writeFileSync(path.join(home, '.pgpass'), `${line}\n`, { mode: 0o600 });
      const fromHome = resolve(base(), { HOME: home });
      expect(fromHome.password).toBe(AWKWARD);
      expect((await whoAmI(fromHome)).user).toBe(AWK_USER);
    });

    it('a wrong password is a ConnectError (exit 3) that names its source and shows no password', async () => {
      const wrong = `${AWKWARD}-wrong`;
      const url = `postgresql://${encodeURIComponent(AWK_USER)}:${encodeURIComponent(wrong)}@127.0.0.1:${plain.port}/postgres?sslmode=disable`;
      const err = await connectFailure(resolve(url));
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.exitCode).toBe(ExitCode.connect);
      expect(err.message).toMatch(/cannot connect to source \(.*127\.0\.0\.1.*\): password authentication failed/);
      expect(err.hint).toMatch(/check the password \(it came from the connection string\)/);
      expectNoSecret(err, wrong);
      expectNoSecret(err, AWKWARD);

      const fromEnv = await connectFailure(resolve(base(), { ...cleanEnv, PGPASSWORD: 'not-it' }));
      expect(fromEnv.hint).toMatch(/PGPASSWORD/);
      expectNoSecret(fromEnv, 'not-it');
    });

    it('a password changed on the server: the old one is refused, the new one works (salted passwords are cached per salt)', async () => {
      const url = (pw: string) => `postgresql://${encodeURIComponent(AWK_USER)}:${encodeURIComponent(pw)}@127.0.0.1:${plain.port}/postgres?sslmode=disable`;
      const changed = `${AWKWARD}-changed`;
      expect((await whoAmI(resolve(url(AWKWARD)))).user).toBe(AWK_USER);
      await plain.query(`ALTER ROLE "${AWK_USER.replace(/"/g, '""')}" PASSWORD '${changed.replace(/'/g, "''")}'`);
      try {
        const err = await connectFailure(resolve(url(AWKWARD)));
        expect(err.message).toMatch(/password authentication failed/);
        expect((await whoAmI(resolve(url(changed)))).user).toBe(AWK_USER);
      } finally {
        await plain.query(`ALTER ROLE "${AWK_USER.replace(/"/g, '""')}" PASSWORD '${AWKWARD.replace(/'/g, "''")}'`);
      }
      expect((await whoAmI(resolve(url(AWKWARD)))).user).toBe(AWK_USER);
    });

    it('no password at all is a ConnectError that says where to put one', async () => {
      const err = await connectFailure(resolve(base()));
      expect(err.exitCode).toBe(ExitCode.connect);
      expect(err.message).toMatch(/password/);
      expect(err.hint).toMatch(/no password was given.*PGPASSWORD.*pgpass/);
    });
  });

  it('an unreachable port is a ConnectError with a hint', async () => {
    const srv = net.createServer();
    const port = await new Promise<number>((ok) => srv.listen(0, '127.0.0.1', () => ok((srv.address() as net.AddressInfo).port)));
    await new Promise((ok) => srv.close(ok));
    const err = await connectFailure(resolve(`host=127.0.0.1 port=${port} user=u dbname=d password=x sslmode=disable`));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(err.hint).toMatch(/is the server running, and are host and port right/);
  });

  it('an unknown database is a ConnectError that points at the database name', async () => {
    const err = await connectFailure(plain.conn('no_such_db'));
    expect(err.exitCode).toBe(ExitCode.connect);
    expect(err.hint).toMatch(/database name/);
  });

  it('connect_timeout gives up on a server that accepts and never answers, in about that time', async () => {
    const sockets: net.Socket[] = [];
    const srv = net.createServer((s) => sockets.push(s));
    const port = await new Promise<number>((ok) => srv.listen(0, '127.0.0.1', () => ok((srv.address() as net.AddressInfo).port)));
    try {
      const t0 = Date.now();
      const err = await connectFailure(resolve(`host=127.0.0.1 port=${port} user=u dbname=d password=x sslmode=disable connect_timeout=2`));
      const elapsed = Date.now() - t0;
      expect(sockets.length).toBe(1);
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.hint).toMatch(/did not answer in time.*connect_timeout/);
      expect(elapsed).toBeGreaterThanOrEqual(1900);
      expect(elapsed).toBeLessThan(4000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((ok) => srv.close(ok));
    }
  });

  it('connects over IPv6, written [::1] in a URL and ::1 in a keyword string', async () => {
    const url = `postgresql://postgres:${encodeURIComponent(plain.password)}@[::1]:${plain.port}/postgres?sslmode=disable`;
    expect(await whoAmI(resolve(url))).toMatchObject({ user: 'postgres', addr: '::1' });
    const kw = `host=::1 port=${plain.port} user=postgres dbname=postgres sslmode=disable password=${plain.password}`;
    expect(await whoAmI(resolve(kw))).toMatchObject({ user: 'postgres', addr: '::1' });
  });

  it('connects over the Unix socket, with host from PGHOST and port from PGPORT', async () => {
    const r = resolve('dbname=postgres user=postgres', { ...cleanEnv, PGHOST: plain.socketDir, PGPORT: String(plain.port) });
    expect(r.host).toBe(plain.socketDir);
    expect(await whoAmI(r)).toMatchObject({ user: 'postgres', addr: null, ssl: false });
  });

  it('takes user and database from PGUSER and PGDATABASE', async () => {
    const db = await createDatabase(plain);
    const r = resolve(`host=127.0.0.1 port=${plain.port} sslmode=disable`, {
      ...cleanEnv, PGUSER: 'postgres', PGDATABASE: db, PGPASSWORD: plain.password,
    });
    await withClient(r, async (c) => {
      const { rows } = await c.query<{ db: string; u: string }>('SELECT current_database() AS db, current_user AS u');
      expect(rows[0]).toEqual({ db, u: 'postgres' });
    });
  });

  it('opens a replication connection', async () => {
    await withClient(
      plain.conn(),
      async (c) => {
        const { rows } = await c.query<{ systemid: string; dbname: string }>('IDENTIFY_SYSTEM');
        expect(rows[0]!.dbname).toBe('postgres');
        expect(rows[0]!.systemid).toMatch(/^\d+$/);
      },
      { replication: true },
    );
  });

  it('enforces statementTimeoutMs', async () => {
    await withClient(
      plain.conn(),
      async (c) => {
        await expect(c.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
      },
      { statementTimeoutMs: 100 },
    );
  });
});

describe('options pg cannot honour', () => {
  for (const opt of ['channel_binding=require', 'require_auth=scram-sha-256', 'requirepeer=postgres', 'gssencmode=require', 'sslcertmode=require', 'target_session_attrs=read-write']) {
    it(`refuses ${opt} instead of ignoring it`, async () => {
      const err = await connectFailure(resolve(`${plain.url()}&${opt}`));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toContain(opt.split('=')[0]);
      expect(err.hint).toBeTruthy();
    });
  }

  it('accepts the harmless defaults of the same options', async () => {
    const r = resolve(`${plain.url()}&channel_binding=prefer&gssencmode=disable&target_session_attrs=any`);
    expect((await whoAmI(r)).user).toBe('postgres');
    // The environment can ask too.
    const err = await connectFailure(resolveConnInfo(parseConnInfo(plain.url()), { ...cleanEnv, PGTARGETSESSIONATTRS: 'primary' }));
    expect(err).toBeInstanceOf(UsageError);
  });
});

describe('error classes of real failures', () => {
  it('tells retryable failures from the rest', async () => {
    const db = await createDatabase(plain, undefined, 'CREATE TABLE t (id int)');
    const a = await connect(plain.conn(db));
    const b = await connect(plain.conn(db));
    try {
      const div = await b.query('SELECT 1/0').catch((e: unknown) => e);
      expect(sqlstate(div)).toBe('22012');
      expect(isRetryable(div)).toBe(false);
      const wrapped = operationError(div, 'copying table t');
      expect(wrapped.exitCode).toBe(ExitCode.failed);
      expect(wrapped.message).toBe('copying table t: division by zero');

      await a.query('BEGIN; LOCK t');
      await b.query("SET lock_timeout = '50ms'");
      const locked = await b.query('BEGIN; LOCK t').catch((e: unknown) => e);
      expect(sqlstate(locked)).toBe('55P03');
      expect(isRetryable(locked)).toBe(true);
      await b.query('ROLLBACK');
      await a.query('ROLLBACK');

      const pid = (await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await a.query('SELECT pg_terminate_backend($1)', [pid]);
      const killed = await b.query('SELECT 1').catch((e: unknown) => e);
      expect(isRetryable(killed)).toBe(true);
    } finally {
      await a.end();
      await b.end().catch(() => {});
    }
  });

  it('treats a refused connection as a retryable connect failure, a missing file as neither', async () => {
    const err = await connectFailure(resolve('host=127.0.0.1 port=1 user=u dbname=d password=x sslmode=disable'));
    expect(isConnectFailure(err.cause)).toBe(true);
    expect(isRetryable(err.cause)).toBe(true);
    expect(connectError(err, 'x', 'y')).toBe(err);
    let enoent: unknown;
    try {
      readFileSync(path.join(tmp, 'missing-file'));
    } catch (e) {
      enoent = e;
    }
    expect(isRetryable(enoent)).toBe(false);
  });
});

describe('withTransaction', () => {
  it('imports an exported snapshot: later commits are invisible', async () => {
    const db = await createDatabase(plain, undefined, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    const r = plain.conn(db);
    const exporter = await connect(r);
    try {
      await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const { rows } = await exporter.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
      await plain.query('INSERT INTO t VALUES (2)', [], db);
      const seen = await withClient(r, (c) =>
        withTransaction(c, async (tx) => (await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n, {
          snapshot: rows[0]!.s,
          readOnly: true,
        }),
      );
      expect(seen).toBe(1);
    } finally {
      await exporter.end();
    }
  });

  it('commits on success, rolls back on error, and refuses a malformed snapshot id', async () => {
    const db = await createDatabase(plain, undefined, 'CREATE TABLE t (id int)');
    await withClient(plain.conn(db), async (c: Client) => {
      await withTransaction(c, (tx) => tx.query('INSERT INTO t VALUES (1)'));
      await expect(
        withTransaction(c, async (tx) => {
          await tx.query('INSERT INTO t VALUES (2)');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      await expect(withTransaction(c, async () => 1, { snapshot: "x'; DROP TABLE t; --" })).rejects.toBeInstanceOf(UsageError);
      const { rows } = await c.query<{ ids: number[] }>('SELECT array_agg(id ORDER BY id) AS ids FROM t');
      expect(rows[0]!.ids).toEqual([1]);
      expect((await c.query<{ s: string }>("SELECT current_setting('transaction_isolation') AS s")).rows[0]!.s).toBe('read committed');
    });
  });
});

describe('probe and sameDatabase', () => {
  async function probe(s: string, settings?: Record<string, string>): Promise<ServerIdentity> {
    const r = resolve(s);
    return withClient(r, (c) => probeServer(c, r, 'source'), settings ? { settings } : {});
  }

  it('describes the server, database and user', async () => {
    const id = await probe(plain.url());
    expect(id).toMatchObject({
      side: 'source', database: 'postgres', user: 'postgres', superuser: true, inRecovery: false, major: plain.major,
    });
    expect(id.endpoint).toBe(`postgres@127.0.0.1:${plain.port}/postgres`);
    expect(id.endpoint).not.toContain(plain.password);
    expect(id.systemIdentifier).toMatch(/^\d{10,}$/);
    expect(id.serverVersion.startsWith(String(plain.major))).toBe(true);
    expect(id.databaseOid).toBeGreaterThan(0);
  });

  it('works for a role without special privileges', async () => {
    const url = `postgresql://${encodeURIComponent(AWK_USER)}:${encodeURIComponent(AWKWARD)}@127.0.0.1:${plain.port}/postgres?sslmode=disable`;
    const id = await probe(url);
    expect(id).toMatchObject({ user: AWK_USER, superuser: false });
    expect(id.systemIdentifier).toMatch(/^\d+$/);
  });

  it('recognises the same database however the host is spelled, whatever the session time zone', async () => {
    const pw = encodeURIComponent(plain.password);
    const spellings = [
      `postgresql://postgres:${pw}@127.0.0.1:${plain.port}/postgres?sslmode=disable`,
      `postgresql://postgres:${pw}@localhost:${plain.port}/postgres?sslmode=disable`,
      `postgresql://postgres:${pw}@[::1]:${plain.port}/postgres?sslmode=disable`,
      `host=${plain.socketDir} port=${plain.port} user=postgres dbname=postgres`,
    ];
    const ids = await Promise.all(spellings.map((s, i) => probe(s, { TimeZone: ['UTC', 'Asia/Tokyo', 'America/Los_Angeles', 'Europe/Paris'][i]! })));
    for (const a of ids) {
      for (const b of ids) {
        expect(sameDatabase(a, b), `${a.endpoint} vs ${b.endpoint}`).toBe(true);
      }
    }
    const err = (() => {
      try {
        assertDistinct(ids[0]!, ids[3]!);
      } catch (e) {
        return e as PgferryError;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err!.exitCode).toBe(ExitCode.usage);
    expect(err!.message).toMatch(/source and target are the same database: "postgres"/);
  });

  it('tells another database on the same server, and another server, apart', async () => {
    const db = await createDatabase(plain);
    const [a, b, c] = await Promise.all([probe(plain.url()), probe(plain.url(db)), probe(`host=${tls.socketDir} port=${tls.port} user=postgres dbname=postgres`)]);
    expect(sameServer(a, b)).toBe(true);
    expect(sameDatabase(a, b)).toBe(false);
    expect(sameServer(a, c)).toBe(false);
    expect(sameDatabase(a, c)).toBe(false);
    expect(() => assertDistinct(a, b)).not.toThrow();
    expect(() => assertDistinct(a, c)).not.toThrow();
  });
});

describe('TLS', () => {
  const tcp = (host: string, extra: string) =>
    `host=${host} port=${tls.port} user=postgres dbname=postgres password=${tls.password} ${extra}`;

  it('verify-full with sslrootcert succeeds for host=localhost and for the certificate\'s IP address', async () => {
    expect(await whoAmI(resolve(tcp('localhost', `sslmode=verify-full sslrootcert=${certs.caCert}`)))).toMatchObject({ ssl: true, app: 'pgferry' });
    expect((await whoAmI(resolve(tcp('127.0.0.1', `sslmode=verify-full sslrootcert=${certs.caCert}`)))).ssl).toBe(true);
  });

  it('verify-full fails for a name that is not in the certificate, with a hint', async () => {
    const err = await connectFailure(resolve(tcp('db.example.test', `hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=${certs.caCert}`)));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.message).toMatch(/db\.example\.test/);
    expect(err.hint).toMatch(/not valid for "db\.example\.test".*name in the certificate.*verify-ca/);
    expectNoSecret(err, tls.password);
    // ::1 is not in the certificate either.
    const v6 = await connectFailure(resolve(tcp('::1', `sslmode=verify-full sslrootcert=${certs.caCert}`)));
    expect(v6.hint).toMatch(/not valid for "::1"/);
  });

  it('verify-full and verify-ca fail against a certificate from another CA', async () => {
    for (const mode of ['verify-full', 'verify-ca']) {
      const err = await connectFailure(resolve(tcp('localhost', `sslmode=${mode} sslrootcert=${otherCa.caCert}`)));
      expect(err, mode).toBeInstanceOf(ConnectError);
      expect(err.hint, mode).toMatch(/sslrootcert/);
    }
  });

  it('verify-ca checks the CA but not the name', async () => {
    expect((await whoAmI(resolve(tcp('db.example.test', `hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert=${certs.caCert}`)))).ssl).toBe(true);
  });

  it('verify-full without a CA file refuses clearly; ~/.postgresql/root.crt is the default CA, as in libpq', async () => {
    const err = await connectFailure(resolve(tcp('localhost', 'sslmode=verify-full')));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/root\.crt/);
    expect(err.hint).toMatch(/sslrootcert=/);

    const home = mkdtempSync(path.join(tmp, 'home-'));
    mkdirSync(path.join(home, '.postgresql'));
    writeFileSync(path.join(home, '.postgresql', 'root.crt'), readFileSync(certs.caCert));
    expect((await whoAmI(resolve(tcp('localhost', 'sslmode=verify-full'), { HOME: home }))).ssl).toBe(true);
    // With a root certificate present, require verifies the CA like verify-ca (libpq).
    writeFileSync(path.join(home, '.postgresql', 'root.crt'), readFileSync(otherCa.caCert));
    expect((await connectFailure(resolve(tcp('localhost', 'sslmode=require'), { HOME: home }))).exitCode).toBe(ExitCode.connect);
  });

  it('init copies into a server that takes TLS only: small tables (each sent in one write) and a big one, rows intact', async () => {
    const tables = ['small_a', 'small_b', 'big'];
    const src = await createDatabase(plain, undefined, `
      CREATE TABLE small_a (id int PRIMARY KEY, v text); INSERT INTO small_a SELECT g, md5(g::text) FROM generate_series(1, 500) g;
      CREATE TABLE small_b (id int PRIMARY KEY, v text); INSERT INTO small_b SELECT g, NULL FROM generate_series(1, 3) g;
      CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;`);
    const dst = `tlscopy_${process.pid}`;
    const target = tcp('127.0.0.1', 'sslmode=require').replace('dbname=postgres', `dbname=${dst}`);
    await withClient(resolve(tcp('127.0.0.1', 'sslmode=require')), (c) => c.query(`CREATE DATABASE ${dst}`));
    const r = await runCliProcess(['init', '--no-sync', '--yes', '--no-interactive', '--no-roles', '--jobs', '2', '--state-dir', mkdtempSync(path.join(tmp, 'state-'))], {
      env: { HOME: tmp, PGFERRY_SOURCE: plain.url(src), PGFERRY_TARGET: target },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const digest = (q: (sql: string) => Promise<{ d: string }[]>) => Promise.all(tables.map(async (t) => (await q(`SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY id)) AS d FROM ${t} x`))[0]!.d));
    const copied = await withClient(resolve(target), async (c) => {
      expect((await whoAmI(resolve(target))).ssl).toBe(true);
      return digest(async (sql) => (await c.query<{ d: string }>(sql)).rows);
    });
    expect(copied).toEqual(await digest((sql) => plain.query<{ d: string }>(sql, [], src)));
  });

  it('require succeeds without a CA, and also through PGSSLMODE', async () => {
    expect((await whoAmI(resolve(tcp('localhost', 'sslmode=require')))).ssl).toBe(true);
    expect((await whoAmI(resolve(tcp('127.0.0.1', ''), { ...cleanEnv, PGSSLMODE: 'require' }))).ssl).toBe(true);
  });

  it('prefer uses TLS when the server has it and goes on without when it does not', async () => {
    expect((await whoAmI(resolve(tcp('127.0.0.1', 'sslmode=prefer')))).ssl).toBe(true);
    const p = `host=127.0.0.1 port=${plain.port} user=postgres dbname=postgres password=${plain.password}`;
    expect(await whoAmI(resolve(`${p} sslmode=prefer`))).toMatchObject({ ssl: false, user: 'postgres' });
    // prefer is the default.
    expect((await whoAmI(resolve(p))).ssl).toBe(false);
    expect((await whoAmI(resolve(tcp('127.0.0.1', '')))).ssl).toBe(true);
  });

  it('prefer goes on without TLS when pg_hba.conf refuses this user over TLS (libpq does too)', async () => {
    const p = `host=127.0.0.1 port=${tls.port} user=plainonly password=plain-pw sslmode=prefer`;
    expect(await whoAmI(resolve(`${p} dbname=postgres`))).toMatchObject({ ssl: false, user: 'plainonly' });
    const both = await connectFailure(resolve(`${p} dbname=template1`));
    expect(both).toBeInstanceOf(ConnectError);
    expect(both.message).toMatch(/rejects connection.*SSL encryption.*without TLS: .*no pg_hba\.conf entry.*no encryption/);
    expect(both.hint).toMatch(/with or without TLS/);
    const sslOnly = await connectFailure(resolve(`${p} dbname=postgres sslmode=require`));
    expect(sslOnly.hint).toMatch(/only without TLS.*sslmode=prefer/);
  });

  it('allow starts without TLS and retries with it when the server insists', async () => {
    expect((await whoAmI(resolve(tcp('127.0.0.1', 'sslmode=allow')))).ssl).toBe(true);
    const p = `host=127.0.0.1 port=${plain.port} user=postgres dbname=postgres password=${plain.password}`;
    expect((await whoAmI(resolve(`${p} sslmode=allow`))).ssl).toBe(false);
  });

  it('sslmode=disable against a hostssl-only server fails clearly', async () => {
    const err = await connectFailure(resolve(tcp('127.0.0.1', 'sslmode=disable')));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.message).toMatch(/no pg_hba\.conf entry .*no encryption/);
    expect(err.hint).toMatch(/only over TLS.*sslmode=require/);
  });

  it('require against a server without TLS fails clearly', async () => {
    const p = `host=127.0.0.1 port=${plain.port} user=postgres dbname=postgres password=${plain.password} sslmode=require`;
    const err = await connectFailure(resolve(p));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.hint).toMatch(/no TLS/);
  });

  it('a missing sslrootcert file is a usage error naming it', async () => {
    const err = await connectFailure(resolve(tcp('localhost', `sslmode=verify-full sslrootcert=${path.join(tmp, 'nope.crt')}`)));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('nope.crt');
  });

  it('client tools get the same TLS settings (and the same ~/.postgresql) as our own connections', async () => {
    const q = ['-XAtc', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'];
    const full = resolve(tcp('localhost', `sslmode=verify-full sslrootcert=${certs.caCert}`));
    expect((await runTool('psql', q, { conn: full })).stdout).toBe('t\n');
    const wrongName = resolve(tcp('db.example.test', `hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=${certs.caCert}`));
    await expect(runTool('psql', q, { conn: wrongName })).rejects.toThrow(/does not match host name "db\.example\.test"/);

    const home = mkdtempSync(path.join(tmp, 'home-'));
    mkdirSync(path.join(home, '.postgresql'));
    writeFileSync(path.join(home, '.postgresql', 'root.crt'), readFileSync(certs.caCert));
    expect((await runTool('psql', q, { conn: resolve(tcp('localhost', 'sslmode=verify-full'), { HOME: home }) })).stdout).toBe('t\n');
  });

  it('the Unix socket ignores sslmode, as libpq does', async () => {
    const r = resolve(`host=${tls.socketDir} port=${tls.port} user=postgres dbname=postgres sslmode=require`);
    expect((await whoAmI(r)).ssl).toBe(false);
  });
});
