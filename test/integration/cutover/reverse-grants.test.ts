/**
 * Reverse replication writes into the old shards after the flip (their tables and reshard's meta
 * database there). An account on an old shard that may read and tail but not write used to pass
 * every check: the cutover froze and flipped, and only then did the reverse tailer stop at its
 * first write, so writes taken on the new shards could no longer be carried back and a rollback
 * would lose them. Now copy's preflight refuses such an account before anything is written, and
 * the cutover checks it again (grants may change between copy and cutover) before freezing.
 *
 * Shared sandbox servers (s0, s1 → t0, t1, t2); an account of its own on s0's server, whose
 * password comes from the environment. Nothing is frozen here.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { port, type SandboxName } from '../../support/db.js';
import {
  copyAndVerify,
  ctlQuery,
  type Estate,
  jobState,
  makeEstate,
  portConn,
  readOnly,
  runCli,
} from './helpers.js';

const user = `rg_${randomBytes(3).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;
const env = { RG_SOURCE_PW: password, RESHARD_CONTROL_DSN: '' };

async function asRoot(server: SandboxName, sql: string): Promise<void> {
  const c = await portConn(port(server));
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

describe('write rights reverse replication needs on the old shards', () => {
  let e: Estate;
  let rootFrom: string;
  const fromPath = () => join(e.dir, 'from.yaml');
  /** from.yaml with s0 reached through the restricted account (credentials are not hashed). */
  const restrictS0 = () =>
    writeFileSync(
      fromPath(),
      rootFrom
        .split('\n')
        .map((l) =>
          l.includes('name: s0,')
            ? l.replace('user: root }', `user: ${user}, password: { env: RG_SOURCE_PW } }`)
            : l,
        )
        .join('\n'),
    );

  beforeAll(async () => {
    e = await makeEstate({
      prefix: 'co_rg',
      rows: 600,
      seed: 21,
      appUser: false,
      ports: { s0: port('s0'), s1: port('s1'), t0: port('t0'), t1: port('t1'), t2: port('t2') },
    });
    rootFrom = readFileSync(fromPath(), 'utf8');
    await asRoot('s0', `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    // What tailing s0 needs, and reading its rows; no INSERT, UPDATE, DELETE, no meta database.
    await asRoot('s0', `GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '${user}'@'%'`);
    await asRoot('s0', `GRANT SELECT ON \`${e.db}_s0\`.* TO '${user}'@'%'`);
  }, 120_000);

  afterAll(async () => {
    await asRoot('s0', `DROP USER IF EXISTS '${user}'@'%'`).catch(() => undefined);
    await e?.drop().catch(() => undefined);
  });

  const cli = (args: string[]) =>
    runCli([...args, '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb], env);

  it('copy --execute is refused by preflight (exit 3) before any write, naming the GRANTs', async () => {
    restrictS0();
    const r = await cli(['copy', '--execute']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain('E_PREFLIGHT');
    expect(r.stderr).toContain('reverse replication writes into the old shards after cutover');
    expect(r.stderr).toContain(`GRANT INSERT, UPDATE, DELETE ON \`${e.db}_s0\`.* TO '${user}'@'%';`);
    expect(r.stderr).toContain(
      `GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON \`${e.metaDb}\`.* TO '${user}'@'%';`,
    );
    expect(r.stderr).not.toContain(password);
    expect(await ctlQuery(e, 'SELECT id FROM reshard_jobs')).toEqual([]);
  }, 120_000);

  it('cutover checks them again before freezing: refused with nothing frozen, passes once granted', async () => {
    writeFileSync(fromPath(), rootFrom);
    await copyAndVerify(e);
    const before = await jobState(e);
    // The grants were taken away after the copy.
    restrictS0();

    const dry = await cli(['cutover', '--json']);
    expect(dry.code, dry.stderr).toBe(3);
    const checks = (
      JSON.parse(dry.stdout) as { checks: { name: string; ok: boolean; detail: string; hint?: string }[] }
    ).checks;
    const reverse = checks.find((c) => c.name === 'reverse replication');
    expect(reverse?.ok).toBe(false);
    expect(reverse?.detail).toContain(`shard s0 (from): user '${user}'@'%'`);
    expect(reverse?.detail).toContain('INSERT, UPDATE, DELETE');
    expect(reverse?.hint).toContain(`GRANT INSERT, UPDATE, DELETE ON \`${e.db}_s0\`.* TO '${user}'@'%';`);
    expect(dry.stdout + dry.stderr).not.toContain(password);

    const run = await cli(['cutover', '--execute', '--max-freeze', '60s', '--max-lag', '30s']);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toContain('E_CUTOVER_PRECONDITION');
    expect(run.stderr).toContain('reverse replication');
    for (const n of ['s0', 's1'] as const) expect(await readOnly(port(n))).toBe(false);
    expect(await jobState(e)).toBe(before);
    expect(await ctlQuery(e, "SELECT id FROM reshard_cutover_journal WHERE step LIKE 'cutover.%'")).toEqual(
      [],
    );

    // Granted: the check passes (the others — freeze rights of this account — still do not).
    await asRoot('s0', `GRANT INSERT, UPDATE, DELETE ON \`${e.db}_s0\`.* TO '${user}'@'%'`);
    await asRoot('s0', `GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON \`${e.metaDb}\`.* TO '${user}'@'%'`);
    const again = await cli(['cutover', '--json']);
    const after = (JSON.parse(again.stdout) as { checks: { name: string; ok: boolean }[] }).checks;
    expect(after.find((c) => c.name === 'reverse replication')?.ok).toBe(true);
    expect(after.find((c) => c.name === 'freeze privileges')?.ok).toBe(false);
  }, 240_000);
});
