/**
 * Which tables a DDL statement from the binlog touches, and whether replaying it on a target is
 * safe. Pure: a small tokenizer (quotes, backticks, comments, MySQL's executable comments), not a
 * SQL parser — it reads only the statement's head, which is where DDL names its tables.
 *
 * "Safe to apply" is deliberately narrow: a target holds rows from several sources, so only
 * statements that change the schema and no rows (ALTER TABLE without RENAME or partition
 * maintenance, CREATE INDEX, DROP INDEX) can be replayed there. TRUNCATE, DROP, RENAME and
 * CREATE … on a tracked table would remove or hide other sources' rows; they always stop the
 * tailer.
 */

export type DdlKind =
  | 'alter-table'
  | 'create-table'
  | 'drop-table'
  | 'rename-table'
  | 'truncate-table'
  | 'create-index'
  | 'drop-index'
  | 'drop-database';

export interface TableRef {
  /** Explicit schema qualifier, if the statement gave one. */
  schema?: string;
  table: string;
}

export interface DdlInfo {
  kind: DdlKind;
  /** Tables the statement changes (for drop-database: none; see `database`). */
  tables: TableRef[];
  database?: string;
  /** True when replaying the statement on a target changes no rows (see the header). */
  safeToApply: boolean;
}

type Token = { t: 'word'; v: string; quoted: boolean } | { t: 'punct'; v: string };

/** Tokens of the statement's text, with comments removed and executable comments opened. */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '#' || (c === '-' && sql[i + 1] === '-' && /\s|$/.test(sql[i + 2] ?? ''))) {
      while (i < n && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      if (sql[i + 2] === '!' || (sql[i + 2] === 'M' && sql[i + 3] === '!')) {
        // /*!50100 … */ and /*M!100000 … */ hold SQL the server executes: keep the body.
        i += sql[i + 2] === '!' ? 3 : 4;
        while (i < n && /\d/.test(sql[i]!)) i++;
        const end = sql.indexOf('*/', i);
        const body = sql.slice(i, end < 0 ? n : end);
        out.push(...tokenize(body));
        i = end < 0 ? n : end + 2;
      } else {
        const end = sql.indexOf('*/', i + 2);
        i = end < 0 ? n : end + 2;
      }
    } else if (c === '`' || c === '"' || c === "'") {
      let v = '';
      i++;
      while (i < n) {
        const d = sql[i]!;
        if (d === c) {
          if (sql[i + 1] === c) {
            v += c;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (d === '\\' && c !== '`' && i + 1 < n) {
          v += sql[i + 1];
          i += 2;
          continue;
        }
        v += d;
        i++;
      }
      // Backticks (and double quotes under ANSI_QUOTES) quote identifiers; single quotes are
      // strings, which never name a table in the heads we read.
      out.push(c === "'" ? { t: 'punct', v: "'" } : { t: 'word', v, quoted: true });
    } else if (/[A-Za-z0-9_$\u0080-\uffff]/.test(c)) {
      let j = i;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j]!)) j++;
      out.push({ t: 'word', v: sql.slice(i, j), quoted: false });
      i = j;
    } else {
      out.push({ t: 'punct', v: c });
      i++;
    }
  }
  return out;
}

class Cursor {
  i = 0;
  constructor(readonly toks: Token[]) {}
  peek(k = 0): Token | undefined {
    return this.toks[this.i + k];
  }
  /** Consume the next token if it is the unquoted keyword `kw`. */
  kw(...kws: string[]): boolean {
    const t = this.peek();
    if (t?.t === 'word' && !t.quoted && kws.includes(t.v.toUpperCase())) {
      this.i++;
      return true;
    }
    return false;
  }
  punct(p: string): boolean {
    const t = this.peek();
    if (t?.t === 'punct' && t.v === p) {
      this.i++;
      return true;
    }
    return false;
  }
  /** A possibly qualified name: ident or ident.ident. */
  name(): TableRef | undefined {
    const a = this.peek();
    if (a?.t !== 'word') return undefined;
    this.i++;
    if (this.punct('.')) {
      const b = this.peek();
      if (b?.t !== 'word') return undefined;
      this.i++;
      return { schema: a.v, table: b.v };
    }
    return { table: a.v };
  }
  rest(): Token[] {
    return this.toks.slice(this.i);
  }
}

function hasKeyword(toks: Token[], ...kws: string[]): boolean {
  return toks.some((t) => t.t === 'word' && !t.quoted && kws.includes(t.v.toUpperCase()));
}

/**
 * Classify a statement from a binlog QUERY event. Undefined when it is not DDL on tables
 * (transaction control, CREATE DATABASE, GRANT, …): such statements cannot change tracked rows.
 */
export function classifyDdl(sql: string): DdlInfo | undefined {
  const c = new Cursor(tokenize(sql));
  if (c.kw('ALTER')) {
    c.kw('ONLINE');
    // ALTER IGNORE … ADD UNIQUE deletes the rows that clash, which on a target holding several
    // sources' rows are rows no source deleted: never replayed.
    const ignore = c.kw('IGNORE');
    if (!c.kw('TABLE')) return undefined;
    c.kw('IF') && c.kw('EXISTS');
    const t = c.name();
    if (!t) return undefined;
    const rest = c.rest();
    // ALTER TABLE … RENAME moves the table away; partition maintenance deletes or moves rows.
    const rename = hasKeyword(rest, 'RENAME') && !isRenameColumnOrIndex(rest);
    const tables = [t];
    if (rename) {
      const r = new Cursor(rest);
      while (r.peek() && !r.kw('RENAME')) r.i++;
      r.kw('TO', 'AS');
      const to = r.name();
      if (to) tables.push(to);
    }
    const partition = hasKeyword(rest, 'PARTITION', 'PARTITIONS');
    // EXCHANGE PARTITION p WITH TABLE t swaps t's rows without a row event: t is touched too.
    if (partition && hasKeyword(rest, 'EXCHANGE')) {
      const r = new Cursor(rest);
      while (r.peek() && !(r.kw('WITH') && r.kw('TABLE'))) r.i++;
      const other = r.name();
      if (other) tables.push(other);
    }
    // A table moved off InnoDB cannot roll back what the applier writes; DISCARD TABLESPACE drops
    // the data. (ENGINE=InnoDB, a rebuild, is replayed.)
    const engine = rest.findIndex((t) => t.t === 'word' && !t.quoted && t.v.toUpperCase() === 'ENGINE');
    const engineName = engine < 0 ? undefined : rest.slice(engine + 1).find((t) => t.t === 'word');
    const storage =
      hasKeyword(rest, 'TABLESPACE') || (engine >= 0 && engineName?.v.toUpperCase() !== 'INNODB');
    return {
      kind: rename ? 'rename-table' : 'alter-table',
      tables,
      safeToApply: !rename && !partition && !ignore && !storage,
    };
  }
  if (c.kw('CREATE')) {
    c.kw('OR') && c.kw('REPLACE');
    if (c.kw('TEMPORARY')) return undefined;
    if (c.kw('TABLE')) {
      c.kw('IF') && c.kw('NOT') && c.kw('EXISTS');
      const t = c.name();
      return t ? { kind: 'create-table', tables: [t], safeToApply: false } : undefined;
    }
    c.kw('ONLINE', 'OFFLINE');
    c.kw('UNIQUE', 'FULLTEXT', 'SPATIAL');
    if (c.kw('INDEX')) {
      c.kw('IF') && c.kw('NOT') && c.kw('EXISTS');
      c.name();
      // An index type may stand before ON: CREATE INDEX i USING BTREE ON t (…).
      if (c.kw('USING')) c.kw('BTREE', 'HASH', 'RTREE');
      if (!c.kw('ON')) return undefined;
      const t = c.name();
      return t ? { kind: 'create-index', tables: [t], safeToApply: true } : undefined;
    }
    return undefined;
  }
  if (c.kw('DROP')) {
    if (c.kw('DATABASE', 'SCHEMA')) {
      c.kw('IF') && c.kw('EXISTS');
      const d = c.name();
      return d ? { kind: 'drop-database', tables: [], database: d.table, safeToApply: false } : undefined;
    }
    c.kw('ONLINE', 'OFFLINE');
    if (c.kw('INDEX')) {
      c.kw('IF') && c.kw('EXISTS');
      c.name();
      if (!c.kw('ON')) return undefined;
      const t = c.name();
      return t ? { kind: 'drop-index', tables: [t], safeToApply: true } : undefined;
    }
    if (c.kw('TEMPORARY')) return undefined;
    if (!c.kw('TABLE', 'TABLES')) return undefined;
    c.kw('IF') && c.kw('EXISTS');
    const tables: TableRef[] = [];
    for (;;) {
      const t = c.name();
      if (!t) break;
      tables.push(t);
      if (!c.punct(',')) break;
    }
    return tables.length ? { kind: 'drop-table', tables, safeToApply: false } : undefined;
  }
  if (c.kw('RENAME')) {
    if (!c.kw('TABLE', 'TABLES')) return undefined;
    const tables: TableRef[] = [];
    for (;;) {
      c.kw('IF') && c.kw('EXISTS');
      const a = c.name();
      if (!a) break;
      tables.push(a);
      c.kw('WAIT', 'NOWAIT') && c.name();
      if (!c.kw('TO')) break;
      const b = c.name();
      if (!b) break;
      tables.push(b);
      if (!c.punct(',')) break;
    }
    return tables.length ? { kind: 'rename-table', tables, safeToApply: false } : undefined;
  }
  if (c.kw('TRUNCATE')) {
    c.kw('TABLE');
    const t = c.name();
    return t ? { kind: 'truncate-table', tables: [t], safeToApply: false } : undefined;
  }
  return undefined;
}

/** ALTER TABLE t RENAME COLUMN/INDEX/KEY … renames a part, not the table. */
function isRenameColumnOrIndex(rest: Token[]): boolean {
  for (let i = 0; i < rest.length; i++) {
    const t = rest[i]!;
    if (t.t === 'word' && !t.quoted && t.v.toUpperCase() === 'RENAME') {
      const nx = rest[i + 1];
      if (!(nx?.t === 'word' && !nx.quoted && ['COLUMN', 'INDEX', 'KEY'].includes(nx.v.toUpperCase())))
        return false;
    }
  }
  return true;
}

/**
 * The tracked tables a statement touches: `defaultSchema` is the QUERY event's current database
 * (an unqualified name refers to it); `database` and `tables` are the source shard's database
 * and tracked table names. Table names compare case-sensitively, as on Linux servers.
 */
export function trackedTablesTouched(
  info: DdlInfo,
  defaultSchema: string,
  database: string,
  tables: ReadonlySet<string>,
): string[] {
  if (info.kind === 'drop-database') return info.database === database ? [...tables] : [];
  const hit = new Set<string>();
  for (const t of info.tables) {
    const schema = t.schema ?? defaultSchema;
    if (schema === database && tables.has(t.table)) hit.add(t.table);
  }
  return [...hit];
}

/**
 * What makes two sources' DDL "the same change" for `--apply-ddl` (the tables, and the statement
 * but for spacing and a trailing semicolon): the tailer replays a change on targets shared by
 * several sources once every one of them has reached it (tailer.ts, replayDdl).
 */
export function ddlKey(tables: readonly string[], statement: string): string {
  const text = statement.trim().replace(/;+$/, '').replace(/\s+/g, ' ');
  return `${[...tables].sort().join('\u0000')}\u0001${text}`;
}

/**
 * A table's shape as SHOW CREATE TABLE prints it, without the AUTO_INCREMENT counter (which
 * counts rows, not shape): equal on a target and a source when the target already has every
 * schema change the source made.
 */
export function shapeOfCreate(createTable: string): string {
  // The table options are on the line that starts with the closing parenthesis (column and index
  // lines are indented); only there is AUTO_INCREMENT=N the counter.
  return createTable
    .split('\n')
    .map((line) => (line.startsWith(')') ? line.replace(/ AUTO_INCREMENT=\d+/, '') : line))
    .join('\n');
}
