/*
 * gcra.h - the admission arithmetic: GCRA over several limits at once.
 *
 * Pure functions: no I/O, no clock, no allocation.  Callers pass `now`
 * explicitly, which is what lets the same code run against the LMDB ledger
 * today and another store (Redis, a Python binding's tests) later.
 *
 * Each limit keeps one theoretical arrival time (TAT).  With emission
 * interval T = period / count (rounded UP to whole nanoseconds, so a limit
 * is never exceeded, only under-used by less than one part in T) and
 * tolerance tau = T * burst, a cost n is admitted at time t when
 *     max(TAT, t) + n*T - tau <= t,
 * after which TAT becomes max(TAT, t) + n*T.  Over any interval of length d
 * at most burst + d/T units pass.
 */
#ifndef RATECTL_GCRA_H
#define RATECTL_GCRA_H

#include <stdint.h>

#include "ratectl.h"

/* No stored time passes this (146 years of uptime): a debt of any size
 * saturates here, and a time plus a tolerance (<= 1 year) cannot overflow. */
#define RC_TIME_MAX ((int64_t)1 << 62)

/* One limit and its state, exactly as stored in the ledger (56 bytes). */
typedef struct rc_limit {
	uint32_t dim;       /* ratectl_dim */
	uint32_t reserved;
	uint64_t count;
	int64_t period;
	uint64_t burst;
	int64_t T;          /* emission interval, ns per unit, >= 1 */
	int64_t tau;        /* T * burst */
	int64_t tat;        /* theoretical arrival time */
} rc_limit;

/* Budget-wide schedule: cooldown and the spread-out release after it. */
typedef struct rc_sched {
	int64_t cooldown_until;  /* no admission before this */
	int64_t ramp_end;        /* admissions before this are spaced ... */
	int64_t ramp_next;       /* ... no earlier than this ... */
	int64_t ramp_step;       /* ... and this far apart */
	int64_t batch_tat;       /* GCRA of batch's guaranteed share */
} rc_sched;

/* Validate cfg and fill *l with T and tau; the TAT starts "full" (0).
 * Returns 0 or RATECTL_EBADCONFIG with the detail set. */
int ratectl__limit_init(rc_limit *l, const ratectl_limit *cfg);

/*
 * The earliest time >= now at which cost c can be admitted against all n
 * limits and the schedule s, in *t_adm.  Returns 0, or RATECTL_ETOOBIG
 * when some limit's burst is smaller than the cost (it could never pass).
 */
int ratectl__gcra_plan(const rc_limit *l, unsigned n, const rc_sched *s,
                       const ratectl_cost *c, int64_t now, int64_t *t_adm);

/* Charge cost c at time t_adm (from ratectl__gcra_plan) to every limit. */
void ratectl__gcra_commit(rc_limit *l, unsigned n, rc_sched *s,
                          const ratectl_cost *c, int64_t t_adm);

/*
 * Undo a commit whose TATs were before[] and became after[] (saved by the
 * caller), on each limit whose TAT is still exactly after[i], i.e. when
 * nothing was charged since.  Otherwise that limit keeps the charge:
 * giving it back could let later admissions exceed the bound.
 */
void ratectl__gcra_undo(rc_limit *l, unsigned n, const int64_t *before,
                        const int64_t *after);

/* Charge (delta > 0) or refund (delta < 0) delta units of dim, now, in
 * full: a debt larger than the burst makes the next admissions wait. */
void ratectl__gcra_adjust(rc_limit *l, unsigned n, ratectl_dim dim,
                          int64_t delta, int64_t now);

/* Units that could pass at `now`, and the time until the limit is full. */
uint64_t ratectl__gcra_available(const rc_limit *l, int64_t now);
int64_t ratectl__gcra_until_full(const rc_limit *l, int64_t now);

/*
 * The limit among l[0..n) that provider window w describes (see
 * ratectl_observe_window() in ratectl.h), or -1 when none does.
 */
int ratectl__gcra_window_match(const rc_limit *l, unsigned n,
                               const ratectl_window *w);

/*
 * The provider says `remaining` units are left now in limit l's window
 * and that it is full again after `reset` ns: tighten l if it believes
 * more.  Returns 1 if it changed, else 0.
 */
int ratectl__gcra_tighten(rc_limit *l, uint64_t remaining, int64_t reset,
                          int64_t now);

/*
 * Pause until `until`: no admission before it.  A cooldown follows a
 * refusal by the provider, whose bucket is then empty, so every limit
 * restarts empty at `until` (at most RC_COOLDOWN_EMPTY of its rate short,
 * so a day's budget is not lost) and refills at its rate: that is a
 * floor under each limit's TAT (ratectl__gcra_floor), not a charge, so a
 * pause ended early (until = now) keeps every debt of admissions and
 * drops only its own.  The first admissions after it are spread over
 * `jitter` (at most a request burst of them).  So no burst follows.
 */
void ratectl__gcra_cooldown(rc_limit *l, unsigned n, rc_sched *s,
                            int64_t until, int64_t jitter);

/* The earliest TAT the last cooldown leaves limit l: 0 when none. */
int64_t ratectl__gcra_floor(const rc_limit *l, const rc_sched *s);

/*
 * Batch priority: may a batch cost c wait in line (reserve) for time t?
 * Yes while batch stays within `share` percent of the first limit's rate
 * (a GCRA of its own, burst 1).  ratectl__batch_commit() records it.
 */
int ratectl__batch_may_reserve(const rc_sched *s, int64_t t);
void ratectl__batch_commit(const rc_limit *l, unsigned n, rc_sched *s,
                           const ratectl_cost *c, unsigned share, int64_t t);

/* Refill every limit and end any cooldown. */
void ratectl__gcra_reset(rc_limit *l, unsigned n, rc_sched *s);

/*
 * A new boot: move every stored time (TATs, cooldown, ramp, batch) onto
 * the new boot's clock by `shift` (from the wall clock), but never later
 * than now + what was still owed at `stamp`, a time of the last boot
 * after which nothing was forgiven and everything only repaid: a wall
 * clock set back across the reboot cannot push a budget into years of
 * debt, and one set right keeps every debt and credits the time down.
 * 0 (never set) stays 0.
 */
void ratectl__gcra_rebase(rc_limit *l, unsigned n, rc_sched *s, int64_t shift,
                          int64_t stamp, int64_t now);

/* Move a limit's debt (TAT - now) from old's rate to l's rate, when an
 * update keeps a limit of the same dimension and period. */
void ratectl__gcra_rescale(rc_limit *l, const rc_limit *old, int64_t now);

#endif
