import { type ControlConnection, connectControl } from '../../../src/state/control.js';
import { port, rootConn, uniqueDb } from '../../support/db.js';

/** A fresh, not yet created control database on the `ctl` sandbox server, and its DSN. */
export function freshControl(prefix: string): { db: string; dsn: string } {
  const db = uniqueDb(prefix);
  return { db, dsn: `mysql://root@127.0.0.1:${port('ctl')}/${db}` };
}

export async function dropDb(db: string): Promise<void> {
  const c = await rootConn('ctl');
  try {
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``);
  } finally {
    await c.end();
  }
}

/** Open control connections, closing all of them when the returned `closeAll` runs. */
export function controls(): {
  open: (dsn: string) => Promise<ControlConnection>;
  closeAll: () => Promise<void>;
} {
  const opened: ControlConnection[] = [];
  return {
    open: async (dsn) => {
      const c = await connectControl(dsn);
      opened.push(c);
      return c;
    },
    closeAll: async () => {
      await Promise.all(opened.splice(0).map((c) => c.close().catch(() => undefined)));
    },
  };
}
