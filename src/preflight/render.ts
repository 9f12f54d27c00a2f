/**
 * Human rendering of a preflight report: one row per shard, one column per check
 * (ok / FAIL <codes> / warn <codes> / - when it could not run), then the warnings. Failures are
 * listed by assertPreflight's error, so they are not repeated here.
 */
import { table } from '../output.js';
import { CHECKS, type PreflightIssue, type PreflightReport } from './types.js';

function cell(report: PreflightReport, side: string, shard: string, check: string, status: string): string {
  if (status === 'ok') return 'ok';
  if (status === 'skipped') return '-';
  const severity = status === 'fail' ? 'error' : 'warning';
  const codes = [
    ...new Set(
      [...report.failures, ...report.warnings]
        .filter((i) => i.side === side && i.shard === shard && i.check === check && i.severity === severity)
        .map((i) => i.code),
    ),
  ];
  return `${status === 'fail' ? 'FAIL' : 'warn'} ${codes.join(',')}`;
}

export function renderReportTable(report: PreflightReport): string {
  const rows = report.shards.map((s) => [
    s.side,
    s.shard,
    s.server,
    s.flavor ? `${s.flavor === 'mariadb' ? 'MariaDB' : 'MySQL'} ${s.version}` : '-',
    ...CHECKS.map((c) => cell(report, s.side, s.shard, c, s.checks[c])),
  ]);
  return table(['side', 'shard', 'server', 'version', ...CHECKS], rows);
}

function renderIssue(i: PreflightIssue): string {
  return `  ${i.code} on ${i.server}\n      ${i.message}\n      fix: ${i.hint.split('\n').join('\n      ')}`;
}

export function renderReport(report: PreflightReport): string {
  const parts = [renderReportTable(report)];
  if (report.warnings.length > 0) parts.push(`\nwarnings:\n${report.warnings.map(renderIssue).join('\n')}`);
  const n = report.failures.length;
  const w = report.warnings.length;
  parts.push(
    `\n${report.shards.length} shard${report.shards.length === 1 ? '' : 's'} checked: ` +
      `${n === 0 ? 'preflight passed' : `${n} failure${n === 1 ? '' : 's'}`}, ${w} warning${w === 1 ? '' : 's'}`,
  );
  return parts.join('\n');
}
