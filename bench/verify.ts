/**
 * Verify: reshard's full and incremental verify beside two server-side chunk checksums run over
 * the same rows on both sides (sources s0, s1 and targets t0, t1, t2), one connection per server,
 * all servers in parallel:
 *
 *   crc32-chunk   pt-table-checksum's query: COUNT(*), BIT_XOR(CAST(CRC32(CONCAT_WS('#', cols…,
 *                 CONCAT(ISNULL(nullable)…))) AS UNSIGNED)) per chunk of primary-key range, with
 *                 pt's column wrapping (BLOB/TEXT/BINARY as CRC32(col), TIMESTAMP as UNIX_TIMESTAMP,
 *                 strings converted to utf8mb4), as `pt-table-checksum --explain` prints it.
 *   md5-64-chunk  the same chunks with SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(…)), 16), 16, 10) AS
 *                 UNSIGNED)): 64 bits per row and a sum, so equal corruptions do not cancel
 *                 (the CAST keeps the SUM exact instead of DOUBLE).
 *
 * Chunks are walked as pt-table-checksum does: primary-key ranges found on the index, sized
 * toward 0.5 s each (starting at 1000 rows). rows = rows of the data set (each counted once,
 * though every tool reads it on both sides), so rows/s compare directly.
 *
 * Incremental: 1% of the rows of every table are updated on the sources, `reshard tail
 * --until-caught-up` carries them over (recording what changed), then `reshard verify
 * --incremental` re-checks; its time is compared with the full verify's (wall clock, start-up
 * included; the note adds the ratio of the times verify reports for itself, and how many changed
 * keys it looked up).
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { reshardCopy } from './copy.js';
import {
  failureNote,
  INSTALL_HINT,
  type Instance,
  lastJson,
  log,
  qi,
  quiet,
  SOURCES,
  TARGETS,
} from './harness.js';
import { missing, type Row, row } from './report.js';
import type { BenchEnv } from './sandbox.js';

export async function benchVerify(env: BenchEnv, rows: Row[]): Promise<void> {
  const { cli, shop } = env;
  const why = cli.unavailable('verify', ['--plan', '--control']);
  // reshard verify needs the job and the targets reshard copy creates; the peers only the data.
  if (!shop.targetsFilled) {
    log('verify: the targets are empty; running reshard copy first (not reported as copy)');
    await reshardCopy(env, 'copy (setup for verify)');
  }
  let fullSeconds = Number.NaN;
  let fullOwn: number | undefined;
  if (why) {
    rows.push(missing('verify', 'reshard', 'rows_per_s', why), missing('verify', 'reshard', 'seconds', why));
  } else if (shop.targetsFilled !== 'reshard') {
    const note = 'needs reshard copy (not available yet)';
    rows.push(
      missing('verify', 'reshard', 'rows_per_s', note),
      missing('verify', 'reshard', 'seconds', note),
    );
  } else {
    await quiet('verify');
    log('verify: reshard verify (full)');
    const r = await cli.run(verifyArgs(env, false), { memoryLabel: 'verify', rows: shop.rows });
    if (r.code === 0 || r.code === 4) {
      fullSeconds = r.seconds;
      fullOwn = reportOf(r.stdout)?.seconds;
      const note = [
        selfReported(r.stdout),
        r.code === 4 ? 'reported differences (exit 4): the copy is not exact' : undefined,
      ]
        .filter(Boolean)
        .join('; ');
      rows.push(
        row('verify', 'reshard', 'rows_per_s', Math.round(shop.rows / r.seconds), shop.rows, note),
        row('verify', 'reshard', 'seconds', r.seconds, shop.rows, note),
      );
      if (fullOwn !== undefined)
        rows.push(
          row('verify', 'reshard', 'own_seconds', fullOwn, shop.rows, 'the time verify reports for itself'),
        );
    } else {
      const note = failureNote('reshard verify', r);
      rows.push(
        missing('verify', 'reshard', 'rows_per_s', note),
        missing('verify', 'reshard', 'seconds', note),
      );
    }
  }

  const agreement = await ptAgreement(env);
  for (const kind of ['crc32-chunk', 'md5-64-chunk'] as const) {
    await quiet('verify');
    log(`verify: ${kind} over sources and targets`);
    const res = await chunkChecksum(env, kind);
    rows.push(
      row(
        'verify',
        kind,
        'rows_per_s',
        Math.round(shop.rows / res.seconds),
        shop.rows,
        kind === 'crc32-chunk' ? `${res.chunks} chunks; ${agreement}` : `${res.chunks} chunks`,
      ),
      row('verify', kind, 'seconds', res.seconds, shop.rows),
    );
  }

  rows.push(...(await incremental(env, fullSeconds, fullOwn, why)));
}

function verifyArgs(env: BenchEnv, incremental: boolean): string[] {
  const args = ['verify', '--plan', env.shop.plan, '--control', env.controlDsn];
  if (incremental) args.push('--incremental');
  if (env.cli.command('verify').help.includes('--json')) args.push('--json');
  return args;
}

async function incremental(
  env: BenchEnv,
  fullSeconds: number,
  fullOwn: number | undefined,
  verifyMissing: string | undefined,
): Promise<Row[]> {
  const { cli, shop } = env;
  const metric = 'incremental_seconds';
  const fixed = 'incremental_fixed_seconds';
  const neither = (why: string) => [
    missing('verify', 'reshard', metric, why),
    missing('verify', 'reshard', fixed, why),
  ];
  const why =
    verifyMissing ??
    cli.unavailable('verify', ['--incremental']) ??
    cli.unavailable('tail', ['--plan', '--until-caught-up']) ??
    (Number.isFinite(fullSeconds) ? undefined : 'needs a full verify first');
  if (why) return neither(why);
  const changed = await changeOnePercent(env);
  log(`verify: changed ${changed} rows (1%) on the sources; reshard tail --until-caught-up`);
  const tailArgs = ['tail', '--plan', shop.plan, '--control', env.controlDsn, '--until-caught-up'];
  if (cli.command('tail').help.includes('--json')) tailArgs.push('--json');
  const t = await cli.run(tailArgs, { memoryLabel: 'tail (1% of shop)', rows: changed });
  if (t.code !== 0) return neither(failureNote('reshard tail', t));
  await quiet('verify');
  log('verify: reshard verify --incremental');
  const r = await cli.run(verifyArgs(env, true), { memoryLabel: 'verify --incremental', rows: changed });
  if (r.code !== 0 && r.code !== 4) return neither(failureNote('reshard verify --incremental', r));
  const pct = ((r.seconds / fullSeconds) * 100).toFixed(1);
  const report = reportOf(r.stdout);
  const notes = [`${changed} rows changed (1%)`, `${pct}% of the full verify`];
  if (report?.seconds !== undefined) {
    notes.push(
      `own timing ${report.seconds.toFixed(2)} s${fullOwn ? ` (${((report.seconds / fullOwn) * 100).toFixed(1)}% of the full's)` : ''}`,
    );
  }
  if (report?.keys !== undefined)
    notes.push(
      `${report.keys} changed keys looked up${report.lookups !== undefined ? ` (${report.lookups} lookups over the shards)` : ''}`,
    );
  if (r.code === 4) notes.push('reported differences (exit 4)');
  const out = [row('verify', 'reshard', metric, r.seconds, changed, notes.join('; '))];
  // The same command again, with nothing changed since the clean run just made: what an
  // incremental run costs before it looks up a single key (process start, connections, table
  // definitions, run records). It does not grow with the data; the lookups do.
  if (r.code !== 0) out.push(missing('verify', 'reshard', fixed, 'needs a clean incremental run first'));
  else {
    await quiet('verify');
    log('verify: reshard verify --incremental again, nothing changed (its fixed cost)');
    const again = await cli.run(verifyArgs(env, true), {
      memoryLabel: 'verify --incremental (no change)',
      rows: 0,
    });
    if (again.code !== 0)
      out.push(
        missing('verify', 'reshard', fixed, failureNote('reshard verify --incremental (no change)', again)),
      );
    else {
      const perChange = r.seconds - again.seconds;
      out.push(
        row(
          'verify',
          'reshard',
          fixed,
          again.seconds,
          0,
          `incremental verify with nothing changed: ${((again.seconds / fullSeconds) * 100).toFixed(1)}% of the full verify; the ${changed} changed rows added ${perChange.toFixed(3)} s (${((perChange / fullSeconds) * 100).toFixed(1)}% of the full)`,
        ),
      );
    }
  }
  if (report?.seconds !== undefined)
    out.push(
      row(
        'verify',
        'reshard',
        'incremental_own_seconds',
        report.seconds,
        changed,
        'the time verify reports for itself: what cutover pays under the freeze, where verify runs in-process',
      ),
    );
  return out;
}

/** What verify reports about itself in its --json output: its own time, keys looked up. */
function reportOf(stdout: string): { seconds?: number; keys?: number; lookups?: number } | undefined {
  const report = (lastJson(stdout)?.report ?? lastJson(stdout)) as
    | { seconds?: unknown; tables?: { keys?: unknown; lookups?: unknown }[] }
    | undefined;
  if (!report) return undefined;
  const keyed = (report.tables ?? []).filter((t) => typeof t.keys === 'number');
  return {
    ...(typeof report.seconds === 'number' ? { seconds: report.seconds } : {}),
    ...(keyed.length > 0 ? { keys: keyed.reduce((a, t) => a + Number(t.keys), 0) } : {}),
    ...(keyed.some((t) => typeof t.lookups === 'number')
      ? { lookups: keyed.reduce((a, t) => a + Number(t.lookups ?? 0), 0) }
      : {}),
  };
}

/** The time verify reports for itself (without process start-up), from its --json output. */
function selfReported(stdout: string): string | undefined {
  const seconds = reportOf(stdout)?.seconds;
  return seconds !== undefined ? `own timing ${seconds.toFixed(2)} s` : undefined;
}

/**
 * Whether the crc32-chunk expression is pt-table-checksum's: compared, table by table, with the
 * queries `pt-table-checksum --explain` prints (it reads the schema, checksums nothing).
 */
async function ptAgreement(env: BenchEnv): Promise<string> {
  const { h, peers, shop } = env;
  if (!peers.ptTableChecksum)
    return `pt-table-checksum not installed, query not cross-checked; ${INSTALL_HINT}`;
  const r = await h.run(
    peers.ptTableChecksum,
    [
      '--explain',
      `h=127.0.0.1,P=${h.ports.s0},u=root`,
      '--databases',
      shop.database,
      '--no-check-binlog-format',
      '--no-check-replication-filters',
      '--recursion-method=none',
    ],
    { label: 'pt-table-checksum --explain' },
  );
  const differ: string[] = [];
  await h.withConn('s0', async (c) => {
    for (const t of shop.tables) {
      const { cols } = await tableColumns(c, shop.database, t);
      if (!r.stdout.includes(`CRC32(${rowExpression(cols)}) AS UNSIGNED`)) differ.push(t);
    }
  });
  const same = shop.tables.length - differ.length;
  return differ.length === 0
    ? 'row expression identical to pt-table-checksum --explain'
    : `row expression identical to pt-table-checksum --explain on ${same} of ${shop.tables.length} tables (not: ${differ.join(', ')})`;
}

/** A change to a non-key column for each shop table (the shard key and primary key stay). */
const CHANGES: Record<string, string> = {
  users: 'balance = IF(balance > 0, balance - 1, balance + 1)',
  orders: 'total = IF(total > 0, total - 1, total + 1)',
  order_items: 'qty = IF(qty > 0, qty - 1, qty + 1)',
  coupons: "redeemed_at = '2001-02-03 04:05:06.000007'",
  group: '`order` = IF(`order` > 0, `order` - 1, `order` + 1)',
  type_corpus: "maybe_empty = IF(maybe_empty = 'bench', 'bench2', 'bench')",
};

/** Update 1% of every table's rows (chosen by a hash of the primary key) on the sources. */
async function changeOnePercent(env: BenchEnv): Promise<number> {
  let changed = 0;
  for (const s of SOURCES) {
    await env.h.withConn(s, async (c) => {
      for (const t of env.shop.tables) {
        const set = CHANGES[t];
        if (!set) continue;
        const { pk } = await tableColumns(c, env.shop.database, t);
        const [res] = await c.query(
          `UPDATE ${qi(env.shop.database)}.${qi(t)} SET ${set} WHERE MOD(CRC32(CONCAT_WS('#', ${pk.map(qi).join(', ')})), 100) = 0`,
        );
        changed += (res as { affectedRows: number }).affectedRows;
      }
    });
  }
  return changed;
}

interface Column {
  name: string;
  type: string;
  nullable: boolean;
}

async function tableColumns(
  c: Connection,
  db: string,
  table: string,
): Promise<{ cols: Column[]; pk: string[] }> {
  const [cols] = await c.query<RowDataPacket[]>(
    `SELECT COLUMN_NAME AS name, DATA_TYPE AS type, IS_NULLABLE AS nullable
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [db, table],
  );
  const [pk] = await c.query<RowDataPacket[]>(
    `SELECT COLUMN_NAME AS name FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`,
    [db, table],
  );
  return {
    cols: cols.map((r) => ({
      name: String(r.name),
      type: String(r.type).toLowerCase(),
      nullable: r.nullable === 'YES',
    })),
    pk: pk.map((r) => String(r.name)),
  };
}

/**
 * pt-table-checksum 3.2.1's per-row expression (RowChecksum::make_row_checksum, default options),
 * as `pt-table-checksum --explain` prints it for the shop tables.
 */
export function rowExpression(cols: Column[]): string {
  const parts = cols.map((c) => {
    const col = qi(c.name);
    if (c.type === 'timestamp') return `UNIX_TIMESTAMP(${col})`;
    if (/blob|text|binary/.test(c.type)) return `CRC32(${col})`;
    if (/^(var)?char$|^enum$|^set$/.test(c.type)) return `convert(${col} using utf8mb4)`;
    return col;
  });
  const nulls = cols.filter((c) => c.nullable);
  if (nulls.length) parts.push(`CONCAT(${nulls.map((c) => `ISNULL(${qi(c.name)})`).join(', ')})`);
  return parts.length > 1 ? `CONCAT_WS('#', ${parts.join(', ')})` : parts[0]!;
}

/** `(a, b) >= (?, ?)` expanded as pt writes it, so every server uses the index range. */
function pkCompare(pk: string[], op: '>=' | '<='): string {
  const strict = op === '>=' ? '>' : '<';
  const terms = pk.map((_, i) => {
    const eq = pk.slice(0, i).map((c) => `${qi(c)} = ?`);
    const last = i === pk.length - 1 ? op : strict;
    return `(${[...eq, `${qi(pk[i]!)} ${last} ?`].join(' AND ')})`;
  });
  return `(${terms.join(' OR ')})`;
}

function pkParams(pk: string[], values: unknown[]): unknown[] {
  return pk.flatMap((_, i) => values.slice(0, i + 1));
}

const CHUNK_TIME = 0.5;

/** Checksum every table, chunk by chunk, on one server; returns chunks done. */
async function checksumServer(
  env: BenchEnv,
  inst: Instance,
  kind: 'crc32-chunk' | 'md5-64-chunk',
): Promise<number> {
  const db = env.shop.database;
  return env.h.withConn(inst, async (c) => {
    let chunks = 0;
    for (const t of env.shop.tables) {
      const { cols, pk } = await tableColumns(c, db, t);
      const expr = rowExpression(cols);
      const agg =
        kind === 'crc32-chunk'
          ? `COALESCE(LOWER(CONV(BIT_XOR(CAST(CRC32(${expr}) AS UNSIGNED)), 10, 16)), 0)`
          : `COALESCE(SUM(CAST(CONV(LEFT(MD5(${expr}), 16), 16, 10) AS UNSIGNED)), 0)`;
      const from = `${qi(db)}.${qi(t)} FORCE INDEX(PRIMARY)`;
      const pkList = pk.map(qi).join(', ');
      const [first] = await c.query<RowDataPacket[]>({
        sql: `SELECT ${pkList} FROM ${from} ORDER BY ${pkList} LIMIT 1`,
        rowsAsArray: true,
      });
      let lower = first[0] as unknown[] | undefined;
      let size = 1000;
      while (lower) {
        const t0 = process.hrtime.bigint();
        // pt's "next chunk boundary": this chunk's upper boundary and the next chunk's lower one.
        const [next] = await c.query<RowDataPacket[]>({
          sql: `SELECT ${pkList} FROM ${from} WHERE ${pkCompare(pk, '>=')} ORDER BY ${pkList} LIMIT ${Math.max(0, Math.round(size) - 1)}, 2`,
          values: pkParams(pk, lower),
          rowsAsArray: true,
        });
        const upper = next[0] as unknown[] | undefined;
        const where = upper ? `${pkCompare(pk, '>=')} AND ${pkCompare(pk, '<=')}` : pkCompare(pk, '>=');
        const values = upper ? [...pkParams(pk, lower), ...pkParams(pk, upper)] : pkParams(pk, lower);
        await c.query(`SELECT COUNT(*) AS cnt, ${agg} AS crc FROM ${from} WHERE ${where}`, values);
        chunks++;
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        // Toward CHUNK_TIME per chunk, smoothed like pt-table-checksum's weighted average.
        const target = (size / Math.max(s, 1e-4)) * CHUNK_TIME;
        size = Math.max(100, Math.min(size * 4, 0.25 * size + 0.75 * target));
        lower = next[1] as unknown[] | undefined;
      }
    }
    return chunks;
  });
}

async function chunkChecksum(
  env: BenchEnv,
  kind: 'crc32-chunk' | 'md5-64-chunk',
): Promise<{ seconds: number; chunks: number }> {
  const t0 = process.hrtime.bigint();
  const chunks = await Promise.all([...SOURCES, ...TARGETS].map((i) => checksumServer(env, i, kind)));
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, chunks: chunks.reduce((a, b) => a + b, 0) };
}
