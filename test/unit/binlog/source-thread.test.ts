/**
 * What crosses between the tailer's thread and its binlog reader thread (source-thread.ts):
 * row values and errors must arrive as the tailer would have seen them from a reader on its
 * own thread.
 */
import { describe, expect, it } from 'vitest';
import { StreamError } from '../../../src/binlog/source.js';
import {
  packImage,
  reviveStreamError,
  serializeStreamError,
  unpackImage,
} from '../../../src/binlog/source-thread.js';
import { classifyError } from '../../../src/db/errclass.js';

describe('row images across the thread boundary', () => {
  it('arrive with the same values, Buffers as Buffers, each copied on its own and not its packet', () => {
    const packet = Buffer.alloc(65_536, 7);
    packet.write('\u0000ab\u0000', 100, 'latin1');
    const img: Record<string, unknown> = {
      id: '18446744073709551615',
      blob: packet.subarray(100, 104),
      empty: packet.subarray(0, 0),
      text: 'Zoë 😀 ',
      none: null,
      enumError: undefined,
      n: 42,
    };
    const expected = { ...img, blob: Buffer.from([0, 0x61, 0x62, 0]), empty: Buffer.alloc(0) };
    packImage(img);
    const sent = structuredClone(img);
    // What was posted holds 4 bytes, not the 64 KiB packet the value was a view of.
    expect((sent.blob as Uint8Array).buffer.byteLength).toBe(4);
    unpackImage(sent);
    expect(Buffer.isBuffer(sent.blob)).toBe(true);
    expect(Buffer.isBuffer(sent.empty)).toBe(true);
    expect(sent).toEqual(expected);
    expect('enumError' in sent).toBe(true);
  });
});

describe('stream errors across the thread boundary', () => {
  const errors: unknown[] = [
    Object.assign(new Error('Access denied'), { errno: 1045, code: 'ER_ACCESS_DENIED_ERROR', fatal: true }),
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', fatal: true }),
    Object.assign(new Error('Could not find first log file name in binary log index file'), {
      errno: 1236,
      code: 'ER_MASTER_FATAL_ERROR_READING_BINLOG',
    }),
    new StreamError('no event or heartbeat for 5000 ms', undefined, 'PROTOCOL_CONNECTION_LOST'),
    new StreamError('partial row image', undefined, 'E_ROW_IMAGE'),
    new Error('something else'),
    'a string',
  ];

  it('keep message, errno and code, and are retried or not as the original would be', () => {
    for (const e of errors) {
      const back = reviveStreamError(structuredClone(serializeStreamError(e)));
      const o = e as { message?: string; errno?: number; code?: string };
      expect(back).toBeInstanceOf(StreamError);
      expect(back.message).toBe(typeof e === 'string' ? e : o.message);
      expect(back.errno).toBe(o.errno);
      expect(back.code).toBe(o.code);
      expect(classifyError(back), String(o.message ?? e)).toBe(classifyError(e));
    }
  });
});
