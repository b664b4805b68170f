/**
 * Data masking rules against real clusters. A customers table with e-mail,
 * phone, name, birth date, token, API key, free text and a counter is masked
 * while a writer inserts, updates and deletes those very columns during init
 * and sync (and the usual writer works on other tables). After catch-up an
 * independent query finds no raw value of a masked column on the target,
 * unique rules are unique and match the row's key, untouched columns and all
 * other tables equal the source, and `pgferry verify` exits 0 — and 1 once a
 * raw value is put back on the target. Then every catalog error a rule can
 * have is refused by name (exit 2) before anything is written, and a source
 * older than 15 is refused for streaming.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/file.js';
import { resolveTables, rulesFor, type ScopeSpec } from '../../src/config/scope.js';
import { ExitCode, PgferryError, UsageError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit, type InitOptions } from '../../src/pipeline/init/run.js';
import { runClientSync, runSync } from '../../src/pipeline/sync/index.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { runCleanup } from '../../src/pipeline/cleanup/index.js';
import { runCliProcess } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, untilCaughtUp, waitFor, WRITER_TABLES, writerSchemaSql, writerTableHashes } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'mask-src' }), clusters.start({ name: 'mask-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-masking-'));
  tmpDirs.push(d);
  return d;
}

/** Raw values carry markers no rule produces: "corp.example", "+49", "Name", "tok-", "key-", year 1900, visits ≥ 1000. */
const CUSTOMERS_SQL = `
  CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    phone varchar(30),
    name text NOT NULL,
    born date,
    api_token text,
    api_key text,
    note text,
    visits int NOT NULL DEFAULT 0,
    created timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
  );
  INSERT INTO customers (email, phone, name, born, api_token, api_key, note, visits)
    SELECT 'raw' || g || '@corp.example', '+49' || (100000 + g), 'Name ' || g, date '1900-01-01' + g % 300,
           'tok-' || md5(g::text), 'key-' || g, 'note ' || g, 1000 + g
      FROM generate_series(1, 1500) g;
  CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE, amount numeric(10,2) NOT NULL);
  INSERT INTO orders SELECT g, 1 + g % 1500, g / 7.0 FROM generate_series(1, 3000) g;
`;

function rulesToml(db: string): string {
  return `
[data_rules]
email = "unique_email"
"*_token" = "null"

[databases.${db}.data_rules]
"customers.name" = "random_letter"
"public.customers.phone" = "unique_phone"
"customers.born" = "random_date"
"customers.api_key" = { value = "secret" }
"customers.visits" = { statement = "(random() * 10)::int" }
"customers.note" = "untouched"
`;
}

/** Inserts, updates (of every masked column) and deletes customers, one transaction per step, with raw values. */
function startCustomerWriter(conn: ReturnType<LocalCluster['conn']>): { stop: () => Promise<number>; commits: () => number } {
  const client = new pg.Client({ host: conn.host, port: conn.port, user: conn.user, password: conn.password ?? '', database: conn.dbname });
  client.on('error', () => {});
  let stopping = false;
  let commits = 0;
  const run = (async () => {
    await client.connect();
    try {
      for (let i = 0; !stopping; i++) {
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO customers (email, phone, name, born, api_token, api_key, note, visits)
           VALUES ('new' || $1::int || '-' || clock_timestamp() || '@corp.example', '+49' || $1::int, 'Name new ' || $1::int, date '1900-06-01', 'tok-new', 'key-new', 'note new ' || $1::int, 1000 + $1::int)`,
          [i],
        );
        await client.query(
          `UPDATE customers SET email = 'upd' || id || '-' || $1::int || '@corp.example', phone = '+49' || $1::int, name = 'Name upd ' || $1::int,
                  born = date '1900-02-02', api_token = 'tok-upd', api_key = 'key-upd', note = 'note upd ' || $1::int, visits = 2000 + $1::int
            WHERE id = (SELECT max(id) - ($1::int % 40) FROM customers)`,
          [i],
        );
        if (i % 5 === 0) await client.query(`UPDATE customers SET note = 'only note ' || $1::int WHERE id = 1 + ($1::int * 7) % 1400`, [i]);
        if (i % 4 === 0) await client.query('DELETE FROM customers WHERE id = (SELECT min(id) + $1::int FROM customers)', [i % 30]);
        await client.query('COMMIT');
        commits++;
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await client.end().catch(() => {});
    }
  })();
  run.catch(() => {});
  return {
    commits: () => commits,
    stop: async () => {
      stopping = true;
      await run;
      return commits;
    },
  };
}

function initOptions(db: string, stateDir: string, scope: ScopeSpec, s = src): InitOptions {
  return {
    source: s.conn(db), target: tgt.conn(db), scope, stateDir, jobs: 2, noSync: false, noOwner: false, noPrivileges: false,
    noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false, signal: new AbortController().signal,
  };
}

async function count(c: LocalCluster, db: string, sql: string, params: unknown[] = []): Promise<number> {
  return (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) x`, params, db))[0]!.n;
}

describe('masking during init and sync', () => {
  it('no raw value reaches the target; unique rules are unique; everything else is equal; verify exits 0', async () => {
    const db = await createDatabase(src, uniqueDbName('mask'), writerSchemaSql(500) + CUSTOMERS_SQL);
    const dir = await tempDir();
    const configFile = path.join(dir, 'rules.toml');
    await writeFile(configFile, rulesToml(db), { mode: 0o600 });
    const scope = parseConfigText(rulesToml(db), configFile).scope;

    // validate describes the rules (and exits 0: nothing is wrong).
    const v = await runCliProcess(['validate', '--source', src.url(db), '--target', tgt.url(db), '--config', configFile, '--state-dir', dir, '--json']);
    const checks = (JSON.parse(v.stdout) as { checks: { id: string; status: string; message: string; details?: string[] }[] }).checks;
    const rules = checks.find((c) => c.id === 'tables.data_rules')!;
    expect(rules.status).toBe('ok');
    expect(rules.message).toContain('7 masked columns in 1 table');
    expect(rules.details).toContain('public.customers.email (unique_email)');
    expect(checks.find((c) => c.id === 'tables.data_rules_stream')!.message).toContain('computes them on the target');

    const writer = startWriter(src.conn(db), { pauseMs: 10 });
    const customers = startCustomerWriter(src.conn(db));
    try {
      await waitFor('the writers to start', async () => writer.commits() > 3 && customers.commits() > 3);
      const init = await runInit(initOptions(db, dir, scope));
      expect(init.databases[0]!.phase).toBe('done');
      const afterInit = (await src.query<{ m: string }>('SELECT max(id)::text AS m FROM customers', [], db))[0]!.m;
      const before = customers.commits();
      await runSync({ source: src.conn(db), target: tgt.conn(db), scope, stateDir: dir, waitTimeoutSeconds: 120, pollMs: 250, signal: new AbortController().signal });
      await waitFor('more writes after sync', async () => customers.commits() > before + 30);
      await customers.stop();
      await writer.stop();
      await untilCaughtUp(src, tgt, db, dir);

      // Rows inserted after init's snapshot arrived through the stream (and are checked below like every row).
      expect(await count(tgt, db, 'SELECT 1 FROM customers WHERE id > $1', [afterInit])).toBeGreaterThan(10);
    } finally {
      await customers.stop().catch(() => {});
      await writer.stop().catch(() => {});
    }

    // Independent of pgferry: no raw marker in any column of any row, no raw value of the source in its column.
    const rawMarkers = `t::text LIKE '%corp.example%' OR t::text LIKE '%+49%' OR t::text LIKE '%Name %' OR t::text LIKE '%tok-%' OR t::text LIKE '%key-%' OR t::text LIKE '%1900-%'`;
    expect(await count(src, db, `SELECT 1 FROM customers t WHERE ${rawMarkers}`)).toBeGreaterThan(1000); // the check can fail
    const leaked = await tgt.query<{ r: string }>(`SELECT t::text AS r FROM customers t WHERE ${rawMarkers} LIMIT 5`, [], db);
    expect(leaked.map((x) => x.r)).toEqual([]);
    const raw = await src.query<{ email: string; phone: string; name: string }>('SELECT email, phone, name FROM customers', [], db);
    expect(await count(tgt, db, 'SELECT 1 FROM customers WHERE email = ANY($1) OR phone = ANY($2) OR name = ANY($3)', [
      raw.map((r) => r.email), raw.map((r) => r.phone), raw.map((r) => r.name),
    ])).toBe(0);
    expect(await count(tgt, db, 'SELECT 1 FROM customers WHERE visits >= 11 OR visits < 0')).toBe(0);
    expect(await count(tgt, db, "SELECT 1 FROM customers WHERE api_token IS NOT NULL OR api_key <> 'secret' OR name !~ '^[A-Z]$' OR born < '1970-01-01'")).toBe(0);

    // Unique rules: unique, and the same value init and the stream give the row (from its key).
    const total = await count(tgt, db, 'SELECT 1 FROM customers');
    expect(total).toBe(await count(src, db, 'SELECT 1 FROM customers'));
    expect(await count(tgt, db, 'SELECT DISTINCT email FROM customers')).toBe(total);
    expect(await count(tgt, db, 'SELECT DISTINCT phone FROM customers')).toBe(total);
    expect(await count(tgt, db, "SELECT 1 FROM customers WHERE email <> md5('(' || id || ')') || '@example.com' OR phone !~ '^\\+[0-9]{19}$'")).toBe(0);

    // Unmasked columns of customers, and every other table, exactly equal.
    const plain = 'SELECT md5(string_agg(id || \'|\' || coalesce(note, \'~\') || \'|\' || created, \',\' ORDER BY id)) AS h FROM customers';
    const [a, b] = await Promise.all([src.query<{ h: string }>(plain, [], db), tgt.query<{ h: string }>(plain, [], db)]);
    expect(b[0]!.h).toBe(a[0]!.h);
    const hashes = await writerTableHashes(src, tgt, db, false);
    for (const name of WRITER_TABLES) expect(hashes.target[`public.${name}`], name).toEqual(hashes.source[`public.${name}`]);
    const [oa, ob] = await Promise.all([tableHashes(src.conn(db), [{ schema: 'public', name: 'orders' }]), tableHashes(tgt.conn(db), [{ schema: 'public', name: 'orders' }])]);
    expect(ob).toEqual(oa);

    // verify compares deterministic masks with the masked source values and skips the random ones, saying so.
    const ok = await runCliProcess(['verify', '--source', src.url(db), '--target', tgt.url(db), '--config', configFile, '--state-dir', dir, '--no-sequences', '--json']);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as { databases: { tables: { name: string; notes: string[] }[] }[] };
    const notes = report.databases[0]!.tables.find((t) => t.name === 'customers')!.notes.join('\n');
    expect(notes).toContain('left out of the row hash: name, born, visits');
    expect(notes).toContain('compared with the masked source values: email, phone, api_token, api_key');

    // A raw value on the target is a difference (the trigger would mask an UPDATE: set it behind its back).
    const c = new pg.Client({ ...pgConfig(tgt, db) });
    await c.connect();
    try {
      await c.query('ALTER TABLE customers DISABLE TRIGGER pgferry_mask');
      await c.query("UPDATE customers SET email = 'raw5@corp.example' WHERE id = (SELECT min(id) FROM customers)");
      await c.query('ALTER TABLE customers ENABLE ALWAYS TRIGGER pgferry_mask');
    } finally {
      await c.end();
    }
    const bad = await runCliProcess(['verify', '--source', src.url(db), '--target', tgt.url(db), '--config', configFile, '--state-dir', dir, '--no-sequences', '--recheck', '0']);
    expect(bad.exitCode, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toContain('customers');

    // list shows the masked columns.
    const list = await runCliProcess(['list', db, '--source', src.url(db), '--config', configFile, '--state-dir', dir]);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toContain('masked: public.customers: email (unique_email), phone (unique_phone), name (random_letter)');

    // status shows which columns the publication keeps on the source (read from the publication's column list).
    const status = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(status.databases[0]!.publication.masked).toEqual([
      { schema: 'public', name: 'customers', columns: ['email', 'phone', 'name', 'born', 'api_token', 'api_key', 'visits'] },
    ]);
    const statusText = await runCliProcess(['status', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir]);
    expect(statusText.stdout).toContain('masked public.customers: email, phone, name, born, api_token, api_key, visits (computed on the target)');

    // cleanup drops the masking trigger and its function with the rest.
    const cleaned = await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(cleaned.items).toContainEqual({ side: 'target', kind: 'mask-trigger', database: db, name: 'public.customers' });
    expect(await count(tgt, db, "SELECT 1 FROM pg_trigger WHERE tgname = 'pgferry_mask'")).toBe(0);
    expect(await count(tgt, db, "SELECT 1 FROM pg_proc WHERE proname LIKE 'pgferry\\_mask\\_%'")).toBe(0);
  });
});

/**
 * The client applier (sync --applier client) writes the stream itself: the same target trigger masks what it
 * applies on both of its paths (set-based INSERT … ON CONFLICT / UPDATE … FROM for a table whose key is its only
 * unique index, one statement per row for customers, which also has a unique e-mail), also for a transaction
 * bigger than logical_decoding_work_mem (streamed by the source, spooled by pgferry, applied at its commit).
 * The target is polled all along: no raw value is ever visible there.
 */
describe('masking with the client applier', () => {
  const CLIENT_RULES = (db: string) => `${rulesToml(db)}
"profiles.email" = "unique_email"
"profiles.phone" = "null"
"tokens.secret" = { value = "hidden" }
`;
  const EXTRA_SQL = `
    CREATE TABLE profiles (id int PRIMARY KEY, email text, phone text, score int NOT NULL);
    INSERT INTO profiles SELECT g, 'p' || g || '@corp.example', '+49' || g, g FROM generate_series(1, 300) g;
    -- no primary key: a unique NOT NULL index is the replica identity
    CREATE TABLE tokens (code int NOT NULL, secret text, n int NOT NULL);
    CREATE UNIQUE INDEX tokens_code ON tokens (code);
    ALTER TABLE tokens REPLICA IDENTITY USING INDEX tokens_code;
    INSERT INTO tokens SELECT g, 'key-' || g, 0 FROM generate_series(1, 100) g;
  `;
  const rawMarkers = `t::text LIKE '%corp.example%' OR t::text LIKE '%+49%' OR t::text LIKE '%Name %' OR t::text LIKE '%tok-%' OR t::text LIKE '%key-%' OR t::text LIKE '%1900-%'`;
  const leakSql = `SELECT 'customers: ' || t::text AS r FROM customers t WHERE ${rawMarkers}
    UNION ALL SELECT 'profiles: ' || t::text FROM profiles t WHERE ${rawMarkers}
    UNION ALL SELECT 'tokens: ' || t::text FROM tokens t WHERE ${rawMarkers} LIMIT 5`;

  it('no raw value ever shows on the target, streamed transactions included; verify exits 0', async () => {
    const db = await createDatabase(src, uniqueDbName('maskc'), writerSchemaSql(200) + CUSTOMERS_SQL + EXTRA_SQL);
    const dir = await tempDir();
    const configFile = path.join(dir, 'rules.toml');
    await writeFile(configFile, CLIENT_RULES(db), { mode: 0o600 });
    const scope = parseConfigText(CLIENT_RULES(db), configFile).scope;
    // Transactions above 64 kB arrive streamed before their commit (protocol 2) and go through the spool.
    await src.query("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'");
    await src.query('SELECT pg_reload_conf()');

    const leaks: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        for (const r of await tgt.query<{ r: string }>(leakSql, [], db).catch(() => [])) leaks.push(r.r);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const writer = startWriter(src.conn(db), { pauseMs: 10 });
    const customers = startCustomerWriter(src.conn(db));
    const ac = new AbortController();
    const events: ProgressEvent[] = [];
    try {
      await waitFor('the writers to start', async () => writer.commits() > 3 && customers.commits() > 3);
      const init = await runInit(initOptions(db, dir, scope));
      expect(init.databases[0]!.phase).toBe('done');
      const run = runClientSync({ source: src.conn(db), target: tgt.conn(db), scope, stateDir: dir, signal: ac.signal, progress: (e) => events.push(e) });
      run.catch(() => {});
      const before = customers.commits();
      // Set-based and per-row statements, and one big transaction (streamed), all with raw values in masked columns.
      await src.query(`UPDATE profiles SET email = 'u' || id || '@corp.example', phone = '+49' || (id * 7), score = score + 1 WHERE id % 3 = 0`, [], db);
      await src.query(`INSERT INTO profiles SELECT g, 'n' || g || '@corp.example', '+49' || g, g FROM generate_series(301, 400) g`, [], db);
      await src.query(`UPDATE tokens SET secret = 'key-upd-' || code, n = n + 1`, [], db);
      await src.query(`INSERT INTO tokens SELECT g, 'key-' || g, 0 FROM generate_series(101, 150) g`, [], db);
      await waitFor('more writes while the client applier runs', async () => customers.commits() > before + 30);
      await customers.stop();
      // With the other writer still running (after the customer writer, whose row locks it would deadlock with).
      await src.query(`UPDATE customers SET email = 'big' || id || '@corp.example', phone = '+49' || id, name = 'Name big ' || id, api_token = 'tok-big', api_key = 'key-big', born = date '1900-03-03'`, [], db);
      await writer.stop();
      ac.abort();
      const stopped = await run;
      expect(stopped.outcome).toBe('stopped');
      // What is left, in a second run (from the committed position), until caught up.
      const r = await runClientSync({ source: src.conn(db), target: tgt.conn(db), scope, stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal });
      expect(r.outcome).toBe('caught-up');
      expect(stopped.databases[0]!.streamedTransactions + r.databases[0]!.streamedTransactions).toBeGreaterThan(0);
    } finally {
      ac.abort();
      await customers.stop().catch(() => {});
      await writer.stop().catch(() => {});
      polling = false;
      await poller;
      await src.query('ALTER SYSTEM RESET logical_decoding_work_mem');
      await src.query('SELECT pg_reload_conf()');
    }
    expect(leaks).toEqual([]);
    // The masked tables' extra target columns are expected: no warning about them.
    expect(events.filter((e) => e.kind === 'log' && e.level === 'warn').map((e) => (e as { message: string }).message).join('\n')).not.toContain('columns the source does not send');
    expect(await count(src, db, `SELECT 1 FROM customers t WHERE ${rawMarkers}`)).toBeGreaterThan(1000); // the check can fail
    expect(await count(tgt, db, 'SELECT 1 FROM pg_subscription')).toBe(0);
    expect(await count(tgt, db, 'SELECT 1 FROM customers')).toBe(await count(src, db, 'SELECT 1 FROM customers'));
    expect(await count(tgt, db, "SELECT 1 FROM customers WHERE email <> md5('(' || id || ')') || '@example.com' OR api_token IS NOT NULL OR api_key <> 'secret'")).toBe(0);
    expect(await count(tgt, db, "SELECT 1 FROM profiles WHERE email <> md5('(' || id || ')') || '@example.com' OR phone IS NOT NULL")).toBe(0);
    expect(await count(tgt, db, 'SELECT 1 FROM profiles')).toBe(400);
    expect(await count(tgt, db, "SELECT 1 FROM tokens WHERE secret = 'hidden' AND n = CASE WHEN code <= 100 THEN 1 ELSE 0 END")).toBe(150);
    const hashes = await writerTableHashes(src, tgt, db, false);
    for (const name of WRITER_TABLES) expect(hashes.target[`public.${name}`], name).toEqual(hashes.source[`public.${name}`]);

    const ok = await runCliProcess(['verify', '--source', src.url(db), '--target', tgt.url(db), '--config', configFile, '--state-dir', dir, '--no-sequences', '--json']);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);

    // cleanup drops the slot (later tests count the cluster's slots), the origin and the masking triggers.
    await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(await count(tgt, db, "SELECT 1 FROM pg_trigger WHERE tgname = 'pgferry_mask'")).toBe(0);
  });
});

function pgConfig(c: LocalCluster, db: string): pg.ClientConfig {
  const conn = c.conn(db);
  return { host: conn.host, port: conn.port, user: conn.user, password: conn.password ?? '', database: db };
}

describe('rules that cannot be honoured are refused by name before anything is written', () => {
  const SQL = `
    CREATE TABLE people (id int PRIMARY KEY, email varchar(20), code text NOT NULL, n int, at timestamptz, ip inet);
    CREATE TABLE keyless (email text, v int);
    CREATE TABLE ident (a int NOT NULL, b text NOT NULL, c text);
    CREATE UNIQUE INDEX ident_a ON ident (a);
    ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_a;
    CREATE TABLE fulltab (id int PRIMARY KEY, secret text);
    ALTER TABLE fulltab REPLICA IDENTITY FULL;
    CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE);
    CREATE TABLE child (id int PRIMARY KEY, parent_code text REFERENCES parent(code));
    CREATE TABLE withgen (id int PRIMARY KEY, a text, g text GENERATED ALWAYS AS (upper(a)) STORED);
  `;
  let db: string;
  beforeAll(async () => {
    db = await createDatabase(src, uniqueDbName('maskerr'), SQL);
  });

  async function problem(rules: string): Promise<string> {
    const scope = parseConfigText(`[data_rules]\n${rules}\n`, 'rules.toml').scope;
    const c = new pg.Client(pgConfig(src, db));
    await c.connect();
    try {
      await resolveTables(c, db, rulesFor(scope, db));
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      return (err as Error).message;
    } finally {
      await c.end();
    }
    throw new Error('the rules were accepted');
  }

  it.each([
    ['"people.nope" = "null"', 'data_rules."people.nope": column "nope" does not exist in public.people'],
    ['"nosuch.email" = "null"', 'data_rules."nosuch.email": table public.nosuch does not exist'],
    ['"keyless.email" = "unique_email"', 'keyless has no primary key or unique NOT NULL key'],
    ['"people.id" = "random_int"', '(public.people.id): the column is part of the primary key'],
    ['"ident.a" = "random_int"', 'the column is part of the replica identity'],
    ['"fulltab.secret" = "null"', 'REPLICA IDENTITY FULL'],
    ['"parent.code" = "unique_secret"', 'is referenced by public.child'],
    ['"child.parent_code" = "null"', 'references another table'],
    ['"withgen.g" = "null"', 'the column is generated'],
    ['"people.n" = "random_date"', 'random_date does not fit a column of type integer'],
    ['"people.at" = "random_ip"', 'random_ip does not fit a column of type timestamp with time zone'],
    ['"people.email" = "unique_email"', 'unique_email makes values of 44 characters, more than character varying(20) holds'],
    ['"people.code" = "null"', 'the column is NOT NULL'],
    ['"people.n" = { value = "abc" }', 'the value does not fit the column (integer)'],
    ['"people.n" = { statement = "nosuchcol + 1" }', 'the statement is not valid for the column'],
  ])('%s', async (rule, expected) => {
    const msg = await problem(rule);
    expect(msg).toContain(expected);
    expect(msg).toMatch(/data_rules\./);
  });

  it('accepts every rule kind on a column type it fits', async () => {
    const scope = parseConfigText(`[data_rules]
"people.n" = "random_int"
"people.at" = "random_time"
"people.ip" = "random_ip"
"people.code" = "random_string"
"people.email" = "random_letter"
"ident.c" = "unique_phone"
"withgen.a" = { value = 7 }
"keyless.v" = "random_number"
`, 'ok.toml').scope;
    const c = new pg.Client(pgConfig(src, db));
    await c.connect();
    try {
      const { tables } = await resolveTables(c, db, rulesFor(scope, db));
      expect(tables.find((t) => t.name === 'people')!.masking!.masks.map((m) => m.column).sort()).toEqual(['at', 'code', 'email', 'ip', 'n']);
      // Each expression evaluates on the source for every accepted type.
      for (const t of tables.filter((x) => x.masking)) {
        const { maskedSelectList } = await import('../../src/config/data-rules.js');
        await c.query(`SELECT ${maskedSelectList(t.columns.filter((x) => !x.generated).map((x) => x.name), t.masking)} FROM ONLY public.${t.name}`);
      }
    } finally {
      await c.end();
    }
  });

  it('every rule kind on every column type it accepts, and a refusal naming the key on every type it does not', async () => {
    const TYPES: Record<string, string> = {
      text: 'text', vc: 'varchar(64)', ch: 'char(50)', i2: 'int2', i4: 'int4', i8: 'int8', num: 'numeric', f8: 'float8', d: 'date',
      ts: 'timestamp', tstz: 'timestamptz', t: 'time', ttz: 'timetz', inet: 'inet', cidr: 'cidr', js: 'jsonb', b: 'bool', u: 'uuid',
    };
    const STR = ['text', 'vc', 'ch'];
    const NUM = [...STR, 'i2', 'i4', 'i8', 'num', 'f8'];
    const FITS: Record<string, string[]> = {
      unique_email: STR, unique_phone: STR, unique_secret: STR, random_letter: STR, random_string: STR, random_int: NUM, random_number: NUM,
      random_date: [...STR, 'd', 'ts', 'tstz'], random_time: [...STR, 't', 'ttz', 'ts', 'tstz'], random_ip: [...STR, 'inet', 'cidr'],
      null: Object.keys(TYPES),
    };
    const fit: [string, string][] = [];
    const misfit: [string, string][] = [];
    for (const [rule, types] of Object.entries(FITS)) for (const t of Object.keys(TYPES)) (types.includes(t) ? fit : misfit).push([`${rule}__${t}`, rule]);
    const table = (name: string, cols: [string, string][]) =>
      `CREATE TABLE ${name} (id int PRIMARY KEY, ${cols.map(([c]) => `${c} ${TYPES[c.split('__')[1]!]}`).join(', ')}); INSERT INTO ${name} (id) VALUES (1), (2);`;
    await src.query(table('mask_fit', fit) + table('mask_misfit', misfit), [], db);
    const toml = (name: string, cols: [string, string][]) => `[data_rules]\n${cols.map(([c, r]) => `"${name}.${c}" = "${r}"`).join('\n')}\n`;

    const c = new pg.Client(pgConfig(src, db));
    await c.connect();
    try {
      await c.query("SET TimeZone = 'UTC'");
      const { tables } = await resolveTables(c, db, rulesFor(parseConfigText(toml('mask_fit', fit), 'fit.toml').scope, db));
      const t = tables.find((x) => x.name === 'mask_fit')!;
      expect(t.masking!.masks).toHaveLength(fit.length);
      const { maskedSelectList } = await import('../../src/config/data-rules.js');
      const { rows } = await c.query<Record<string, unknown>>(`SELECT ${maskedSelectList(t.columns.map((x) => x.name), t.masking)} FROM mask_fit ORDER BY id`);
      for (const [col, rule] of fit) {
        if (rule === 'null') expect(rows[0]![col], col).toBeNull();
        else expect(rows[0]![col], col).not.toBeNull();
      }
      // Unique rules differ between the two rows; the same row gets the same value twice.
      const again = await c.query<Record<string, unknown>>(`SELECT ${maskedSelectList(t.columns.map((x) => x.name), t.masking)} FROM mask_fit ORDER BY id`);
      for (const [col] of fit.filter(([, r]) => r.startsWith('unique_'))) {
        expect(rows[0]![col], col).not.toEqual(rows[1]![col]);
        expect(again.rows[0]![col], col).toEqual(rows[0]![col]);
      }
    } finally {
      await c.end();
    }
    const msg = await problem(toml('mask_misfit', misfit).replace('[data_rules]\n', ''));
    for (const [col, rule] of misfit) expect(msg, col).toContain(`data_rules."mask_misfit.${col}" (public.mask_misfit.${col}): ${rule} does not fit a column of type`);
  });

  it('reports every problem at once, and validate and init exit 2 naming the key, with nothing written', async () => {
    const msg = await problem('"people.nope" = "null"\n"people.n" = "random_date"');
    expect(msg).toContain('"people.nope"');
    expect(msg).toContain('"people.n"');
    const dir = await tempDir();
    const file = path.join(dir, 'bad.toml');
    await writeFile(file, '[data_rules]\n"people.id" = "random_int"\n', { mode: 0o600 });
    const v = await runCliProcess(['validate', '--source', src.url(db), '--target', tgt.url(db), '--config', file, '--state-dir', dir]);
    expect(v.exitCode).toBe(ExitCode.usage);
    expect(v.stderr).toContain('data_rules."people.id"');
    const i = await runCliProcess(['init', '--source', src.url(db), '--target', tgt.url(db), '--config', file, '--state-dir', dir, '--no-interactive', '--yes']);
    expect(i.exitCode).toBe(ExitCode.usage);
    expect(i.stderr).toContain('the column is part of the primary key');
    expect(await count(tgt, 'postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db])).toBe(0);
    expect(await count(src, db, 'SELECT 1 FROM pg_replication_slots WHERE database = current_database()')).toBe(0);
  });
});

describe('a source older than 15', () => {
  it('init refuses to stream masked tables (exit 2, nothing created); --no-sync copies them masked', async () => {
    const old = await clusters.startMajor(13, { name: 'mask-pg13' });
    const db = await createDatabase(old, uniqueDbName('mask13'), 'CREATE TABLE people (id int PRIMARY KEY, email text); INSERT INTO people SELECT g, \'raw\' || g FROM generate_series(1, 50) g;');
    const scope = parseConfigText('[data_rules]\nemail = "unique_email"\n', 'r.toml').scope;
    const dir = await tempDir();
    const err = await runInit(initOptions(db, dir, scope, old)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgferryError);
    expect((err as PgferryError).exitCode).toBe(ExitCode.usage);
    expect((err as Error).message).toContain('masked columns cannot be streamed from PostgreSQL 13');
    expect(await count(tgt, 'postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db])).toBe(0);
    expect(await count(old, db, 'SELECT 1 FROM pg_replication_slots WHERE database = current_database()')).toBe(0);

    const copied = await runInit({ ...initOptions(db, await tempDir(), scope, old), noSync: true });
    expect(copied.databases[0]!.phase).toBe('done');
    expect(await count(tgt, db, "SELECT 1 FROM people WHERE email LIKE 'raw%'")).toBe(0);
    expect(await count(tgt, db, "SELECT 1 FROM people WHERE email = md5('(' || id || ')') || '@example.com'")).toBe(50);
  });
});
