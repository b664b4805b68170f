import { describe, expect, it } from 'vitest';
import { disableEventTriggersSql, eventTriggerStatements } from '../../src/pipeline/shared/event-triggers.js';

describe('event triggers at the hand-over', () => {
  it("gives each trigger on both sides the source's state, and touches nothing else", () => {
    const source = new Map([['audit', 'O'], ['always', 'A'], ['replica', 'R'], ['off', 'D'], ['same', 'O'], ['only_source', 'O']]);
    const target = new Map([['audit', 'D'], ['always', 'D'], ['replica', 'D'], ['off', 'D'], ['same', 'O'], ['only_target', 'D']]);
    expect(eventTriggerStatements(source, target)).toEqual([
      'ALTER EVENT TRIGGER "audit" ENABLE',
      'ALTER EVENT TRIGGER "always" ENABLE ALWAYS',
      'ALTER EVENT TRIGGER "replica" ENABLE REPLICA',
    ]);
    expect(eventTriggerStatements(new Map([['Odd "name"', 'O']]), new Map([['Odd "name"', 'D']]))).toEqual(['ALTER EVENT TRIGGER "Odd ""name""" ENABLE']);
  });

  it("disables what the restore made and leaves the target database's own event triggers alone", () => {
    expect(disableEventTriggersSql([])).toContain("FROM pg_event_trigger WHERE evtenabled <> 'D' LOOP");
    expect(disableEventTriggersSql(['platform_guard', "it's"])).toContain(
      "WHERE evtenabled <> 'D' AND NOT (evtname = ANY (ARRAY['platform_guard', 'it''s']::name[])) LOOP",
    );
  });
});
