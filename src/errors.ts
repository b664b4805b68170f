/**
 * Exit codes are part of pgferry's contract with runbooks: every command maps
 * its outcome onto exactly these values (documented in the README).
 */
export const ExitCode = {
  ok: 0,
  /** The check or comparison ran and found problems. */
  problems: 1,
  /** Bad flags, bad configuration, refused request. */
  usage: 2,
  /** A side could not be reached or refused our credentials. */
  connect: 3,
  /** An operation started and failed midway. */
  failed: 4,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface PgferryErrorOptions {
  /** What the user can do about it; printed under the message. */
  hint?: string;
  cause?: unknown;
}

/** An error whose message is meant for the user, with the exit code it maps to. */
export class PgferryError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  constructor(message: string, exitCode: ExitCodeValue, options: PgferryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/** Usage or configuration error: exit 2. */
export class UsageError extends PgferryError {
  constructor(message: string, options: PgferryErrorOptions = {}) {
    super(message, ExitCode.usage, options);
  }
}

/** Cannot connect or authenticate: exit 3. */
export class ConnectError extends PgferryError {
  constructor(message: string, options: PgferryErrorOptions = {}) {
    super(message, ExitCode.connect, options);
  }
}

/** An operation failed midway: exit 4. */
export class OperationError extends PgferryError {
  constructor(message: string, options: PgferryErrorOptions = {}) {
    super(message, ExitCode.failed, options);
  }
}

/** The user interrupted (Ctrl-C): exit 130. */
export class InterruptedError extends PgferryError {
  constructor(message = 'interrupted') {
    super(message, ExitCode.interrupted);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
