/**
 * The command line: refusals before any write (exit 3), the dry run, and commands to running
 * workers through the control schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootConn, type SandboxName } from '../../support/db.js';
import { type Estate, makeEstate, reshard } from './helpers.js';

async function count(server: SandboxName, sql: string): Promise<number> {
  const c = await rootConn(server);
  try {
    const [r] = await c.query(sql);
    return Number((r as { n: string }[])[0]!.n);
  } finally {
    await c.end();
  }
}

async function exec(server: SandboxName, db: string, sql: string): Promise<void> {
  const c = await rootConn(server, db);
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Nothing was written: no job in the control schema, no rows and no meta database on targets. */
async function assertNothingWritten(e: Estate): Promise<void> {
  expect(await count('ctl', `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_jobs`)).toBe(0);
  for (const t of ['t0', 't1', 't2'] as const) {
    expect(await count(t, `SELECT COUNT(*) AS n FROM \`${e.db}\`.orders`)).toBe(0);
    expect(
      await count(
        t,
        `SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${e.metaDb}'`,
      ),
    ).toBe(0);
  }
}

describe('reshard copy (CLI)', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copycli', rows: 3000, seed: 3 });
  });
  afterAll(async () => e?.drop());

  const base = () => ['copy', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];

  it('without --execute shows what it would copy and writes nothing', async () => {
    const r = await reshard(base());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^s0\s+t0,t1,t2\s+orders\s+\d+\s+\d+\s+all rows$/m);
    expect(r.stdout).toMatch(/^s1\s+t0,t1,t2\s+`?group`?\s+/m);
    expect(r.stdout).toMatch(/about \d+ rows to copy/);
    expect(r.stderr).toContain('dry run: nothing was written');
    const j = await reshard([...base(), '--json']);
    expect(j.code, j.stderr).toBe(0);
    const p = JSON.parse(j.stdout) as {
      dryRun: boolean;
      preview: { sources: { source: string; tables: unknown[] }[] };
    };
    expect(p.dryRun).toBe(true);
    expect(p.preview.sources.map((s) => s.source)).toEqual(['s0', 's1']);
    expect(p.preview.sources[0]!.tables).toHaveLength(6);
    await assertNothingWritten(e);
  });

  it('refuses a source table without a primary key before any write (exit 3)', async () => {
    for (const s of ['s0', 's1'] as const) await exec(s, e.db, 'ALTER TABLE coupons DROP PRIMARY KEY');
    try {
      const r = await reshard([...base(), '--execute']);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('E_PREFLIGHT');
      expect(r.stderr).toContain('E_NO_PRIMARY_KEY');
      expect(r.stderr).toMatch(/coupons.*has no PRIMARY KEY/);
      await assertNothingWritten(e);
    } finally {
      for (const s of ['s0', 's1'] as const)
        await exec(s, e.db, 'ALTER TABLE coupons ADD PRIMARY KEY (code)');
    }
  });

  it('refuses a target table whose definition differs before any write (exit 3)', async () => {
    await exec('t1', e.db, 'ALTER TABLE orders MODIFY note VARCHAR(100) NULL');
    try {
      const r = await reshard([...base(), '--execute', '--json']);
      expect(r.code).toBe(3);
      const body = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string } };
      expect(body.ok).toBe(false);
      expect(body.error.code).toBe('E_PREFLIGHT');
      expect(body.error.message).toContain('E_SCHEMA_MISMATCH');
      expect(body.error.message).toContain('orders');
      await assertNothingWritten(e);
    } finally {
      await exec('t1', e.db, 'ALTER TABLE orders MODIFY note TEXT NULL');
    }
  });

  it('rejects bad flags as usage errors (exit 2)', async () => {
    expect((await reshard([...base(), '--chunk-time', 'soon'])).code).toBe(2);
    expect((await reshard([...base(), '--concurrency', '0'])).code).toBe(2);
    expect((await reshard([...base(), '--rate', 'fast'])).code).toBe(2);
  });

  it('copies with --execute, then --pause/--resume/--set-rate reach the job; cleanup refuses before cutover', async () => {
    const r = await reshard([...base(), '--execute', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { complete: boolean; rows: number; job: { state: string } };
    expect(s.complete).toBe(true);
    expect(s.job.state).toBe('catching-up');
    const p = await reshard([...base(), '--pause', '--set-rate', '2k']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/paused; rate 2000 rows\/s/);
    const q = await reshard([...base(), '--resume', '--set-rate', 'default', '--json']);
    expect(JSON.parse(q.stdout)).toMatchObject({ ok: true, control: { paused: false, rate: null } });
    const c = await reshard(['cleanup', '--plan', e.planPath, '--control', e.controlDsn, '--execute']);
    expect(c.code).toBe(3);
    expect(c.stderr).toContain('E_CLEANUP_TOO_EARLY');
  });
});
