import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { indexPlan } from '../../../src/plan/plan-index.js';
import {
  parsePlan,
  planHash,
  readPlanFile,
  serializePlan,
  writePlanFile,
} from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { VERSION } from '../../../src/version.js';
import { names, rangeScheme, topology } from './helpers.js';

const ch = '{ type: consistent-hash, vnodes: 16, seed: 18446744073709551615 }';
const from = topology(names('s', 3), ch, 'cur.yaml');
const to = topology(names('s', 4), ch, 'tgt.yaml');
const p = plan(from, to);
const text = serializePlan(p);

describe('plan files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'reshard-plan-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('carry format and writer versions, both topology hashes and a content hash; bigints as decimal strings', () => {
    const doc = JSON.parse(text);
    expect(doc.planVersion).toBe(1);
    expect(doc.reshardVersion).toBe(VERSION);
    expect(doc.hash).toBe(planHash(p));
    expect(doc.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(doc.from.topologyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(doc.partition.seed).toBe('18446744073709551615');
    expect(doc.partition.space).toBe('18446744073709551616');
    expect(typeof doc.segments.find((s: { moves: boolean }) => s.moves).pieces.arcs[0][0]).toBe('string');
  });

  it('round-trip through the file system', () => {
    const path = join(dir, 'plan.json');
    writePlanFile(path, p);
    expect(readFileSync(path, 'utf8')).toBe(text);
    expect(readPlanFile(path, from, to)).toEqual(p);
    expect(readPlanFile(path)).toEqual(p);
  });

  it('round-trip integer range boundaries as bigints and string ones as strings', () => {
    const a = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 2n ** 60n },
        { shard: 'b', from: 2n ** 60n },
      ]),
    );
    const b = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 5n },
        { shard: 'b', from: 5n },
      ]),
    );
    const q = plan(a, b);
    expect(parsePlan(serializePlan(q))).toEqual(q);
    const c = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: '5' },
        { shard: 'b', from: '5' },
      ]),
    );
    const d = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: '7' },
        { shard: 'b', from: '7' },
      ]),
    );
    const r = plan(c, d);
    expect(parsePlan(serializePlan(r))).toEqual(r);
  });

  it('refuse an edited plan (E_PLAN_HASH)', () => {
    const edited = text.replace(/"to":"s0003"/, '"to":"s0002"');
    expect(edited).not.toBe(text);
    expect(() => parsePlan(edited, 'plan.json')).toThrow(
      expect.objectContaining({ code: 'E_PLAN_HASH', where: 'plan.json' }),
    );
  });

  it('refuse an unknown format (E_PLAN_VERSION) before anything else', () => {
    const v2 = text.replace('"planVersion": 1', '"planVersion": 2');
    expect(() => parsePlan(v2)).toThrow(expect.objectContaining({ code: 'E_PLAN_VERSION' }));
  });

  it('refuse a plan whose topologies drifted (E_PLAN_DRIFT), naming the side and file', () => {
    const moved = topology(names('s', 5), ch, 'tgt.yaml');
    expect(() => parsePlan(text, 'plan.json', from, moved)).toThrow(
      expect.objectContaining({
        code: 'E_PLAN_DRIFT',
        message: expect.stringContaining('target topology tgt.yaml'),
      }),
    );
    expect(() => indexPlan(p, to, to)).toThrow(expect.objectContaining({ code: 'E_PLAN_DRIFT' }));
  });

  it('refuse what is not a plan (E_PLAN_INVALID) and a missing file (E_PLAN_READ)', () => {
    expect(() => parsePlan('{')).toThrow(expect.objectContaining({ code: 'E_PLAN_INVALID' }));
    expect(() => parsePlan('[]')).toThrow(expect.objectContaining({ code: 'E_PLAN_INVALID' }));
    const path = join(dir, 'junk.json');
    writeFileSync(path, 'x');
    expect(() => readPlanFile(path)).toThrow(expect.objectContaining({ code: 'E_PLAN_INVALID' }));
    expect(() => readPlanFile(join(dir, 'nope.json'))).toThrow(
      expect.objectContaining({ code: 'E_PLAN_READ' }),
    );
  });
});
