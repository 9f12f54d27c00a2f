/**
 * The shared metrics registry: one endpoint serves copy, tail and cutover metrics with the
 * documented names and labels; sampled gauges follow their producers and vanish when the
 * producer unregisters; --metrics-port parsing.
 */
import { describe, expect, it } from 'vitest';
import {
  copyMetrics,
  observeFreeze,
  parseMetricsPort,
  registerCopySampler,
  registerTailSampler,
  serveMetrics,
  tailMetrics,
} from '../../../src/metrics/index.js';

describe('shared metrics', () => {
  it('serves every stage on one /metrics endpoint', async () => {
    const server = await serveMetrics(0, '127.0.0.1');
    let lag = 1.5;
    const stopTail = registerTailSampler(() => [
      { source: 's0', direction: 'forward', lagSeconds: lag, eventsPerSecond: 10, rowsPerSecond: 4 },
    ]);
    const stopCopy = registerCopySampler(() => ({
      tables: [{ source: 's0', table: 'orders', rowsPerSecond: 250 }],
      paused: false,
      throttled: true,
      rateLimit: 1000,
    }));
    try {
      copyMetrics.rows.inc({ source: 's0', table: 'orders' }, 42);
      tailMetrics.events.inc({ source: 's0', direction: 'forward' }, 3);
      tailMetrics.appliedOps.inc({ source: 's0', target: 't1', direction: 'forward' });
      observeFreeze(0.8);
      const get = async () => {
        const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toContain('text/plain');
        return res.text();
      };
      let text = await get();
      expect(text).toContain('reshard_copy_rows_total{source="s0",table="orders"} 42');
      expect(text).toContain('reshard_copy_rows_per_second{source="s0",table="orders"} 250');
      expect(text).toContain('reshard_copy_throttled 1');
      expect(text).toContain('reshard_copy_paused 0');
      expect(text).toContain('reshard_copy_rate_limit_rows_per_second 1000');
      expect(text).toContain('reshard_tail_lag_seconds{source="s0",direction="forward"} 1.5');
      expect(text).toContain('reshard_tail_events_total{source="s0",direction="forward"} 3');
      expect(text).toContain('reshard_tail_applied_ops_total{source="s0",target="t1",direction="forward"} 1');
      expect(text).toContain('reshard_cutover_freeze_seconds 0.8');
      expect(text).toContain('reshard_cutover_freeze_duration_seconds_bucket{le="1"} 1');
      expect(text).toMatch(/reshard_build_info\{version="[^"]+"\} 1/);
      expect(text).toContain('process_cpu_seconds_total');
      lag = 7;
      expect(await get()).toContain('reshard_tail_lag_seconds{source="s0",direction="forward"} 7');
      stopTail();
      stopCopy();
      text = await get();
      expect(text).not.toContain('reshard_tail_lag_seconds{');
      expect(text).not.toContain('reshard_copy_rows_per_second{');
      // Unlabelled gauges read 0 (not throttled) when no copy runs in the process.
      expect(text).toMatch(/^reshard_copy_throttled 0$/m);
      expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    } finally {
      stopTail();
      stopCopy();
      await server.close();
    }
  });

  it('parses --metrics-port and refuses a port in use', async () => {
    expect(parseMetricsPort(undefined)).toBeUndefined();
    expect(parseMetricsPort('9100')).toBe(9100);
    expect(parseMetricsPort('0')).toBe(0);
    for (const bad of ['x', '-1', '65536', '1.5', '']) {
      expect(() => parseMetricsPort(bad)).toThrow(expect.objectContaining({ code: 'E_METRICS_PORT' }));
    }
    const a = await serveMetrics(0, '127.0.0.1');
    try {
      await expect(serveMetrics(a.port, '127.0.0.1')).rejects.toMatchObject({ code: 'E_METRICS_LISTEN' });
    } finally {
      await a.close();
    }
  });
});
