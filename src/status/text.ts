/**
 * The plain-text status report: what `reshard status` prints without a terminal (or without
 * --watch). Sections in a fixed order, aligned tables, ASCII only, so it reads well in logs and
 * greps well in scripts (which should prefer --json).
 */
import { table } from '../output.js';
import * as f from './format.js';
import type { StatusReport } from './types.js';

export function renderStatusText(r: StatusReport): string {
  const out: string[] = [];
  const j = r.job;
  out.push(
    `job ${j.name} (id ${j.id}): ${j.state}${j.terminal ? ' (finished)' : ''}   at ${f.time(r.at)} UTC`,
  );
  out.push(`  ${f.machineLine(j, true)}`);
  out.push('');

  const c = r.copy;
  if (!c.started) {
    out.push('copy: not started');
  } else {
    const throttle = c.throttle.paused
      ? 'PAUSED'
      : c.throttle.rate !== null
        ? `rate limit ${c.throttle.rate} rows/s per worker`
        : 'running';
    out.push(
      `copy: ${c.complete ? 'complete' : throttle}; ${c.rowsCopied} rows${c.estimatedRows !== null ? ` of ~${c.estimatedRows}` : ''} (${f.percent(c.percent)}), ${f.count(c.rowsPerSecond)} rows/s, ETA ${f.duration(c.etaSeconds)}, chunks ${c.chunksDone}/${c.chunks}`,
    );
    out.push(
      table(
        ['source', 'table', 'state', 'rows', 'estimate', 'done', 'chunks', 'rows/s', 'ETA'],
        c.tables.map((t) => [
          t.source,
          t.table,
          t.state,
          t.rowsCopied,
          t.estimatedRows ?? '?',
          f.percent(t.percent),
          `${t.chunksDone}/${t.chunks}${t.chunkedAll ? '' : '+'}`,
          f.count(t.rowsPerSecond),
          f.duration(t.etaSeconds),
        ]),
      ),
    );
  }
  out.push('');

  const t = r.tail;
  if (t.sources.length === 0) {
    out.push('tail: no positions recorded');
  } else {
    out.push(`tail: max lag ${t.maxLagSeconds === null ? '-' : `${f.seconds(t.maxLagSeconds)} s`}`);
    out.push(
      table(
        ['source', 'direction', 'state', 'lag (s)', 'events/s', 'rows/s', 'position', 'updated'],
        t.sources.map((s) => [
          s.source,
          s.direction,
          `${s.state ?? 'no tailer'}${s.stale ? ' (stale)' : ''}`,
          f.seconds(s.lagSeconds),
          f.seconds(s.eventsPerSecond),
          f.seconds(s.rowsPerSecond),
          f.binlogPosition(s.position),
          s.ageSeconds === null ? '-' : `${f.duration(s.ageSeconds)} ago`,
        ]),
      ),
    );
  }
  out.push('');

  const v = r.verify;
  if (v.runs.length === 0) {
    out.push('verify: no runs');
  } else {
    out.push(
      `verify: last clean run ${v.lastClean ? `#${v.lastClean.runId} finished ${f.time(v.lastClean.finishedAt)}` : 'none'}`,
    );
    out.push(
      table(
        ['run', 'state', 'mode', 'mismatches', 'started', 'took'],
        v.runs.map((x) => [
          x.runId,
          x.state,
          x.mode ?? '?',
          x.mismatches,
          f.time(x.startedAt),
          x.durationSeconds === null ? '-' : f.duration(x.durationSeconds),
        ]),
      ),
    );
  }
  out.push('');

  const a = r.routing.active;
  if (!a) {
    out.push('routing: no routing version recorded');
  } else {
    out.push(
      `routing: version ${a.version} active since ${f.time(a.createdAt)} (job ${a.job ?? '-'}): writes by ${a.writes}, reads by ${a.reads}${a.canary.length ? `; writes canary ${a.canary.map((p) => `${p.from}->${p.to}`).join(', ')}` : ''}${a.readCanary.length ? `; reads canary ${a.readCanary.map((p) => `${p.from}->${p.to}`).join(', ')}` : ''}`,
    );
  }
  out.push('');

  if (r.cutover.steps.length === 0) {
    out.push('cutover: no journal');
  } else {
    out.push('cutover journal:');
    out.push(
      table(
        ['id', 'step', 'state', 'at', 'detail'],
        r.cutover.steps.map((s) => [s.id, s.step, s.state, f.time(s.at), f.eventDetail(s.detail, 60)]),
      ),
    );
  }
  out.push('');

  out.push(`events (last ${r.events.length}):`);
  out.push(
    table(
      ['at', 'kind', 'detail'],
      r.events.map((e) => [f.time(e.at), e.kind, f.eventDetail(e.detail)]),
    ),
  );
  return out.join('\n');
}
