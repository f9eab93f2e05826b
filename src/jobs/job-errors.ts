// Errors of the jobs layer. Each carries the HTTP status the API answers with and a stable `code`.

export interface IssueItem {
  /** Dotted path into the request part that failed ('' for the whole part). */
  path: string;
  message: string;
}

export class ServiceError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly issues: IssueItem[] = [],
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

export class ValidationError extends ServiceError {
  constructor(code: string, message: string, issues: IssueItem[]) {
    super(400, code, message, issues);
    this.name = 'ValidationError';
  }
}

export class JobNotFoundError extends ServiceError {
  constructor(id: string) {
    super(404, 'JOB_NOT_FOUND', `no job with id "${id}"`);
    this.name = 'JobNotFoundError';
  }
}

export class JobStateError extends ServiceError {
  constructor(id: string, status: string, action: string) {
    super(409, 'JOB_STATE_CONFLICT', `job "${id}" is ${status}; it cannot be ${action}`);
    this.name = 'JobStateError';
  }
}

/** A job that cannot be deleted yet: its model serves, or an active job starts from its checkpoint. */
export class JobInUseError extends ServiceError {
  constructor(code: 'MODEL_SERVING' | 'JOB_IN_USE', message: string) {
    super(409, code, message);
    this.name = 'JobInUseError';
  }
}

/** `init.fromJob` names a job that does not exist, has no checkpoint to start from, or whose checkpoint does not fit (`mismatch`). */
export class InitJobInvalidError extends ValidationError {
  constructor(fromJob: string, mismatch?: string) {
    const msg = mismatch ? `job "${fromJob}" cannot start this one: ${mismatch}` : `job "${fromJob}" does not exist or has no checkpoint to start from`;
    super('INIT_JOB_INVALID', msg, [{ path: 'init.fromJob', message: msg }]);
    this.name = 'InitJobInvalidError';
  }
}

/** Why the job queue took no command: Redis out of reach, full (at its maxmemory), in cluster mode, a read-only replica, or without REDIS_URL's database. */
export type QueueTrouble = 'unreachable' | 'full' | 'cluster' | 'replica' | 'database';

export class QueueUnavailableError extends ServiceError {
  /** `reason`: the error's own words, said only for `unreachable` (the others name Redis's internals). */
  constructor(reason: string, kind: QueueTrouble = 'unreachable') {
    super(503, 'QUEUE_UNAVAILABLE', QUEUE_TROUBLE[kind](reason));
    this.name = 'QueueUnavailableError';
  }
}

const QUEUE_TROUBLE: Record<QueueTrouble, (reason: string) => string> = {
  unreachable: (reason) => `the job queue is unreachable: ${reason}`,
  full: () =>
    "the job queue is full: its Redis reached its memory limit and refuses writes; nothing was queued; retry later (the service's operator must free memory on it)",
  cluster: () =>
    "the job queue cannot run on its Redis: it runs in cluster mode, which refuses the queue's commands; nothing was queued (the service's operator must give it a Redis without cluster mode)",
  replica: () =>
    "the job queue cannot run on its Redis: it is a read-only replica; nothing was queued (the service's operator must point REDIS_URL at the primary)",
  database: () =>
    "the job queue cannot run on its Redis: it has no database of REDIS_URL's number; nothing was queued (the service's operator must point REDIS_URL at a database it has)",
};

/** zod-style issues -> our `{path, message}` items. */
export function toIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>, prefix = ''): IssueItem[] {
  return issues.map((i) => ({
    path: [prefix, ...i.path.map(String)].filter((s) => s !== '').join('.'),
    message: i.message,
  }));
}

/**
 * The key already has its cap of stored jobs (MAX_STORED_JOBS_PER_KEY). Waiting does not help:
 * only deleting the key's finished jobs frees places (no Retry-After).
 */
export class JobStoreQuotaError extends ServiceError {
  constructor(limit: number) {
    super(
      429,
      'JOB_STORE_QUOTA_EXCEEDED',
      `this API key already has ${limit} jobs stored, finished ones included (the most it may keep); delete finished jobs it no longer needs (DELETE /v1/jobs/:id, or DELETE /v1/jobs?before=<time> for many) to post more`,
    );
    this.name = 'JobStoreQuotaError';
  }
}

/** The key already has its cap of queued + running jobs (MAX_ACTIVE_JOBS_PER_KEY). */
export class JobQuotaError extends ServiceError {
  readonly retryAfterSeconds = 30;
  constructor(limit: number) {
    super(429, 'JOB_QUOTA_EXCEEDED', `this API key already has ${limit} jobs queued or running (the most it may); wait for one to finish or cancel one`);
    this.name = 'JobQuotaError';
  }
}
