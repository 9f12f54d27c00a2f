/**
 * The routing documents cutover and rollback write (format: src/status/routing.ts), how the
 * active one is judged before a flip, and publishing a flip (routing file + --on-flip hook).
 *
 * Documents a job writes, in order:
 *   reads-first (optional)  writes → from, reads → to                (`reshard cutover --reads-only`)
 *   reads canary (optional) writes → from, reads → from except the flipped (from → to) pairs
 *   cutover                 writes and reads → to
 *   rollback                writes and reads → from (a new version, not a re-activation, so the
 *                           history reads in order)
 */
import { spawn } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { envWithoutSecrets } from '../output.js';
import type { Plan } from '../plan/types.js';
import {
  type RoutingDocument,
  type RoutingRule,
  routingFromTopology,
  routingTopologyOf,
  serializeRouting,
} from '../status/routing.js';
import { topologyHash } from '../topology/load.js';
import type { Topology } from '../topology/types.js';

export function fullRouting(topo: Topology, jobName: string): RoutingDocument {
  return routingFromTopology(topo, jobName);
}

/** Reads first: writes stay on `from`; reads go to `to`, or only for the canary pairs. */
export function readsRouting(
  from: Topology,
  to: Topology,
  jobName: string,
  canary?: { from: string; to: string }[],
): RoutingDocument {
  const writes: RoutingRule = { topology: routingTopologyOf(from) };
  const reads: RoutingRule = canary
    ? { topology: routingTopologyOf(from), canary: { next: routingTopologyOf(to), flipped: canary } }
    : { topology: routingTopologyOf(to) };
  return { format: 1, job: jobName, writes, reads };
}

/**
 * The canary: the first ⌈fraction × n⌉ of the plan's n moving (from → to) pairs, in segment order
 * (pure; at least one when fraction > 0).
 */
export function canaryPairs(plan: Pick<Plan, 'segments'>, fraction: number): { from: string; to: string }[] {
  if (!(fraction > 0 && fraction <= 1)) {
    throw new UsageError('E_CUTOVER_CANARY', `--canary must be a fraction in (0, 1], got ${fraction}`);
  }
  const pairs: { from: string; to: string }[] = [];
  const seen = new Set<string>();
  for (const s of [...plan.segments].sort((a, b) => a.id - b.id)) {
    if (!s.moves || seen.has(`${s.from}\0${s.to}`)) continue;
    seen.add(`${s.from}\0${s.to}`);
    pairs.push({ from: s.from, to: s.to });
  }
  return pairs.slice(0, Math.max(1, Math.ceil(fraction * pairs.length)));
}

/**
 * What the active routing is, relative to this job:
 *   none     nothing recorded yet;
 *   from     reads and writes by the job's `from` topology (any writer);
 *   reads    this job's reads-first document (writes still by `from`);
 *   to       reads and writes by the job's `to` topology;
 *   foreign  anything else (another job's routing, other topologies): refuse to flip over it.
 */
export type ActiveKind = 'none' | 'from' | 'reads' | 'to' | 'foreign';

export function classifyActive(
  doc: RoutingDocument | undefined,
  from: Topology,
  to: Topology,
  jobName: string,
): ActiveKind {
  if (!doc) return 'none';
  const fh = topologyHash(from);
  const th = topologyHash(to);
  const plain = (r: RoutingRule, h: string) => r.topology.topologyHash === h && !r.canary;
  if (plain(doc.writes, fh) && plain(doc.reads, fh)) return 'from';
  if (plain(doc.writes, th) && plain(doc.reads, th)) return 'to';
  if (
    doc.job === jobName &&
    plain(doc.writes, fh) &&
    (plain(doc.reads, th) ||
      (doc.reads.topology.topologyHash === fh && doc.reads.canary?.next.topologyHash === th))
  )
    return 'reads';
  return 'foreign';
}

export interface PublishOptions {
  document: RoutingDocument;
  version: number;
  jobName: string;
  phase: 'cutover' | 'rollback' | 'reads';
  routingOut?: string | undefined;
  onFlip?: string | undefined;
  /** Longest the hook may run. */
  hookTimeoutMs?: number;
}

export interface PublishResult {
  routingFile?: string;
  hook?: { command: string; exitCode: number | null; signal: string | null; ms: number };
}

/** Write the routing file (atomically: temp file + rename) and run the hook. */
export async function publishRouting(o: PublishOptions): Promise<PublishResult> {
  const out: PublishResult = {};
  if (o.routingOut) {
    const tmp = join(dirname(o.routingOut), `.${process.pid}.${Date.now()}.routing.tmp`);
    writeFileSync(tmp, `${serializeRouting(o.document)}\n`);
    renameSync(tmp, o.routingOut);
    out.routingFile = o.routingOut;
  }
  if (o.onFlip) {
    const t0 = Date.now();
    const res = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      // The hook's output is progress, not our result: both its streams go to our stderr.
      const child = spawn('/bin/sh', ['-c', o.onFlip!], {
        stdio: ['ignore', 2, 2],
        // The hook learns what changed, not how to log in: reshard's passwords are left out.
        env: {
          ...envWithoutSecrets(process.env),
          RESHARD_PHASE: o.phase,
          RESHARD_JOB: o.jobName,
          RESHARD_ROUTING_VERSION: String(o.version),
          ...(o.routingOut ? { RESHARD_ROUTING_FILE: o.routingOut } : {}),
        },
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), o.hookTimeoutMs ?? 60_000);
      child.on('error', () => {
        clearTimeout(timer);
        resolve({ code: 127, signal: null });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
    out.hook = { command: o.onFlip, exitCode: res.code, signal: res.signal, ms: Date.now() - t0 };
  }
  return out;
}
