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

/**
 * "1.2 GB of ~3.4 GB, 85 MB/s, about 27s left": progress with a rate and a
 * time left measured from what was done so far (not a nominal rate). The
 * estimate is a floor: once the work passes it, no time left is shown.
 */
export function rateAndEta(done: number, estimated: number, elapsedMs: number, unit: 'bytes' | 'rows' | 'chunks' = 'bytes'): string {
  const show = (n: number) => (unit === 'bytes' ? formatBytes(n) : `${Math.round(n)} ${unit}`);
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  let s = `${show(done)}${estimated ? ` of ~${show(estimated)}` : ''}`;
  // Too early for a rate that means anything.
  if (elapsedMs < 2000 || rate <= 0) return s;
  s += `, ${show(rate)}/s`;
  if (estimated > done) s += `, about ${formatDuration(((estimated - done) / rate) * 1000)} left`;
  return s;
}

/**
 * Time left to drain a backlog (replication lag in bytes), from how fast it
 * shrank over the last `windowMs`: the net rate, so writes still arriving
 * count against it. Empty until two seconds were seen or when nothing is left.
 */
export class DrainEstimate {
  private readonly samples: { at: number; left: number }[] = [];
  constructor(private readonly windowMs = 10_000) {}

  add(at: number, left: number): string {
    this.samples.push({ at, left });
    while (this.samples.length > 2 && at - this.samples[1]!.at >= this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const ms = at - first.at;
    if (ms < 2000 || left <= 0) return '';
    const rate = ((first.left - left) * 1000) / ms;
    if (rate <= 0) return 'not shrinking';
    return `draining ${formatBytes(Math.round(rate))}/s, about ${formatDuration((left / rate) * 1000)} left`;
  }
}
