/**
 * The copier's raw page path (copier.ts streamPageRaw → TsvEncoder.addView) writes LOAD DATA
 * fields straight from the source's packet bytes. These rows hold every byte LOAD DATA treats
 * specially — TAB, LF, CR, NUL, backslash, the two characters `\N` (text, not NULL) — in text,
 * VARBINARY and BLOB columns, every byte value 0–255 in a BLOB, BIT patterns, and integer shard
 * keys beyond 2^53 (routed from their text). The copy must be byte-identical on the new owners.
 */
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { type Estate, makeEstate } from './helpers.js';

const TRICKY_TEXT = [
  'tab\there',
  'line\nfeed',
  'carriage\rreturn',
  'nul\0byte',
  'back\\slash\\',
  '\\N',
  '\\',
  '\t\n\r\0\\',
  'trailing space ',
  'emoji 😀 and é',
];

describe('copy: raw row bytes into LOAD DATA', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({
      prefix: 'copyraw',
      rows: 300,
      seed: 5,
      afterSeed: async (db) => {
        const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        for (let n = 0; n < 2; n++) {
          for (const [i, text] of TRICKY_TEXT.entries()) {
            // Shard keys around and beyond 2^53, so routing reads big integers from text; each row
            // on the source that owns it (hash-mod crc32 over s0, s1).
            const userId = (2n ** 53n + BigInt(i * 7 + n)).toString();
            const owner = crc32(Buffer.from(userId)) % 2 === 0 ? 's0' : 's1';
            const c = await rootConn(owner, db);
            try {
              await c.query(
                `INSERT INTO type_corpus (id, user_id, u64, bits, blob_data, varbin, text_mb4, maybe_empty, doc)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
                [
                  (9_000_000_000_000_000n + BigInt(n * 100 + i)).toString(),
                  userId,
                  '18446744073709551615',
                  Buffer.from([0x80, 0, 0x09, 0x0a, 0x5c, 0x0d, 0, i]),
                  i === 0 ? allBytes : Buffer.from(text, 'utf8'),
                  Buffer.from(text, 'utf8'),
                  text,
                  text.slice(0, 32),
                  JSON.stringify({ text }),
                ],
              );
            } finally {
              await c.end();
            }
          }
        }
      },
    });
  });
  afterAll(async () => {
    await e?.drop();
  });

  it('copies every special byte exactly', async () => {
    const s = await runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
    });
    expect(s.complete).toBe(true);
    expect(s.bulkRows).toBeGreaterThan(0);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.rows.target).toBe(diff.rows.source);
    // And the tricky rows did move: each is on some target, with its bytes.
    let found = 0;
    for (const t of ['t0', 't1', 't2'] as const) {
      const c = await rootConn(t, e.db);
      try {
        const [rows] = await c.query(
          'SELECT text_mb4, varbin, maybe_empty FROM type_corpus WHERE id >= 9000000000000000',
        );
        for (const r of rows as { text_mb4: string; varbin: Buffer; maybe_empty: string }[]) {
          expect(TRICKY_TEXT).toContain(r.text_mb4);
          expect(r.varbin.toString('utf8')).toBe(r.text_mb4);
          found++;
        }
      } finally {
        await c.end();
      }
    }
    expect(found).toBe(2 * TRICKY_TEXT.length);
  });
});
