/**
 * Plan files: versioned, content-hashed JSON. Serialization is pure (string in, string out);
 * `writePlanFile`/`readPlanFile` are the only I/O.
 *
 *   - `planVersion` is the format; a plan of another format is refused, never misread
 *     (E_PLAN_VERSION). `reshardVersion` records the writer.
 *   - `hash` = "sha256:" + sha256(canonicalJson(body)), body = every other field with bigints as
 *     decimal strings. A plan edited by hand is refused (E_PLAN_HASH).
 *   - `from.topologyHash` / `to.topologyHash` pin the topologies; a plan read against topologies
 *     that changed since planning is refused (E_PLAN_DRIFT): re-plan instead.
 *
 * Segments are written one per line so a plan diffs and greps well.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { canonicalJson, topologyHash } from '../topology/load.js';
import type { Topology } from '../topology/types.js';
import type { Plan } from './types.js';

export const PLAN_FORMAT_VERSION = 1;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Plan → JSON-safe value: bigints become decimal strings, undefined fields are dropped. */
function encode(v: unknown): Json {
  if (typeof v === 'bigint') return v.toString();
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(encode);
  if (typeof v === 'object') {
    const o: { [k: string]: Json } = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) o[k] = encode(x);
    return o;
  }
  throw new TypeError(`plan: cannot encode ${typeof v}`);
}

function hashBody(body: Json): string {
  return `sha256:${createHash('sha256').update(canonicalJson(body)).digest('hex')}`;
}

/** The content hash of a plan (what its file's `hash` field holds). */
export function planHash(plan: Plan): string {
  return hashBody(encode(plan));
}

const ORDER = [
  'planVersion',
  'reshardVersion',
  'hash',
  'from',
  'to',
  'movement',
  'shares',
  'notes',
  'partition',
  'groups',
  'segments',
];

export function serializePlan(plan: Plan): string {
  return serializePlanWithHash(plan).text;
}

/** The plan file's text and its content hash, computed once. */
export function serializePlanWithHash(plan: Plan): { text: string; hash: string } {
  const body = encode(plan) as { [k: string]: Json };
  const hash = hashBody(body);
  const doc: { [k: string]: Json } = { ...body, hash };
  const keys = [
    ...ORDER.filter((k) => k in doc),
    ...Object.keys(doc)
      .filter((k) => !ORDER.includes(k))
      .sort(),
  ];
  const lines = keys.map((k) => {
    const v = doc[k]!;
    if (Array.isArray(v) && (k === 'segments' || k === 'shares')) {
      return v.length === 0
        ? `  ${JSON.stringify(k)}: []`
        : `  ${JSON.stringify(k)}: [\n${v.map((x) => `    ${JSON.stringify(x)}`).join(',\n')}\n  ]`;
    }
    return `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`;
  });
  return { text: `{\n${lines.join(',\n')}\n}\n`, hash };
}

function invalid(where: string, why: string): UsageError {
  return new UsageError('E_PLAN_INVALID', `${where} is not a reshard plan: ${why}`, {
    where,
    hint: 'pass the file written by `reshard plan`, or plan again',
  });
}

function big(v: unknown, where: string, field: string): bigint {
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) throw invalid(where, `${field} is not an integer string`);
  return BigInt(v);
}

/** Parse and check a plan file's text. With topologies given, also refuse drift. */
export function parsePlan(text: string, where = 'plan', currentFrom?: Topology, currentTo?: Topology): Plan {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw invalid(where, `not JSON (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw invalid(where, 'not a JSON object');
  const d = doc as Record<string, Json>;
  if (d.planVersion !== PLAN_FORMAT_VERSION) {
    throw new UsageError(
      'E_PLAN_VERSION',
      `${where} has plan format ${JSON.stringify(d.planVersion)} (written by reshard ${JSON.stringify(d.reshardVersion)}); this reshard reads format ${PLAN_FORMAT_VERSION}`,
      { where, hint: 'plan again with this version of reshard, or use the version that wrote the plan' },
    );
  }
  const { hash, ...body } = d;
  const actual = hashBody(body);
  if (hash !== actual) {
    throw new UsageError(
      'E_PLAN_HASH',
      `${where} does not match its content hash (recorded ${String(hash)}, content ${actual})`,
      {
        where,
        hint: 'the plan was edited or damaged after planning; plan again instead of editing it',
      },
    );
  }
  const plan = decode(body, where);
  checkDrift(plan, currentFrom, currentTo, where);
  return plan;
}

function decode(body: Record<string, Json>, where: string): Plan {
  const p = body as unknown as Plan & Record<string, unknown>;
  if (
    !Array.isArray(p.segments) ||
    typeof p.partition !== 'object' ||
    p.partition === null ||
    !p.from ||
    !p.to
  ) {
    throw invalid(where, 'segments, partition, from or to is missing');
  }
  const part = p.partition as unknown as Record<string, unknown>;
  if ('space' in part) part.space = big(part.space, where, 'partition.space');
  if ('seed' in part) part.seed = big(part.seed, where, 'partition.seed');
  const intBounds = p.partition.kind === 'interval' && p.partition.keyType === 'int';
  for (const s of p.segments) {
    if (s.share && s.share.units !== undefined)
      s.share.units = big(s.share.units, where, `segments[${s.id}].share.units`);
    const pieces = s.pieces;
    if (pieces.kind === 'arcs') {
      pieces.arcs = pieces.arcs.map(([lo, hi]) => [big(lo, where, 'arc'), big(hi, where, 'arc')]);
    } else if (pieces.kind === 'intervals' && intBounds) {
      pieces.intervals = pieces.intervals.map((iv) => ({
        from: iv.from === null ? null : big(iv.from, where, 'interval'),
        to: iv.to === null ? null : big(iv.to, where, 'interval'),
      }));
    }
  }
  return p;
}

/** Refuse a plan whose topologies changed since planning. */
export function checkDrift(
  plan: Plan,
  currentFrom?: Topology,
  currentTo?: Topology,
  where = 'the plan',
): void {
  const sides: [string, Plan['from'], Topology | undefined][] = [
    ['current', plan.from, currentFrom],
    ['target', plan.to, currentTo],
  ];
  for (const [label, recorded, topo] of sides) {
    if (!topo) continue;
    const now = topologyHash(topo);
    if (now !== recorded.topologyHash) {
      throw new UsageError(
        'E_PLAN_DRIFT',
        `the ${label} topology ${topo.file} has changed since ${where} was made from ${recorded.file} (sha256 ${recorded.topologyHash.slice(0, 12)} then, ${now.slice(0, 12)} now)`,
        {
          where: topo.file,
          hint: `plan again with \`reshard plan\` against the ${label} topology as it is now`,
        },
      );
    }
  }
}

/** Write atomically (temp file + rename), so a crash never leaves half a plan. Returns its hash. */
export function writePlanFile(path: string, plan: Plan): string {
  const tmp = `${path}.tmp-${process.pid}`;
  const { text, hash } = serializePlanWithHash(plan);
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
  return hash;
}

export function readPlanFile(path: string, currentFrom?: Topology, currentTo?: Topology): Plan {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(
      'E_PLAN_READ',
      `cannot read plan file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`,
      {
        where: path,
        hint: 'check the path passed as the plan file',
        cause: e,
      },
    );
  }
  return parsePlan(text, path, currentFrom, currentTo);
}
