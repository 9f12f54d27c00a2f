/**
 * Rendering of a status report: the state machine view, the plain-text report, and the ink
 * dashboard rendered into a fake terminal (a stdout that records writes and a stdin we type
 * into), refreshing and quitting on `q`.
 */
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { render } from 'ink';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../../src/state/control.js';
import { dashboardElement, runDashboard } from '../../../src/status/dashboard.js';
import { jobStatus } from '../../../src/status/read.js';
import { renderStatusText } from '../../../src/status/text.js';
import type { StatusReport } from '../../../src/status/types.js';

const JOB: Job = {
  id: 7,
  name: 'plan-0123456789abcdef',
  planHash: 'a'.repeat(64),
  state: 'copying',
  reshardVersion: '0.1.0',
  createdAt: '2025-01-02 03:00:00.000000',
  updatedAt: '2025-01-02 03:04:00.000000',
};

function report(over: Partial<StatusReport> = {}): StatusReport {
  return {
    statusVersion: 1,
    at: '2025-01-02T03:05:00.000000Z',
    control: 'root@127.0.0.1:3306/ctl',
    job: jobStatus(JOB, new Map([['planned', '2025-01-02T03:00:00.000000Z']])),
    copy: {
      started: true,
      complete: false,
      rowsCopied: 1500,
      estimatedRows: 4000,
      percent: 37.5,
      rowsPerSecond: 250,
      etaSeconds: 10,
      chunksDone: 3,
      chunks: 5,
      rateWindowSeconds: 30,
      throttle: { paused: false, rate: null, targetRate: null },
      tables: [
        {
          source: 's0',
          table: 'orders',
          state: 'copying',
          rowsCopied: 1000,
          estimatedRows: 2000,
          percent: 50,
          chunksDone: 2,
          chunksClaimed: 1,
          chunks: 3,
          chunkedAll: false,
          rowsPerSecond: 250,
          etaSeconds: 4,
          updatedAt: '2025-01-02T03:04:59.000000Z',
        },
        {
          source: 's1',
          table: 'users',
          state: 'done',
          rowsCopied: 500,
          estimatedRows: 480,
          percent: 100,
          chunksDone: 1,
          chunksClaimed: 0,
          chunks: 1,
          chunkedAll: true,
          rowsPerSecond: 0,
          etaSeconds: 0,
          updatedAt: '2025-01-02T03:04:00.000000Z',
        },
      ],
    },
    tail: {
      maxLagSeconds: 2.5,
      sources: [
        {
          source: 's0',
          direction: 'forward',
          state: 'running',
          lagSeconds: 2.5,
          eventsPerSecond: 120,
          rowsPerSecond: 80,
          position: { file: 'mysql-bin.000003', pos: 4711, gtid: null },
          startPosition: { file: 'mysql-bin.000003', pos: 4, gtid: null },
          lastEventAt: '2025-01-02T03:04:59.000000Z',
          updatedAt: '2025-01-02T03:04:58.000000Z',
          ageSeconds: 2,
          stale: false,
          tailer: 'host:1',
        },
      ],
    },
    verify: {
      lastClean: null,
      runs: [
        {
          runId: 1,
          state: 'mismatch',
          mode: 'full',
          mismatches: 3,
          startedAt: '2025-01-02T03:01:00.000000Z',
          finishedAt: '2025-01-02T03:02:00.000000Z',
          durationSeconds: 60,
        },
      ],
    },
    routing: {
      active: {
        version: 1,
        jobId: null,
        job: null,
        routingHash: 'b'.repeat(64),
        active: true,
        createdAt: '2025-01-01T00:00:00.000000Z',
        writes: 'shop-from',
        reads: 'shop-from',
        canary: [],
        readCanary: [],
      },
      versions: [],
    },
    cutover: { steps: [] },
    events: [
      { id: 1, at: '2025-01-02T03:00:00.000000Z', kind: 'created', detail: { state: 'planned' } },
      { id: 2, at: '2025-01-02T03:00:01.000000Z', kind: 'state', detail: { from: 'planned', to: 'copying' } },
    ],
    ...over,
  };
}

describe('job state machine', () => {
  it('lists every state with done / current / pending / skipped', () => {
    const m = jobStatus(JOB).machine;
    expect(m.map((s) => s.state)).toEqual([
      'planned',
      'copying',
      'catching-up',
      'verified',
      'cut-over',
      'completed',
      'rolled-back',
      'cancelled',
    ]);
    expect(m.map((s) => s.status)).toEqual([
      'done',
      'current',
      'pending',
      'pending',
      'pending',
      'pending',
      'pending',
      'pending',
    ]);
    const cancelled = jobStatus({ ...JOB, state: 'cancelled' }, new Map([['copying', 'x']]));
    expect(cancelled.machine.map((s) => s.status)).toEqual([
      'skipped',
      'done',
      'skipped',
      'skipped',
      'skipped',
      'skipped',
      'skipped',
      'current',
    ]);
    expect(cancelled.terminal).toBe(true);
    expect(cancelled.position).toBe(7);
  });
});

describe('plain text', () => {
  it('shows the machine, progress with ETA, lag, verify, routing and events', () => {
    const text = renderStatusText(report());
    expect(text).toContain('job plan-0123456789abcdef (id 7): copying');
    expect(text).toContain('planned + > [COPYING] > catching-up');
    expect(text).toMatch(/copy: running; 1500 rows of ~4000 \(37\.5%\), 250 rows\/s, ETA 10s, chunks 3\/5/);
    expect(text).toMatch(/^s0\s+orders\s+copying\s+1000\s+2000\s+50\.0%\s+2\/3\+\s+250\s+4s$/m);
    expect(text).toMatch(
      /^s0\s+forward\s+running\s+2\.5\s+120\.0\s+80\.0\s+mysql-bin\.000003:4711\s+2s ago$/m,
    );
    expect(text).toMatch(/^\s*1\s+mismatch\s+full\s+3\s+2025-01-02 03:01:00\s+1m00s$/m);
    expect(text).toContain(
      'routing: version 1 active since 2025-01-01 00:00:00 (job -): writes by shop-from, reads by shop-from',
    );
    expect(text).toMatch(/state\s+\{"from":"planned","to":"copying"\}/);
    // Plain output stays ASCII-only.
    expect(text).toMatch(/^[\x00-\x7f]*$/);
  });
});

class FakeStdout extends EventEmitter {
  columns = 140;
  rows = 50;
  isTTY = true;
  chunks: string[] = [];
  write(s: string): boolean {
    this.chunks.push(s);
    return true;
  }
  /** Everything written, without ANSI escapes. */
  text(): string {
    return this.chunks.join('').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  }
}

function fakeStdin() {
  const s = new PassThrough() as PassThrough & {
    isTTY: boolean;
    setRawMode: (b: boolean) => void;
    ref: () => void;
    unref: () => void;
  };
  s.isTTY = true;
  s.setRawMode = () => undefined;
  s.ref = () => undefined;
  s.unref = () => undefined;
  return s;
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ink dashboard', () => {
  it('renders a frame with the state machine, progress bars with ETA, and lag', () => {
    const stdout = new FakeStdout();
    const app = render(dashboardElement(report()), {
      stdout: stdout as unknown as NodeJS.WriteStream,
      stdin: fakeStdin() as unknown as NodeJS.ReadStream,
      patchConsole: false,
      debug: true,
    });
    app.unmount();
    const frame = stdout.text();
    expect(frame).toContain('job plan-0123456789abcdef · copying');
    expect(frame).toMatch(
      /planned ✓ → \[copying\] → catching-up → verified → cut-over → completed {2}\| {2}rolled-back/,
    );
    expect(frame).toMatch(/s0\/orders\s+█{12}░{12}\s+50\.0%\s+1000\/2000\s+250 rows\/s ETA 4s\s+copying/);
    expect(frame).toMatch(/s1\/users\s+█{24}\s+100\.0%/);
    expect(frame).toContain('ETA 10s');
    expect(frame).toMatch(
      /s0\s+forward running\s+lag\s+2\.5 s\s+120 ev\/s\s+80 rows\/s mysql-bin\.000003:4711/,
    );
    expect(frame).toContain('#1 mismatch full mismatches 3');
    expect(frame).toContain('Routing  version 1 · writes by shop-from');
  });

  it('refreshes every interval with new reports and quits on q', async () => {
    const stdout = new FakeStdout();
    const stdin = fakeStdin();
    let n = 0;
    const load = async () => {
      n++;
      const r = report();
      r.copy.rowsCopied = 1500 + n * 100;
      r.tail.maxLagSeconds = n;
      return r;
    };
    const done = runDashboard(load, 30, {
      stdout: stdout as unknown as NodeJS.WriteStream,
      stdin: stdin as unknown as NodeJS.ReadStream,
    });
    // Frames are rate-limited, so not every report is drawn: wait for a later one.
    const shown = (re: RegExp) => [...stdout.text().matchAll(re)].map((m) => Number(m[1]));
    await until(() => Math.max(0, ...shown(/max lag (\d+)\.0 s/g)) >= 3, 'three refreshes');
    expect(Math.max(...shown(/Copy {2}(\d+) rows of ~4000/g))).toBeGreaterThanOrEqual(1800);
    stdin.write('q');
    await done;
    const after = n;
    await new Promise((r) => setTimeout(r, 100));
    expect(n).toBeLessThanOrEqual(after + 1);
  });

  it('shows a failed refresh and keeps the last good report', async () => {
    const stdout = new FakeStdout();
    const stdin = fakeStdin();
    let n = 0;
    const load = async () => {
      if (++n > 1) throw new Error('control server went away');
      return report();
    };
    const done = runDashboard(load, 30, {
      stdout: stdout as unknown as NodeJS.WriteStream,
      stdin: stdin as unknown as NodeJS.ReadStream,
    });
    await until(() => stdout.text().includes('refresh failed: control server went away'), 'the error line');
    expect(stdout.text()).toContain('s0/orders');
    stdin.write('\x03');
    await done;
  });
});
