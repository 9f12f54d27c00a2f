import { describe, expect, it, vi } from 'vitest';
import { ChunkSizer, createThrottler, TokenBucket } from '../../../src/copy/throttle.js';
import { ReshardError } from '../../../src/errors.js';

describe('TokenBucket', () => {
  it('lets work start at once, then makes a charge wait its debt off at the rate', () => {
    let t = 0;
    const b = new TokenBucket(1000, () => t);
    expect(b.debtMs()).toBe(0);
    b.take(500);
    expect(b.debtMs()).toBe(500);
    t = 250;
    expect(b.debtMs()).toBe(250);
    t = 500;
    expect(b.debtMs()).toBe(0);
    // Idle credit is capped at one second of rate.
    t = 60_000;
    b.take(3000);
    expect(b.debtMs()).toBe(2000);
  });

  it('rate 0 is unlimited, and a rate change applies to the current debt', () => {
    let t = 0;
    const b = new TokenBucket(0, () => t);
    b.take(1e9);
    expect(b.debtMs()).toBe(0);
    b.setRate(100);
    b.take(100);
    expect(b.debtMs()).toBe(1000);
    b.setRate(1000);
    expect(b.debtMs()).toBe(100);
    t = 100;
    expect(b.debtMs()).toBe(0);
  });

  it('over a run, rows / time converges to the rate (charged after each chunk)', () => {
    let t = 0;
    const b = new TokenBucket(2000, () => t);
    let rows = 0;
    for (let i = 0; i < 100; i++) {
      t += b.debtMs(); // admit waits the debt off
      b.take(700); // then a chunk of 700 rows is charged
      rows += 700;
    }
    t += b.debtMs();
    expect(rows / (t / 1000)).toBeGreaterThan(2000 * 0.97);
    expect(rows / (t / 1000)).toBeLessThan(2000 * 1.03);
  });
});

describe('throttler', () => {
  const fast = { pollMs: 10, staleMs: 100 };

  it('admits when every observed server is below the threshold', async () => {
    const th = createThrottler({
      servers: ['a', 'b'],
      observe: async () => 3,
      maxThreadsRunning: 10,
      ...fast,
    });
    th.start();
    try {
      await th.admit(['a', 'b']);
      expect(th.status().load.a?.threadsRunning).toBe(3);
    } finally {
      th.stop();
    }
  });

  it('waits while a server is above --max-threads-running, and resumes when it drops', async () => {
    let load = 50;
    const th = createThrottler({ servers: ['a'], observe: async () => load, maxThreadsRunning: 10, ...fast });
    th.start();
    try {
      let admitted = false;
      const p = th.admit(['a']).then(() => {
        admitted = true;
      });
      await new Promise((r) => setTimeout(r, 100));
      expect(admitted).toBe(false);
      expect(th.status().waiting.join(' ')).toContain('Threads_running 50 > 10');
      load = 2;
      await p;
      expect(admitted).toBe(true);
    } finally {
      th.stop();
    }
  });

  it('fails closed: a server whose load cannot be read blocks admission, then gives up with E_THROTTLE_BLIND', async () => {
    const th = createThrottler({
      servers: ['a', 'b'],
      observe: async (s) => {
        if (s === 'b') throw new Error('Access denied; you need the PROCESS privilege');
        return 1;
      },
      maxThreadsRunning: 10,
      maxBlindMs: 300,
      ...fast,
    });
    th.start();
    try {
      // A server that is not named is not waited for.
      await th.admit(['a']);
      const t0 = Date.now();
      const err = await th.admit(['a', 'b']).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(err).toBeInstanceOf(ReshardError);
      expect((err as ReshardError).code).toBe('E_THROTTLE_BLIND');
      expect((err as ReshardError).exitCode).toBe(5);
      expect((err as ReshardError).message).toContain('PROCESS privilege');
    } finally {
      th.stop();
    }
  });

  it('a load reading that goes stale counts as unreadable', async () => {
    let hang = false;
    const th = createThrottler({
      servers: ['a'],
      observe: () => (hang ? new Promise<number>(() => undefined) : Promise.resolve(1)),
      maxThreadsRunning: 10,
      ...fast,
    });
    th.start();
    try {
      await th.admit(['a']);
      hang = true;
      await new Promise((r) => setTimeout(r, 200));
      let admitted = false;
      void th.admit(['a']).then(() => {
        admitted = true;
      });
      await new Promise((r) => setTimeout(r, 100));
      expect(admitted).toBe(false);
      expect(th.status().waiting[0]).toContain('load unreadable');
    } finally {
      th.stop();
    }
  });

  it('pause (control schema or signal) holds admission until both are lifted', async () => {
    const th = createThrottler({ servers: [], observe: async () => 0, maxThreadsRunning: 10, ...fast });
    th.start();
    try {
      th.setPaused('control', true);
      th.setPaused('signal', true);
      let admitted = false;
      const p = th.admit([]).then(() => {
        admitted = true;
      });
      await new Promise((r) => setTimeout(r, 60));
      th.setPaused('control', false);
      await new Promise((r) => setTimeout(r, 300));
      expect(admitted).toBe(false);
      th.setPaused('signal', false);
      await p;
      expect(admitted).toBe(true);
    } finally {
      th.stop();
    }
  });

  it('honours the global and per-target rates', async () => {
    const th = createThrottler({
      servers: [],
      observe: async () => 0,
      maxThreadsRunning: 10,
      rate: 0,
      targetRate: 1000,
      ...fast,
    });
    th.start();
    try {
      th.charge('t1', 300);
      const t0 = Date.now();
      await th.admit(['t2']); // another target: no wait
      expect(Date.now() - t0).toBeLessThan(100);
      await th.admit(['t1']);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      th.setRates({ rate: 1000, targetRate: 0 });
      th.charge('t2', 200);
      const t1 = Date.now();
      await th.admit(['t3']);
      expect(Date.now() - t1).toBeGreaterThanOrEqual(150);
    } finally {
      th.stop();
    }
  });

  it('over a run, admit() paces charged rows at the rate: never faster, and never slower', async () => {
    // The lower bound the copy integration test cannot assert on a loaded machine (there the
    // copy's own work adds to the time): on a fake clock the only time that passes is admit()'s
    // own waiting, so a throttle that holds work back longer than its debt is slower here.
    vi.useFakeTimers();
    try {
      const th = createThrottler({ servers: [], observe: async () => 0, maxThreadsRunning: 10, rate: 2000 });
      th.start();
      // Fake time moves only from one timer to the next, so admit() resolves at the first
      // moment it would (timers of other tests' leftover throttlers are merely stepped over).
      const admitted = async () => {
        let done = false;
        const p = th.admit(['t1']).then(() => {
          done = true;
        });
        while (!done) await vi.advanceTimersToNextTimerAsync();
        await p;
      };
      const t0 = Date.now();
      let rows = 0;
      for (let i = 0; i < 100; i++) {
        await admitted();
        th.charge('t1', 700);
        rows += 700;
      }
      await admitted();
      th.stop();
      const rate = rows / ((Date.now() - t0) / 1000);
      expect(rate).toBeGreaterThan(2000 * 0.97);
      expect(rate).toBeLessThan(2000 * 1.03);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects with the abort reason when cancelled while waiting', async () => {
    const th = createThrottler({ servers: [], observe: async () => 0, maxThreadsRunning: 10, ...fast });
    th.setPaused('signal', true);
    const ac = new AbortController();
    const p = th.admit([], ac.signal);
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
  });
});

describe('ChunkSizer', () => {
  it('moves toward the target chunk time, at most ×2 or ÷2 per step, within bounds', () => {
    const s = new ChunkSizer({ targetMs: 500, initial: 1000, min: 100, max: 20_000 });
    expect(s.next('k')).toBe(1000);
    s.feedback('k', 1000, 100, 100_000); // 5× too fast → ×2
    expect(s.next('k')).toBe(2000);
    s.feedback('k', 2000, 400, 200_000); // 2000 rows / 400 ms → 2500
    expect(s.next('k')).toBe(2500);
    s.feedback('k', 2500, 5000, 250_000); // 10× too slow → ÷2
    expect(s.next('k')).toBe(1250);
    for (let i = 0; i < 20; i++) s.feedback('k', s.next('k'), 10_000, 1000);
    expect(s.next('k')).toBe(100);
    for (let i = 0; i < 20; i++) s.feedback('k', s.next('k'), 1, 1000);
    expect(s.next('k')).toBe(20_000);
  });

  it('keeps wide rows under the byte budget and honours a cap (rate × chunk time)', () => {
    const s = new ChunkSizer({ targetMs: 500, maxBytes: 1 << 20 });
    s.seed('wide', 64 << 10); // 64 KiB rows: 16 per MiB, clamped to the minimum of 100
    expect(s.next('wide')).toBe(100);
    s.seed('narrow', 100);
    expect(s.next('narrow')).toBe(1000);
    expect(s.next('narrow', 250)).toBe(250);
    s.feedback('narrow', 1000, 10, 10 << 20); // fast, but 10 KiB a row on average
    expect(s.next('narrow')).toBe(100);
  });

  it("starts a source's next table from that source's measured rate, not from the initial size", () => {
    const s = new ChunkSizer({ targetMs: 500, initial: 1000, max: 50_000 });
    s.seed('s0.big', 100, 's0');
    s.seed('s0.small', 100, 's0');
    s.seed('s0.wide', 400, 's0');
    s.seed('s1.other', 100, 's1');
    // No chunk of the source yet: the initial size.
    expect(s.next('s0.small')).toBe(1000);
    // s0 ramps up on its first table: 1000 → 2000 → 4000 → 8000 rows, each chunk in 100 ms.
    for (const rows of [1000, 2000, 4000]) {
      expect(s.next('s0.big')).toBe(rows);
      s.feedback('s0.big', rows, 100, rows * 100);
    }
    s.feedback('s0.big', 8000, 100, 8000 * 100);
    // 8000 rows of 100 B in 100 ms: 40 000 rows in 500 ms; 4× wider rows: 10 000.
    expect(s.next('s0.small')).toBe(8000); // never beyond the largest chunk the source took
    expect(s.next('s0.wide')).toBe(8000);
    s.feedback('s0.big', 16_000, 100, 16_000 * 100);
    // s0.small and s0.wide were sized above (their first call); a new table of s0 now gets more.
    s.seed('s0.later', 400, 's0');
    expect(s.next('s0.later')).toBe(16_000);
    s.seed('s0.wider', 1600, 's0');
    expect(s.next('s0.wider')).toBe(5000); // 16 000 × 100 B per 100 ms × 500 ms / 1600 B
    // Another source keeps its own ramp.
    expect(s.next('s1.other')).toBe(1000);
  });
});
