import { describe, expect, it } from 'vitest';
import { rootConn, sandbox } from '../support/db.js';

describe('sandbox servers', () => {
  it('run with ROW binlog, FULL row image and metadata, and distinct server ids', async () => {
    const ids = new Set<string>();
    for (const name of ['ctl', 's0', 's1', 't0', 't1', 't2'] as const) {
      const c = await rootConn(name);
      try {
        const [rows] = await c.query(
          'SELECT @@server_id AS id, @@log_bin AS log_bin, @@binlog_format AS fmt, @@binlog_row_image AS img, @@binlog_row_metadata AS meta, @@port AS port',
        );
        const r = (rows as Record<string, unknown>[])[0]!;
        expect(r).toMatchObject({ log_bin: '1', fmt: 'ROW', img: 'FULL', meta: 'FULL' });
        expect(Number(r.port)).toBe(sandbox().ports[name]);
        ids.add(String(r.id));
      } finally {
        await c.end();
      }
    }
    expect(ids.size).toBe(6);
  });
});
