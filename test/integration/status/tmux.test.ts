/**
 * `reshard status --watch` in a real terminal (tmux) while a rate-limited copy and a tailer run
 * on a small estate: the dashboard shows the job's state, copy progress bars with ETA and the
 * tail lag per source, keeps refreshing, and quits on `q`.
 *
 * Needs tmux; without it this test fails (it is the acceptance check for the dashboard).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Estate, makeEstate, ROOT, spawnReshard } from '../copy/helpers.js';

const SOCKET = `reshard-status-${randomBytes(4).toString('hex')}`;
const SESSION = 'status';

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function pane(): string {
  return tmux('capture-pane', '-p', '-t', SESSION);
}

async function waitPane(pred: (text: string) => boolean, what: string, ms = 120_000): Promise<string> {
  const end = Date.now() + ms;
  let last = '';
  while (Date.now() < end) {
    try {
      last = pane();
    } catch {
      last = '(no pane)';
    }
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}; the pane shows:\n${last}`);
}

describe('reshard status --watch under tmux', () => {
  let e: Estate;
  beforeAll(async () => {
    if (!hasTmux()) throw new Error('tmux is required for this test: install it (apt-get install -y tmux)');
    e = await makeEstate({ prefix: 'statustmux', rows: 3000, seed: 5 });
  });
  afterAll(async () => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
    await e?.drop();
  });

  it('shows the state, copy progress with ETA and tail lag while a copy runs, and quits on q', async () => {
    const base = ['--plan', e.planPath, '--control', e.controlDsn];
    const copy = spawnReshard([
      'copy',
      ...base,
      '--meta-db',
      e.metaDb,
      '--execute',
      '--rate',
      '100',
      '--chunk-time',
      '200ms',
    ]);
    let tail: ReturnType<typeof spawnReshard> | undefined;
    try {
      const cmd = [join(ROOT, 'bin/reshard'), 'status', '--watch', '--interval', '500ms', ...base]
        .map((a) => `'${a}'`)
        .join(' ');
      tmux(
        'new-session',
        '-d',
        '-s',
        SESSION,
        '-x',
        '160',
        '-y',
        '60',
        `${cmd}; echo "status exited $?"; sleep 600`,
      );

      const copying = await waitPane(
        (t) => t.includes('[copying]') && /s\d\/\w+\s+█+░+\s+\d+\.\d%/.test(t) && /ETA \d/.test(t),
        'the dashboard to show copy progress',
      );
      expect(copying).toMatch(/reshard job plan-[0-9a-f]{16} · copying/);
      expect(copying).toMatch(/Copy {2}\d+ rows of ~\d+ · \d+\.\d% · [\d.]+k? rows\/s · ETA/);

      tail = spawnReshard(['tail', ...base, '--meta-db', e.metaDb]);
      // Lag per source and copy progress in the same frame, while the copy still runs.
      const lag = await waitPane(
        (t) =>
          // Both sources' tailers: one tail process starts them one after the other.
          /s0\s+forward running\s+lag\s+[\d.]+ s/.test(t) &&
          /s1\s+forward running\s+lag\s+[\d.]+ s/.test(t) &&
          t.includes('[copying]') &&
          /░ +\d+\.\d%/.test(t),
        'tail lag per source while copying',
      );
      expect(lag).toMatch(/Tail {2}max lag [\d.]+ s/);
      expect(lag).toMatch(/s1\s+forward running\s+lag\s+[\d.]+ s/);

      // It keeps refreshing: the clock in the header moves.
      const clock = (t: string) => /· (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/.exec(t)?.[1];
      const first = clock(pane());
      await waitPane((t) => clock(t) !== undefined && clock(t) !== first, 'a refresh');

      tmux('send-keys', '-t', SESSION, 'q');
      await waitPane((t) => t.includes('status exited 0'), 'status to quit on q', 30_000);
    } finally {
      tail?.child.kill('SIGTERM');
      copy.child.kill('SIGTERM');
      await Promise.all([tail?.done, copy.done]);
    }
  });
});
