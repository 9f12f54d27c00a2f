/**
 * The copier's raw page path (copier.ts streamPageRaw → TsvEncoder.addView) writes LOAD DATA
 * fields straight from the source's packet bytes. These rows hold every byte LOAD DATA treats
 * specially — TAB, LF, CR, NUL, backslash, the two characters `\N` (text, not NULL) — in text,
 * VARBINARY and BLOB columns, every byte value 0–255 in a BLOB, BIT patterns, and integer shard
 * keys beyond 2^53 (routed from their text). The copy must be byte-identical on the new owners.
 * Text columns load as CHARACTER SET binary when they store utf8mb4; a latin1 column must still be
 * converted by the server (its bytes differ from the utf8mb4 the copier reads).
 */
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootConn } from '../../support/db.js';
import { copyAllAndCompare, type Estate, makeEstate } from './helpers.js';

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
  // Runs longer than 32 bytes between escapes (copied natively, not byte by byte).
  'a long run of plain text before a tab\there, a longer run of text before a backslash\\ and one before a newline\n',
];

/** Run a statement on the source that owns a shard key (hash-mod crc32 over s0, s1). */
async function onOwner(db: string, key: string, sql: string, params: unknown[]): Promise<void> {
  const c = await rootConn(crc32(Buffer.from(key)) % 2 === 0 ? 's0' : 's1', db);
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

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
            await onOwner(
              db,
              userId,
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
          }
        }
      },
    });
  });
  afterAll(async () => {
    await e?.drop();
  });

  it('copies every special byte exactly', async () => {
    await copyAllAndCompare(e);
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

describe('copy: a latin1 text column', () => {
  // ISO-8859-1 characters only (the same bytes in MariaDB's latin1, which is cp1252).
  const NAMES = ['café', 'naïve Ünïcödé', 'pound £ and ÿ', 'tab\tand\\backslash'];
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({
      prefix: 'copylatin1',
      rows: 100,
      seed: 6,
      afterSeed: async (db) => {
        // The seeded names hold emoji: make them ASCII, then the column latin1 on every shard.
        for (const shard of ['s0', 's1', 't0', 't1', 't2'] as const) {
          const c = await rootConn(shard, db);
          try {
            await c.query("UPDATE users SET name = CONCAT('user ', id)");
            await c.query(
              'ALTER TABLE users MODIFY name VARCHAR(191) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL',
            );
          } finally {
            await c.end();
          }
        }
        for (const [i, name] of NAMES.entries()) {
          const id = (8_000_000_000n + BigInt(i)).toString();
          await onOwner(
            db,
            id,
            "INSERT INTO users (id, email, name, balance, created_at) VALUES (?, ?, ?, 0, '2024-01-01 00:00:00')",
            [id, `latin1-${i}@example.com`, name],
          );
        }
      },
    });
  });
  afterAll(async () => {
    await e?.drop();
  });

  it('stores the same characters (latin1 bytes) on the new owners', async () => {
    await copyAllAndCompare(e);
    const stored: string[] = [];
    for (const t of ['t0', 't1', 't2'] as const) {
      const c = await rootConn(t, e.db);
      try {
        const [rows] = await c.query('SELECT HEX(name) AS h FROM users WHERE id >= 8000000000 ORDER BY id');
        for (const r of rows as { h: string }[]) stored.push(r.h);
      } finally {
        await c.end();
      }
    }
    // latin1 bytes (é = E9); utf8mb4 bytes loaded as they are would read back as two characters each.
    expect(stored.sort()).toEqual(
      NAMES.map((n) => Buffer.from(n, 'latin1').toString('hex').toUpperCase()).sort(),
    );
  });
});
