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
  type StreamedPage,
  type TableJob,
  type TargetPool,
  writeStreamedPage,
} from '../../../src/copy/copier.js';
import type { PlanIndex } from '../../../src/plan/plan-index.js';

function pool(applyRows: () => Promise<void>): TargetPool {
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
});
