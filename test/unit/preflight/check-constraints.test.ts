/**
 * Found by review H. The CHECK-constraint diff (schema.ts readChecks → canonicalGenerationExpression →
 * diffTableDefinitions). Clauses as the servers print them in information_schema.CHECK_CONSTRAINTS.
 */
import { describe, expect, it } from 'vitest';
import {
  canonicalGenerationExpression,
  diffTableDefinitions,
  type TableDefinition,
} from '../../../src/preflight/schema.js';

function def(clause: string): TableDefinition {
  return {
    database: 'shop',
    table: 'accounts',
    columns: [],
    primaryKey: [],
    primaryKeyPrefixes: [],
    uniqueKeys: [],
    checks: [{ name: 'ck', clause, canonical: canonicalGenerationExpression(clause) }],
  } as unknown as TableDefinition;
}

describe('CHECK clauses across flavors', () => {
  it('one CHECK (a >= 0 AND b >= 0), printed by MySQL 8 and by MariaDB, is one constraint', () => {
    // MySQL 8 parenthesises every operand; MariaDB prints by precedence.
    const mysql = def('((`balance` >= 0) and (`credit` >= 0))');
    const mariadb = def('`balance` >= 0 and `credit` >= 0');
    expect(diffTableDefinitions(mysql, mariadb)).toEqual([]);
  });

  it('brackets that change the meaning still count', () => {
    const kinds = (a: string, b: string) =>
      diffTableDefinitions(def(a), def(b))
        .map((d) => d.kind)
        .sort();
    // Mixed AND/OR: grouping decides.
    expect(kinds('(`a` = 1 or `b` = 1) and `c` = 1', '`a` = 1 or (`b` = 1 and `c` = 1)')).toEqual([
      'check-extra',
      'check-missing',
    ]);
    // Arithmetic: (a + b) * 2 is not a + b * 2.
    expect(kinds('(`a` + `b`) * 2 > 0', '`a` + `b` * 2 > 0')).toEqual(['check-extra', 'check-missing']);
    // A literal's brackets are text.
    expect(kinds("`a` <> '(x)'", "`a` <> 'x'")).toEqual(['check-extra', 'check-missing']);
  });

  it('a binary comparison (_binary literal) is not the same constraint as a collation-aware one', () => {
    // CHECK (code <> _binary'X') accepts 'x'; CHECK (code <> _utf8mb4'X') under a _ci collation refuses it:
    // a target with the second refuses rows the source holds (the copy dies mid-table).
    const source = def("(`code` <> _binary'X')");
    const target = def("(`code` <> _utf8mb4'X')");
    expect(
      diffTableDefinitions(source, target)
        .map((d) => d.kind)
        .sort(),
    ).toEqual(['check-extra', 'check-missing']);
  });

  it("a literal ending in an escaped backslash before '' reads the same in either escape style", () => {
    // 'a\\''b' and 'a\\\'b' are both the text a\'b.
    expect(canonicalGenerationExpression("`x` like 'a\\\\''b'")).toBe(
      canonicalGenerationExpression("`x` like 'a\\\\\\'b'"),
    );
  });
});
