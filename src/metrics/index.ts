/**
 * Prometheus metrics of every long-running command (copy, tail, cutover): ONE registry per
 * process, the metric definitions, and the `--metrics-port` HTTP endpoint (GET /metrics).
 *
 * Naming follows the Prometheus conventions: `reshard_<stage>_<what>_<unit>`, base units
 * (seconds, rows), `_total` only on counters. Rates that operators watch live are also exported
 * as gauges (`*_per_second`, 5 s windows computed by the producer) because the producers already
 * compute them; dashboards may equally use `rate(..._total[1m])`.
 *
 *   copy
 *     reshard_copy_rows_total{source,table}                 rows committed on the targets (counter)
 *     reshard_copy_chunks_total{source,table}               chunks finished (counter)
 *     reshard_copy_rows_per_second{source,table}            copy rate (gauge, sampler)
 *     reshard_copy_paused                                   1 while paused (control or signal)
 *     reshard_copy_throttled                                1 while admit() waits for load or a pause
 *     reshard_copy_rate_limit_rows_per_second               configured rate (0 = unlimited)
 *   tail
 *     reshard_tail_lag_seconds{source,direction}            seconds the targets are behind the source
 *     reshard_tail_events_per_second{source,direction}      binlog events read (5 s window)
 *     reshard_tail_rows_per_second{source,direction}        tracked row changes read (5 s window)
 *     reshard_tail_events_total{source,direction}           binlog events read
 *     reshard_tail_rows_total{source,direction}             tracked row changes read
 *     reshard_tail_transactions_total{source,direction}     source transactions with tracked changes
 *     reshard_tail_applied_ops_total{source,target,direction} row operations committed on a target
 *     reshard_tail_reconnects_total{source,direction}       source stream reconnects
 *   cutover
 *     reshard_cutover_predicted_freeze_seconds              freeze predicted from the drain rate
 *     reshard_cutover_freeze_seconds                        last measured freeze (writes refused)
 *     reshard_cutover_freeze_duration_seconds               histogram of measured freezes
 *     reshard_cutover_steps_total{step,state}               journaled steps (started, done, failed)
 *   reshard_build_info{version}                             always 1
 *   process_* / nodejs_*                                    default metrics, once serveMetrics runs
 *
 * Gauges whose values live in a producer (a tailer's per-source windows, a copier's throttle) are
 * read at scrape time from samplers the producer registers; `register*Sampler` returns the
 * function that removes it, to call when the producer stops. Several producers may register at
 * once (tests run several tailers in one process): their label sets must differ.
 *
 * Lifecycle: import (metrics are defined once, at module load) → producers inc/set and register
 * samplers → `serveMetrics(port)` → `close()` when the command ends.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';

/** The process's one registry: every reshard metric is registered here. */
export const registry = new Registry();

const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
  new Counter<L>({ name, help, labelNames: [...labelNames], registers: [registry] });

// ---------------------------------------------------------------------------------------------
// Samplers: values read from producers at scrape time.

export interface CopyTableSample {
  source: string;
  table: string;
  rowsPerSecond: number;
}

export interface CopySample {
  tables: CopyTableSample[];
  /** Paused by the control schema or a signal. */
  paused: boolean;
  /** admit() waits for load or a pause (not merely the rate limit). */
  throttled: boolean;
  /** Rows/s per process over all targets; 0 = unlimited. */
  rateLimit: number;
}

export interface TailSourceSample {
  source: string;
  direction: 'forward' | 'reverse';
  lagSeconds: number;
  eventsPerSecond: number;
  rowsPerSecond: number;
}

const copySamplers = new Set<() => CopySample>();
const tailSamplers = new Set<() => readonly TailSourceSample[]>();

function addSampler<T>(set: Set<T>, fn: T): () => void {
  set.add(fn);
  return () => {
    set.delete(fn);
  };
}

/** Register the copier's live values; call the returned function when the copy stops. */
export function registerCopySampler(fn: () => CopySample): () => void {
  return addSampler(copySamplers, fn);
}

/** Register a tailer's per-source values; call the returned function when the tailer stops. */
export function registerTailSampler(fn: () => readonly TailSourceSample[]): () => void {
  return addSampler(tailSamplers, fn);
}

function copySamples(): CopySample[] {
  return [...copySamplers].map((f) => f());
}

function gaugeFrom<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  fill: (g: Gauge<L>) => void,
): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    collect() {
      // A producer that stopped must not leave its last values behind.
      this.reset();
      fill(this);
    },
  });
}

// ---------------------------------------------------------------------------------------------
// copy

export const copyMetrics = {
  rows: counter('reshard_copy_rows_total', 'Rows committed on the targets by the copier', [
    'source',
    'table',
  ]),
  chunks: counter('reshard_copy_chunks_total', 'Copy chunks finished', ['source', 'table']),
  rowsPerSecond: gaugeFrom(
    'reshard_copy_rows_per_second',
    'Copy rate in rows per second',
    ['source', 'table'],
    (g) => {
      for (const s of copySamples())
        for (const t of s.tables) g.set({ source: t.source, table: t.table }, t.rowsPerSecond);
    },
  ),
  paused: gaugeFrom(
    'reshard_copy_paused',
    '1 while the copy is paused (control schema or signal)',
    [],
    (g) => {
      const all = copySamples();
      if (all.length) g.set(all.some((s) => s.paused) ? 1 : 0);
    },
  ),
  throttled: gaugeFrom(
    'reshard_copy_throttled',
    '1 while the copy waits for server load or a pause (not for the rate limit)',
    [],
    (g) => {
      const all = copySamples();
      if (all.length) g.set(all.some((s) => s.throttled) ? 1 : 0);
    },
  ),
  rateLimit: gaugeFrom(
    'reshard_copy_rate_limit_rows_per_second',
    'Configured copy rate limit per process in rows per second (0 = unlimited)',
    [],
    (g) => {
      const all = copySamples();
      if (all.length) g.set(all.reduce((a, s) => a + s.rateLimit, 0));
    },
  ),
};

// ---------------------------------------------------------------------------------------------
// tail

const TAIL_LABELS = ['source', 'direction'] as const;
type TailLabel = (typeof TAIL_LABELS)[number];

function tailGauge(name: string, help: string, pick: (s: TailSourceSample) => number): Gauge<TailLabel> {
  return gaugeFrom(name, help, TAIL_LABELS, (g) => {
    for (const f of tailSamplers)
      for (const s of f()) g.set({ source: s.source, direction: s.direction }, pick(s));
  });
}

export const tailMetrics = {
  lagSeconds: tailGauge(
    'reshard_tail_lag_seconds',
    'Seconds the targets are behind the source',
    (s) => s.lagSeconds,
  ),
  eventsPerSecond: tailGauge(
    'reshard_tail_events_per_second',
    'Binlog events read per second (5 s window)',
    (s) => s.eventsPerSecond,
  ),
  rowsPerSecond: tailGauge(
    'reshard_tail_rows_per_second',
    'Tracked row changes read per second (5 s window)',
    (s) => s.rowsPerSecond,
  ),
  events: counter('reshard_tail_events_total', 'Binlog events read', TAIL_LABELS),
  rows: counter('reshard_tail_rows_total', 'Tracked row changes read', TAIL_LABELS),
  transactions: counter(
    'reshard_tail_transactions_total',
    'Source transactions with tracked row changes',
    TAIL_LABELS,
  ),
  appliedOps: counter('reshard_tail_applied_ops_total', 'Row operations committed on a target', [
    'source',
    'target',
    'direction',
  ]),
  reconnects: counter('reshard_tail_reconnects_total', 'Source stream reconnects', TAIL_LABELS),
};

// ---------------------------------------------------------------------------------------------
// cutover

export const cutoverMetrics = {
  predictedFreezeSeconds: new Gauge({
    name: 'reshard_cutover_predicted_freeze_seconds',
    help: 'Write freeze predicted from the measured drain rate, in seconds',
    registers: [registry],
  }),
  freezeSeconds: new Gauge({
    name: 'reshard_cutover_freeze_seconds',
    help: 'Last measured write freeze, in seconds',
    registers: [registry],
  }),
  freezeDuration: new Histogram({
    name: 'reshard_cutover_freeze_duration_seconds',
    help: 'Measured write freezes, in seconds',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  }),
  steps: counter('reshard_cutover_steps_total', 'Journaled cutover and rollback steps', ['step', 'state']),
};

/** Record a measured freeze in both the last-value gauge and the histogram. */
export function observeFreeze(seconds: number): void {
  cutoverMetrics.freezeSeconds.set(seconds);
  cutoverMetrics.freezeDuration.observe(seconds);
}

new Gauge({
  name: 'reshard_build_info',
  help: 'Always 1; the version label says which reshard is running',
  labelNames: ['version'],
  registers: [registry],
}).set({ version: VERSION }, 1);

// ---------------------------------------------------------------------------------------------
// HTTP endpoint

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  port: number;
  server: Server;
  close(): Promise<void>;
}

let defaultsOn = false;

/** Parse `--metrics-port`: undefined when absent; 0 picks a free port. Throws E_METRICS_PORT. */
export function parseMetricsPort(flag: string | undefined): number | undefined {
  if (flag === undefined) return undefined;
  const n = Number(flag);
  if (!/^\d+$/.test(flag.trim()) || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new UsageError('E_METRICS_PORT', `--metrics-port ${flag} is not a port number`, {
      hint: 'give 1–65535 (0 picks a free port)',
    });
  }
  return n;
}

/**
 * Serve GET /metrics from the shared registry on `host:port` (default all interfaces) until
 * closed. The server does not keep the process alive (unref). Refuses a port in use
 * (E_METRICS_LISTEN) before the command starts its work.
 */
export async function serveMetrics(port: number, host = '0.0.0.0'): Promise<MetricsServer> {
  if (!defaultsOn) {
    defaultsOn = true;
    collectDefaultMetrics({ register: registry });
  }
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics collection failed: ${String(e)}\n`);
        });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('reshard: metrics are at /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          'E_METRICS_LISTEN',
          `cannot serve metrics on ${host}:${port}: ${e.code ?? e.message}`,
          {
            hint: 'pick another --metrics-port (0 picks a free one)',
            cause: e,
          },
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
