/* bound.h - the GCRA bound, checked exactly from outside the library. */
#ifndef RATECTL_TESTS_BOUND_H
#define RATECTL_TESTS_BOUND_H

#include <stdint.h>
#include <stdlib.h>

/* One admission seen from outside: when, and how many units. */
typedef struct adm_rec {
	int64_t t;
	uint64_t units;
} adm_rec;

static inline int adm_cmp(const void *a, const void *b)
{
	const adm_rec *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

/*
 * Sort r[0..n) by time and return the worst excess, in ns, over the bound
 * "units in [t_i, t_j] <= burst + (t_j - t_i) / T" on all windows: with
 * U_k the units up to and including k, the bound is
 * (U_j - U_{i-1}) * T - (t_j - t_i) <= tau, checked with a running minimum
 * of U_{i-1} * T - t_i.  <= 0 means never over the limit.  *total gets the
 * units, for utilisation.  Integer arithmetic throughout.
 */
static inline int64_t bound_worst_excess(adm_rec *r, size_t n, int64_t T,
                                         int64_t tau, uint64_t *total)
{
	int64_t hmin = INT64_MAX, worst = INT64_MIN;
	uint64_t U = 0;
	size_t k;

	qsort(r, n, sizeof *r, adm_cmp);
	for (k = 0; k < n; k++) {
		int64_t h = (int64_t)U * T - r[k].t, g;

		if (h < hmin)
			hmin = h;
		U += r[k].units;
		g = (int64_t)U * T - r[k].t - hmin - tau;
		if (g > worst)
			worst = g;
	}
	*total = U;
	return worst;
}

#endif
