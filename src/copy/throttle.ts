/**
 * The throttler: decides when the copier may start its next chunk.
 *
 * Lifecycle: createThrottler(options) → start() → (admit(servers) → copy a chunk →
 * charge(target, rows))* → stop(). Rates, pause and thresholds may change at any time
 * (setRates, setPaused, setMaxThreadsRunning) from the control schema or a signal.
 *
 * admit() resolves only when all of these hold:
 *   - not paused (by the control schema or by a signal);
 *   - the global row bucket and every named target's row bucket are out of debt (token buckets
 *     charged after the fact, so a chunk is never held back while its source locks are held);
 *   - every named server's `Threads_running` was read recently and is at most the threshold.
 * It fails CLOSED: a server whose load cannot be read counts as overloaded, so the copy waits
 * instead of writing blind; if it stays unreadable for `maxBlindMs` admit() rejects with
 * E_THROTTLE_BLIND (exit 5) rather than wait forever.
 */

import { sleep } from '../db/retry.js';
import { RetriesExhaustedError } from '../errors.js';

export interface Throttler {
  start(): void;
  stop(): void;
  /** Resolves when work touching `servers` (source and targets) may start; see the header. */
  admit(servers: readonly string[], signal?: AbortSignal): Promise<void>;
  /** Account rows written to `target` (after the fact; buckets may go into debt). */
  charge(target: string, rows: number): void;
  /** Rows per second for this process: over all targets, and per target. 0 = unlimited. */
  setRates(r: { rate: number; targetRate: number }): void;
  setPaused(by: 'control' | 'signal', paused: boolean): void;
  setMaxThreadsRunning(n: number): void;
  status(): ThrottleStatus;
}

export interface ThrottleStatus {
  paused: { control: boolean; signal: boolean };
  rate: number;
  targetRate: number;
  maxThreadsRunning: number;
  /** Last observation per server: value, or the error that made it unreadable. */
  load: Record<string, { threadsRunning?: number; error?: string; ageMs: number }>;
  /** Why admit() is waiting right now (empty when it is not). */
  waiting: string[];
  /** Total time admit() callers spent waiting, ms (summed over callers). */
  waitedMs: number;
}

/** Reads a server's Threads_running; throws when it cannot. */
export type LoadObserver = (server: string) => Promise<number>;

export interface ThrottleOptions {
  /** Servers whose load is polled (names as passed to admit). */
  servers: readonly string[];
  observe: LoadObserver;
  rate?: number;
  targetRate?: number;
  maxThreadsRunning: number;
  /** Poll interval per server (default 1000 ms). */
  pollMs?: number;
  /** An observation older than this counts as unreadable (default 3 × pollMs + 2 s). */
  staleMs?: number;
  /** Give up after a server has been unreadable this long while admit() waits (default 5 min). */
  maxBlindMs?: number;
  /** Called when the set of reasons admit() waits for changes (for logs and progress). */
  onWait?: (reasons: string[]) => void;
  now?: () => number;
}

/**
 * A token bucket that may go into debt: `take` always succeeds, and `debtMs` says how long until
 * the balance is back to zero. Capacity is one second of rate (the largest burst after idling).
 */
export class TokenBucket {
  private tokens = 0;
  private last: number;
  constructor(
    private rate: number,
    private readonly now: () => number = Date.now,
  ) {
    this.last = now();
  }
  setRate(rate: number): void {
    this.refill();
    this.rate = rate;
    if (rate > 0) this.tokens = Math.min(this.tokens, rate);
  }
  get unlimited(): boolean {
    return this.rate <= 0;
  }
  private refill(): void {
    const t = this.now();
    if (this.rate > 0) this.tokens = Math.min(this.rate, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }
  take(n: number): void {
    this.refill();
    if (this.rate > 0) this.tokens -= n;
  }
  /** Milliseconds until the balance is non-negative (0 when unlimited or in credit). */
  debtMs(): number {
    this.refill();
    if (this.rate <= 0 || this.tokens >= 0) return 0;
    return Math.ceil((-this.tokens / this.rate) * 1000);
  }
}

interface Observation {
  value?: number;
  error?: string;
  /** Time of the last successful read. */
  okAt?: number;
  /** Time the server became unreadable (first failure after a success, or start). */
  blindSince?: number;
  at: number;
}

export function createThrottler(opts: ThrottleOptions): Throttler {
  const now = opts.now ?? Date.now;
  const pollMs = opts.pollMs ?? 1000;
  const staleMs = opts.staleMs ?? 3 * pollMs + 2000;
  const maxBlindMs = opts.maxBlindMs ?? 300_000;
  let rate = opts.rate ?? 0;
  let targetRate = opts.targetRate ?? 0;
  let maxThreads = opts.maxThreadsRunning;
  const global = new TokenBucket(rate, now);
  const perTarget = new Map<string, TokenBucket>();
  const paused = { control: false, signal: false };
  const startedAt = now();
  const obs = new Map<string, Observation>(
    opts.servers.map((s) => [s, { at: startedAt, blindSince: startedAt }]),
  );
  let timers: NodeJS.Timeout[] = [];
  let running = false;
  let waitedMs = 0;
  let lastReasons = '';

  const bucket = (t: string) => {
    let b = perTarget.get(t);
    if (!b) {
      b = new TokenBucket(targetRate, now);
      perTarget.set(t, b);
    }
    return b;
  };

  const poll = async (server: string) => {
    const o = obs.get(server)!;
    try {
      const v = await opts.observe(server);
      if (!Number.isFinite(v)) throw new Error(`Threads_running is not a number: ${String(v)}`);
      o.value = v;
      o.error = undefined;
      o.okAt = now();
      o.blindSince = undefined;
    } catch (e) {
      o.error = (e as Error).message ?? String(e);
      o.value = undefined;
      o.blindSince ??= now();
    }
    o.at = now();
  };

  /** Reasons to wait now; also the servers blind for too long. */
  const reasons = (servers: readonly string[]): { why: string[]; blindTooLong?: string } => {
    const why: string[] = [];
    if (paused.control) why.push('paused (control schema)');
    if (paused.signal) why.push('paused (SIGUSR1)');
    const t = now();
    let blindTooLong: string | undefined;
    for (const s of servers) {
      const o = obs.get(s);
      if (!o) continue;
      const fresh = o.okAt !== undefined && t - o.okAt <= staleMs;
      if (!fresh || o.value === undefined) {
        why.push(`${s}: load unreadable${o.error ? ` (${o.error})` : ''}`);
        const since = o.blindSince ?? o.okAt ?? startedAt;
        if (t - since > maxBlindMs) blindTooLong = `${s}${o.error ? ` (${o.error})` : ''}`;
      } else if (o.value > maxThreads) {
        why.push(`${s}: Threads_running ${o.value} > ${maxThreads}`);
      }
    }
    if (global.debtMs() > 0) why.push('rate limit');
    for (const s of servers)
      if (perTarget.has(s) && bucket(s).debtMs() > 0) why.push(`${s}: target rate limit`);
    return { why, ...(blindTooLong ? { blindTooLong } : {}) };
  };

  const report = (why: string[]) => {
    const key = why.join('; ');
    if (key !== lastReasons) {
      lastReasons = key;
      opts.onWait?.(why);
    }
  };

  return {
    start() {
      if (running) return;
      running = true;
      for (const s of opts.servers) {
        void poll(s);
        // Each server polled on its own timer: a slow server does not delay the others.
        const tick = async () => {
          if (!running) return;
          await poll(s);
          if (running) timers.push(setTimeout(tick, pollMs).unref());
        };
        timers.push(setTimeout(tick, pollMs).unref());
      }
    },
    stop() {
      running = false;
      for (const t of timers) clearTimeout(t);
      timers = [];
    },
    async admit(servers, signal) {
      const began = now();
      try {
        for (;;) {
          if (signal?.aborted) throw signal.reason;
          const { why, blindTooLong } = reasons(servers);
          if (why.length === 0) {
            if (lastReasons !== '') report([]);
            return;
          }
          report(why);
          if (blindTooLong) {
            throw new RetriesExhaustedError(
              'E_THROTTLE_BLIND',
              `cannot read the load (Threads_running) of ${blindTooLong} for ${Math.round(maxBlindMs / 1000)} s; the copy does not write to servers it cannot observe`,
              {
                hint: 'check that the server is up and that the reshard user may run SHOW GLOBAL STATUS; re-run the command to resume',
              },
            );
          }
          const debt = Math.max(
            global.debtMs(),
            ...servers.map((s) => (perTarget.has(s) ? bucket(s).debtMs() : 0)),
          );
          await sleep(Math.max(5, Math.min(250, debt || pollMs)), signal);
        }
      } finally {
        waitedMs += now() - began;
      }
    },
    charge(target, rows) {
      global.take(rows);
      bucket(target).take(rows);
    },
    setRates(r) {
      rate = r.rate;
      targetRate = r.targetRate;
      global.setRate(rate);
      for (const b of perTarget.values()) b.setRate(targetRate);
    },
    setPaused(by, p) {
      paused[by] = p;
    },
    setMaxThreadsRunning(n) {
      maxThreads = n;
    },
    status() {
      const t = now();
      return {
        paused: { ...paused },
        rate,
        targetRate,
        maxThreadsRunning: maxThreads,
        load: Object.fromEntries(
          [...obs].map(([s, o]) => [
            s,
            {
              ...(o.value !== undefined ? { threadsRunning: o.value } : {}),
              ...(o.error ? { error: o.error } : {}),
              ageMs: o.okAt === undefined ? -1 : t - o.okAt,
            },
          ]),
        ),
        waiting: lastReasons ? lastReasons.split('; ') : [],
        waitedMs,
      };
    },
  } satisfies Throttler;
}

/**
 * Chunk sizes adapted toward a target chunk time: after each chunk, the next size for that
 * (source, table) is the measured rows/ms times the target time, moving at most ×2 or ÷2 per
 * step and kept within [min, max] rows (default 100–50 000) and under a byte budget (so wide rows give small chunks).
 *
 * A key seeded with a group (its source) starts from what that source has already shown, not
 * from `initial` again: its first size is the group's last measured rate — in rows × average
 * row bytes per ms, so a table of wider rows gets fewer — times the target time, never more than
 * the largest size the group has used. Without this every table of a source restarted at 1000
 * rows and spent its first ~6 chunks doubling: the bench's three 58 000-row tables per source
 * were copied at about half the rate of the large ones.
 */
export class ChunkSizer {
  private readonly sizes = new Map<string, number>();
  /** Keys seeded with a group: the group, average row bytes and row budget. */
  private readonly members = new Map<string, { group: string; avgRowBytes: number; budget: number }>();
  /** Members that have not been sized from their group yet (nor had a chunk). */
  private readonly fresh = new Set<string>();
  /** Per group: the last chunk's rate (rows × avg row bytes per ms) and the largest size used. */
  private readonly groups = new Map<string, { rate: number; largest: number }>();
  constructor(
    private readonly opts: {
      targetMs: number;
      initial?: number;
      min?: number;
      max?: number;
      maxBytes?: number;
    },
  ) {}
  private get min() {
    return this.opts.min ?? 100;
  }
  private get max() {
    return this.opts.max ?? 50_000;
  }
  /**
   * Seed a key's size from an average row length (information_schema) before its first chunk;
   * with `group` (the source), from the group's measured rate once it has one (see above).
   */
  seed(key: string, avgRowBytes: number, group?: string): void {
    if (this.sizes.has(key)) return;
    const initial = this.opts.initial ?? 1000;
    const byBytes = avgRowBytes > 0 ? Math.floor((this.opts.maxBytes ?? 16 << 20) / avgRowBytes) : initial;
    this.sizes.set(key, this.clamp(Math.min(initial, byBytes)));
    if (group !== undefined && avgRowBytes > 0) {
      this.members.set(key, { group, avgRowBytes, budget: byBytes });
      this.fresh.add(key);
    }
  }
  next(key: string, cap = Number.POSITIVE_INFINITY): number {
    const f = this.fresh.has(key) ? this.members.get(key) : undefined;
    const g = f && this.groups.get(f.group);
    if (f && g) {
      this.fresh.delete(key);
      const byRate = Math.floor((g.rate * this.opts.targetMs) / f.avgRowBytes);
      this.sizes.set(key, this.clamp(Math.min(byRate, g.largest, f.budget)));
    }
    const s = this.sizes.get(key) ?? this.opts.initial ?? 1000;
    return Math.max(1, Math.min(s, Math.max(this.min, Math.floor(cap))));
  }
  /** `rows` rows (of `bytes` bytes) were scanned and written in `ms`. */
  feedback(key: string, rows: number, ms: number, bytes: number): void {
    const cur = this.next(key);
    if (rows <= 0) return;
    this.fresh.delete(key);
    const member = this.members.get(key);
    if (member && ms > 0) {
      const g = this.groups.get(member.group);
      this.groups.set(member.group, {
        rate: (rows * member.avgRowBytes) / ms,
        largest: Math.max(g?.largest ?? 0, rows),
      });
    }
    let want = ms > 0 ? (rows / ms) * this.opts.targetMs : cur * 2;
    want = Math.min(cur * 2, Math.max(cur / 2, want));
    if (bytes > 0) want = Math.min(want, ((this.opts.maxBytes ?? 16 << 20) * rows) / bytes);
    this.sizes.set(key, this.clamp(Math.floor(want)));
  }
  private clamp(n: number): number {
    return Math.max(this.min, Math.min(this.max, n));
  }
}
