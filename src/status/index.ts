/**
 * The status stage: what `reshard status` and `reshard route` call, and what applications
 * import to route by the active routing version. See README.md.
 */
import { PreconditionError, UsageError } from '../errors.js';
import type { RouteKey } from '../plan/router.js';
import { type ControlConnection, openControl } from '../state/control.js';
import type { Topology } from '../topology/types.js';
import { estimateCopyRows } from './estimate.js';
import { type ReadStatusOptions, readStatus, resolveStatusJob } from './read.js';
import {
  createRoutingRouter,
  type RoutingDocument,
  type RoutingShard,
  readActiveRouting,
  routingFromTopology,
} from './routing.js';
import type { StatusReport } from './types.js';

export { type FollowingRouter, type FollowRoutingOptions, followActiveRouting } from './follow.js';
export {
  estimateKey,
  jobStatus,
  RATE_WINDOW_SECONDS,
  readStatus,
  resolveStatusJob,
  STALE_SECONDS,
} from './read.js';
export * from './routing.js';
export { renderStatusText } from './text.js';
export type * from './types.js';
export { STATUS_VERSION } from './types.js';

export interface StatusSource {
  /** Name of the job the reports are about (once it exists). */
  readonly job: string;
  load(): Promise<StatusReport>;
  close(): Promise<void>;
}

export interface OpenStatusOptions {
  /** Plan file: the job executing it, and row estimates from its sources. */
  plan?: string;
  /** Job name (default: the newest job). */
  job?: string;
  control?: string;
  events?: number;
}

/**
 * Open the control schema and pin the job; `load()` then reads a fresh report each call. Row
 * estimates (for percentages and ETA) are read from the sources once, here, when a plan is given.
 */
export async function openStatus(opts: OpenStatusOptions): Promise<StatusSource> {
  if (opts.plan !== undefined && opts.job !== undefined) {
    throw new UsageError('E_USAGE', 'give either --plan or --job, not both');
  }
  let jobName = opts.job;
  let estimates: Map<string, number> | undefined;
  if (opts.plan !== undefined) {
    const { loadPlanContext, jobNameFor } = await import('../job/context.js');
    const ctx = loadPlanContext({ planPath: opts.plan });
    jobName = jobNameFor(ctx.planHash);
    estimates = await estimateCopyRows(ctx.plan, ctx.from);
  }
  const control = await openControl(opts.control);
  const readOpts: ReadStatusOptions = {
    label: control.label,
    ...(estimates ? { estimates } : {}),
    ...(opts.events !== undefined ? { events: opts.events } : {}),
  };
  // The job is pinned once found; until then each load looks again, so `status --watch --plan`
  // may start before the copy that creates the job (each load fails with E_NO_JOB meanwhile).
  let job = jobName;
  let pinned = false;
  const pin = async (): Promise<string> => {
    if (!pinned) {
      job = (await resolveStatusJob(control.conn, jobName)).name;
      pinned = true;
    }
    return job!;
  };
  try {
    await pin();
  } catch (e) {
    if ((e as { code?: string }).code !== 'E_NO_JOB') {
      await control.close().catch(() => undefined);
      throw e;
    }
  }
  return {
    get job() {
      return job ?? '(newest)';
    },
    load: async () => {
      const name = await pin();
      // One snapshot for all the report's queries (this connection is ours alone).
      await control.conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      try {
        return await readStatus(control.conn, name, readOpts);
      } finally {
        await control.conn.query('COMMIT').catch(() => undefined);
      }
    },
    close: () => control.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// route

export type KeyType = 'auto' | 'int' | 'string';

/** `--key-type`: int → an integer (bigint), string → the text as is, auto → int when it looks like one. */
export function parseRouteKey(text: string, type: KeyType): RouteKey {
  const isInt = /^-?(0|[1-9]\d*)$/.test(text);
  if (type === 'string') return text;
  if (type === 'int' && !isInt) {
    throw new UsageError('E_KEY_TYPE', `'${text}' is not an integer key`, {
      hint: 'pass a decimal integer, or --key-type string',
    });
  }
  return isInt ? BigInt(text) : text;
}

export interface RouteResult {
  key: string;
  keyType: 'int' | 'string';
  /** Owner for writes. */
  owner: string;
  /** Owner for reads (equal to owner except during a reads-first cutover). */
  readOwner: string;
  endpoint: RoutingShard | null;
  routing: {
    /** control: the active routing version; topology: the --topology file; plan: the plan's current topology (no version recorded yet). */
    source: 'control' | 'topology' | 'plan';
    version: number | null;
    job: string | null;
    writes: string;
    reads: string;
  };
}

export interface RouteOptions {
  key: string;
  keyType: KeyType;
  plan?: string;
  topology?: string;
  control?: string;
}

/**
 * The owner of a key: by `--topology` when given (no control schema); else by the active routing
 * version; with a plan and no routing version recorded yet, by the plan's current (`from`)
 * topology, which is what routes the estate before its first cutover.
 */
export async function routeKey(opts: RouteOptions): Promise<RouteResult> {
  if (opts.plan !== undefined && opts.topology !== undefined) {
    throw new UsageError('E_USAGE', 'give either --plan or --topology, not both');
  }
  const key = parseRouteKey(opts.key, opts.keyType);
  let doc: RoutingDocument;
  let routing: Omit<RouteResult['routing'], 'writes' | 'reads'>;
  if (opts.topology !== undefined) {
    const { loadTopology } = await import('../topology/load.js');
    doc = routingFromTopology(withDirectory(loadTopology(opts.topology)));
    routing = { source: 'topology', version: null, job: null };
  } else {
    const control: ControlConnection = await openControl(opts.control);
    try {
      const active = await readActiveRouting(control.conn);
      if (active) {
        doc = active.document;
        routing = { source: 'control', version: active.version.version, job: active.version.jobName };
      } else if (opts.plan !== undefined) {
        const { loadPlanContext } = await import('../job/context.js');
        doc = routingFromTopology(withDirectory(loadPlanContext({ planPath: opts.plan }).from));
        routing = { source: 'plan', version: null, job: null };
      } else {
        throw new PreconditionError('E_NO_ROUTING', 'the control schema holds no active routing version', {
          hint: 'before the first cutover, pass --plan plan.json (routes by its current topology) or --topology FILE',
        });
      }
    } finally {
      await control.close();
    }
  }
  const router = createRoutingRouter(doc);
  const owner = router.ownerOf(key);
  const name = (r: RoutingDocument['writes']) =>
    r.canary ? `${r.topology.name} → ${r.canary.next.name}` : r.topology.name;
  return {
    key: opts.key,
    keyType: typeof key === 'bigint' ? 'int' : 'string',
    owner,
    readOwner: router.readOwnerOf(key),
    endpoint: router.endpointOf(owner) ?? null,
    routing: { ...routing, writes: name(doc.writes), reads: name(doc.reads) },
  };
}

/** A directory kept in a table is not read by anything yet (plan refuses it too). */
function withDirectory(topo: Topology): Topology {
  if (topo.scheme.type !== 'directory' || topo.scheme.entries) return topo;
  throw new UsageError(
    'E_DIRECTORY_TABLE',
    `${topo.file} keeps its directory in a table, which reshard route cannot read yet`,
    {
      where: `${topo.file}: scheme.table`,
      hint: 'route by the active routing version (it embeds the directory), or point scheme.file at a key,shard CSV file',
    },
  );
}
