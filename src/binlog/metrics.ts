/**
 * Prometheus metrics of a tail run (prom-client, own registry), and the optional HTTP endpoint
 * (`--metrics-port`): GET /metrics.
 *
 *   reshard_tail_lag_seconds{source}             seconds behind the source
 *   reshard_tail_events_per_second{source}       binlog events read (5 s window)
 *   reshard_tail_rows_per_second{source}         tracked row changes read (5 s window)
 *   reshard_tail_events_total{source}            binlog events read
 *   reshard_tail_rows_total{source}              tracked row changes read
 *   reshard_tail_transactions_total{source}      source transactions with tracked changes
 *   reshard_tail_applied_ops_total{source,target} row operations committed on a target
 *   reshard_tail_reconnects_total{source}        source stream reconnects
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';

export interface TailMetrics {
  registry: Registry;
  events: Counter<'source'>;
  rows: Counter<'source'>;
  transactions: Counter<'source'>;
  appliedOps: Counter<'source' | 'target'>;
  reconnects: Counter<'source'>;
}

export interface SourceGauges {
  lagSeconds: number;
  eventsPerSecond: number;
  rowsPerSecond: number;
}

export function createTailMetrics(gauges: () => Map<string, SourceGauges>): TailMetrics {
  const registry = new Registry();
  const gauge = (name: string, help: string, pick: (g: SourceGauges) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['source'],
      registers: [registry],
      collect() {
        for (const [source, g] of gauges()) this.set({ source }, pick(g));
      },
    });
  gauge('reshard_tail_lag_seconds', 'Seconds the targets are behind the source', (g) => g.lagSeconds);
  gauge(
    'reshard_tail_events_per_second',
    'Binlog events read per second (5 s window)',
    (g) => g.eventsPerSecond,
  );
  gauge(
    'reshard_tail_rows_per_second',
    'Tracked row changes read per second (5 s window)',
    (g) => g.rowsPerSecond,
  );
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  return {
    registry,
    events: counter('reshard_tail_events_total', 'Binlog events read', ['source']),
    rows: counter('reshard_tail_rows_total', 'Tracked row changes read', ['source']),
    transactions: counter('reshard_tail_transactions_total', 'Source transactions with tracked row changes', [
      'source',
    ]),
    appliedOps: counter('reshard_tail_applied_ops_total', 'Row operations committed on a target', [
      'source',
      'target',
    ]),
    reconnects: counter('reshard_tail_reconnects_total', 'Source stream reconnects', ['source']),
  };
}

/** Serve GET /metrics on 127.0.0.1-or-any:port until closed. */
export function serveMetrics(registry: Registry, port: number, host = '0.0.0.0'): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
      return;
    }
    res.writeHead(404);
    res.end('reshard tail: metrics are at /metrics\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.unref();
      resolve(server);
    });
  });
}
