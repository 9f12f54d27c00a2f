/**
 * Identifier quoting. Every table, column and schema name reaches SQL through `q`, never by
 * string concatenation of raw names: fixtures include a reserved word and a backtick inside a
 * column name, and operators' schemas contain both.
 */
export function q(ident: string): string {
  if (ident.length === 0) throw new Error('empty identifier');
  if (ident.includes('\u0000')) throw new Error('identifier contains NUL');
  return `\`${ident.replace(/`/g, '``')}\``;
}

/** `db`.`table` */
export function qt(database: string, table: string): string {
  return `${q(database)}.${q(table)}`;
}

/** Comma-separated quoted column list. */
export function qcols(cols: readonly string[]): string {
  return cols.map(q).join(', ');
}

const FLOATING = new Set(['float', 'double', 'real', 'double precision']);

/**
 * The SELECT list reshard reads rows with: every column by name, except that FLOAT and DOUBLE
 * columns are read as `(col + 0e0) AS col`. The server prints a FLOAT with 6 significant digits
 * (16777215 as 16777200, 1.2345678 as 1.23457) and FLOAT(M,D)/DOUBLE(M,D) with D decimals, so a
 * row copied or compared from that text would change, or two different values would look
 * equal; as a DOUBLE it prints every digit needed to get the exact value back (the float's
 * exact double value, which a FLOAT column stores back unchanged).
 */
export function selectList(cols: readonly { name: string; dataType: string }[]): string {
  return cols
    .map((c) => (FLOATING.has(c.dataType.toLowerCase()) ? `(${q(c.name)} + 0e0) AS ${q(c.name)}` : q(c.name)))
    .join(', ');
}
