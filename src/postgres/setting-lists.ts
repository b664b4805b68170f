/**
 * Settings as pg_db_role_setting keeps them (`name=value`), and the list settings among them
 * (search_path, *_preload_libraries), whose value is a list of names.
 */

/** Settings whose value is a list of names, each quoted on its own (pg_dump's variable_is_guc_list_quote). */
export const LIST_SETTINGS: ReadonlySet<string> = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/** `name=value` as pg_db_role_setting keeps it: the name (lower case, as PostgreSQL folds it) and the value. */
export function settingParts(setting: string): { name: string; value: string } {
  const eq = setting.indexOf('=');
  return { name: setting.slice(0, eq).toLowerCase(), value: setting.slice(eq + 1) };
}

/**
 * The elements of a list setting as PostgreSQL stores it (`"$user", public`): split at commas outside double
 * quotes, blanks around them dropped, quotes removed and `""` read as one quote (SplitGUCList).
 */
export function splitSettingList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  const blank = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  while (i < value.length) {
    while (blank(value[i])) i++;
    if (i >= value.length) break;
    let item = '';
    if (value[i] === '"') {
      i++;
      for (;;) {
        if (i >= value.length) break;
        if (value[i] === '"') {
          if (value[i + 1] === '"') {
            item += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        item += value[i++];
      }
    } else {
      while (i < value.length && value[i] !== ',' && !blank(value[i])) item += value[i++];
    }
    out.push(item);
    while (blank(value[i])) i++;
    if (value[i] === ',') i++;
  }
  return out;
}

