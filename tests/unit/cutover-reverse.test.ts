/** Who may create the reverse subscription on the old source (pure); cutover.test.ts runs --reverse for real. */
import { describe, expect, it } from 'vitest';
import { reverseRightsProblem } from '../../src/pipeline/cutover/reverse.js';

describe('cutover --reverse: rights on the old source', () => {
  it('lets a superuser, and from 16 a member of pg_create_subscription with CREATE, create the subscription', () => {
    expect(reverseRightsProblem({ superuser: true, major: 12, canCreateSubscription: false })).toBeNull();
    expect(reverseRightsProblem({ superuser: false, major: 16, canCreateSubscription: true })).toBeNull();
    expect(reverseRightsProblem({ superuser: false, major: 17, canCreateSubscription: false })).toMatch(/needs pg_create_subscription and CREATE/);
    expect(reverseRightsProblem({ superuser: false, major: 15, canCreateSubscription: true })).toMatch(/PostgreSQL 15 allows it to superusers only/);
  });
});
