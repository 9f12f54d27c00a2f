import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { describe, expect, it } from 'vitest';
import { sandboxDown, sandboxUp } from '../../src/sandbox/instances.js';
import { rootConn, sandbox } from '../support/db.js';

describe('sandbox servers', () => {
  it('run with ROW binlog, FULL row image and metadata, and distinct server ids', async () => {
    const ids = new Set<string>();
    for (const name of ['ctl', 's0', 's1', 't0', 't1', 't2'] as const) {
      const c = await rootConn(name);
      try {
        const [rows] = await c.query(
          'SELECT @@server_id AS id, @@log_bin AS log_bin, @@binlog_format AS fmt, @@binlog_row_image AS img, @@binlog_row_metadata AS meta, @@port AS port',
        );
        const r = (rows as Record<string, unknown>[])[0]!;
        expect(r).toMatchObject({ log_bin: '1', fmt: 'ROW', img: 'FULL', meta: 'FULL' });
        expect(Number(r.port)).toBe(sandbox().ports[name]);
        ids.add(String(r.id));
      } finally {
        await c.end();
      }
    }
    expect(ids.size).toBe(6);
  });
});

/** A free loopback port, as the kernel hands one out. */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

describe('sandbox start', () => {
  it('waits out a port held by the local end of a client connection, then starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reshard-sbx-'));
    const [port, peer] = [await freePort(), await freePort()];
    // The datadir first, so the start under test binds at once instead of after initializing.
    await sandboxUp({ dir, names: ['x0'], basePort: port });
    await sandboxDown(dir);
    // What a client's outgoing connection looks like to bind(): a socket bound to the port without
    // SO_REUSEADDR (Node's own sockets always set it, so perl, from Debian's essential perl-base).
    // Held until told on stdin; the peer closes first, so the port is free at once (no TIME_WAIT).
    const holder = spawn(
      'perl',
      [
        '-MSocket',
        '-e',
        `socket(L,PF_INET,SOCK_STREAM,0) or die; setsockopt(L,SOL_SOCKET,SO_REUSEADDR,1);
         bind(L,sockaddr_in(${peer},inet_aton("127.0.0.1"))) or die "peer: $!"; listen(L,5);
         socket(C,PF_INET,SOCK_STREAM,0) or die; bind(C,sockaddr_in(${port},inet_aton("127.0.0.1"))) or die "bind: $!";
         connect(C,sockaddr_in(${peer},inet_aton("127.0.0.1"))) or die "connect: $!"; accept(A,L) or die;
         $|=1; print "held\n"; <STDIN>; close(A); select(undef,undef,undef,0.2); close(C);`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res, rej) => {
      holder.stdout.once('data', () => res());
      holder.once('exit', (code) => rej(new Error(`port holder exited with ${code}`)));
    });
    const errorLog = join(dir, 'x0', 'error.log');
    const before = readFileSync(errorLog, 'utf8').length;
    try {
      const up = sandboxUp({ dir, names: ['x0'], basePort: port });
      // Released only once a start has failed on the held port, however slow this machine is.
      const deadline = Date.now() + 60_000;
      while (!/Address already in use/.test(readFileSync(errorLog, 'utf8').slice(before))) {
        if (Date.now() > deadline) throw new Error('no start failed on the held port within 60 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      holder.stdin.end('go\n');
      await up;
      expect(readFileSync(errorLog, 'utf8').slice(before)).toMatch(/ready for connections/);
      const c = await createConnection({ host: '127.0.0.1', port, user: 'root' });
      try {
        const [r] = await c.query('SELECT @@port AS p');
        expect(Number((r as { p: number }[])[0]!.p)).toBe(port);
      } finally {
        await c.end();
      }
    } finally {
      holder.kill();
      await sandboxDown(dir, { purge: true });
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
