/**
 * Table definitions as reshard needs them: ordered columns with canonical types, and the primary
 * key. Read from information_schema (never by parsing SHOW CREATE TABLE), canonicalized so that
 * the same table reads the same on MySQL and MariaDB, and compared column by column.
 *
 * Canonicalization removes only differences that cannot change a stored or returned value:
 *   - integer and YEAR display widths (`int(11)` on MariaDB/MySQL 5.7, `int` on MySQL 8.0.19+);
 *   - letter case of type names and attributes (never of ENUM/SET members);
 *   - the `utf8` alias of `utf8mb3` in charset and collation names;
 *   - how defaults are spelled (`'a'` on MariaDB vs `a` on MySQL, `current_timestamp()` vs
 *     `CURRENT_TIMESTAMP`, "no default" vs DEFAULT NULL on a nullable column);
 *   - MySQL's DEFAULT_GENERATED marker, and spacing, backquotes, charset introducers and outer
 *     parentheses in generation expressions.
 * Everything else — signedness, lengths, precision, charset, collation, nullability, defaults,
 * generated expressions, AUTO_INCREMENT, INVISIBLE, primary key columns and prefixes — counts.
 * (MariaDB's JSON is LONGTEXT and MySQL's is a binary type that rewrites documents: a real
 * difference, kept.)
 *
 * Lifecycle: readTableDefinition (I/O) → diffTableDefinitions (pure) → columnSql for the fix.
 */
import type { Connection } from 'mysql2/promise';
import { q, qcols, qt } from '../db/quote.js';
import { PreconditionError } from '../errors.js';

export type ColumnDefault =
  | { kind: 'none' }
  | { kind: 'null' }
  | { kind: 'literal'; value: string }
  | { kind: 'expression'; sql: string };

export interface ColumnDefinition {
  name: string;
  /** 1-based position. */
  position: number;
  /** Canonical full type: `int unsigned`, `varchar(64)`, `decimal(19,4)`, `enum('a','B')`. */
  type: string;
  /** Lowercase base type: `int`, `varchar`, `decimal`, `enum`. */
  dataType: string;
  nullable: boolean;
  default: ColumnDefault;
  charset: string | null;
  collation: string | null;
  generated: { expression: string; stored: boolean } | null;
  autoIncrement: boolean;
  /** Canonical ON UPDATE expression, e.g. `current_timestamp(6)`. */
  onUpdate: string | null;
  invisible: boolean;
}

export interface IndexDefinition {
  name: string;
  unique: boolean;
  columns: { name: string; prefix: number | null }[];
}

export interface TableDefinition {
  database: string;
  table: string;
  /** `BASE TABLE`, `VIEW`, … */
  tableType: string;
  engine: string | null;
  columns: ColumnDefinition[];
  /** Primary key column names in key order; empty when the table has none. */
  primaryKey: string[];
  /** Prefix length per primary key column (null = whole column), parallel to primaryKey. */
  primaryKeyPrefixes: (number | null)[];
  /** Unique indexes other than PRIMARY (candidates for a primary key). */
  uniqueKeys: IndexDefinition[];
  /**
   * CHECK constraints (MariaDB 10.2+, MySQL 8.0.16+; MariaDB's JSON is LONGTEXT plus one):
   * `clause` as the server prints it, `canonical` compared. Absent where not read.
   */
  checks?: { name: string; clause: string; canonical: string }[];
}

export const INTEGER_TYPES: ReadonlySet<string> = new Set([
  'tinyint',
  'smallint',
  'mediumint',
  'int',
  'integer',
  'bigint',
]);
const STRING_TYPES = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext']);
const BINARY_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);
const FLOAT_TYPES = new Set(['float', 'double', 'real', 'double precision']);

export function isIntegerType(c: Pick<ColumnDefinition, 'dataType'>): boolean {
  return INTEGER_TYPES.has(c.dataType);
}
export function isStringType(c: Pick<ColumnDefinition, 'dataType'>): boolean {
  return STRING_TYPES.has(c.dataType);
}
export function isBinaryType(c: Pick<ColumnDefinition, 'dataType'>): boolean {
  return BINARY_TYPES.has(c.dataType);
}
export function isFloatType(c: Pick<ColumnDefinition, 'dataType'>): boolean {
  return FLOAT_TYPES.has(c.dataType.toLowerCase());
}

/**
 * The SELECT list reshard reads rows with: every column by name, except that FLOAT and DOUBLE
 * columns are read as `(col + 0e0) AS col`. The server prints a FLOAT with 6 significant digits
 * (16777215 as 16777200, 1.2345678 as 1.23457) and FLOAT(M,D)/DOUBLE(M,D) with D decimals, so a
 * row copied or compared from that text would change, or two different values would look
 * equal; as a DOUBLE it prints every digit needed to get the exact value back (the float's
 * exact double value, which a FLOAT column stores back unchanged).
 */
export function selectList(cols: readonly Pick<ColumnDefinition, 'name' | 'dataType'>[]): string {
  return cols.map((c) => (isFloatType(c) ? `(${q(c.name)} + 0e0) AS ${q(c.name)}` : q(c.name))).join(', ');
}

/** `utf8` is `utf8mb3` under another name (MySQL 8.0.30+ and MariaDB 10.6+ print the latter). */
export function canonicalCharset(name: string | null): string | null {
  if (name === null) return null;
  const n = name.toLowerCase();
  return n === 'utf8' || n.startsWith('utf8_') ? n.replace(/^utf8/, 'utf8mb3') : n;
}

/** Canonical COLUMN_TYPE: lowercase keywords, no integer/YEAR display width, ENUM/SET members untouched. */
export function canonicalType(columnType: string): string {
  const m = /^\s*([A-Za-z]+)\s*(\((?:[^()'"]|'(?:[^']|'')*'|"(?:[^"]|"")*")*\))?\s*(.*)$/s.exec(columnType);
  if (!m) return columnType.trim().toLowerCase();
  let base = m[1]!.toLowerCase();
  if (base === 'integer') base = 'int';
  let args = m[2] ?? '';
  const attrs = (m[3] ?? '').trim().toLowerCase().replace(/\s+/g, ' ');
  // A display width means nothing to the value, except under ZEROFILL, where it is the number
  // of digits every client is sent (INT(5) ZEROFILL reads 00042, INT(10) ZEROFILL 0000000042).
  if ((INTEGER_TYPES.has(base) && !/\bzerofill\b/.test(attrs)) || base === 'year') args = '';
  else if (base !== 'enum' && base !== 'set') args = args.replace(/\s+/g, '');
  return `${base}${args}${attrs ? ` ${attrs}` : ''}`;
}

/**
 * `current_timestamp()` → `current_timestamp` (MariaDB prints the empty parentheses); any other
 * expression as a generation expression is (string literals byte for byte: lowercasing the
 * whole text made DEFAULT (concat('Ab','c')) equal to concat('ab','c')).
 */
function canonicalExpressionDefault(sql: string): string {
  const s = sql.trim().toLowerCase();
  const ts =
    /^(current_timestamp|now|localtime|localtimestamp)\s*\(\s*(\d*)\s*\)$|^(current_timestamp|localtime|localtimestamp)$/.exec(
      s,
    );
  if (ts) {
    const p = ts[2];
    return p && p !== '0' ? `current_timestamp(${p})` : 'current_timestamp';
  }
  return canonicalGenerationExpression(sql);
}

/** Backslash escapes of a string literal (`\n` …); any other escaped character stands for itself. */
const LITERAL_ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '0': '\0', Z: '\x1a', b: '\b' };

/** A string literal's body as MariaDB prints it in COLUMN_DEFAULT (backslash escapes, '' for '), decoded in one pass. */
function unescapeLiteral(body: string, quote: "'" | '"' = "'"): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && i + 1 < body.length) {
      const d = body[++i]!;
      out += LITERAL_ESCAPES[d] ?? d;
    } else if (c === quote && body[i + 1] === quote) {
      out += quote;
      i++;
    } else out += c;
  }
  return out;
}

const NUMERIC_LITERAL = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;
const BIT_OR_HEX_LITERAL = /^(b'[01]*'|x'[0-9a-f]*'|0x[0-9a-f]+)$/i;
const TIMESTAMP_EXPR = /^(current_timestamp|now|localtime|localtimestamp)(\s*\(\s*\d*\s*\))?$/i;

/**
 * Interpret COLUMN_DEFAULT, whose spelling differs: MariaDB 10.2.7+ quotes string literals and
 * writes NULL as the text `NULL`; MySQL leaves literals unquoted and marks expressions with
 * DEFAULT_GENERATED in EXTRA (CURRENT_TIMESTAMP on 5.7 has no marker).
 */
export function canonicalDefault(
  raw: string | null,
  nullable: boolean,
  extra: string,
  flavor: 'mysql' | 'mariadb',
  generated: boolean,
): ColumnDefault {
  if (generated) return { kind: 'none' };
  if (flavor === 'mariadb') {
    if (raw === null) return nullable ? { kind: 'null' } : { kind: 'none' };
    if (raw === 'NULL') return { kind: 'null' };
    if (raw.startsWith("'") && raw.endsWith("'") && raw.length >= 2)
      return { kind: 'literal', value: unescapeLiteral(raw.slice(1, -1)) };
    if (NUMERIC_LITERAL.test(raw) || BIT_OR_HEX_LITERAL.test(raw)) return { kind: 'literal', value: raw };
    return { kind: 'expression', sql: canonicalExpressionDefault(raw) };
  }
  if (raw === null) return nullable ? { kind: 'null' } : { kind: 'none' };
  if (/DEFAULT_GENERATED/i.test(extra) || TIMESTAMP_EXPR.test(raw))
    return { kind: 'expression', sql: canonicalExpressionDefault(raw) };
  return { kind: 'literal', value: raw };
}

/**
 * Generation expressions as the two flavors print them differ in spacing, backquotes, charset
 * introducers (`_utf8mb4'x'`) and outer parentheses; string literals are kept byte for byte.
 * Whitespace between two words stays one space: dropped, `CASE c_1 WHEN` ran together into
 * `casec_1when`, whose `_1` then read as a charset introducer, and CASE c_1 … equalled CASE c_2 ….
 */
export function canonicalGenerationExpression(expr: string): string {
  let out = '';
  const word = (ch: string | undefined) => ch !== undefined && /[a-z0-9_$\u0080-\uffff]/i.test(ch);
  let gap = false;
  for (let i = 0; i < expr.length; ) {
    const c = expr[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < expr.length) {
        if (expr[j] === '\\') j += 2;
        else if (expr[j] === c && expr[j + 1] === c) j += 2;
        else if (expr[j] === c) break;
        else j++;
      }
      // A charset introducer right before the literal: a word of its own starting with '_' —
      // but not _binary, which makes the comparison byte for byte ('x' <> _binary'X' holds
      // under a case-insensitive collation, 'x' <> 'X' does not). (The space before a literal is
      // dropped either way: `WHEN 'x'`, `WHEN _utf8mb4'x'`.)
      out = out.replace(/(^|[^a-z0-9_$\u0080-\uffff])_(?!binary$)[a-z0-9]+$/, '$1').replace(/ $/, '');
      gap = false;
      // Decoded in one pass (backslash escapes, doubled quotes), written back in one style.
      const body = unescapeLiteral(expr.slice(i + 1, j), c);
      out += `'${body.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
      i = j + 1;
    } else if (/\s/.test(c)) {
      gap = true;
      i++;
    } else if (c === '`') {
      i++;
    } else {
      if (gap && word(out[out.length - 1]) && word(c)) out += ' ';
      gap = false;
      out += c.toLowerCase();
      i++;
    }
  }
  const wrapped = (s: string) => {
    if (!s.startsWith('(') || !s.endsWith(')')) return false;
    let depth = 0;
    for (let i = 0; i < s.length; i++) {
      if (s[i] === '(') depth++;
      else if (s[i] === ')') depth--;
      if (depth === 0 && i < s.length - 1) return false;
    }
    return true;
  };
  while (wrapped(out)) out = out.slice(1, -1);
  return out;
}

interface ColumnRow {
  name: string;
  position: string | number;
  dflt: string | null;
  nullable: string;
  dataType: string;
  columnType: string;
  charset: string | null;
  collation: string | null;
  extra: string | null;
  genExpr: string | null;
}

/** Build a ColumnDefinition from one information_schema.COLUMNS row (exported for reuse and tests). */
export function columnFromInformationSchema(r: ColumnRow, flavor: 'mysql' | 'mariadb'): ColumnDefinition {
  const extra = r.extra ?? '';
  const genKind = /\b(VIRTUAL|STORED|PERSISTENT)\s+GENERATED\b/i.exec(extra)?.[1]?.toUpperCase();
  const generated =
    genKind !== undefined && r.genExpr !== null
      ? { expression: canonicalGenerationExpression(r.genExpr), stored: genKind !== 'VIRTUAL' }
      : null;
  const nullable = r.nullable === 'YES';
  const onUpdate = /\bon update\s+([a-z_]+(?:\s*\(\s*\d*\s*\))?)/i.exec(extra)?.[1];
  return {
    name: r.name,
    position: Number(r.position),
    type: canonicalType(r.columnType),
    dataType: r.dataType.toLowerCase(),
    nullable,
    default: canonicalDefault(r.dflt, nullable, extra, flavor, generated !== null),
    charset: canonicalCharset(r.charset),
    collation: canonicalCharset(r.collation),
    generated,
    autoIncrement: /\bauto_increment\b/i.test(extra),
    onUpdate: onUpdate ? canonicalExpressionDefault(onUpdate) : null,
    invisible: /\bINVISIBLE\b/i.test(extra),
  };
}

async function detectFlavor(conn: Connection): Promise<'mysql' | 'mariadb'> {
  const [rows] = await conn.query('SELECT VERSION() AS v');
  return /mariadb/i.test(String((rows as { v: string }[])[0]?.v ?? '')) ? 'mariadb' : 'mysql';
}

/**
 * Read a table's definition from information_schema; undefined when no such table exists.
 * `flavor` may be passed when known, saving one round trip.
 */
export async function readTableDefinition(
  conn: Connection,
  database: string,
  table: string,
  opts: { flavor?: 'mysql' | 'mariadb' } = {},
): Promise<TableDefinition | undefined> {
  return (await readTableDefinitions(conn, database, [table], opts)).get(table);
}

/**
 * Several tables' definitions in three information_schema queries (not three per table: a
 * command that checks every table of every shard pays round trips per shard, not per table).
 * Keyed by the names asked for; a missing table is absent.
 */
export async function readTableDefinitions(
  conn: Connection,
  database: string,
  names: readonly string[],
  opts: { flavor?: 'mysql' | 'mariadb' } = {},
): Promise<Map<string, TableDefinition>> {
  const out = new Map<string, TableDefinition>();
  if (names.length === 0) return out;
  const flavor = opts.flavor ?? (await detectFlavor(conn));
  const [tables] = await conn.query(
    'SELECT TABLE_NAME AS name, TABLE_TYPE AS tableType, ENGINE AS engine, @@lower_case_table_names AS lctn FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?)',
    [database, names],
  );
  const trows = tables as { name: string; tableType: string; engine: string | null; lctn: number | string }[];
  // IN compares names by information_schema's case-insensitive collation (`=` looks the table up
  // as the server would): the exact name, else — only where the server itself ignores case
  // (lower_case_table_names 1 or 2) — one equal but for case.
  const found = new Map<string, (typeof trows)[number]>();
  for (const n of names) {
    const t =
      trows.find((r) => r.name === n) ??
      trows.find((r) => Number(r.lctn) !== 0 && r.name.toLowerCase() === n.toLowerCase());
    if (t) found.set(n, t);
  }
  if (found.size === 0) return out;
  const stored = [...new Set([...found.values()].map((t) => t.name))];
  const [cols] = await conn.query(
    `SELECT TABLE_NAME AS tableName, COLUMN_NAME AS name, ORDINAL_POSITION AS position, COLUMN_DEFAULT AS dflt, IS_NULLABLE AS nullable,
            DATA_TYPE AS dataType, COLUMN_TYPE AS columnType, CHARACTER_SET_NAME AS charset, COLLATION_NAME AS collation,
            EXTRA AS extra, GENERATION_EXPRESSION AS genExpr
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?) ORDER BY TABLE_NAME, ORDINAL_POSITION`,
    [database, stored],
  );
  const [stats] = await conn.query(
    `SELECT TABLE_NAME AS tableName, INDEX_NAME AS indexName, NON_UNIQUE AS nonUnique, SEQ_IN_INDEX AS seq, COLUMN_NAME AS col, SUB_PART AS subPart
       FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?) ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
    [database, stored],
  );
  const checks = await readChecks(conn, database, stored, flavor);
  for (const [asked, t] of found) {
    const indexes = new Map<string, IndexDefinition>();
    for (const s of stats as {
      tableName: string;
      indexName: string;
      nonUnique: string | number;
      seq: string | number;
      col: string | null;
      subPart: string | number | null;
    }[]) {
      if (s.tableName !== t.name) continue;
      if (s.col === null) continue; // functional key part (MySQL 8): not a column
      let idx = indexes.get(s.indexName);
      if (!idx) {
        idx = { name: s.indexName, unique: Number(s.nonUnique) === 0, columns: [] };
        indexes.set(s.indexName, idx);
      }
      idx.columns.push({ name: s.col, prefix: s.subPart === null ? null : Number(s.subPart) });
    }
    const pk = indexes.get('PRIMARY');
    out.set(asked, {
      database,
      table: t.name,
      tableType: t.tableType,
      engine: t.engine,
      columns: (cols as (ColumnRow & { tableName: string })[])
        .filter((r) => r.tableName === t.name)
        .map((r) => columnFromInformationSchema(r, flavor)),
      primaryKey: pk ? pk.columns.map((c) => c.name) : [],
      primaryKeyPrefixes: pk ? pk.columns.map((c) => c.prefix) : [],
      uniqueKeys: [...indexes.values()].filter((i) => i.unique && i.name !== 'PRIMARY'),
      checks: checks.get(t.name) ?? [],
    });
  }
  return out;
}

/**
 * The CHECK constraints of `tables`, by table. A constraint only on a target refuses rows the
 * source holds (a copy died at its 20 001st row); one only on a source is a rule the targets
 * would not keep after cutover (MariaDB's JSON without its json_valid() check takes any text).
 */
async function readChecks(
  conn: Connection,
  database: string,
  tables: readonly string[],
  flavor: 'mysql' | 'mariadb',
): Promise<Map<string, { name: string; clause: string; canonical: string }[]>> {
  const out = new Map<string, { name: string; clause: string; canonical: string }[]>();
  let rows: { tableName: string; name: string; clause: string }[];
  try {
    // MySQL's CHECK_CONSTRAINTS names no table (constraint names are unique per schema there).
    const [r] = await conn.query(
      flavor === 'mariadb'
        ? `SELECT TABLE_NAME AS tableName, CONSTRAINT_NAME AS name, CHECK_CLAUSE AS clause
             FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME IN (?)`
        : `SELECT tc.TABLE_NAME AS tableName, cc.CONSTRAINT_NAME AS name, cc.CHECK_CLAUSE AS clause
             FROM information_schema.TABLE_CONSTRAINTS tc JOIN information_schema.CHECK_CONSTRAINTS cc
               ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
            WHERE tc.CONSTRAINT_TYPE = 'CHECK' AND tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME IN (?)`,
      [database, tables],
    );
    rows = r as typeof rows;
  } catch (e) {
    // MySQL 5.7 and MariaDB before 10.2 have no CHECK_CONSTRAINTS (and enforce no CHECK).
    if ((e as { errno?: number }).errno === 1109) return out;
    throw e;
  }
  for (const r of rows) {
    let list = out.get(String(r.tableName));
    if (!list) {
      list = [];
      out.set(String(r.tableName), list);
    }
    const clause = String(r.clause);
    list.push({ name: String(r.name), clause, canonical: canonicalGenerationExpression(clause) });
  }
  return out;
}

/** readTableDefinition for callers that cannot continue without the table (copy, verify). */
export async function requireTableDefinition(
  conn: Connection,
  database: string,
  table: string,
  where: string,
  opts: { flavor?: 'mysql' | 'mariadb' } = {},
): Promise<TableDefinition> {
  return (await requireTableDefinitions(conn, database, [table], where, opts))[0]!;
}

/** readTableDefinitions for callers that cannot continue without every table, in the order asked. */
export async function requireTableDefinitions(
  conn: Connection,
  database: string,
  tables: readonly string[],
  where: string,
  opts: { flavor?: 'mysql' | 'mariadb' } = {},
): Promise<TableDefinition[]> {
  const defs = await readTableDefinitions(conn, database, tables, opts);
  return tables.map((table) => {
    const def = defs.get(table);
    if (!def) {
      throw new PreconditionError(
        'E_TABLE_MISSING',
        `${where}: table ${qt(database, table)} does not exist`,
        {
          where,
          hint: 'create it with the same definition as on the other shards (SHOW CREATE TABLE there), or fix `tables` in the topology',
        },
      );
    }
    return def;
  });
}

function sqlString(s: string): string {
  // Control characters and backslashes as hex: no sql_mode (NO_BACKSLASH_ESCAPES) changes them.
  if (/[\u0000-\u001f\\]/.test(s))
    return `_utf8mb4 X'${Buffer.from(s, 'utf8').toString('hex').toUpperCase()}'`;
  return `'${s.replace(/'/g, "''")}'`;
}

function defaultSql(c: ColumnDefinition): string | undefined {
  const d = c.default;
  switch (d.kind) {
    case 'none':
      return undefined;
    case 'null':
      return 'NULL';
    case 'expression':
      return /^current_timestamp/.test(d.sql) ? d.sql.toUpperCase() : `(${d.sql})`;
    case 'literal':
      return (INTEGER_TYPES.has(c.dataType) || /^(decimal|float|double|bit)$/.test(c.dataType)) &&
        (NUMERIC_LITERAL.test(d.value) || BIT_OR_HEX_LITERAL.test(d.value))
        ? d.value
        : sqlString(d.value);
  }
}

/**
 * The column's definition as SQL (what follows the name in CREATE/ALTER TABLE). Also the
 * canonical text two columns are compared by.
 */
export function columnSql(c: ColumnDefinition): string {
  const parts = [c.type];
  if (c.charset !== null && c.collation !== null)
    parts.push(`CHARACTER SET ${c.charset} COLLATE ${c.collation}`);
  if (c.generated) {
    parts.push(`AS (${c.generated.expression}) ${c.generated.stored ? 'STORED' : 'VIRTUAL'}`);
    if (!c.nullable) parts.push('NOT NULL');
  } else {
    parts.push(c.nullable ? 'NULL' : 'NOT NULL');
    const d = defaultSql(c);
    if (d !== undefined) parts.push(`DEFAULT ${d}`);
  }
  if (c.onUpdate) parts.push(`ON UPDATE ${c.onUpdate.toUpperCase()}`);
  if (c.autoIncrement) parts.push('AUTO_INCREMENT');
  if (c.invisible) parts.push('INVISIBLE');
  return parts.join(' ');
}

export function primaryKeySql(def: TableDefinition): string {
  return def.primaryKey
    .map((name, i) => {
      const p = def.primaryKeyPrefixes[i];
      return p === null || p === undefined ? q(name) : `${q(name)}(${p})`;
    })
    .join(', ');
}

export type SchemaDifference =
  | { kind: 'column-missing'; column: string; expected: string; after: string | null }
  | { kind: 'column-extra'; column: string; actual: string }
  /** The same column (names compare without case) spelled otherwise: renamed, not added. */
  | { kind: 'column-name'; column: string; actualName: string; expected: string }
  | { kind: 'column-definition'; column: string; expected: string; actual: string }
  | { kind: 'column-order'; column: string; expected: string; actual: string; after: string | null }
  | { kind: 'primary-key'; expected: string; actual: string }
  /** A UNIQUE key (other than the primary key) on `expected` only, or on `actual` only. */
  | { kind: 'unique-key-missing'; key: string; columns: string }
  | { kind: 'unique-key-extra'; key: string; columns: string }
  /** A CHECK constraint (compared by its clause, not its name) on `expected` only, or on `actual` only. */
  | { kind: 'check-missing'; name: string; clause: string }
  | { kind: 'check-extra'; name: string; clause: string };

/** A unique index by what it constrains (its columns and prefixes), not by its name. */
function uniqueColumnsSql(k: IndexDefinition): string {
  return k.columns.map((c) => (c.prefix === null ? q(c.name) : `${q(c.name)}(${c.prefix})`)).join(', ');
}

/**
 * Differences of `actual` from `expected`, most specific first. Pure: the same inputs always
 * give the same list, in column order of `expected`.
 */
export function diffTableDefinitions(expected: TableDefinition, actual: TableDefinition): SchemaDifference[] {
  const out: SchemaDifference[] = [];
  // Column names compare without case on the server (ADD COLUMN `Amount` beside `amount` fails
  // with 1060): matched so, and a different spelling is a rename.
  const key = (n: string) => n.toLowerCase();
  const actualByName = new Map(actual.columns.map((c) => [key(c.name), c]));
  const expectedNames = new Set(expected.columns.map((c) => key(c.name)));
  expected.columns.forEach((c, i) => {
    const a = actualByName.get(key(c.name));
    const after = i === 0 ? null : expected.columns[i - 1]!.name;
    if (!a) out.push({ kind: 'column-missing', column: c.name, expected: columnSql(c), after });
    else if (a.name !== c.name)
      out.push({ kind: 'column-name', column: c.name, actualName: a.name, expected: columnSql(c) });
    else if (columnSql(a) !== columnSql(c))
      out.push({ kind: 'column-definition', column: c.name, expected: columnSql(c), actual: columnSql(a) });
  });
  for (const a of actual.columns)
    if (!expectedNames.has(key(a.name)))
      out.push({ kind: 'column-extra', column: a.name, actual: columnSql(a) });
  // Order of the columns both have: reshard copies by name, but INSERT … SELECT * style tools,
  // binlog row images (by position) and humans assume one order.
  const common = expected.columns.filter((c) => actualByName.has(key(c.name))).map((c) => key(c.name));
  const actualCommon = actual.columns.filter((c) => expectedNames.has(key(c.name))).map((c) => key(c.name));
  if (common.join('\u0000') !== actualCommon.join('\u0000')) {
    const idx = common.findIndex((n, i) => actualCommon[i] !== n);
    const pos = expected.columns.findIndex((c) => key(c.name) === common[idx]);
    const column = expected.columns[pos]!.name;
    out.push({
      kind: 'column-order',
      column,
      expected: expected.columns
        .filter((c) => actualByName.has(key(c.name)))
        .map((c) => q(c.name))
        .join(', '),
      actual: actual.columns
        .filter((c) => expectedNames.has(key(c.name)))
        .map((c) => q(c.name))
        .join(', '),
      after: pos <= 0 ? null : expected.columns[pos - 1]!.name,
    });
  }
  const pkE = primaryKeySql(expected);
  const pkA = primaryKeySql(actual);
  if (pkE !== pkA)
    out.push({
      kind: 'primary-key',
      expected: pkE ? `PRIMARY KEY (${pkE})` : 'no primary key',
      actual: pkA ? `PRIMARY KEY (${pkA})` : 'no primary key',
    });
  // Secondary UNIQUE keys decide which rows may coexist: one only on a target refuses (or, in an
  // upsert, merges) rows the sources hold side by side; one only on a source is a constraint the
  // application relies on that the targets would not keep.
  const uniqueE = new Map(expected.uniqueKeys.map((k) => [uniqueColumnsSql(k), k]));
  const uniqueA = new Map(actual.uniqueKeys.map((k) => [uniqueColumnsSql(k), k]));
  for (const [cols, k] of uniqueE)
    if (!uniqueA.has(cols)) out.push({ kind: 'unique-key-missing', key: k.name, columns: cols });
  for (const [cols, k] of uniqueA)
    if (!uniqueE.has(cols)) out.push({ kind: 'unique-key-extra', key: k.name, columns: cols });
  const checksE = expected.checks ?? [];
  const checksA = actual.checks ?? [];
  for (const c of checksE)
    if (!checksA.some((a) => sameCheck(a.canonical, c.canonical)))
      out.push({ kind: 'check-missing', name: c.name, clause: c.clause });
  for (const a of checksA)
    if (!checksE.some((c) => sameCheck(a.canonical, c.canonical)))
      out.push({ kind: 'check-extra', name: a.name, clause: a.clause });
  return out;
}

/**
 * Two canonical CHECK clauses that say the same. MySQL 8 parenthesises every operand
 * (`((a >= 0) and (b >= 0))`), MariaDB prints by precedence (`a >= 0 and b >= 0`): where the
 * brackets cannot change the meaning — comparisons joined by only AND or only OR, no arithmetic,
 * NOT or XOR — they are ignored; anywhere else they count.
 */
function sameCheck(a: string, b: string): boolean {
  if (a === b) return true;
  const bare = (s: string) => s.replace(/'(?:[^']|'')*'/g, '');
  const simple = (s: string) => {
    const t = bare(s);
    if (/[-+*/%^|&~]/.test(t.replace(/[<>!]=|<>|<=>|>=|<=/g, ''))) return false;
    const words = new Set(t.split(/[^a-z_]+/));
    if (words.has('not') || words.has('xor')) return false;
    return !(words.has('and') && words.has('or'));
  };
  if (!simple(a) || !simple(b)) return false;
  // Brackets and spaces outside string literals go; the literals stay as they are.
  const strip = (s: string) =>
    s.replace(/('(?:[^']|'')*')|[()\s]/g, (_m, lit: string | undefined) => lit ?? '');
  return strip(a) === strip(b);
}

/** The ALTER TABLE that makes `actual` match `expected` for one difference. */
export function alterFor(diff: SchemaDifference, expected: TableDefinition, database: string): string {
  const t = qt(database, expected.table);
  const col = (name: string) => expected.columns.find((c) => c.name === name);
  const place = (after: string | null) => (after === null ? ' FIRST' : ` AFTER ${q(after)}`);
  switch (diff.kind) {
    case 'column-missing':
      return `ALTER TABLE ${t} ADD COLUMN ${q(diff.column)} ${diff.expected}${place(diff.after)};`;
    case 'column-extra':
      return `ALTER TABLE ${t} DROP COLUMN ${q(diff.column)};`;
    case 'column-name':
      return `ALTER TABLE ${t} CHANGE COLUMN ${q(diff.actualName)} ${q(diff.column)} ${diff.expected};`;
    case 'column-definition':
      return `ALTER TABLE ${t} MODIFY COLUMN ${q(diff.column)} ${diff.expected};`;
    case 'column-order': {
      const c = col(diff.column);
      return `ALTER TABLE ${t} MODIFY COLUMN ${q(diff.column)} ${c ? columnSql(c) : '…'}${place(diff.after)};`;
    }
    case 'unique-key-missing':
      return `ALTER TABLE ${t} ADD UNIQUE KEY ${q(diff.key)} (${diff.columns});`;
    case 'unique-key-extra':
      return `ALTER TABLE ${t} DROP INDEX ${q(diff.key)};`;
    case 'check-missing':
      return `ALTER TABLE ${t} ADD CONSTRAINT ${q(diff.name)} CHECK (${diff.clause});`;
    case 'check-extra':
      return `ALTER TABLE ${t} DROP CONSTRAINT ${q(diff.name)};`;
    case 'primary-key':
      if (expected.primaryKey.length === 0) return `ALTER TABLE ${t} DROP PRIMARY KEY;`;
      return diff.actual === 'no primary key'
        ? `ALTER TABLE ${t} ADD PRIMARY KEY (${primaryKeySql(expected)});`
        : `ALTER TABLE ${t} DROP PRIMARY KEY, ADD PRIMARY KEY (${primaryKeySql(expected)});`;
  }
}

/** Suggest `ADD PRIMARY KEY` columns: a unique index on NOT NULL columns, if one exists. */
/**
 * Character sets in which several stored byte sequences read as one Unicode character (cp932's
 * NEC and IBM duplicates, eucjpms; sjis, big5 and ujis have such pairs too): read as utf8mb4
 * text, which is how reshard reads rows, two different values look the same, and a copy writes
 * one back as the other.
 */
const AMBIGUOUS_CHARSETS = new Set(['cp932', 'eucjpms', 'sjis', 'big5', 'ujis']);

/**
 * Character sets whose every stored value survives the trip through utf8mb4 and back: the
 * Unicode ones, and the single-byte ones in which each of the 256 bytes has its own character
 * (measured on MariaDB 10.11: CONVERT(CONVERT(byte USING cs) USING utf8mb4) back to cs gives the
 * byte) and which the tailer's binlog decoder reads as the server does (cp866, koi8u and
 * macroman pass the first test, not the second: test/integration/tail/charsets.test.ts;
 * keybcs2 has no decoder there, and zongji logs a warning for every value). The others hold
 * bytes with no Unicode character (cp1250 0x81, cp1251 0x98, ascii 0x80–0xFF, greek, hebrew,
 * tis620 …; gbk, euckr and gb2312 sequences): the server sends each as '?', so a copy would
 * store '?' and verify, reading both sides the same way, would call it equal. Text in any other
 * character set is refused before anything is written.
 */
const LOSSLESS_CHARSETS = new Set([
  'utf8mb4',
  'utf8mb3',
  'utf8',
  'ucs2',
  'utf16',
  'utf16le',
  'utf32',
  'latin1',
  'latin2',
  'latin5',
  'latin7',
  'cp850',
  'cp852',
  'koi8r',
  'macce',
]);

export interface UnsupportedColumn {
  code: 'E_PK_ENUM' | 'E_CHARSET_AMBIGUOUS' | 'E_CHARSET_LOSSY';
  column: string;
  message: string;
  hint: string;
}

/**
 * Columns reshard cannot move exactly, so every command refuses the table before writing: an
 * ENUM or SET in the primary key (the server sorts it by member number but compares it with a
 * bound value by label, so key-range pages skip or repeat rows), and text in an ambiguous or
 * lossy character set (above).
 */
export function unsupportedColumns(def: TableDefinition): UnsupportedColumn[] {
  const t = qt(def.database, def.table);
  const out: UnsupportedColumn[] = [];
  for (const c of def.columns) {
    if (def.primaryKey.includes(c.name) && (c.dataType === 'enum' || c.dataType === 'set')) {
      out.push({
        code: 'E_PK_ENUM',
        column: c.name,
        message: `primary key column ${q(c.name)} of ${t} is ${c.type}: reshard pages by primary key, and the server sorts ENUM/SET by member number but compares them by label, so pages would skip or repeat rows`,
        hint: `change the column to VARCHAR or to the member number (ALTER TABLE ${t} MODIFY ${q(c.name)} …), or leave the table out of the topology's tables`,
      });
    }
    if (c.charset !== null && AMBIGUOUS_CHARSETS.has(c.charset.toLowerCase())) {
      out.push({
        code: 'E_CHARSET_AMBIGUOUS',
        column: c.name,
        message: `column ${q(c.name)} of ${t} uses character set ${c.charset}, in which different stored bytes read as the same text: a copy would rewrite one as the other, and verify could not tell them apart`,
        hint: `convert the column to utf8mb4 (ALTER TABLE ${t} MODIFY ${q(c.name)} … CHARACTER SET utf8mb4), or leave the table out of the topology's tables`,
      });
    } else if (
      c.charset !== null &&
      c.dataType !== 'enum' &&
      c.dataType !== 'set' &&
      !LOSSLESS_CHARSETS.has(c.charset.toLowerCase())
    ) {
      // ENUM and SET hold only their members: a member the server cannot convert fails loudly.
      out.push({
        code: 'E_CHARSET_LOSSY',
        column: c.name,
        message: `column ${q(c.name)} of ${t} uses character set ${c.charset}, which has bytes with no Unicode character: reshard reads text as utf8mb4, where the server sends each such byte as '?', so a copy would store '?' in its place and verify could not see the difference`,
        hint: `convert the column to utf8mb4 once no row holds such bytes (ALTER TABLE ${t} MODIFY ${q(c.name)} … CHARACTER SET utf8mb4), or to VARBINARY/BLOB if it holds bytes rather than text, or leave the table out of the topology's tables`,
      });
    }
  }
  return out;
}

/** Throws the first unsupportedColumns() problem as a precondition error (exit 3). */
export function refuseUnsupportedColumns(def: TableDefinition): void {
  const bad = unsupportedColumns(def)[0];
  if (bad)
    throw new PreconditionError(bad.code, bad.message, { hint: bad.hint, data: { column: bad.column } });
}

export function primaryKeyCandidate(def: TableDefinition): string | undefined {
  const notNull = new Set(def.columns.filter((c) => !c.nullable).map((c) => c.name));
  const uk = def.uniqueKeys.find((k) => k.columns.every((c) => notNull.has(c.name) && c.prefix === null));
  return uk ? qcols(uk.columns.map((c) => c.name)) : undefined;
}
