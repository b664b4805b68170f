import { describe, expect, it } from 'vitest';
import { libraryFile, preloadSetting } from '../../src/postgres/libraries.js';
import { settingParts } from '../../src/postgres/setting-lists.js';

describe('settings that load libraries at login', () => {
  it('reads the libraries of session_ and local_preload_libraries, and nothing of other settings', () => {
    expect(preloadSetting('session_preload_libraries=auto_explain, "My Lib"')).toEqual({ name: 'session_preload_libraries', libraries: ['auto_explain', 'My Lib'], restricted: false });
    expect(preloadSetting('local_preload_libraries=x')).toEqual({ name: 'local_preload_libraries', libraries: ['x'], restricted: true });
    expect(preloadSetting('Session_Preload_Libraries=')).toEqual({ name: 'session_preload_libraries', libraries: [], restricted: false });
    expect(preloadSetting('search_path=app, public')).toBeNull();
    expect(preloadSetting('shared_preload_libraries=pg_stat_statements')).toBeNull();
  });

  it('names the file as the server resolves it: local_preload_libraries from $libdir/plugins unless a path is given', () => {
    expect(libraryFile('auto_explain', false)).toBe('auto_explain');
    expect(libraryFile('x', true)).toBe('$libdir/plugins/x');
    expect(libraryFile('$libdir/plugins/x', true)).toBe('$libdir/plugins/x');
  });

  it('splits name=value at the first equals sign, the name folded to lower case', () => {
    expect(settingParts('Work_Mem=64MB')).toEqual({ name: 'work_mem', value: '64MB' });
    expect(settingParts('app.expr=a=b')).toEqual({ name: 'app.expr', value: 'a=b' });
  });
});
