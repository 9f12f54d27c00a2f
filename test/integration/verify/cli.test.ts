import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { splitFixSql, type VerifyReport } from '../../../src/verify/index.js';
import { applyFixSql, buildEstate, type Estate, ROOT } from './helpers.js';

function reshard(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'reshard'), ...args],
      { cwd: ROOT, env: { ...process.env, RESHARD_CONTROL_DSN: '' }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 70) : 0;
        res({ code, stdout, stderr });
      },
    );
  });
}

describe('reshard verify (CLI)', () => {
  let e: Estate;
  let base: string[];
  beforeAll(async () => {
    e = await buildEstate('verify_cli', { users: 80, ordersPerUser: 2 });
    // The job exists once copy has started; create it here (the CLI does not create jobs).
    await e.open();
    base = ['verify', '--plan', e.planPath, '--control', e.controlDsn];
  });
  afterAll(async () => {
    await e?.cleanup();
  });

  it('exits 0 on a correct estate, 4 with a JSON report and repair SQL on faults, 0 after the repair', async () => {
    const clean = await reshard([...base, '--json']);
    expect(clean.stderr).not.toMatch(/error/);
    expect(clean.code).toBe(0);
    const ok = JSON.parse(clean.stdout) as { ok: boolean; report: VerifyReport };
    expect(ok.ok).toBe(true);
    expect(ok.report.ok).toBe(true);

    // Faults in the type corpus: a missing row and a row differing in many hard types.
    const t1 = e.targetOf(18446744073709551615n); // row 1's shard key
    const t5 = e.targetOf(5n);
    await (await e.conn(t5)).query('DELETE FROM type_corpus WHERE id = 5');
    await (await e.conn(t1)).query(
      "UPDATE type_corpus SET dec65 = -dec65, bits = b'0', text_mb4 = 'maX', doc = '{\"big\": 1}', dt6 = dt6 - INTERVAL 1 MICROSECOND WHERE id = 1",
    );

    const reportPath = join(e.dir, 'report.json');
    const fixPath = join(e.dir, 'fix.sql');
    const bad = await reshard([...base, '--report', reportPath, '--fix-sql', fixPath, '--concurrency', '2']);
    expect(bad.code).toBe(4);
    expect(bad.stdout).toMatch(/MISMATCH/);
    expect(bad.stderr).toMatch(/E_VERIFY_MISMATCH/);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as VerifyReport;
    expect(report.ok).toBe(false);
    const diffs = report.differences.map((d) => ({
      kind: d.kind,
      table: d.table,
      pk: d.pk,
      shard: d.shard,
      columns: d.columns?.map((c) => c.name),
    }));
    expect(diffs).toEqual(
      expect.arrayContaining([
        { kind: 'missing', table: 'type_corpus', pk: { id: '5' }, shard: t5, columns: undefined },
        {
          kind: 'different',
          table: 'type_corpus',
          pk: { id: '1' },
          shard: t1,
          columns: ['dec65', 'dt6', 'bits', 'text_mb4', 'doc'],
        },
      ]),
    );
    expect(diffs).toHaveLength(2);
    const bits = report.differences
      .find((d) => d.kind === 'different')!
      .columns!.find((c) => c.name === 'bits')!;
    expect(bits).toEqual({
      name: 'bits',
      source: { hex: 'ffffffffffffffff' },
      target: { hex: '0000000000000000' },
    });

    const json = await reshard([...base, '--json']);
    expect(json.code).toBe(4);
    const err = JSON.parse(json.stdout) as {
      ok: boolean;
      error: { code: string; data: { report: VerifyReport } };
    };
    expect(err.ok).toBe(false);
    expect(err.error.code).toBe('E_VERIFY_MISMATCH');
    expect(err.error.data.report.totals).toMatchObject({ missing: 1, different: 1 });

    // The repair SQL restores every byte (BIT, DECIMAL(65,30), JSON, NUL bytes, invalid UTF-8, emoji).
    await applyFixSql(splitFixSql(readFileSync(fixPath, 'utf8')));
    const repaired = await reshard(base);
    expect(repaired.code).toBe(0);
    expect(repaired.stdout).toMatch(/targets match the sources/);
  });

  it('refuses bad flags and a plan without a job', async () => {
    const usage = await reshard([...base, '--concurrency', '0']);
    expect(usage.code).toBe(2);
    const noControl = await reshard(['verify', '--plan', e.planPath]);
    expect(noControl.code).toBe(2);
    expect(noControl.stderr).toMatch(/E_NO_CONTROL_DSN/);
    // The reverse plan (targets back to sources) has no job yet.
    const reversePath = join(e.dir, 'reverse.json');
    writePlanFile(reversePath, plan(e.to, e.from));
    const noJob = await reshard(['verify', '--plan', reversePath, '--control', e.controlDsn]);
    expect(noJob.code).toBe(3);
    expect(noJob.stderr).toMatch(/E_NO_JOB/);
  });
});
