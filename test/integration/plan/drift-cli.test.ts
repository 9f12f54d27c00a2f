/**
 * Every command that takes --plan refuses a drifted plan (a topology file changed after
 * planning: E_PLAN_DRIFT) and an edited plan (E_PLAN_HASH), with exit 2 and before it contacts any
 * server. The unit tests check parsePlan; this checks the commands themselves. The topologies name
 * ports nothing listens on and the control DSN a server that does not exist: a command that got
 * past the plan check would fail differently (exit 3/5).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { loadTopology } from '../../../src/topology/load.js';
import { startReshard } from '../../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'reshard-revb-drift-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function yaml(prefix: string, n: number, port0: number): string {
  const lines = ['version: 1', `name: shop-${n}`, 'shards:'];
  for (let i = 0; i < n; i++)
    lines.push(
      `  - { name: ${prefix}${i}, host: 127.0.0.1, port: ${port0 + i}, database: shop, user: root }`,
    );
  lines.push('tables:', '  - { name: users, shardKey: id }', 'scheme: { type: hash-mod, hash: crc32 }');
  return `${lines.join('\n')}\n`;
}

const CONTROL = 'mysql://root@127.0.0.1:1/nowhere';
const COMMANDS: string[][] = [
  ['copy', '--execute'],
  ['copy'],
  ['tail'],
  ['verify'],
  ['cutover', '--execute'],
  ['rollback', '--execute'],
  ['complete', '--execute'],
  ['cleanup', '--execute'],
  ['status', '--json'],
];

async function run(args: string[]) {
  const p = startReshard(args, { RESHARD_CONTROL_DSN: CONTROL });
  return p.done;
}

describe('drifted or edited plans are refused by every later command', () => {
  const fromPath = join(dir, 'from.yaml');
  const toPath = join(dir, 'to.yaml');
  writeFileSync(fromPath, yaml('a', 2, 2));
  writeFileSync(toPath, yaml('b', 3, 12));
  const planPath = join(dir, 'plan.json');
  writePlanFile(planPath, plan(loadTopology(fromPath), loadTopology(toPath)));

  it('a target topology moved to another port after planning: E_PLAN_DRIFT, exit 2', async () => {
    writeFileSync(toPath, yaml('b', 3, 22));
    try {
      const results = await Promise.all(
        COMMANDS.map((c) => run([c[0]!, '--plan', planPath, '--control', CONTROL, ...c.slice(1)])),
      );
      expect(
        results.map((r, i) => `${COMMANDS[i]!.join(' ')}: ${r.code} ${/E_PLAN_DRIFT/.test(r.stderr)}`),
      ).toEqual(COMMANDS.map((c) => `${c.join(' ')}: 2 true`));
    } finally {
      writeFileSync(toPath, yaml('b', 3, 12));
    }
  });

  it('a plan edited by hand (one owner changed): E_PLAN_HASH, exit 2', async () => {
    const edited = join(dir, 'edited.json');
    const text = readFileSync(planPath, 'utf8');
    const i = text.indexOf('"to":"b2"');
    expect(i).toBeGreaterThan(0);
    writeFileSync(edited, `${text.slice(0, i)}"to":"b1"${text.slice(i + 9)}`);
    const results = await Promise.all(
      COMMANDS.map((c) => run([c[0]!, '--plan', edited, '--control', CONTROL, ...c.slice(1)])),
    );
    expect(
      results.map((r, i) => `${COMMANDS[i]!.join(' ')}: ${r.code} ${/E_PLAN_HASH/.test(r.stderr)}`),
    ).toEqual(COMMANDS.map((c) => `${c.join(' ')}: 2 true`));
  });
});
