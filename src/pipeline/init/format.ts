/**
 * COPY format per table: binary where every column's binary form is the same
 * on both servers, text otherwise.
 *
 * Binary is faster (no number/date parsing, bytea not hex-doubled) but some
 * binary forms embed server-local OIDs or are not portable:
 * - arrays carry their element type's OID and composites their field types'
 *   OIDs; the target checks them, so they only work when those are built-in
 *   types (OIDs below 16384 are the same on every server);
 * - reg* types (regclass, regtype …) are sent as raw OIDs, which name other
 *   objects on the target;
 * - user-defined base types (extensions: hstore, citext, PostGIS …) may
 *   lack binary I/O or change it between extension versions;
 * - a downgrade (newer source major than target) may produce forms the older
 *   server cannot read.
 * Enums (label text) and domains / ranges over safe types have portable
 * binary forms. Text mode is always correct given the canonical session
 * settings on both sides (see copy.ts).
 */
import type pg from 'pg';
import type { CatalogColumn } from '../../postgres/catalog/tables.js';

export type CopyFormat = 'binary' | 'text';

/** First OID assigned to user objects; lower OIDs are fixed by initdb on every server. */
export const FIRST_NORMAL_OID = 16384;

export interface TypeInfo {
  oid: number;
  name: string;
  /** pg_type.typtype: b base, c composite, d domain, e enum, p pseudo, r range, m multirange. */
  typtype: string;
  /** Base type of a domain, else 0. */
  baseType: number;
  /** Element type of an array (typlen = -1 and typelem set), else 0. */
  elementType: number;
  /** Subtype of a range, range of a multirange, else 0. */
  subType: number;
  hasBinaryIo: boolean;
}

export type TypeInfoMap = ReadonlyMap<number, TypeInfo>;

const TYPES_SQL = `
WITH RECURSIVE closure(oid) AS (
  SELECT unnest($1::oid[])
  UNION
  SELECT x.dep
    FROM closure c
    JOIN pg_type t ON t.oid = c.oid
    LEFT JOIN pg_range r ON r.rngtypid = t.oid
    CROSS JOIN LATERAL (VALUES (NULLIF(t.typbasetype, 0)),
                               (CASE WHEN t.typlen = -1 THEN NULLIF(t.typelem, 0) END),
                               (r.rngsubtype)) AS x(dep)
   WHERE x.dep IS NOT NULL
)
SELECT t.oid::int AS oid, t.typname AS name, t.typtype AS typtype, t.typbasetype::int AS base_type,
       CASE WHEN t.typlen = -1 THEN t.typelem::int ELSE 0 END AS element_type,
       COALESCE(r.rngsubtype, 0)::int AS sub_type,
       t.typsend <> 0 AND t.typreceive <> 0 AS has_binary_io
  FROM closure c
  JOIN pg_type t ON t.oid = c.oid
  LEFT JOIN pg_range r ON r.rngtypid = t.oid`;

/** Types of the given OIDs and everything they are built on (domain bases, array elements, range subtypes). */
export async function loadTypeInfo(client: pg.Client, oids: Iterable<number>): Promise<Map<number, TypeInfo>> {
  const list = [...new Set(oids)];
  const map = new Map<number, TypeInfo>();
  if (!list.length) return map;
  const { rows } = await client.query<{
    oid: number; name: string; typtype: string; base_type: number; element_type: number; sub_type: number; has_binary_io: boolean;
  }>(TYPES_SQL, [list]);
  for (const r of rows) {
    map.set(r.oid, {
      oid: r.oid, name: r.name, typtype: r.typtype, baseType: r.base_type, elementType: r.element_type,
      subType: r.sub_type, hasBinaryIo: r.has_binary_io,
    });
  }
  return map;
}

/** Whether values of this type can travel in binary COPY between two servers. */
export function binaryPortable(oid: number, types: TypeInfoMap, seen: Set<number> = new Set()): boolean {
  const t = types.get(oid);
  if (!t || seen.has(oid)) return false;
  seen.add(oid);
  switch (t.typtype) {
    case 'd':
      // A domain travels as its base type.
      return binaryPortable(t.baseType, types, seen);
    case 'e':
      return true;
    case 'r':
      return t.hasBinaryIo && binaryPortable(t.subType, types, seen);
    case 'b':
      break;
    default:
      // composite (field OIDs embedded), multirange, pseudo
      return false;
  }
  if (oid >= FIRST_NORMAL_OID || !t.hasBinaryIo) return false;
  if (/^reg/.test(t.name) || /^_reg/.test(t.name)) return false;
  if (t.elementType) {
    // array_recv checks the element type's OID: it must be a built-in one.
    return t.elementType < FIRST_NORMAL_OID && binaryPortable(t.elementType, types, seen);
  }
  return true;
}

/** The COPY format for a table's copied columns (generated columns must already be left out). */
export function chooseFormat(
  columns: readonly Pick<CatalogColumn, 'typeOid'>[],
  types: TypeInfoMap,
  sourceMajor: number,
  targetMajor: number,
): CopyFormat {
  if (targetMajor < sourceMajor) return 'text';
  return columns.every((c) => binaryPortable(c.typeOid, types)) ? 'binary' : 'text';
}
