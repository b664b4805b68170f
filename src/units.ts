/** Sizes, counts and durations for people, the same in every command's output. */

/** Bytes in binary units: "812 B", "24.0 kB", "512 MB", "1.5 GB"; "?" when unknown. */
export function formatBytes(n: number | null): string {
  if (n === null) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** "1 table", "3 tables"; `many` for irregular plurals. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/** A measured lag in seconds: "0.4 s"; "? s" when unknown. */
export function formatSeconds(s: number | null): string {
  return s === null ? '? s' : `${s.toFixed(1)} s`;
}

export function formatLag(lag: { bytes: number | null; seconds: number | null }): string {
  return `lag ${formatBytes(lag.bytes)} / ${formatSeconds(lag.seconds)}`;
}

/** How long something took: "4.2s", "37s", "2m05s". */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
}
