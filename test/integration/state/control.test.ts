import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReshardError } from '../../../src/errors.js';
import {
  appendEvent,
  type ControlConnection,
  ControlLink,
  createJob,
  getJob,
  getJobByName,
  listEvents,
  openControl,
  resolveControlDsn,
  transitionJob,
} from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { rootConn } from '../../support/db.js';
import { controls, dropDb, freshControl } from './helpers.js';

const planHash = createHash('sha256').update('plan').digest('hex');

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: ReshardError) => e.code,
  );
}

describe('control DSN resolution', () => {
  it('prefers --control, falls back to RESHARD_CONTROL_DSN, and is a usage error without either', () => {
    const saved = process.env.RESHARD_CONTROL_DSN;
    try {
      delete process.env.RESHARD_CONTROL_DSN;
      let err: ReshardError | undefined;
      try {
        resolveControlDsn(undefined);
      } catch (e) {
        err = e as ReshardError;
      }
      expect(err?.code).toBe('E_NO_CONTROL_DSN');
      expect(err?.exitCode).toBe(2);
      process.env.RESHARD_CONTROL_DSN = 'mysql://env@h/db';
      expect(resolveControlDsn(undefined)).toBe('mysql://env@h/db');
      expect(resolveControlDsn('mysql://flag@h/db')).toBe('mysql://flag@h/db');
    } finally {
      if (saved === undefined) delete process.env.RESHARD_CONTROL_DSN;
      else process.env.RESHARD_CONTROL_DSN = saved;
    }
  });
});

describe('jobs', () => {
  let db: string;
  let dsn: string;
  let ctl: ControlConnection;
  const ctls = controls();

  beforeEach(async () => {
    ({ db, dsn } = freshControl('jobs'));
    await ensureControlSchema(await ctls.open(dsn));
    ctl = await openControl(dsn);
  });
  afterEach(async () => {
    await ctl.close();
    await ctls.closeAll();
    await dropDb(db);
  });

  it('openControl refuses an uninitialised control schema', async () => {
    const other = freshControl('jobs_uninit');
    expect(await codeOf(openControl(other.dsn))).toBe('E_CONTROL_NOT_INITIALIZED');
    await dropDb(other.db);
  });

  it('creates a job in planned with a created event, and finds it by id and name', async () => {
    const job = await createJob(ctl.conn, { name: 'grow-4-to-6', planHash });
    expect(job).toMatchObject({ name: 'grow-4-to-6', planHash, state: 'planned' });
    expect(await getJob(ctl.conn, job.id)).toEqual(job);
    expect(await getJobByName(ctl.conn, 'grow-4-to-6')).toEqual(job);
    expect(await getJob(ctl.conn, job.id + 1000)).toBeUndefined();
    const events = await listEvents(ctl.conn, job.id);
    expect(events.map((e) => e.kind)).toEqual(['created']);
    expect(events[0]!.at).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
    expect(await codeOf(createJob(ctl.conn, { name: 'grow-4-to-6', planHash }))).toBe('E_JOB_EXISTS');
    expect(await codeOf(createJob(ctl.conn, { name: 'bad name; drop', planHash }))).toBe('E_JOB_NAME');
  });

  it('walks the forward path one step at a time, logging each change as an event', async () => {
    const job = await createJob(ctl.conn, { name: 'forward', planHash });
    const path = ['planned', 'copying', 'catching-up', 'verified', 'cut-over', 'completed'] as const;
    for (let i = 1; i < path.length; i++) {
      const moved = await transitionJob(ctl.conn, job.id, path[i - 1]!, path[i]!, { by: 'test' });
      expect(moved.state).toBe(path[i]);
    }
    const events = await listEvents(ctl.conn, job.id);
    expect(events.filter((e) => e.kind === 'state').map((e) => e.detail)).toEqual(
      path.slice(1).map((to, i) => ({ by: 'test', from: path[i], to })),
    );
    expect(await codeOf(transitionJob(ctl.conn, job.id, 'completed', 'rolled-back'))).toBe(
      'E_JOB_ILLEGAL_TRANSITION',
    );
  });

  it('refuses illegal transitions and stale expectations without changing anything', async () => {
    const job = await createJob(ctl.conn, { name: 'strict', planHash });
    expect(await codeOf(transitionJob(ctl.conn, job.id, 'planned', 'verified'))).toBe(
      'E_JOB_ILLEGAL_TRANSITION',
    );
    expect(await codeOf(transitionJob(ctl.conn, job.id, 'planned', 'rolled-back'))).toBe(
      'E_JOB_ILLEGAL_TRANSITION',
    );
    expect(await codeOf(transitionJob(ctl.conn, job.id, 'copying', 'catching-up'))).toBe(
      'E_JOB_STATE_CONFLICT',
    );
    expect(await codeOf(transitionJob(ctl.conn, 424242, 'planned', 'copying'))).toBe('E_JOB_NOT_FOUND');
    expect((await getJob(ctl.conn, job.id))?.state).toBe('planned');
    expect((await listEvents(ctl.conn, job.id)).map((e) => e.kind)).toEqual(['created']);

    await transitionJob(ctl.conn, job.id, 'planned', 'copying');
    expect((await transitionJob(ctl.conn, job.id, 'copying', 'cancelled')).state).toBe('cancelled');
    expect(await codeOf(transitionJob(ctl.conn, job.id, 'cancelled', 'copying'))).toBe(
      'E_JOB_ILLEGAL_TRANSITION',
    );
  });

  it('lets exactly one of two racing processes make the same transition', async () => {
    const job = await createJob(ctl.conn, { name: 'race', planHash });
    const a = await ctls.open(dsn);
    const b = await ctls.open(dsn);
    await Promise.all([a, b].map((c) => c.conn.query(`USE \`${db}\``)));
    const outcomes = await Promise.all(
      [a, b].map((c) =>
        transitionJob(c.conn, job.id, 'planned', 'copying').then(
          () => 'ok',
          (e: ReshardError) => e.code,
        ),
      ),
    );
    expect(outcomes.sort()).toEqual(['E_JOB_STATE_CONFLICT', 'ok']);
    expect((await listEvents(ctl.conn, job.id)).filter((e) => e.kind === 'state')).toHaveLength(1);
  });

  it('refuses a job whose state was written by a newer reshard', async () => {
    const job = await createJob(ctl.conn, { name: 'future', planHash });
    const c = await rootConn('ctl');
    try {
      await c.query(`UPDATE \`${db}\`.reshard_jobs SET state = 'teleporting' WHERE id = ?`, [job.id]);
    } finally {
      await c.end();
    }
    expect(await codeOf(getJob(ctl.conn, job.id))).toBe('E_JOB_STATE_UNKNOWN');
  });

  it('appends events that commit or roll back with the caller’s transaction', async () => {
    const job = await createJob(ctl.conn, { name: 'events', planHash });
    await ctl.conn.beginTransaction();
    await appendEvent(ctl.conn, job.id, 'copy.batch', { rows: 10n, lastPk: ['42'] });
    await ctl.conn.rollback();
    // Stored exactly as given: a name that looks secret (a table `password_resets`) is data here.
    const id = await appendEvent(ctl.conn, job.id, 'copy.batch', {
      rows: 10n,
      lastPk: ['42'],
      tables: { password_resets: 3 },
    });
    const events = await listEvents(ctl.conn, job.id);
    expect(events.map((e) => e.kind)).toEqual(['created', 'copy.batch']);
    expect(events[1]).toMatchObject({
      id,
      detail: { rows: '10', lastPk: ['42'], tables: { password_resets: 3 } },
    });
  });
});

describe('ControlLink', () => {
  let db: string;
  let dsn: string;
  const ctls = controls();

  beforeEach(async () => {
    ({ db, dsn } = freshControl('link'));
    await ensureControlSchema(await ctls.open(dsn));
  });
  afterEach(async () => {
    await ctls.closeAll();
    await dropDb(db);
  });

  const connectionId = async (c: { query: ControlConnection['conn']['query'] }) => {
    const [rows] = await c.query('SELECT CONNECTION_ID() AS id');
    return Number((rows as { id: number }[])[0]!.id);
  };

  it('runs a unit again on a new connection (onConnect first) when its connection is killed', async () => {
    const connects: number[] = [];
    const notes: string[] = [];
    const link = await ControlLink.open(dsn, {
      giveUpAfterMs: 30_000,
      onConnect: async (c) => {
        connects.push(await connectionId(c));
      },
      onNote: (t) => notes.push(t),
    });
    try {
      const first = await link.run('reading', (c) => connectionId(c));
      const root = await rootConn('ctl');
      try {
        await root.query(`KILL CONNECTION ${first}`);
      } finally {
        await root.end();
      }
      const second = await link.run('reading', (c) => connectionId(c));
      expect(second).not.toBe(first);
      expect(connects).toEqual([first, second]);
      expect(notes.join('\n')).toMatch(/connection lost[\s\S]*re-established/);
      // Any other error is the caller's, at once.
      await expect(link.run('bad sql', (c) => c.query('SELECT * FROM no_such_table'))).rejects.toMatchObject({
        errno: 1146,
      });
    } finally {
      await link.close();
    }
  });

  it('gives up after its time with E_CONTROL_LOST naming the control server', async () => {
    let refuse = false;
    const link = await ControlLink.open(dsn, {
      giveUpAfterMs: 1500,
      onConnect: async () => {
        // Stands in for a control server that stays unreachable after the first connection.
        if (refuse) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      },
    });
    try {
      const first = await link.run('reading', (c) => connectionId(c));
      refuse = true;
      const root = await rootConn('ctl');
      try {
        await root.query(`KILL CONNECTION ${first}`);
      } finally {
        await root.end();
      }
      const t0 = Date.now();
      const err = await link.run('recording the status', (c) => connectionId(c)).catch((e: unknown) => e);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
      expect(err).toMatchObject({ code: 'E_CONTROL_LOST', exitCode: 5 });
      expect((err as Error).message).toContain('recording the status');
      expect((err as Error).message).toContain(`127.0.0.1:${new URL(dsn).port}/${db}`);
    } finally {
      await link.close();
    }
  });
});
