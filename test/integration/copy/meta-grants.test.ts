/**
 * Review: a target account that may write the sharded tables but not reshard's own meta database
 * on the target (`--meta-db`, default `_reshard`) passes preflight; copy then creates the job,
 * records positions and fails when the applier first runs CREATE DATABASE on the target.
 * Preflight must catch a missing grant before anything is written.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootConn, type SandboxName } from '../../support/db.js';
import { type Estate, makeEstate, reshard } from './helpers.js';

const TARGETS: SandboxName[] = ['t0', 't1', 't2'];

async function asRoot(server: SandboxName, sql: string): Promise<void> {
  const c = await rootConn(server);
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function count(server: SandboxName, sql: string): Promise<number> {
  const c = await rootConn(server);
  try {
    const [r] = await c.query(sql);
    return Number((r as { n: string }[])[0]!.n);
  } finally {
    await c.end();
  }
}

describe('a target account (found by review I) without rights on the meta database', () => {
  let e: Estate;
  const user = `rvi_${randomBytes(3).toString('hex')}`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'rvimeta', rows: 300, seed: 5 });
    for (const t of TARGETS) {
      await asRoot(t, `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
      // Everything preflight asks a target for: table DML, and binlog reading (reverse replication).
      await asRoot(t, `GRANT SELECT, INSERT, UPDATE, DELETE ON \`${e.db}\`.* TO '${user}'@'%'`);
      await asRoot(t, `GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '${user}'@'%'`);
    }
    // The credentials are not part of the topology hash: the plan stays valid.
    const toPath = join(e.dir, 'to.yaml');
    writeFileSync(
      toPath,
      readFileSync(toPath, 'utf8').replaceAll(
        'user: root }',
        `user: ${user}, password: { env: RVI_TARGET_PW } }`,
      ),
    );
  });
  afterAll(async () => {
    for (const t of TARGETS) await asRoot(t, `DROP USER IF EXISTS '${user}'@'%'`).catch(() => undefined);
    await e?.drop();
  });

  it('copy --execute is refused by preflight (exit 3, names the meta database and the GRANT) before any write', async () => {
    const r = await reshard(
      ['copy', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb, '--execute'],
      { RESHARD_CONTROL_DSN: '', RVI_TARGET_PW: password },
    );
    const jobs = await count('ctl', `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_jobs`);
    const events = await count('ctl', `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_job_events`);
    // What happened, for the report.
    console.log(`exit ${r.code}; jobs ${jobs}; events ${events}\n${r.stderr.slice(-1500)}`);
    expect(r.stderr).not.toContain(password);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('E_PREFLIGHT');
    expect(r.stderr).toContain(e.metaDb);
    expect(r.stderr).toMatch(/GRANT .*CREATE/);
    expect(jobs).toBe(0);
    for (const t of TARGETS) {
      expect(await count(t, `SELECT COUNT(*) AS n FROM \`${e.db}\`.orders`)).toBe(0);
    }
  });
});
