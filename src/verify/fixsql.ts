/**
 * The SQL that would repair the targets, from the differences a run found.
 *
 * One section per shard, each to be run on that shard's server, in one transaction, in this
 * order: DELETE extra and misplaced rows, UPDATE different rows, INSERT missing rows (deletes
 * first, so a key a wrong row holds is free for the right one). Statements name `db`.`table` in
 * full, identifiers are quoted, and every value is an exact literal (numbers unquoted, binary as
 * X'…', non-ASCII text as _utf8mb4 X'…', so no escaping and no sql_mode can change a byte).
 *
 * Each section starts with a line `-- reshard-shard: <name>` so tools can split the file, and sets
 * time_zone to UTC before its transaction (TIMESTAMP literals are read in the session time zone).
 */
import { describeEndpoint } from '../db/connect.js';
import type { RowDiff } from './diff.js';
import type { ShardRole } from './routing.js';
import { literal, pkEquals, tableRef } from './table.js';

export interface FixSqlInput {
  jobName: string;
  runId: number;
  generatedAt: string;
  shards: ReadonlyMap<string, ShardRole>;
  diffs: readonly RowDiff[];
  /** More differences existed than were kept: the file repairs only those listed. */
  truncated: boolean;
}

export interface FixSql {
  text: string;
  statements: number;
}

function repairsOf(d: RowDiff, database: string): { order: number; sql: string }[] {
  const t = d.table;
  const ref = tableRef(database, t);
  const del = { order: 0, sql: `DELETE FROM ${ref} WHERE ${pkEquals(t, d.pk)};` };
  const insert = (row: NonNullable<RowDiff['sourceRow']>) => ({
    order: 1,
    sql: `INSERT INTO ${ref} (${t.sql.columns}) VALUES (${t.columns.map((c, i) => literal(c, row[i] ?? null)).join(', ')});`,
  });
  switch (d.kind) {
    case 'extra':
    case 'misplaced':
      return [del];
    case 'different':
      // The target's row is deleted by its own key bytes (d.pk), the source's image inserted.
      return d.sourceRow ? [del, insert(d.sourceRow)] : [];
    case 'missing':
      return d.sourceRow ? [insert(d.sourceRow)] : [];
  }
}

export function renderFixSql(input: FixSqlInput): FixSql {
  const byShard = new Map<string, { order: number; sql: string }[]>();
  for (const d of input.diffs) {
    const role = input.shards.get(d.shard);
    if (!role) continue;
    const s = repairsOf(d, role.database);
    if (s.length === 0) continue;
    let list = byShard.get(d.shard);
    if (!list) {
      list = [];
      byShard.set(d.shard, list);
    }
    list.push(...s);
  }
  const lines = [
    `-- reshard verify: repairs for job ${input.jobName}, run ${input.runId}, generated ${input.generatedAt}`,
    '-- Run each section on the server it names, while writes are frozen (or after the tailer has',
    '-- caught up), then verify again. Review before running: rows may have changed since the check.',
  ];
  if (input.truncated)
    lines.push('-- NOTE: the run found more differences than it kept; this file repairs only those listed.');
  let statements = 0;
  for (const shard of [...byShard.keys()].sort()) {
    const role = input.shards.get(shard)!;
    const list = byShard.get(shard)!.sort((a, b) => a.order - b.order);
    lines.push(
      '',
      `-- reshard-shard: ${shard}`,
      `-- server: ${describeEndpoint(role.shard.endpoint)}`,
      // TIMESTAMP values were read in UTC; their literals are read in the session time zone.
      "SET time_zone = '+00:00';",
      'SET foreign_key_checks = 0;',
      'START TRANSACTION;',
    );
    for (const s of list) lines.push(s.sql);
    lines.push('COMMIT;', 'SET foreign_key_checks = 1;');
    statements += list.length;
  }
  if (statements === 0) lines.push('', '-- nothing to repair');
  return { text: `${lines.join('\n')}\n`, statements };
}

/** Split a fix file into {shard: SQL text} (for tools and tests). */
export function splitFixSql(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let current: string | undefined;
  let buf: string[] = [];
  const flush = () => {
    if (current !== undefined) out.set(current, buf.join('\n'));
  };
  for (const line of text.split('\n')) {
    const m = /^-- reshard-shard: (.+)$/.exec(line);
    if (m) {
      flush();
      current = m[1]!;
      buf = [];
      continue;
    }
    if (current !== undefined) buf.push(line);
  }
  flush();
  return out;
}
