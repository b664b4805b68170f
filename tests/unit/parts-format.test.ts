import { describe, expect, it } from 'vitest';
import { binaryPortable, chooseFormat, type TypeInfo } from '../../src/pipeline/init/format.js';

const t = (oid: number, name: string, typtype: string, extra: Partial<TypeInfo> = {}): TypeInfo => ({
  oid, name, typtype, baseType: 0, elementType: 0, subType: 0, hasBinaryIo: true, ...extra,
});
const types = new Map<number, TypeInfo>([
  [23, t(23, 'int4', 'b')],
  [1007, t(1007, '_int4', 'b', { elementType: 23 })],
  [1700, t(1700, 'numeric', 'b')],
  [2205, t(2205, 'regclass', 'b')],
  [2210, t(2210, '_regclass', 'b', { elementType: 2205 })],
  [1033, t(1033, 'aclitem', 'b', { hasBinaryIo: false })],
  [3904, t(3904, 'int4range', 'r', { subType: 23 })],
  [20000, t(20000, 'mood', 'e')],
  [20001, t(20001, '_mood', 'b', { elementType: 20000 })],
  [20002, t(20002, 'posint', 'd', { baseType: 23 })],
  [20003, t(20003, '_posint', 'b', { elementType: 20002 })],
  [20004, t(20004, 'pair', 'c')],
  [20005, t(20005, 'hstore', 'b')],
  [20006, t(20006, 'floatrange', 'r', { subType: 701 })],
  [701, t(701, 'float8', 'b')],
  [20007, t(20007, 'moodrange', 'r', { subType: 20004 })],
]);

describe('binary COPY portability', () => {
  it('accepts built-in types, arrays of them, enums, domains and ranges over safe types', () => {
    for (const oid of [23, 1007, 1700, 3904, 20000, 20002, 20006]) expect(binaryPortable(oid, types), String(oid)).toBe(true);
  });
  it('refuses composites, arrays of user types, reg* types, extension types, types without binary I/O, unknown types', () => {
    for (const oid of [20004, 20001, 20003, 2205, 2210, 20005, 1033, 20007, 99999]) expect(binaryPortable(oid, types), String(oid)).toBe(false);
  });
  it('chooses binary only when every column allows it and the target is not older', () => {
    expect(chooseFormat([{ typeOid: 23 }, { typeOid: 20000 }], types, 15, 17)).toBe('binary');
    expect(chooseFormat([{ typeOid: 23 }, { typeOid: 20004 }], types, 15, 17)).toBe('text');
    expect(chooseFormat([{ typeOid: 23 }], types, 17, 15)).toBe('text');
    expect(chooseFormat([], types, 15, 15)).toBe('binary');
  });
});
