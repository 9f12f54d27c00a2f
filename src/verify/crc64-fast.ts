/**
 * The row hash in WebAssembly (crc64.wat): what RowHasher.hashView computes for a row whose
 * packet payload is already canonical, about 3× faster than the JavaScript version on a full
 * verify's rows (see README.md, "Row hash speed"). crc64.ts and rowhash.ts stay the reference:
 * tests check the two agree byte for byte, and every other path (column by column, FLOAT
 * normalisation, the tailer's values) still uses them.
 *
 * Bytes must be in the module's memory to be hashed. A received packet buffer (RowView.received:
 * mysql2's socket chunk, holding a few hundred rows) is copied in once, from the first row hashed
 * to its end, and the rows after it in the same buffer cost no copy: the copy is keyed by the
 * buffer's identity, which is sound only because nothing writes a received packet buffer after it
 * arrives (mysql2 parses it and hands out views). Any other buffer, and any buffer of more than
 * CHUNK_MAX bytes from the row on, has just the row copied, every time.
 */
import { CRC64_TABLES } from './crc64.js';
import { CRC64_WASM_BASE64 } from './crc64-wasm.js';

const TABLES = 0;
const RESULT = 16384;
const DATA = 16448;
const PAGE = 65536;
/** Buffers up to this size are copied whole and reused for the rows after; larger ones per row. */
const CHUNK_MAX = 1 << 20;

/** The part of the WebAssembly API used here (@types/node 20 does not declare the global). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };

interface Exports {
  memory: WasmMemory;
  crc(p: number, len: number): void;
  row(p: number, len: number, n: number): void;
}

let compiled: object | undefined;

export class Crc64Wasm {
  private readonly x: Exports;
  private u8: Uint8Array;
  private i32: Int32Array;
  /** The buffer whose bytes from `base` on are at DATA (a received packet buffer), if any. */
  private cached: Uint8Array | undefined;
  private base = 0;

  constructor() {
    compiled ??= new WebAssembly.Module(Buffer.from(CRC64_WASM_BASE64, 'base64'));
    this.x = new WebAssembly.Instance(compiled, {}).exports as unknown as Exports;
    this.u8 = new Uint8Array(this.x.memory.buffer);
    this.i32 = new Int32Array(this.x.memory.buffer);
    // Table k entry i as an i64 at k * 2048 + i * 8: low half first (little-endian).
    const { hi, lo } = CRC64_TABLES;
    for (let j = 0; j < 2048; j++) {
      this.i32[(TABLES >> 2) + 2 * j] = lo[j]!;
      this.i32[(TABLES >> 2) + 2 * j + 1] = hi[j]!;
    }
  }

  /** CRC-64/XZ of buf[start, end) into out = [hi, lo] (tests; no caching). */
  crc(buf: Uint8Array, start: number, end: number, out: Int32Array): void {
    this.cached = undefined;
    const len = end - start;
    this.reserve(len);
    this.u8.set(buf.subarray(start, end), DATA);
    this.x.crc(DATA, len);
    out[0] = this.i32[(RESULT >> 2) + 1]!;
    out[1] = this.i32[RESULT >> 2]!;
  }

  /**
   * fmix64(CRC-64/XZ(u32be(n) · buf[start, end))) into out = [hi, lo]: RowHasher.hashView of a
   * row of n columns whose payload buf[start, end) is canonical. `received`: buf is a received
   * packet buffer, never written again (RowView.received), so its copy may serve later rows.
   */
  row(buf: Uint8Array, start: number, end: number, n: number, out: Int32Array, received = false): void {
    let p: number;
    if (received && buf === this.cached && start >= this.base) {
      p = DATA + start - this.base;
    } else if (received && buf.length - start <= CHUNK_MAX) {
      this.reserve(buf.length - start);
      this.u8.set(start === 0 ? buf : buf.subarray(start), DATA);
      this.cached = buf;
      this.base = start;
      p = DATA;
    } else {
      this.cached = undefined;
      this.reserve(end - start);
      this.u8.set(buf.subarray(start, end), DATA);
      p = DATA;
    }
    this.x.row(p, end - start, n);
    out[0] = this.i32[(RESULT >> 2) + 1]!;
    out[1] = this.i32[RESULT >> 2]!;
  }

  /** Size of the module's memory (tests: it grows only as far as the rows need). */
  get memoryBytes(): number {
    return this.x.memory.buffer.byteLength;
  }

  private reserve(len: number): void {
    const need = DATA + len;
    const have = this.x.memory.buffer.byteLength;
    if (need <= have) return;
    this.x.memory.grow(Math.ceil((need - have) / PAGE));
    // Growing replaces the ArrayBuffer; the old views are detached.
    this.u8 = new Uint8Array(this.x.memory.buffer);
    this.i32 = new Int32Array(this.x.memory.buffer);
  }
}

let shared: Crc64Wasm | undefined;

/** The thread's instance (each scan worker has its own module state). */
export function crc64Wasm(): Crc64Wasm {
  shared ??= new Crc64Wasm();
  return shared;
}
