// Type declarations of the ratectl package (lib/node): one rate limit
// shared by every process on a host.  See doc/node.md.

/** A rate: "500/min", [count, periodMs] or [count, periodMs, burst]. */
export type Rate = string | [number, number] | [number, number, number];

export interface BudgetOptions {
  /** Request limits: one rate or several (per second, minute, day...). */
  requests?: Rate | Rate[];
  /** Token limits. */
  tokens?: Rate | Rate[];
  /** Requests in flight at once (0 or absent: no cap). */
  concurrency?: number;
  /** Ms over which waiters are let in after a cooldown (0: 1000). */
  jitter?: number;
  /** Percent of the first limit kept for batch requests (0: 10). */
  batchShare?: number;
  /** Ms idle (nothing admitted or in flight, every limit full) after which
   *  the budget is removed (0 or absent: never). */
  expire?: number;
  /** Its weight as a tenant, 1 to 100 (0 or absent: not one). */
  weight?: number;
  /** What made it, for reports: a template such as 'user-*' (up to 64 bytes). */
  origin?: string | null;
  /** Fail with EEXISTS when the budget exists. */
  create?: boolean;
  /** Fail with ENOTFOUND when it does not. */
  update?: boolean;
}

export interface LimitInfo {
  dim: 'requests' | 'tokens';
  count: number;
  periodMs: number;
  burst: number;
  /** Units that could pass now. */
  available: number;
  /** Ms until available === burst. */
  untilFullMs: number;
}

export interface Counters {
  admitted: number;
  refused: number;
  waited: number;
  waitMs: number;
  tokensEstimated: number;
  tokensActual: number;
  tokensReconciled: number;
  reclaimed: number;
  retries: number;
}

export interface BudgetInfo {
  name: string;
  limits: LimitInfo[];
  maxInflight: number;
  jitterMs: number;
  batchShare: number;
  /** Slots held now. */
  inflight: number;
  /** Slots recorded held whose holder died. */
  dead: number;
  /** Remaining cooldown, 0 when none. */
  cooldownMs: number;
  counters: Counters;
  /** Removed once idle this long, 0: never. */
  expireMs: number;
  /** Its weight as a tenant, 0: not one. */
  weight: number;
  /** The template that made it, or ''. */
  origin: string;
  /** Since its last admission; null: never admitted. */
  idleMs: number | null;
}

export interface TagInfo {
  /** '' for the rest. */
  tag: string;
  requests: number;
  /** Estimated, corrected at release. */
  tokens: number;
  /** Counts inherited from the tag it replaced: its own may be this much too high. */
  error: number;
}

export interface Tags {
  /** The counted tags (at most 32), most requests first. */
  top: TagInfo[];
  /** Untagged requests and tags no longer counted. */
  rest: TagInfo;
}

export type Priority = 'interactive' | 'batch';

export interface CostOptions {
  /** Tokens to charge now (an estimate, corrected at release). Default 0. */
  tokens?: number;
  /** Requests to charge. Default 1. */
  requests?: number;
  /** Default 'interactive'. */
  priority?: Priority;
  /** Counted in the budget's tags(): 1 to 48 bytes of [A-Za-z0-9._:/-]
   *  (another throws EBADNAME). */
  tag?: string | null;
}

export interface AcquireOptions extends CostOptions {
  /** Ms to wait at most; undefined: no limit; 0: only if admitted now. */
  timeout?: number;
  /** Aborting it gives the place back and rejects with its reason. */
  signal?: AbortSignal;
}

export class Lease {
  private constructor();
  readonly budget: string;
  /** Tokens charged at admission. */
  readonly tokens: number;
  /** Its in-flight slot, -1 when the budget has no cap. */
  readonly slot: number;
  readonly pid: number;
  /** Admission time, ns on the ledger's clock. */
  readonly startNs: number;
  /** The tag it was admitted with, or null. */
  readonly tag: string | null;
  readonly held: boolean;
  /** Free the slot; correct the token charge when actualTokens is given. */
  release(actualTokens?: number): void;
}

export class Ledger {
  /** The ledger directory: path, else $RATECTL_LEDGER, else the default. */
  constructor(path?: string);
  readonly path: string;
  /** Acquires of this Ledger waiting now. */
  readonly pending: number;
  /** Ns on the ledger's clock. */
  now(): number;
  set(name: string, options: BudgetOptions): void;
  delete(name: string): void;
  budget(name: string): BudgetInfo;
  budgets(): BudgetInfo[];
  /** Pause the budget for every process for ms (0 ends a pause). */
  cooldown(name: string, ms: number): void;
  /** Refill (one budget, or all) and end any cooldown. */
  reset(name?: string): void;
  /** Free the slots of dead holders. */
  reclaim(): { slots: number; readers: number };
  /** Remove every budget idle past its expire now; how many. */
  sweep(): number;
  /** The budget's counted tags. */
  tags(name: string): Tags;
  /** Admit now or throw RatectlError (ELIMITED, ECOOLDOWN, EINFLIGHT, ETOOBIG, ENOTFOUND). */
  tryAcquire(budget: string, options?: CostOptions): Lease;
  /** Admit, waiting in line with every process of the host, never blocking the loop. */
  acquire(budget: string, options?: AcquireOptions): Promise<Lease>;
  /** Close: held leases are released uncounted; waiting acquires reject. */
  close(): void;
}

export type RatectlCode =
  | 'ELIMITED' | 'EINFLIGHT' | 'ECOOLDOWN' | 'ETOOBIG' | 'ETIMEDOUT' | 'ENOTFOUND'
  | 'EEXISTS' | 'EBADNAME' | 'EBADCONFIG' | 'EVERSION' | 'ECORRUPT' | 'EUNSAFE'
  | 'EFORKED' | 'EBADLEASE' | 'ELMDB' | 'EPARSE' | 'EPENDING'
  | 'HTTP_ERETRYBUDGET' | 'HTTP_ESTATE'
  | string;   // a system error's name: 'EACCES', 'ENOSPC'...

export class RatectlError extends Error {
  constructor(message: string, errno: number, waitMs?: number | null);
  readonly name: 'RatectlError';
  /** 'ELIMITED', 'ETIMEDOUT'... or a system error's name. */
  code: RatectlCode;
  /** The library's code (negative). */
  errno: number;
  /** ELIMITED, ECOOLDOWN: ms after which the same cost would pass; else null. */
  waitMs: number | null;
}

export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface FetchOptions {
  /** The config file (default $RATECTL_CONFIG, else /etc/ratectl.conf). */
  config?: string;
  /** Or the config itself. */
  configText?: string;
  /** The ledger directory (default $RATECTL_LEDGER, else the default). */
  ledger?: string;
  /** The fetch that sends (default globalThis.fetch). */
  fetch?: FetchFunction;
}

/** One budget's response cache (ratectl.conf(5) `cache`), host-wide. */
export interface CacheStats {
  budget: string;
  /** Answers held now. */
  entries: number;
  /** Their size: bodies, headers, keys. */
  bytes: number;
  /** Requests answered from the cache. */
  hits: number;
  /** Answered by another request's fetch they waited for. */
  coalesced: number;
  /** Cacheable requests sent to the provider. */
  misses: number;
  /** Answers stored. */
  stores: number;
  /** Removed for room (cache_size). */
  evictions: number;
  /** Removed past their time to live. */
  expired: number;
  /** Usage of the answers given from the cache. */
  tokensSaved: number;
}

export interface RatectlFetch extends FetchFunction {
  /** The response cache of every budget that has one in this fetch's
   *  ledger directory (or of budget only), sorted by name; [] when none. */
  cacheStats(budget?: string | null): CacheStats[];
  /** Remove the cached answers of budget (null or absent: of every
   *  budget), and zero its counters when resetCounters; the number removed. */
  cacheClear(budget?: string | null, resetCounters?: boolean): number;
}

/** A fetch applying the host's shared HTTP policy to the requests a budget
 *  matches; a cached answer (X-Ratectl-Cache: hit or coalesced) is given
 *  without calling the inner fetch. */
export function fetch(options?: FetchOptions): RatectlFetch;

/** The id of an API key, as a config's `key =` names it. */
export function keyId(key: string | Uint8Array): string;

export const version: string;
