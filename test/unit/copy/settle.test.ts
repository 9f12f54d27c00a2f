/**
 * writeStreamedPage must not return (and so let the caller roll the source transaction back,
 * releasing the page's shared locks) while a write to another target is still in flight: that
 * write could then commit a row version the application has since changed or deleted. This is
 * orchestration only — the writers are stand-ins that fail or finish on cue.
 */
import { describe, expect, it } from 'vitest';
import type { TableMeta } from '../../../src/apply/table.js';
import type { Row } from '../../../src/apply/values.js';
import {
  SourceLostError,
  type StreamedPage,
  type TableJob,
  type TargetPool,
  writeStreamedPage,
} from '../../../src/copy/copier.js';
import type { PlanIndex } from '../../../src/plan/plan-index.js';

function pool(
  applyRows: (rows: Row[], t: unknown, s: string, beforeCommit?: () => Promise<void>) => Promise<void>,
): TargetPool {
  return {
    bulkEnabled: false,
    run: <T>(fn: (w: unknown) => Promise<T>) => fn({ applyRows }),
  } as unknown as TargetPool;
}

describe('writeStreamedPage', () => {
  it('settles every target write before it rejects with the first failure', async () => {
    let slowDone = false;
    const pools = new Map<string, TargetPool>([
      ['t0', pool(() => Promise.reject(new Error('deadlock on t0')))],
      [
        't1',
        pool(async () => {
          await new Promise((r) => setTimeout(r, 200));
          slowDone = true;
        }),
      ],
    ]);
    const row: Row = ['1'];
    const page: StreamedPage = {
      read: 2,
      misplaced: 0,
      bytes: 10,
      lastPk: ['2'],
      parts: new Map([
        ['t0', { rows: 1, images: [row] }],
        ['t1', { rows: 1, images: [row] }],
      ]),
    };
    const meta = {} as TableMeta;
    const job = {
      source: 's0',
      bulk: new Map(),
      targetMeta: new Map([
        ['t0', meta],
        ['t1', meta],
      ]),
    } as unknown as TableJob;
    const err = await writeStreamedPage(page, {} as never, job, {} as PlanIndex, pools, null).catch(
      (e: unknown) => e,
    );
    expect((err as Error).message).toBe('deadlock on t0');
    expect(slowDone).toBe(true);
  });

  it('checks the source transaction before each target commit, and fails the page when it is gone', async () => {
    const calls: string[] = [];
    const pools = new Map<string, TargetPool>([
      [
        't0',
        pool(async (_rows, _t, _s, beforeCommit) => {
          calls.push('write');
          await beforeCommit?.(); // the applier calls it just before COMMIT
          calls.push('commit');
        }),
      ],
    ]);
    const lost = Object.assign(new Error('Connection lost: The server closed the connection.'), {
      fatal: true,
    });
    const src = {
      query: async () => {
        calls.push('source check');
        throw lost;
      },
    };
    const page: StreamedPage = {
      read: 1,
      misplaced: 0,
      bytes: 10,
      lastPk: ['1'],
      parts: new Map([['t0', { rows: 1, images: [['1'] as Row] }]]),
    };
    const job = {
      source: 's0',
      bulk: new Map(),
      targetMeta: new Map([['t0', {} as TableMeta]]),
    } as unknown as TableJob;
    const err = await writeStreamedPage(page, src as never, job, {} as PlanIndex, pools, null).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SourceLostError);
    expect((err as SourceLostError).cause).toBe(lost);
    expect(calls).toEqual(['write', 'source check']); // no commit
  });
});
