import { describe, expect, it } from 'vitest';
import { GROUP_MAX_PARTS, GROUP_PART_MAX_BYTES, groupSmallParts } from '../../src/pipeline/init/copy.js';
import type { TableCopyPlan } from '../../src/pipeline/init/copy-plan.js';
import type { TablePart } from '../../src/pipeline/init/parts.js';

function item(name: string, bytes: number, opts: { count?: number; split?: boolean } = {}): { plan: TableCopyPlan; part: TablePart } {
  const rel = { schema: 'public', name };
  const part: TablePart = { id: `public.${name}#0`, root: rel, relation: rel, index: 0, count: opts.count ?? 1, range: null, estimatedBytes: bytes };
  const plan = { key: `public.${name}`, splitRelations: opts.split ? [rel] : [], parts: [part] } as unknown as TableCopyPlan;
  return { plan, part };
}

const names = (groups: { part: TablePart }[][]) => groups.map((g) => g.map((w) => w.part.relation.name));

describe('groups of small parts', () => {
  it('keeps large parts and parts of split relations alone, and groups the small whole relations that follow them', () => {
    const items = [
      item('big', GROUP_PART_MAX_BYTES + 1),
      item('piece', 1000, { count: 2, split: true }),
      ...Array.from({ length: 8 }, (_, i) => item(`s${i}`, 1000)),
    ];
    // 8 small parts, 1 job: at most ceil(8 / 4) = 2 per group, so the one worker still has several groups.
    expect(names(groupSmallParts(items, 1))).toEqual([['big'], ['piece'], ['s0', 's1'], ['s2', 's3'], ['s4', 's5'], ['s6', 's7']]);
  });

  it('caps a group by parts and by bytes', () => {
    const many = Array.from({ length: 400 }, (_, i) => item(`t${i}`, 1000));
    const groups = groupSmallParts(many, 2);
    expect(groups.every((g) => g.length <= GROUP_MAX_PARTS)).toBe(true);
    expect(groups.length).toBe(400 / GROUP_MAX_PARTS);
    expect(groups.flat().map((w) => w.part.relation.name)).toEqual(many.map((w) => w.part.relation.name));
    const heavy = Array.from({ length: 12 }, (_, i) => item(`h${i}`, GROUP_PART_MAX_BYTES));
    expect(groupSmallParts(heavy, 1).map((g) => g.length)).toEqual([3, 3, 3, 3]);
    expect(names(groupSmallParts([item('only', 10)], 4))).toEqual([['only']]);
  });
});
