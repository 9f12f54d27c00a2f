/**
 * What the account reshard connects as may do, from `SHOW GRANTS` of the current session.
 *
 * Why SHOW GRANTS and not information_schema.*_PRIVILEGES: the latter list only privileges
 * granted directly to the user, not those of its active roles; MariaDB's `SHOW GRANTS` (no FOR)
 * includes the active role and the roles granted to it, and on MySQL 8 `SHOW GRANTS FOR
 * CURRENT_USER() USING <active roles>` does the same.
 *
 * The output of SHOW GRANTS contains password hashes (`IDENTIFIED BY PASSWORD '*…'`): lines are
 * parsed here and never stored or printed.
 *
 * Names: MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR (the old name is an alias)
 * and accepts REPLICATION REPLICA for REPLICATION SLAVE; MySQL 8.0.22+ accepts REPLICATION
 * REPLICA too. All are mapped to one canonical name before comparing.
 */
import type { Connection } from 'mysql2/promise';
import { q } from '../db/quote.js';

/** A privilege grant (or partial revoke) on one object. */
export interface GrantEntry {
  revoke: boolean;
  /** Canonical privilege names; `ALL` for ALL [PRIVILEGES]. Column-level privileges are not included. */
  privileges: Set<string>;
  /** `*.*` → both undefined; `db.*` → db only (a LIKE pattern); `db.t` → both. */
  db?: string;
  table?: string;
}

const SYNONYMS: Record<string, string> = {
  'ALL PRIVILEGES': 'ALL',
  'REPLICATION REPLICA': 'REPLICATION SLAVE',
  'BINLOG MONITOR': 'REPLICATION CLIENT',
};

export function canonicalPrivilege(name: string): string {
  const n = name.trim().replace(/\s+/g, ' ').toUpperCase();
  return SYNONYMS[n] ?? n;
}

type Token = { kind: 'word' | 'ident' | 'string' | 'punct'; text: string };

function tokenize(line: string): Token[] {
  const toks: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '`' || c === "'" || c === '"') {
      let text = '';
      i++;
      while (i < line.length) {
        const d = line[i]!;
        if (d === '\\' && c !== '`' && i + 1 < line.length) {
          text += line[i + 1];
          i += 2;
        } else if (d === c && line[i + 1] === c) {
          text += c;
          i += 2;
        } else if (d === c) {
          i++;
          break;
        } else {
          text += d;
          i++;
        }
      }
      toks.push({ kind: c === '`' ? 'ident' : 'string', text });
    } else if (/[A-Za-z0-9_$%\\]/.test(c)) {
      let j = i;
      while (j < line.length && /[A-Za-z0-9_$%\\-]/.test(line[j]!)) j++;
      toks.push({ kind: 'word', text: line.slice(i, j) });
      i = j;
    } else {
      toks.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return toks;
}

const isWord = (t: Token | undefined, w: string) => t?.kind === 'word' && t.text.toUpperCase() === w;

/**
 * Parse one line of SHOW GRANTS. Returns undefined for lines that grant nothing reshard needs:
 * role grants, PROXY, routines, `SET DEFAULT ROLE`, and anything unrecognised (which at worst
 * makes preflight report a privilege as missing, never as present).
 */
export function parseGrantLine(line: string): GrantEntry | undefined {
  const toks = tokenize(line);
  const first = toks[0];
  const revoke = isWord(first, 'REVOKE');
  if (!revoke && !isWord(first, 'GRANT')) return undefined;
  // Privilege list: up to the top-level ON.
  let i = 1;
  let depth = 0;
  const privs = new Set<string>();
  let current: string[] = [];
  let columnLevel = false;
  const flush = () => {
    if (current.length > 0 && !columnLevel) privs.add(canonicalPrivilege(current.join(' ')));
    current = [];
    columnLevel = false;
  };
  for (; i < toks.length; i++) {
    const t = toks[i]!;
    if (depth === 0 && isWord(t, 'ON')) break;
    if (depth === 0 && (isWord(t, 'TO') || isWord(t, 'FROM'))) return undefined; // a role grant
    if (t.kind === 'punct' && t.text === '(') {
      depth++;
      columnLevel = true;
    } else if (t.kind === 'punct' && t.text === ')') depth--;
    else if (depth === 0 && t.kind === 'punct' && t.text === ',') flush();
    else if (depth === 0 && t.kind === 'word') current.push(t.text);
  }
  flush();
  if (i >= toks.length || privs.size === 0 || privs.has('PROXY')) return undefined;
  i++;
  if (isWord(toks[i], 'TABLE')) i++;
  else if (isWord(toks[i], 'FUNCTION') || isWord(toks[i], 'PROCEDURE') || isWord(toks[i], 'PACKAGE'))
    return undefined;
  const name = (t: Token | undefined): string | undefined =>
    t && (t.kind === 'ident' || t.kind === 'word')
      ? t.text
      : t?.kind === 'punct' && t.text === '*'
        ? '*'
        : undefined;
  const a = name(toks[i]);
  if (a === undefined) return undefined;
  let db: string | undefined;
  let table: string | undefined;
  if (toks[i + 1]?.kind === 'punct' && toks[i + 1]!.text === '.') {
    const b = name(toks[i + 2]);
    if (b === undefined) return undefined;
    if (a === '*') {
      if (b !== '*') return undefined;
    } else {
      db = a;
      // A backquoted `*` would be a table named "*"; only the bare star means "all tables".
      table = b === '*' && toks[i + 2]!.kind === 'punct' ? undefined : b;
    }
  } else if (a !== '*') {
    return undefined; // `ON tbl` relative to a default database: not produced by SHOW GRANTS
  }
  return {
    revoke,
    privileges: privs,
    ...(db !== undefined ? { db } : {}),
    ...(table !== undefined ? { table } : {}),
  };
}

export function parseGrants(lines: readonly string[]): GrantEntry[] {
  return lines.map(parseGrantLine).filter((g): g is GrantEntry => g !== undefined);
}

/** MySQL LIKE semantics of database names in grants: `_` and `%` are wildcards, `\_` `\%` literal. */
function dbPatternMatches(pattern: string, db: string, caseInsensitive: boolean): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) {
      re += pattern[i + 1]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      i++;
    } else if (c === '%') re += '.*';
    else if (c === '_') re += '.';
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, caseInsensitive ? 'is' : 's').test(db);
}

function hasPriv(g: GrantEntry, priv: string): boolean {
  return g.privileges.has(priv) || (g.privileges.has('ALL') && priv !== 'GRANT OPTION' && priv !== 'PROXY');
}

export interface PrivilegeScope {
  db?: string;
  table?: string;
}

/**
 * Whether the grants give `priv` (canonical name) on the scope: globally, on a matching
 * database pattern, or on the exact table. A MySQL partial revoke (`REVOKE … ON db.*`) removes a
 * global privilege for that database.
 */
export function hasPrivilege(
  grants: readonly GrantEntry[],
  priv: string,
  scope: PrivilegeScope = {},
  caseInsensitive = false,
): boolean {
  const eq = (a: string, b: string) => (caseInsensitive ? a.toLowerCase() === b.toLowerCase() : a === b);
  const revokedHere =
    scope.db !== undefined &&
    grants.some(
      (g) =>
        g.revoke && g.db !== undefined && g.table === undefined && eq(g.db, scope.db!) && hasPriv(g, priv),
    );
  for (const g of grants) {
    if (g.revoke || !hasPriv(g, priv)) continue;
    if (g.db === undefined) {
      if (!revokedHere) return true;
    } else if (scope.db !== undefined) {
      if (g.table === undefined) {
        if (dbPatternMatches(g.db, scope.db, caseInsensitive)) return true;
      } else if (scope.table !== undefined && eq(g.db, scope.db) && eq(g.table, scope.table)) return true;
    }
  }
  return false;
}

/**
 * SHOW GRANTS of the current session, including active roles. Returns raw lines: parse them with
 * parseGrants and drop them (they may contain password hashes).
 */
export async function readGrantLines(
  conn: Connection,
  flavor: 'mysql' | 'mariadb',
  major: number,
): Promise<string[]> {
  let sql = 'SHOW GRANTS';
  if (flavor === 'mysql' && major >= 8) {
    const [r] = await conn.query('SELECT CURRENT_ROLE() AS r');
    const roles = String((r as { r: string | null }[])[0]?.r ?? 'NONE');
    if (roles !== 'NONE' && roles !== '') {
      // CURRENT_ROLE() is `r1`@`%`,`r2`@`%`: re-quote each name ourselves rather than splice server text.
      const names = roles.split(/,(?=`)/).map((x) => {
        const m = /^`((?:[^`]|``)*)`@`((?:[^`]|``)*)`$/.exec(x.trim());
        return m ? `${q(m[1]!.replace(/``/g, '`'))}@${q(m[2]!.replace(/``/g, '`'))}` : undefined;
      });
      if (names.every((n) => n !== undefined))
        sql = `SHOW GRANTS FOR CURRENT_USER() USING ${names.join(', ')}`;
    }
  }
  const [rows] = await conn.query(sql);
  return (rows as Record<string, unknown>[]).map((row) => String(Object.values(row)[0] ?? ''));
}

/** `user@host` from CURRENT_USER() → `'user'@'host'` for a GRANT statement. */
export function accountForSql(currentUser: string): string {
  const at = currentUser.lastIndexOf('@');
  const user = at >= 0 ? currentUser.slice(0, at) : currentUser;
  const host = at >= 0 ? currentUser.slice(at + 1) : '%';
  const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
  return `${lit(user)}@${lit(host)}`;
}
