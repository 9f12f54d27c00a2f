/**
 * Error taxonomy. Every error a user can see carries a stable `code` (documented in
 * docs/errors.md, never renamed once released) and maps to one process exit code, so
 * scripts can branch on the class of failure without parsing messages.
 *
 *   0  success
 *   2  usage           – bad flags, bad topology or plan file: fix the input and re-run
 *   3  precondition    – a server, grant, schema or job state is not as required: nothing was written
 *   4  mismatch        – verification found differences
 *   5  retries         – a retryable operation kept failing until the budget ran out, or a
 *                        connection was lost where nothing retries it (E_TRANSIENT): re-run
 *   70 bug             – anything unexpected: a defect in reshard, please report it
 */
import { classifyError } from './db/errclass.js';
export const ExitCode = {
  ok: 0,
  usage: 2,
  precondition: 3,
  mismatch: 4,
  retriesExhausted: 5,
  bug: 70,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorKind = 'usage' | 'precondition' | 'mismatch' | 'retries' | 'bug';

const exitByKind: Record<ErrorKind, ExitCode> = {
  usage: ExitCode.usage,
  precondition: ExitCode.precondition,
  mismatch: ExitCode.mismatch,
  retries: ExitCode.retriesExhausted,
  bug: ExitCode.bug,
};

export interface ErrorDetails {
  /** What the user should do about it; shown under the message. */
  hint?: string;
  /** Where the problem is: a file, a field path, a server name, a setting. */
  where?: string;
  /** Extra machine-readable context for --json output. Must never contain secrets. */
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class ReshardError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly where: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(kind: ErrorKind, code: string, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ReshardError';
    this.kind = kind;
    this.code = code;
    this.hint = details.hint;
    this.where = details.where;
    this.data = details.data;
  }

  get exitCode(): ExitCode {
    return exitByKind[this.kind];
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      kind: this.kind,
      message: this.message,
      ...(this.where ? { where: this.where } : {}),
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.data ? { data: this.data } : {}),
    };
  }
}

export class UsageError extends ReshardError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super('usage', code, message, details);
    this.name = 'UsageError';
  }
}

export class PreconditionError extends ReshardError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super('precondition', code, message, details);
    this.name = 'PreconditionError';
  }
}

export class MismatchError extends ReshardError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super('mismatch', code, message, details);
    this.name = 'MismatchError';
  }
}

export class RetriesExhaustedError extends ReshardError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super('retries', code, message, details);
    this.name = 'RetriesExhaustedError';
  }
}

/** A single issue inside a multi-issue validation failure (topology files report all at once). */
export interface ValidationIssue {
  file: string;
  /** Dotted/indexed path into the document, e.g. `shards[2].port`. */
  path: string;
  message: string;
  hint?: string;
}

export class ValidationError extends UsageError {
  readonly issues: ValidationIssue[];
  constructor(code: string, file: string, issues: ValidationIssue[]) {
    const lines = issues.map(
      (i) => `  ${i.file}: ${i.path || '(root)'}: ${i.message}${i.hint ? `\n      fix: ${i.hint}` : ''}`,
    );
    super(
      code,
      `${file} is invalid (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      {
        where: file,
        data: { issues },
      },
    );
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/** ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED. */
const ACCESS_DENIED = new Set([1044, 1142, 1143, 1227]);

/** Wrap anything unexpected so the CLI can say "this is a bug" with the original stack. */
export function asReshardError(err: unknown): ReshardError {
  if (err instanceof ReshardError) return err;
  const message = err instanceof Error ? err.message : String(err);
  // A connection lost (a KILL, a restart, a proxy) or a lock conflict where no retry loop was
  // around it — while setting up, say — is the estate's weather, not a defect of reshard.
  if (classifyError(err) !== 'fatal') {
    return new RetriesExhaustedError('E_TRANSIENT', `a server connection or transaction failed: ${message}`, {
      hint: 're-run the same command: it resumes from what was committed (copy from its checkpoints, tail from its applied positions); if it keeps failing, check the servers and the log above',
      cause: err,
    });
  }
  // Access denied (to a database, a table, a column; a privilege such as SUPER or a dynamic one)
  // where no check before it knew to look: the estate's setup, with the server's own words.
  const errno = (err as { errno?: number } | undefined)?.errno;
  if (errno !== undefined && ACCESS_DENIED.has(errno)) {
    return new PreconditionError('E_GRANTS', `a server refused reshard's account: ${message}`, {
      hint: 'grant the account what the message names (reshard preflight lists what each shard needs), then re-run the same command: it resumes from what was committed',
      cause: err,
    });
  }
  return new ReshardError('bug', 'E_BUG', `unexpected error: ${message}`, {
    hint: 'this is a defect in reshard; please report it with the log above (run with RESHARD_LOG_LEVEL=debug for more)',
    cause: err,
  });
}
