/**
 * Whether a server can load the libraries a database's session_preload_libraries or local_preload_libraries
 * names. Such a setting (ALTER DATABASE … SET, ALTER ROLE … IN DATABASE … SET) is read at every login: a library
 * the server lacks makes every new connection to the database fail ("could not access file"), pgferry's own
 * included. LOAD in a session of its own (closed afterwards: the library stays loaded in it) finds out first.
 */
import { connect } from './connect.js';
import type { ResolvedConnInfo } from './conninfo.js';
import { sqlstate } from './errors.js';
import { quoteLiteral } from './identifiers.js';
import { settingParts, splitSettingList } from './setting-lists.js';

/** The settings that load libraries at login; local_preload_libraries only from $libdir/plugins. */
const PRELOAD_SETTINGS: Readonly<Record<string, { restricted: boolean }>> = {
  session_preload_libraries: { restricted: false },
  local_preload_libraries: { restricted: true },
};

export interface PreloadSetting {
  name: string;
  libraries: string[];
  restricted: boolean;
}

/** The libraries a `name=value` setting loads at login; null for any other setting. */
export function preloadSetting(setting: string): PreloadSetting | null {
  const { name, value } = settingParts(setting);
  const kind = PRELOAD_SETTINGS[name];
  if (!kind) return null;
  return { name, libraries: splitSettingList(value).filter((l) => l !== ''), restricted: kind.restricted };
}

/** The file LOAD is given for a library of the setting, as the server resolves it at login (load_libraries). */
export function libraryFile(library: string, restricted: boolean): string {
  return restricted && !library.includes('/') ? `$libdir/plugins/${library}` : library;
}

export interface LibraryCheck {
  library: string;
  /** present: loaded; missing: the server has no such file; unknown: LOAD was refused or failed otherwise. */
  status: 'present' | 'missing' | 'unknown';
  /** The server's message when not present. */
  detail?: string;
}

/** For each preload setting, the LOAD of each of its libraries on the server of `conn` (one session for all). */
export async function checkPreloadSettings(conn: ResolvedConnInfo, settings: readonly PreloadSetting[], label: string): Promise<LibraryCheck[][]> {
  const checks = await checkLibraries(conn, settings.flatMap((p) => p.libraries.map((library) => ({ library, restricted: p.restricted }))), label);
  let i = 0;
  return settings.map((p) => checks.slice(i, (i += p.libraries.length)));
}

/** Try to LOAD each library on the server of `conn` (one session, closed afterwards). */
async function checkLibraries(conn: ResolvedConnInfo, libraries: readonly { library: string; restricted: boolean }[], label: string): Promise<LibraryCheck[]> {
  if (!libraries.length) return [];
  const client = await connect(conn, { label });
  try {
    const out: LibraryCheck[] = [];
    for (const { library, restricted } of libraries) {
      try {
        // LOAD takes no parameter: the file name is a literal.
        await client.query(`LOAD ${quoteLiteral(libraryFile(library, restricted))}`);
        out.push({ library, status: 'present' });
      } catch (err) {
        // 58P01: no such file. Anything else (42501: only a superuser may LOAD it) leaves the question open.
        out.push({ library, status: sqlstate(err) === '58P01' ? 'missing' : 'unknown', detail: (err as Error).message });
      }
    }
    return out;
  } finally {
    await client.end().catch(() => {});
  }
}
