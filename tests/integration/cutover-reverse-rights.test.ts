/** Whether a role that is not a superuser may create --reverse's subscription on an old source of PostgreSQL 16+. */
import { describe, expect, it } from 'vitest';
import { connect } from '../../src/postgres/connect.js';
import { canCreateSubscription } from '../../src/pipeline/cutover/reverse.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const clusters = useClusters();

describe('cutover --reverse: who may create the subscription', () => {
  it('needs pg_create_subscription and CREATE on the database', async () => {
    const c = await clusters.startMajor(17, { name: 'revrights17' });
    const db = await createDatabase(c, uniqueDbName('revrights'));
    await c.query("CREATE ROLE rev_user LOGIN PASSWORD 'rev-user-pw'");
    const ask = async () => {
      const client = await connect(c.conn(db, 'rev_user', 'rev-user-pw'));
      try {
        return await canCreateSubscription(client, 17);
      } finally {
        await client.end();
      }
    };
    expect(await ask()).toBe(false);
    await c.query('GRANT pg_create_subscription TO rev_user');
    expect(await ask()).toBe(false); // still no CREATE on the database
    await c.query(`GRANT CREATE ON DATABASE ${db} TO rev_user`);
    expect(await ask()).toBe(true);
  });
});
