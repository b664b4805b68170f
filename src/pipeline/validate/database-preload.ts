/**
 * A database's session_preload_libraries / local_preload_libraries (ALTER DATABASE … SET, or per role IN
 * DATABASE) are read at every login. init carries the database's settings over, but one naming a library the
 * target cannot load would make every new connection to the copy fail, pgferry's own included: init leaves such
 * a setting out with a warning. Say so here, before anything is written.
 */
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { quoteIdent } from '../../postgres/identifiers.js';
import { checkPreloadSettings, preloadSetting } from '../../postgres/libraries.js';
import { ok, warn, type CheckResult } from './types.js';

export async function checkDatabasePreloadLibraries(target: ResolvedConnInfo, sourceDb: string, settings: readonly { role: string | null; setting: string }[]): Promise<CheckResult | null> {
  const id = 'database.preload_libraries';
  const parsed = settings.flatMap((s) => {
    const p = preloadSetting(s.setting);
    return p && p.libraries.length ? [{ ...s, ...p }] : [];
  });
  if (!parsed.length) return null;
  const checks = await checkPreloadSettings(target, parsed, 'the target');
  const missing: string[] = [];
  const unknown: string[] = [];
  const fixes: string[] = [];
  for (const [i, p] of parsed.entries()) {
    const mine = checks[i]!;
    const who = `${p.name}${p.role === null ? '' : ` for role ${p.role}`}`;
    const lacking = mine.filter((c) => c.status === 'missing');
    if (lacking.length) {
      missing.push(`${who}: ${lacking.map((c) => `"${c.library}"`).join(', ')}`);
      fixes.push(`install ${lacking.map((c) => `"${c.library}"`).join(', ')} on the target, or on the source: ALTER ${p.role === null ? 'DATABASE' : `ROLE ${quoteIdent(p.role)} IN DATABASE`} ${quoteIdent(sourceDb)} RESET ${p.name}`);
    }
    for (const c of mine.filter((x) => x.status === 'unknown')) unknown.push(`${who}: "${c.library}" (${c.detail ?? 'LOAD failed'})`);
  }
  const names = [...new Set(parsed.map((p) => p.name))].join(' and ');
  if (missing.length) {
    return warn(
      id,
      'target',
      `the target cannot load what the source database's ${names} name (${missing.join('; ')}): every new connection to the copy would fail with it, so init leaves ${missing.length > 1 ? 'these settings' : 'the setting'} out`,
      fixes.join('; '),
      { details: [...missing, ...unknown] },
    );
  }
  if (unknown.length) {
    return warn(
      id,
      'target',
      `cannot tell whether the target can load what the source database's ${names} name (${unknown.join('; ')}); a library it lacks would make every new connection to the copy fail`,
      'connect to the target as a superuser for this check, or check by hand that each library is installed there',
    );
  }
  return ok(id, 'target', `the target loads every library the source database's ${names} name (${[...new Set(parsed.flatMap((p) => p.libraries))].join(', ')})`);
}
