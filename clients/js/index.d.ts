// Types of the jobstream npm package. Messages are the API's (proto/jobstream/v1) as
// plain objects: fields in camelCase, enums as their names, 64-bit numbers as numbers.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type JobState = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'WAITING';
export type EventType = 'CREATED' | 'STARTED' | 'STEP' | 'PROGRESS' | 'RETRYING' | 'SUCCEEDED' |
  'FAILED' | 'CANCELLED' | 'SNAPSHOT' | 'ARTIFACT' | 'WAITING' | 'QUEUED' | 'CHILD' | 'RETRIED';
export type StatusCode = 'OK' | 'CANCELLED' | 'UNKNOWN' | 'INVALID_ARGUMENT' | 'DEADLINE_EXCEEDED' |
  'NOT_FOUND' | 'ALREADY_EXISTS' | 'PERMISSION_DENIED' | 'RESOURCE_EXHAUSTED' |
  'FAILED_PRECONDITION' | 'ABORTED' | 'OUT_OF_RANGE' | 'UNIMPLEMENTED' | 'INTERNAL' |
  'UNAVAILABLE' | 'DATA_LOSS' | 'UNAUTHENTICATED';

export interface Timestamp { seconds: number; nanos: number }
export interface Duration { seconds: number; nanos: number }

export interface Progress {
  step: string;
  stepIndex: number;
  stepCount: number;
  fraction: number;
  message: string;
}

export interface JobError {
  code: number;
  message: string;
  details: JsonObject;
}

export interface Artifact {
  name: string;
  contentType: string;
  size: number;
  sha256: string;
  createTime: Timestamp | null;
  attempt: number;
}

export interface BatchProgress {
  total: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  thenJobId: string;
  hasThen: boolean;
}

export interface Job {
  id: string;
  type: string;
  params: JsonObject;
  labels: Record<string, string>;
  state: JobState;
  progress: Progress | null;
  result: JsonValue;
  error: JobError | null;
  attempt: number;
  maxAttempts: number;
  cancelRequested: boolean;
  createTime: Timestamp | null;
  startTime: Timestamp | null;
  updateTime: Timestamp | null;
  endTime: Timestamp | null;
  lastSequence: number;
  priority: number;
  runAt: Timestamp | null;
  requestId: string;
  workerId: string;
  artifacts: Artifact[];
  tenant: string;
  dependsOn: string[];
  waitingFor: string[];
  uniqueKey: string;
  deduplicated: boolean;
  parentId: string;
  batch: BatchProgress | null;
  concurrencyKey: string;
  series: number;
  replayOf: string;
  [field: string]: unknown;
}

export interface JobEvent {
  jobId: string;
  sequence: number;
  time: Timestamp | null;
  type: EventType;
  status: Job;
  artifact: Artifact | null;
  child: { jobId: string; state: JobState; summary: string } | null;
  [field: string]: unknown;
}

export interface Schedule {
  id?: string;
  cron?: string;
  timeZone?: string;
  /** Seconds, or a Duration. */
  interval?: number | Duration;
  job: {
    type: string;
    params?: JsonObject;
    labels?: Record<string, string>;
    priority?: number;
    maxAttempts?: number;
    concurrencyKey?: string;
  };
  jitter?: number | Duration;
  overlap?: 'SKIP' | 'QUEUE_ONE' | 'ALLOW';
  catchUp?: 'SKIP_MISSED' | 'RUN_ONCE' | 'RUN_ALL';
  catchUpLimit?: number;
  [field: string]: unknown;
}

export interface TlsOptions {
  /** PEM file of the CA that signed the server's certificate (default: the system's). */
  ca?: string;
  /** This client's certificate and key (PEM files), for mutual TLS. */
  cert?: string;
  key?: string;
  serverName?: string;
}

export interface ConnectOptions {
  /** Bearer token; default $JOBSTREAM_TOKEN. */
  token?: string;
  tls?: TlsOptions | true;
  /** Seconds a call may take (30). */
  timeout?: number;
}

export interface ClientOptions extends ConnectOptions {
  /** Seconds submit, wait and watch keep trying an unreachable server (60). */
  retryFor?: number;
}

export interface SubmitOptions {
  labels?: Record<string, string>;
  priority?: number;
  maxAttempts?: number;
  /** Idempotency key; one is made up if not given. */
  requestId?: string;
  /** A Date, or Unix seconds. */
  runAt?: Date | number;
  /** Seconds from now. */
  delay?: number;
  dependsOn?: Array<string | { id: string }>;
  onDependencyFailure?: 'cancel' | 'fail' | 'run';
  uniqueKey?: string;
  /** Seconds, or 'active' (while the job is live). */
  uniqueFor?: number | 'active';
  concurrencyKey?: string;
  webhook?: string | { url: string; events?: string[] };
  traceparent?: string;
}

export interface BatchChild extends SubmitOptions {
  type: string;
  params?: JsonObject;
}

export class JobstreamError extends Error {
  readonly code: StatusCode;
  /** The server's message (naming the field at fault). */
  readonly details: string;
}
export class JobFailed extends JobstreamError {
  readonly job: Job;
}

export class Client {
  constructor(address?: string, options?: ClientOptions);
  readonly address: string;
  close(): void;
  submit(type: string, params?: JsonObject, options?: SubmitOptions): Promise<Job>;
  submitBatch(children: BatchChild[], options?: { then?: BatchChild; labels?: Record<string, string>;
    requestId?: string; webhook?: string | { url: string; events?: string[] } }): Promise<{ parent: Job; childIds: string[] }>;
  get(jobId: string): Promise<Job>;
  wait(jobId: string, options?: { timeout?: number }): Promise<Job>;
  result(jobId: string, options?: { timeout?: number }): Promise<JsonValue>;
  watch(jobId: string, options?: { after?: number }): AsyncGenerator<JobEvent, void, undefined>;
  cancel(jobId: string, reason?: string): Promise<Job>;
  retry(jobId: string, options?: { reason?: string; asNew?: boolean; params?: JsonObject }): Promise<Job>;
  delete(jobId: string): Promise<void>;
  list(filter?: { states?: JobState[]; type?: string; labels?: Record<string, string>;
    parent?: string | { id: string }; pageSize?: number }): AsyncGenerator<Job, void, undefined>;
  types(): Promise<Array<Record<string, unknown>>>;
  whoami(): Promise<{ name: string; tenant: string; roles: string[] }>;
  fetchArtifact(jobId: string, name: string, file: string): Promise<Artifact>;
  createSchedule(schedule: Schedule, options?: { paused?: boolean }): Promise<Schedule>;
  getSchedule(id: string): Promise<Schedule>;
  listSchedules(options?: { pageSize?: number }): AsyncGenerator<Schedule, void, undefined>;
  updateSchedule(schedule: Schedule): Promise<Schedule>;
  pauseSchedule(id: string): Promise<Schedule>;
  resumeSchedule(id: string): Promise<Schedule>;
  triggerSchedule(id: string): Promise<Job>;
  deleteSchedule(id: string): Promise<void>;
}

export class Retryable extends Error {}
export class Fatal extends Error {}
export class Cancelled extends Error {}
export class LeaseLost extends Error {}

export interface Context {
  readonly job: Job;
  readonly id: string;
  readonly attempt: number;
  /** W3C traceparent of this attempt's span. */
  readonly traceparent: string;
  /** A client asked to cancel the job, or the worker gave it back while draining. */
  readonly cancelled: boolean;
  /** Throws Cancelled once cancelled, LeaseLost once the lease is gone. */
  check(): void;
  step(name: string, options?: { index?: number; count?: number; fraction?: number; message?: string }): Promise<void>;
  progress(fraction: number, message?: string): Promise<void>;
  upload(file: string, options?: { name?: string; contentType?: string }): Promise<Artifact>;
}

export type TaskFunction = (ctx: Context, params: JsonObject) => JsonValue | void | Promise<JsonValue | void>;

export interface WorkerOptions extends ConnectOptions {
  concurrency?: number;
  workerId?: string;
  leaseDuration?: number;
  heartbeat?: number;
  drainTimeout?: number;
  poll?: number;
  /** Seconds a busy worker waits for a few slots to free before it leases (0.005). */
  linger?: number;
}

export class Worker {
  constructor(address?: string, options?: WorkerOptions);
  readonly workerId: string;
  /** Jobs this worker ended. */
  readonly done: number;
  task(type: string, fn: TaskFunction): this;
  run(options?: { signals?: boolean }): Promise<void>;
  stop(): void;
}

export function toValue(value: JsonValue | undefined): unknown;
export function toStruct(object: JsonObject | null | undefined): unknown;
export function fromValue(value: unknown): JsonValue;
export function fromStruct(struct: unknown): JsonObject;
export function toDate(timestamp: Timestamp | null | undefined): Date | null;
