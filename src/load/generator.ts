/**
 * The load generator: an application writing to the old shards while reshard works — inserts,
 * updates, deletes and shard-key moves on the shop fixture's `users`, `orders` and `order_items`,
 * each routed by the source topology, as concurrent transactions at a set rate.
 *
 * Lifecycle: `runLoad(opts)` discovers existing rows (each worker owns the ids ≡ w mod W, so
 * workers never touch the same row), then every worker loops { wait for a rate slot → pick an
 * operation with its seeded PRNG → run its transactions } until `seconds` pass or `signal`
 * aborts; it resolves with counts. An operation that was started is always finished, so at
 * quiescence every primary key lives on at most one shard (the invariant the applier relies on).
 *
 * Moves: an order moving to a user on the same shard is one UPDATE of its shard key (and its
 * items'), in one transaction; to a user on another shard it is a delete on the old shard and an
 * insert on the new one, in a random order — two transactions, as an application has to do it.
 *
 * Faults: a lost connection (server restart) is retried with backoff; every statement is safe to
 * run again (updates set absolute values, deletes are by key, and an insert that finds its row
 * after an ambiguous commit counts as done), so the in-memory model stays exact.
 */
import type { Connection } from 'mysql2/promise';
import { connect } from '../db/connect.js';
import { q } from '../db/quote.js';
import { classifyError, sleep } from '../db/retry.js';
import { UsageError } from '../errors.js';
import { createRouter } from '../plan/router.js';
import type { Shard, Topology } from '../topology/types.js';
import { prng } from '../util/prng.js';

export interface LoadOptions {
  /** Routes every write (the current, `from` topology). */
  topology: Topology;
  /** Operations per second over all workers; 0 = as fast as the servers allow. */
  rate: number;
  /** Stop after this many seconds (or when `signal` aborts, whichever is first). */
  seconds?: number;
  signal?: AbortSignal;
  seed: number;
  /** Concurrent workers (default 4). */
  concurrency?: number;
  /** Relative weights of operations (default: DEFAULT_MIX). */
  mix?: Partial<Record<OpKind, number>>;
  /** Rows of each table a worker adopts from existing data at start (default 2000). */
  adopt?: number;
  /** Called for each error that was not retried away. */
  onError?: (e: unknown) => void;
}

export type OpKind =
  | 'insertUser'
  | 'updateUser'
  | 'deleteUser'
  | 'insertOrder'
  | 'updateOrder'
  | 'deleteOrder'
  | 'moveOrder'
  | 'insertItem'
  | 'updateItem'
  | 'deleteItem';

export const DEFAULT_MIX: Record<OpKind, number> = {
  insertUser: 8,
  updateUser: 12,
  deleteUser: 3,
  insertOrder: 14,
  updateOrder: 16,
  deleteOrder: 5,
  moveOrder: 14,
  insertItem: 8,
  updateItem: 14,
  deleteItem: 6,
};

export interface LoadResult {
  /** Operations completed (a cross-shard move counts once). */
  operations: number;
  /** Source transactions committed. */
  transactions: number;
  inserts: number;
  updates: number;
  deletes: number;
  /** Shard-key updates inside one source shard. */
  sameSourceMoves: number;
  /** Moves to another source shard (delete + insert). */
  crossSourceMoves: number;
  /** Transactions re-run after a deadlock, lock wait timeout or lost connection. */
  retries: number;
  errors: number;
  byKind: Record<OpKind, number>;
  seconds: number;
}

// ---------------------------------------------------------------------------------------------

const NAMES = [
  'Ann',
  'Bob',
  'Zoë',
  'Jürgen',
  '東京太郎',
  'Søren',
  '😀 Emoji',
  "O'Brien",
  'back\\slash',
  'Ωmega',
];
const STATUSES = ['pending', 'paid', 'shipped', 'cancelled'];
const SKUS = ['SKU-1', 'sku-é', 'SKU-😀', 'SKU-"q"', 'SKU-9'];

interface Item {
  line: number;
  userId: number;
}

interface Order {
  userId: number;
  items: Map<number, Item>;
  nextLine: number;
}

interface Stmt {
  sql: string;
  params: unknown[];
  /** An INSERT: on a retry after an ambiguous failure, a duplicate key means it committed. */
  insert?: boolean;
}

interface Txn {
  shard: string;
  stmts: Stmt[];
}

class Counters {
  operations = 0;
  transactions = 0;
  inserts = 0;
  updates = 0;
  deletes = 0;
  sameSourceMoves = 0;
  crossSourceMoves = 0;
  retries = 0;
  errors = 0;
  byKind = Object.fromEntries(Object.keys(DEFAULT_MIX).map((k) => [k, 0])) as Record<OpKind, number>;
}

interface Shared {
  opts: LoadOptions;
  ownerOf: (userId: number) => string;
  shards: Map<string, Shard>;
  workers: number;
  idBase: { users: number; orders: number };
  counters: Counters;
  /** Rate limiter: the next free slot (ms). */
  nextSlot: number;
  stopped: () => boolean;
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

class Worker {
  private readonly rnd: () => number;
  private readonly conns = new Map<string, Connection>();
  readonly users: number[] = [];
  private readonly userSet = new Set<number>();
  readonly orders = new Map<number, Order>();
  private orderIds: number[] = [];
  private seqUser = 0;
  private seqOrder = 0;
  private readonly kinds: OpKind[];
  private readonly weights: number[];
  private readonly total: number;

  constructor(
    private readonly s: Shared,
    readonly w: number,
  ) {
    this.rnd = prng((s.opts.seed * 1000003 + w * 7919 + 1) >>> 0);
    const mix = { ...DEFAULT_MIX, ...s.opts.mix };
    this.kinds = Object.keys(mix) as OpKind[];
    this.weights = this.kinds.map((k) => Math.max(0, mix[k]));
    this.total = this.weights.reduce((a, b) => a + b, 0);
  }

  private pick<T>(xs: readonly T[]): T | undefined {
    return xs.length ? xs[Math.floor(this.rnd() * xs.length)] : undefined;
  }

  /** A random line of a random order (undefined when none): the order, then the line. */
  private pickItem() {
    const id = this.pick(this.orderIds);
    if (id === undefined) return undefined;
    const o = this.orders.get(id)!;
    const it = this.pick([...o.items.values()]);
    return it ? { id, o, it } : undefined;
  }

  private async conn(shard: string): Promise<Connection> {
    let c = this.conns.get(shard);
    if (!c) {
      c = await connect(this.s.shards.get(shard)!.endpoint, `load ${shard}`);
      // Less gap locking between workers inserting next to each other.
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      this.conns.set(shard, c);
    }
    return c;
  }

  private dropConn(shard: string): void {
    const c = this.conns.get(shard);
    this.conns.delete(shard);
    c?.destroy();
  }

  async close(): Promise<void> {
    for (const [shard, c] of this.conns) {
      this.conns.delete(shard);
      await c.end().catch(() => c.destroy());
    }
  }

  addUser(id: number): void {
    if (!this.userSet.has(id)) {
      this.userSet.add(id);
      this.users.push(id);
    }
  }

  private removeUser(id: number): void {
    if (this.userSet.delete(id)) {
      const i = this.users.indexOf(id);
      this.users[i] = this.users[this.users.length - 1]!;
      this.users.pop();
    }
  }

  addOrder(id: number, o: Order): void {
    if (!this.orders.has(id)) this.orderIds.push(id);
    this.orders.set(id, o);
  }

  private removeOrder(id: number): void {
    if (this.orders.delete(id)) {
      const i = this.orderIds.indexOf(id);
      this.orderIds[i] = this.orderIds[this.orderIds.length - 1]!;
      this.orderIds.pop();
    }
  }

  private newUserId(): number {
    return this.s.idBase.users + this.seqUser++ * this.s.workers + this.w;
  }

  private newOrderId(): number {
    return this.s.idBase.orders + this.seqOrder++ * this.s.workers + this.w;
  }

  // Values ------------------------------------------------------------------------------------

  private money(): string {
    return `${Math.floor(this.rnd() * 100000)}.${pad(Math.floor(this.rnd() * 10000), 4)}`;
  }

  private datetime6(): string {
    const r = this.rnd;
    return `20${pad(20 + Math.floor(r() * 6), 2)}-${pad(1 + Math.floor(r() * 12), 2)}-${pad(1 + Math.floor(r() * 28), 2)} ${pad(Math.floor(r() * 24), 2)}:${pad(Math.floor(r() * 60), 2)}:${pad(Math.floor(r() * 60), 2)}.${pad(Math.floor(r() * 1e6), 6)}`;
  }

  private note(): string | null {
    const x = this.rnd();
    return x < 0.2 ? null : x < 0.3 ? '' : `note ${this.pick(NAMES)} ${Math.floor(this.rnd() * 1e6)}`;
  }

  private itemInsert(orderId: number, line: number, userId: number): Stmt {
    return {
      sql: 'INSERT INTO `order_items` (`order_id`, `line_no`, `user_id`, `sku`, `qty`, `price`) VALUES (?, ?, ?, ?, ?, ?)',
      params: [orderId, line, userId, this.pick(SKUS), 1 + Math.floor(this.rnd() * 9), this.money()],
      insert: true,
    };
  }

  private orderInsert(id: number, userId: number): Stmt {
    return {
      sql: 'INSERT INTO `orders` (`id`, `user_id`, `status`, `total`, `created_at`, `note`) VALUES (?, ?, ?, ?, ?, ?)',
      params: [id, userId, this.pick(STATUSES), this.money(), this.datetime6(), this.note()],
      insert: true,
    };
  }

  // Operations: each returns its transactions (in order) and the model change to make once they
  // all committed; undefined when the worker has nothing to apply it to yet.

  private plan(kind: OpKind): { txns: Txn[]; commit: () => void; move?: 'same' | 'cross' } | undefined {
    const own = this.s.ownerOf;
    switch (kind) {
      case 'insertUser': {
        const id = this.newUserId();
        return {
          txns: [
            {
              shard: own(id),
              stmts: [
                {
                  sql: 'INSERT INTO `users` (`id`, `email`, `name`, `balance`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?)',
                  params: [
                    id,
                    `load-${id}@example.com`,
                    `${this.pick(NAMES)} ${id}`,
                    this.money(),
                    this.datetime6(),
                    this.rnd() < 0.5 ? null : this.datetime6(),
                  ],
                  insert: true,
                },
              ],
            },
          ],
          commit: () => this.addUser(id),
        };
      }
      case 'updateUser': {
        const id = this.pick(this.users);
        if (id === undefined) return undefined;
        return {
          txns: [
            {
              shard: own(id),
              stmts: [
                {
                  sql: 'UPDATE `users` SET `balance` = ?, `name` = ?, `updated_at` = ? WHERE `id` = ?',
                  params: [
                    this.money(),
                    `${this.pick(NAMES)} ${Math.floor(this.rnd() * 1000)}`,
                    this.datetime6(),
                    id,
                  ],
                },
              ],
            },
          ],
          commit: () => undefined,
        };
      }
      case 'deleteUser': {
        const id = this.pick(this.users);
        if (id === undefined || this.users.length < 20) return undefined;
        return {
          txns: [{ shard: own(id), stmts: [{ sql: 'DELETE FROM `users` WHERE `id` = ?', params: [id] }] }],
          commit: () => this.removeUser(id),
        };
      }
      case 'insertOrder': {
        const userId = this.pick(this.users);
        if (userId === undefined) return undefined;
        const id = this.newOrderId();
        const n = 1 + Math.floor(this.rnd() * 3);
        const stmts = [this.orderInsert(id, userId)];
        const items = new Map<number, Item>();
        for (let line = 1; line <= n; line++) {
          stmts.push(this.itemInsert(id, line, userId));
          items.set(line, { line, userId });
        }
        return {
          txns: [{ shard: own(userId), stmts }],
          commit: () => this.addOrder(id, { userId, items, nextLine: n + 1 }),
        };
      }
      case 'updateOrder': {
        const id = this.pick(this.orderIds);
        if (id === undefined) return undefined;
        const o = this.orders.get(id)!;
        const stmts: Stmt[] = [
          {
            sql: 'UPDATE `orders` SET `status` = ?, `total` = ?, `note` = ? WHERE `id` = ?',
            params: [this.pick(STATUSES), this.money(), this.note(), id],
          },
        ];
        const item = this.pick([...o.items.values()]);
        if (item && this.rnd() < 0.5) {
          stmts.push({
            sql: 'UPDATE `order_items` SET `qty` = ? WHERE `order_id` = ? AND `line_no` = ?',
            params: [1 + Math.floor(this.rnd() * 9), id, item.line],
          });
        }
        return { txns: [{ shard: own(o.userId), stmts }], commit: () => undefined };
      }
      case 'deleteOrder': {
        const id = this.pick(this.orderIds);
        if (id === undefined || this.orderIds.length < 20) return undefined;
        const o = this.orders.get(id)!;
        return {
          txns: [{ shard: own(o.userId), stmts: this.deleteOrderStmts(id) }],
          commit: () => this.removeOrder(id),
        };
      }
      case 'moveOrder': {
        const id = this.pick(this.orderIds);
        const to = this.pick(this.users);
        if (id === undefined || to === undefined) return undefined;
        const o = this.orders.get(id)!;
        if (to === o.userId) return undefined;
        const from = own(o.userId);
        const dest = own(to);
        const moved: Order = {
          userId: to,
          nextLine: o.nextLine,
          items: new Map([...o.items].map(([k]) => [k, { line: k, userId: to }])),
        };
        const commit = () => this.addOrder(id, moved);
        if (from === dest) {
          // Same source shard: the shard key changes in place (items with their order).
          const stmts: Stmt[] = [
            {
              sql: 'UPDATE `orders` SET `user_id` = ?, `status` = ? WHERE `id` = ?',
              params: [to, this.pick(STATUSES), id],
            },
          ];
          for (const it of o.items.values()) {
            stmts.push({
              sql: 'UPDATE `order_items` SET `user_id` = ? WHERE `order_id` = ? AND `line_no` = ?',
              params: [to, id, it.line],
            });
          }
          return { txns: [{ shard: from, stmts }], commit, move: 'same' };
        }
        // Another source shard: delete there and insert here, in either order.
        const ins: Stmt[] = [this.orderInsert(id, to)];
        for (const it of o.items.values()) ins.push(this.itemInsert(id, it.line, to));
        const del: Txn = { shard: from, stmts: this.deleteOrderStmts(id) };
        const add: Txn = { shard: dest, stmts: ins };
        return { txns: this.rnd() < 0.5 ? [del, add] : [add, del], commit, move: 'cross' };
      }
      case 'insertItem': {
        const id = this.pick(this.orderIds);
        if (id === undefined) return undefined;
        const o = this.orders.get(id)!;
        const line = o.nextLine;
        return {
          txns: [{ shard: own(o.userId), stmts: [this.itemInsert(id, line, o.userId)] }],
          commit: () => {
            o.items.set(line, { line, userId: o.userId });
            o.nextLine = line + 1;
          },
        };
      }
      case 'updateItem': {
        const picked = this.pickItem();
        if (!picked) return undefined;
        const { id, o, it } = picked;
        return {
          txns: [
            {
              shard: own(o.userId),
              stmts: [
                {
                  sql: 'UPDATE `order_items` SET `qty` = ?, `price` = ?, `sku` = ? WHERE `order_id` = ? AND `line_no` = ?',
                  params: [1 + Math.floor(this.rnd() * 9), this.money(), this.pick(SKUS), id, it.line],
                },
              ],
            },
          ],
          commit: () => undefined,
        };
      }
      case 'deleteItem': {
        const picked = this.pickItem();
        if (!picked) return undefined;
        const { id, o, it } = picked;
        return {
          txns: [
            {
              shard: own(o.userId),
              stmts: [
                {
                  sql: 'DELETE FROM `order_items` WHERE `order_id` = ? AND `line_no` = ?',
                  params: [id, it.line],
                },
              ],
            },
          ],
          commit: () => {
            o.items.delete(it.line);
          },
        };
      }
    }
  }

  /** An order and every item row with its id on that shard. */
  private deleteOrderStmts(id: number): Stmt[] {
    return [
      { sql: 'DELETE FROM `orders` WHERE `id` = ?', params: [id] },
      { sql: 'DELETE FROM `order_items` WHERE `order_id` = ?', params: [id] },
    ];
  }

  private chooseKind(): OpKind {
    let x = this.rnd() * this.total;
    for (let i = 0; i < this.kinds.length; i++) {
      x -= this.weights[i]!;
      if (x < 0) return this.kinds[i]!;
    }
    return this.kinds[this.kinds.length - 1]!;
  }

  /** Run one transaction until it commits (see the header for why re-running is safe). */
  private async exec(txn: Txn): Promise<void> {
    const c = this.s.counters;
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      let conn: Connection;
      try {
        conn = await this.conn(txn.shard);
      } catch (e) {
        if (attempt > 600) throw e;
        c.retries++;
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
        continue;
      }
      let committing = false;
      try {
        await conn.query('START TRANSACTION');
        for (const s of txn.stmts) {
          try {
            await conn.query(s.sql, s.params);
          } catch (e) {
            // After an ambiguous commit, finding our own insert means the transaction committed.
            if (ambiguous && s.insert && (e as { errno?: number }).errno === 1062) {
              await conn.query('ROLLBACK').catch(() => undefined);
              return;
            }
            throw e;
          }
        }
        committing = true;
        await conn.query('COMMIT');
        c.transactions++;
        for (const s of txn.stmts) {
          if (s.insert) c.inserts++;
          else if (s.sql.startsWith('UPDATE')) c.updates++;
          else c.deletes++;
        }
        return;
      } catch (e) {
        const cls = classifyError(e);
        if (cls === 'fatal' || attempt > 600) {
          await conn.query('ROLLBACK').catch(() => undefined);
          throw e;
        }
        c.retries++;
        if (cls === 'reconnect') {
          this.dropConn(txn.shard);
          if (committing) ambiguous = true;
          await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
        } else {
          await conn.query('ROLLBACK').catch(() => undefined);
          await sleep(5 + Math.floor(this.rnd() * 20));
        }
      }
    }
  }

  async run(): Promise<void> {
    const s = this.s;
    while (!s.stopped()) {
      if (s.opts.rate > 0) {
        const slot = s.nextSlot;
        s.nextSlot = Math.max(slot, Date.now() - 1000) + 1000 / s.opts.rate;
        const wait = slot - Date.now();
        if (wait > 0) await sleep(wait);
        if (s.stopped()) break;
      }
      const kind = this.chooseKind();
      const op = this.plan(kind);
      if (!op) continue;
      try {
        for (const t of op.txns) await this.exec(t);
        op.commit();
        s.counters.operations++;
        s.counters.byKind[kind]++;
        if (op.move === 'same') s.counters.sameSourceMoves++;
        if (op.move === 'cross') s.counters.crossSourceMoves++;
      } catch (e) {
        s.counters.errors++;
        s.opts.onError?.(e);
      }
    }
  }

  /** Adopt existing rows whose ids are this worker's (id ≡ w mod workers). */
  async adopt(limit: number): Promise<void> {
    const W = this.s.workers;
    for (const shard of this.s.shards.keys()) {
      const c = await this.conn(shard);
      const [users] = await c.query('SELECT `id` FROM `users` WHERE MOD(`id`, ?) = ? ORDER BY `id` LIMIT ?', [
        W,
        this.w,
        limit,
      ]);
      for (const r of users as { id: string | number }[]) this.addUser(Number(r.id));
      const [orders] = await c.query(
        'SELECT `id`, `user_id` FROM `orders` WHERE MOD(MOD(`id`, ?) + ?, ?) = ? ORDER BY `id` LIMIT ?',
        [W, W, W, this.w, limit],
      );
      for (const r of orders as { id: string | number; user_id: string | number }[]) {
        // Adopt only orders on the shard that owns them: stray rows are not the application's.
        // Existing items of an adopted order are left alone (the seeder's items do not follow
        // their order's user); lines this worker adds start above every seeded line number.
        if (this.s.ownerOf(Number(r.user_id)) !== shard) continue;
        this.addOrder(Number(r.id), { userId: Number(r.user_id), items: new Map(), nextLine: 100_000 });
      }
    }
  }
}

async function maxIds(topology: Topology): Promise<{ users: number; orders: number }> {
  let users = 0;
  let orders = 0;
  for (const s of topology.shards) {
    const c = await connect(s.endpoint, `load ${s.name}`);
    try {
      const [r] = await c.query(
        `SELECT (SELECT COALESCE(MAX(\`id\`), 0) FROM ${q('users')}) AS u,
                GREATEST((SELECT COALESCE(MAX(\`id\`), 0) FROM ${q('orders')}),
                         (SELECT COALESCE(MAX(\`order_id\`), 0) FROM ${q('order_items')})) AS o`,
      );
      const row = (r as { u: string | number; o: string | number }[])[0]!;
      users = Math.max(users, Number(row.u));
      orders = Math.max(orders, Number(row.o));
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }
  return { users: users + 1, orders: orders + 1 };
}

/** Run a write load against the topology's shards; see the header. */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  for (const t of ['users', 'orders', 'order_items']) {
    if (!opts.topology.tables.some((x) => x.name === t)) {
      throw new UsageError(
        'E_LOAD_TABLES',
        `the load generator writes the shop tables; ${t} is not in the topology`,
        {
          hint: 'use a topology over the shop fixture (fixtures/shop/schema.sql)',
        },
      );
    }
  }
  if (opts.seconds === undefined && !opts.signal) {
    throw new UsageError('E_LOAD_FOREVER', 'runLoad needs seconds or a stop signal');
  }
  const router = createRouter(opts.topology);
  const workers = Math.max(1, opts.concurrency ?? 4);
  const started = Date.now();
  const deadline = opts.seconds === undefined ? Number.POSITIVE_INFINITY : started + opts.seconds * 1000;
  const shared: Shared = {
    opts,
    ownerOf: (userId) => router.ownerOf(userId),
    shards: new Map(opts.topology.shards.map((s) => [s.name, s])),
    workers,
    idBase: await maxIds(opts.topology),
    counters: new Counters(),
    nextSlot: Date.now(),
    stopped: () => opts.signal?.aborted === true || Date.now() >= deadline,
  };
  const ws = Array.from({ length: workers }, (_, w) => new Worker(shared, w));
  try {
    await Promise.all(ws.map((w) => w.adopt(opts.adopt ?? 2000)));
    shared.nextSlot = Date.now();
    await Promise.all(ws.map((w) => w.run()));
  } finally {
    await Promise.all(ws.map((w) => w.close()));
  }
  const c = shared.counters;
  return {
    operations: c.operations,
    transactions: c.transactions,
    inserts: c.inserts,
    updates: c.updates,
    deletes: c.deletes,
    sameSourceMoves: c.sameSourceMoves,
    crossSourceMoves: c.crossSourceMoves,
    retries: c.retries,
    errors: c.errors,
    byKind: c.byKind,
    seconds: (Date.now() - started) / 1000,
  };
}
