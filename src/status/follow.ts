/**
 * A router for applications that follows the active routing version in the control schema.
 *
 * Lifecycle: `await followActiveRouting({ control, pollMs })` (reads the active version; refuses
 * to start without one) → `ownerOf(key)` / `readOwnerOf(key)` any number of times, synchronously,
 * always against one whole routing document → the poller checks the active version's number
 * and hash every `pollMs` and, when either changed, reads and parses the new document and swaps
 * the router in one assignment → `close()`.
 *
 * Why polling is safe: cutover flips routing while writes to the moving keys are frozen, so an
 * application that still routes by the old version in the poll interval gets refused writes on
 * the old owner (and retries), never a split write; reads may be up to `pollMs` stale. A failed
 * poll keeps the last router (reported through `onError`) and reconnects on the next poll;
 * `checkedAt` says how fresh the routing is, for applications that want to refuse to serve on
 * a stale one.
 */

import { PreconditionError } from '../errors.js';
import type { RouteKey } from '../plan/router.js';
import { type ControlConnection, openControl } from '../state/control.js';
import {
  createRoutingRouter,
  type RoutingDocument,
  type RoutingRouter,
  type RoutingShard,
  type RoutingVersion,
  readActiveRouting,
  readActiveRoutingVersion,
} from './routing.js';

export interface FollowRoutingOptions {
  /** Control schema DSN (else RESHARD_CONTROL_DSN). */
  control?: string;
  /** How often to check for a new active version, ms (default 1000). */
  pollMs?: number;
  /** Called after the router switched to a new version. */
  onChange?: (version: RoutingVersion, document: RoutingDocument) => void;
  /** Called when a poll fails (the last router stays in use). */
  onError?: (error: unknown) => void;
}

export interface FollowingRouter {
  /** Owner of `key` for writes under the active routing. */
  ownerOf(key: RouteKey): string;
  /** Owner of `key` for reads (differs from writes during a reads-first cutover). */
  readOwnerOf(key: RouteKey): string;
  endpointOf(shard: string): RoutingShard | undefined;
  /** Every shard the active routing can name. */
  readonly shards: readonly string[];
  /** The routing version in use. */
  readonly version: number;
  readonly document: RoutingDocument;
  /** Local time (ms) the active version was last confirmed. */
  readonly checkedAt: number;
  /** Check now (what the poller does); resolves after a switch, if any. */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export async function followActiveRouting(opts: FollowRoutingOptions = {}): Promise<FollowingRouter> {
  const pollMs = opts.pollMs ?? 1000;
  let ctl: ControlConnection | undefined = await openControl(opts.control);
  const first = await readActiveRouting(ctl.conn).catch(async (e: unknown) => {
    await ctl?.close().catch(() => undefined);
    throw e;
  });
  if (!first) {
    await ctl.close().catch(() => undefined);
    throw new PreconditionError('E_NO_ROUTING', 'the control schema holds no active routing version', {
      hint: 'a routing version is recorded by cutover (or by the tool that registered the estate); until then route with createRouter(topology)',
    });
  }
  let current = { version: first.version, router: createRoutingRouter(first.document) };
  let checkedAt = Date.now();
  let closed = false;
  let inFlight: Promise<void> | undefined;

  const check = async (): Promise<void> => {
    try {
      ctl ??= await openControl(opts.control);
      const v = await readActiveRoutingVersion(ctl.conn);
      if (v && (v.version !== current.version.version || v.routingHash !== current.version.routingHash)) {
        const next = await readActiveRouting(ctl.conn);
        if (next && !closed) {
          current = { version: next.version, router: createRoutingRouter(next.document) };
          opts.onChange?.(next.version, next.document);
        }
      }
      checkedAt = Date.now();
    } catch (e) {
      const c = ctl;
      ctl = undefined;
      await c?.close().catch(() => undefined);
      opts.onError?.(e);
    }
  };
  const refresh = (): Promise<void> => {
    inFlight ??= check().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const timer = setInterval(() => {
    if (!closed) void refresh();
  }, pollMs);
  timer.unref();

  return {
    ownerOf: (key) => current.router.ownerOf(key),
    readOwnerOf: (key) => current.router.readOwnerOf(key),
    endpointOf: (shard) => current.router.endpointOf(shard),
    get shards() {
      return current.router.shards;
    },
    get version() {
      return current.version.version;
    },
    get document() {
      return current.router.document;
    },
    get checkedAt() {
      return checkedAt;
    },
    refresh,
    async close() {
      closed = true;
      clearInterval(timer);
      await inFlight?.catch(() => undefined);
      const c = ctl;
      ctl = undefined;
      await c?.close().catch(() => undefined);
    },
  };
}

export type { RoutingRouter };
