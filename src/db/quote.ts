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
