/**
 * Retry policy, by MySQL errno and driver code — never by message text. Only idempotent units
 * are retried (a whole target transaction, a chunk, a reconnect); the backoff is exponential with
 * jitter and honours cancellation.
 */
import { RetriesExhaustedError } from '../errors.js';
import { classifyError } from './errclass.js';

export { classifyError, type ErrorClass } from './errclass.js';

export interface RetryOptions {
  label: string;
  /** Total attempts, including the first. */
  attempts?: number;
  baseMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
  /** Called before a retry of class 'reconnect' (replace the connection here). */
  onReconnect?: (err: unknown) => Promise<void>;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const attempts = opts.attempts ?? 10;
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 10_000;
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      const cls = classifyError(err);
      if (cls === 'fatal' || attempt === attempts) {
        if (cls === 'fatal') throw err;
        break;
      }
      const delay = Math.min(max, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
      if (cls === 'reconnect' && opts.onReconnect) {
        try {
          await opts.onReconnect(err);
        } catch (e) {
          // The server may still be down: count it as this attempt's failure and back off again.
          last = e;
        }
      }
    }
  }
  const e = last as { code?: string; errno?: number; message?: string };
  throw new RetriesExhaustedError(
    'E_RETRIES_EXHAUSTED',
    `${opts.label}: gave up after ${attempts} attempts: ${e?.code ?? e?.errno ?? ''} ${e?.message ?? String(last)}`,
    {
      hint: 'check that the server is up and reachable; the operation is idempotent, so re-running the command resumes it',
      cause: last,
    },
  );
}
