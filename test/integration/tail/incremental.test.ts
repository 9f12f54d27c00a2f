/**
 * The tailer records what it changes into verify's change filter before each target commit, so
 * `verify --incremental` re-checks the buckets it touched — and finds a corruption in one of them.
 * It records each key with the targets it applied it to, so the run looks a key up only on its
 * source and those targets — for a shard-key move both the old owner and the new one, where a
 * lost delete would leave a stale copy.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createRouter } from '../../../src/plan/router.js';
import { runVerify } from '../../../src/verify/verifier.js';
import { copiedAndTailing, type Estate, makeEstate, queryOn, sqlOn } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

describe('reshard tail feeds verify --incremental', () => {
  it('re-checks the buckets the tailer changed and finds a corruption there', async () => {
    const e = await makeEstate({ prefix: 'tailinc', rows: 4000, seed: 3 });
    estates.push(e);
    const { ctx, tail } = await copiedAndTailing(e);
    try {
      const opts = { planPath: e.planPath, control: e.controlDsn, preflight: false };
      const full = await runVerify(opts);
      expect(full.ok).toBe(true);
      // One change on a source, carried by the tailer.
      const src = createRouter(e.from);
      const dst = createRouter(e.to);
      const [u] = await queryOn<{ id: string }>(
        e.sources[0]!.port,
        `SELECT id FROM users ORDER BY id LIMIT 1`,
        [],
        e.db,
      );
      const id = BigInt(u!.id);
      expect(src.ownerOf(id)).toBe(e.sources[0]!.name);
      await sqlOn(e.sources[0]!.port, `UPDATE users SET name = 'changed by the app' WHERE id = ${id}`, e.db);
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      // Corrupt that row on its new owner behind reshard's back: only the tailer's record of the
      // change makes the incremental run look at its bucket.
      const owner = e.targets.find((t) => t.name === dst.ownerOf(id))!;
      await sqlOn(owner.port, `UPDATE users SET name = 'corrupted' WHERE id = ${id}`, e.db);
      const bad = await runVerify({ ...opts, incremental: true });
      expect(bad.mode).toBe('incremental');
      expect(bad.ok).toBe(false);
      expect(bad.totals.bucketsChecked).toBeGreaterThan(0);
      expect(bad.totals.bucketsChecked).toBeLessThan(full.totals.bucketsChecked);
      expect(bad.differences.map((d) => d.table)).toContain('users');
      // The tailer recorded the exact key too: the run looked it up instead of scanning buckets.
      expect(bad.tables.find((t) => t.table === 'users')?.keys).toBeGreaterThanOrEqual(1);
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });

  it('looks a moved row up on its source and on both targets the tailer wrote, and finds a stale copy on the old one', async () => {
    const e = await makeEstate({ prefix: 'tailmove', rows: 3000, seed: 5 });
    estates.push(e);
    const { ctx, tail } = await copiedAndTailing(e);
    try {
      const opts = { planPath: e.planPath, control: e.controlDsn, preflight: false };
      expect((await runVerify(opts)).ok).toBe(true);
      const src = createRouter(e.from);
      const dst = createRouter(e.to);
      const s0 = e.sources[0]!;
      // An order on s0 and another user of s0 whose new owner differs from the order's.
      const orders = await queryOn<{ id: string; user_id: string }>(
        s0.port,
        'SELECT id, user_id FROM orders ORDER BY id LIMIT 50',
        [],
        e.db,
      );
      const users = await queryOn<{ id: string }>(s0.port, 'SELECT id FROM users ORDER BY id', [], e.db);
      const order = orders.find((o) => src.ownerOf(BigInt(o.user_id)) === s0.name)!;
      const oldOwner = dst.ownerOf(BigInt(order.user_id));
      const to = users.find(
        (u) => src.ownerOf(BigInt(u.id)) === s0.name && dst.ownerOf(BigInt(u.id)) !== oldOwner,
      )!;
      const newOwner = dst.ownerOf(BigInt(to.id));
      expect(newOwner).not.toBe(oldOwner);
      const port = (name: string) => e.targets.find((t) => t.name === name)!.port;

      // The shard-key update the application makes: the tailer deletes on the old owner and
      // upserts on the new one.
      await sqlOn(s0.port, `UPDATE orders SET user_id = ${to.id} WHERE id = ${order.id}`, e.db);
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      const count = async (name: string) =>
        (
          await queryOn<{ n: string }>(
            port(name),
            `SELECT COUNT(*) AS n FROM orders WHERE id = ${order.id}`,
            [],
            e.db,
          )
        )[0]!.n;
      expect(String(await count(oldOwner))).toBe('0');
      expect(String(await count(newOwner))).toBe('1');

      // A lost delete: the pre-move version back on the old owner, behind reshard's back.
      const [moved] = await queryOn<Record<string, unknown>>(
        port(newOwner),
        `SELECT * FROM orders WHERE id = ${order.id}`,
        [],
        e.db,
      );
      const cols = Object.keys(moved!);
      await queryOn(
        port(oldOwner),
        `INSERT INTO orders (${cols.map((c) => `\`${c}\``).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
        cols.map((c) => (c === 'user_id' ? order.user_id : moved![c])),
        e.db,
      );

      const bad = await runVerify({ ...opts, incremental: true });
      expect(bad.mode).toBe('incremental');
      expect(bad.ok).toBe(false);
      expect(bad.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)} ${d.shard}`)).toEqual([
        `extra orders ${JSON.stringify({ id: String(order.id) })} ${oldOwner}`,
      ]);
      // One key, looked up on s0 (which recorded it), the old owner and the new one: 3 lookups,
      // not one per shard (2 sources + 3 targets).
      const t = bad.tables.find((x) => x.table === 'orders')!;
      expect(t.keys).toBe(1);
      expect(t.lookups).toBe(3);
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});
