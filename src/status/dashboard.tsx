/**
 * The live dashboard of `reshard status --watch` on a terminal (ink): the job's state machine,
 * copy progress bars with ETA, tail lag per source, verify runs, the active routing version,
 * the cutover journal and the last events.
 *
 * Lifecycle: runDashboard(load, interval) → load() now and `interval` after each load finishes
 * (never two loads at once; a failed load is shown and retried, the last good report stays) →
 * q, Esc or Ctrl-C → unmount → the returned promise resolves.
 */
import { Box, render, Text, useApp, useInput, useStdin } from 'ink';
import { useEffect, useState } from 'react';
import * as f from './format.js';
import type { CopyTableStatus, StatusReport, TailSourceStatus } from './types.js';

const BAR = 24;

function StateMachine({ report }: { report: StatusReport }) {
  const steps = report.job.machine;
  return (
    <Box flexWrap="wrap">
      {steps.map((s, i) => {
        const sep = i === 0 ? '' : s.path === 'exit' ? '  |  ' : ' → ';
        const color = s.status === 'current' ? 'cyan' : s.status === 'done' ? 'green' : undefined;
        const label =
          s.status === 'current' ? `[${s.state}]` : s.status === 'done' ? `${s.state} ✓` : s.state;
        return (
          <Text
            key={s.state}
            color={color}
            bold={s.status === 'current'}
            dimColor={s.status === 'skipped' || s.status === 'pending'}
          >
            {sep}
            {label}
          </Text>
        );
      })}
    </Box>
  );
}

function CopyRow({ t, width }: { t: CopyTableStatus; width: number }) {
  const color = t.state === 'done' ? 'green' : t.state === 'copying' ? 'cyan' : undefined;
  return (
    <Text>
      {'  '}
      {`${t.source}/${t.table}`.padEnd(width)} <Text color={color}>{f.bar(t.percent, BAR)}</Text>{' '}
      {f.percent(t.percent).padStart(6)}{' '}
      {`${f.count(t.rowsCopied)}/${t.estimatedRows === null ? '?' : f.count(t.estimatedRows)}`.padStart(13)}{' '}
      {`${f.count(t.rowsPerSecond)} rows/s`.padStart(13)} {`ETA ${f.duration(t.etaSeconds)}`.padEnd(10)}{' '}
      {t.state}
    </Text>
  );
}

function CopyPanel({ report }: { report: StatusReport }) {
  const c = report.copy;
  if (!c.started) return <Text dimColor>Copy not started</Text>;
  const width = Math.max(...c.tables.map((t) => `${t.source}/${t.table}`.length), 8);
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>Copy </Text> {c.rowsCopied} rows{c.estimatedRows !== null ? ` of ~${c.estimatedRows}` : ''}{' '}
        · {f.percent(c.percent)} · {f.count(c.rowsPerSecond)} rows/s · ETA {f.duration(c.etaSeconds)} · chunks{' '}
        {c.chunksDone}/{c.chunks}
        {c.throttle.paused ? <Text color="yellow"> · PAUSED</Text> : null}
        {c.complete ? <Text color="green"> · complete</Text> : null}
      </Text>
      {c.tables.map((t) => (
        <CopyRow key={`${t.source}/${t.table}`} t={t} width={width} />
      ))}
    </Box>
  );
}

function lagColor(s: TailSourceStatus): string | undefined {
  if (s.stale || s.state === 'failed') return 'red';
  if (s.lagSeconds === null) return undefined;
  return s.lagSeconds < 5 ? 'green' : s.lagSeconds < 60 ? 'yellow' : 'red';
}

function TailPanel({ report }: { report: StatusReport }) {
  const t = report.tail;
  if (t.sources.length === 0) return <Text dimColor>Tail no positions recorded</Text>;
  const width = Math.max(...t.sources.map((s) => s.source.length), 6);
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>Tail </Text> max lag {t.maxLagSeconds === null ? '-' : `${f.seconds(t.maxLagSeconds)} s`}
      </Text>
      {t.sources.map((s) => (
        <Text key={`${s.direction}/${s.source}`}>
          {'  '}
          {s.source.padEnd(width)} {s.direction.padEnd(7)} {(s.state ?? 'no tailer').padEnd(12)}{' '}
          <Text color={lagColor(s)}>lag {`${f.seconds(s.lagSeconds)} s`.padStart(8)}</Text>{' '}
          {`${f.count(s.eventsPerSecond)} ev/s`.padStart(11)}{' '}
          {`${f.count(s.rowsPerSecond)} rows/s`.padStart(13)} {f.binlogPosition(s.position)}
          {s.stale ? <Text color="red"> (stale {f.duration(s.ageSeconds)})</Text> : null}
        </Text>
      ))}
    </Box>
  );
}

function VerifyPanel({ report }: { report: StatusReport }) {
  const v = report.verify;
  if (v.runs.length === 0) return <Text dimColor>Verify no runs</Text>;
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>Verify </Text> last clean:{' '}
        {v.lastClean ? `#${v.lastClean.runId} at ${f.time(v.lastClean.finishedAt)}` : 'none'}
      </Text>
      {v.runs.slice(0, 3).map((x) => (
        <Text key={x.runId}>
          {'  '}#{x.runId}{' '}
          <Text color={x.state === 'match' ? 'green' : x.state === 'running' ? 'cyan' : 'red'}>
            {x.state}
          </Text>{' '}
          {x.mode ?? ''} mismatches {x.mismatches} · {f.time(x.startedAt)}
          {x.durationSeconds !== null ? ` · ${f.duration(x.durationSeconds)}` : ''}
        </Text>
      ))}
    </Box>
  );
}

function RoutingPanel({ report }: { report: StatusReport }) {
  const a = report.routing.active;
  if (!a) return <Text dimColor>Routing no routing version recorded</Text>;
  return (
    <Text>
      <Text bold>Routing </Text> version {a.version} · writes by {a.writes} · reads by {a.reads} · since{' '}
      {f.time(a.createdAt)}
      {a.canary.length ? ` · writes canary ${a.canary.map((p) => `${p.from}→${p.to}`).join(', ')}` : ''}
      {a.readCanary.length
        ? ` · reads canary ${a.readCanary.map((p) => `${p.from}→${p.to}`).join(', ')}`
        : ''}
    </Text>
  );
}

function CutoverPanel({ report }: { report: StatusReport }) {
  const steps = report.cutover.steps;
  if (steps.length === 0) return null;
  return (
    <Box flexDirection="column">
      <Text bold>Cutover journal</Text>
      {steps.slice(-8).map((s) => (
        <Text key={s.id}>
          {'  '}
          {f.time(s.at)} {s.step.padEnd(20)}{' '}
          <Text color={s.state === 'done' ? 'green' : s.state === 'failed' ? 'red' : 'cyan'}>{s.state}</Text>
        </Text>
      ))}
    </Box>
  );
}

function EventsPanel({ report }: { report: StatusReport }) {
  return (
    <Box flexDirection="column">
      <Text bold>Events</Text>
      {report.events.map((e) => (
        <Text key={e.id} wrap="truncate-end">
          {'  '}
          {f.time(e.at)} {e.kind.padEnd(22)} <Text dimColor>{f.eventDetail(e.detail, 70)}</Text>
        </Text>
      ))}
    </Box>
  );
}

export function Dashboard({
  report,
  error,
}: {
  report: StatusReport | undefined;
  error?: string | undefined;
}) {
  if (!report) {
    return (
      <Text>{error ? <Text color="red">reshard status: {error}</Text> : 'reading the control schema…'}</Text>
    );
  }
  const j = report.job;
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>reshard</Text> job {j.name} · <Text color="cyan">{j.state}</Text> · {f.time(report.at)} UTC
        · <Text dimColor>q to quit</Text>
      </Text>
      <StateMachine report={report} />
      {error ? <Text color="red">refresh failed: {error} (showing the last good read)</Text> : null}
      <Text> </Text>
      <CopyPanel report={report} />
      <Text> </Text>
      <TailPanel report={report} />
      <Text> </Text>
      <VerifyPanel report={report} />
      <RoutingPanel report={report} />
      <CutoverPanel report={report} />
      <Text> </Text>
      <EventsPanel report={report} />
    </Box>
  );
}

function StatusApp({ load, intervalMs }: { load: () => Promise<StatusReport>; intervalMs: number }) {
  const [report, setReport] = useState<StatusReport>();
  const [error, setError] = useState<string>();
  const { exit } = useApp();
  const { isRawModeSupported } = useStdin();
  useInput(
    (input, key) => {
      if (input === 'q' || key.escape || (key.ctrl && input === 'c')) exit();
    },
    { isActive: isRawModeSupported === true },
  );
  useEffect(() => {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      try {
        const r = await load();
        if (stopped) return;
        setReport(r);
        setError(undefined);
      } catch (e) {
        if (stopped) return;
        setError(e instanceof Error ? e.message : String(e));
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [load, intervalMs]);
  return <Dashboard report={report} error={error} />;
}

export interface DashboardStreams {
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
  stderr?: NodeJS.WriteStream;
}

/** Render the live dashboard until the user quits; resolves after unmount. */
export async function runDashboard(
  load: () => Promise<StatusReport>,
  intervalMs: number,
  streams: DashboardStreams = {},
): Promise<void> {
  const app = render(<StatusApp load={load} intervalMs={intervalMs} />, {
    ...streams,
    exitOnCtrlC: true,
    patchConsole: false,
  });
  await app.waitUntilExit();
}

/** One frame of the dashboard for a report (what the tests and `--watch` show). */
export function dashboardElement(report: StatusReport) {
  return <Dashboard report={report} />;
}
