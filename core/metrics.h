/*
 * metrics.h: the daemon's Prometheus metrics.
 *
 * A family (name, help, type) is registered once at start-up on the loop thread; a series is
 * one label set of a family.  metrics_series() returns a stable pointer to the series' value,
 * which callers keep and update with metrics_inc()/metrics_add()/metrics_set() from any thread
 * (the values are atomics).  metrics_render() writes the text exposition format 0.0.4 that
 * Prometheus scrapes and `promtool check metrics` accepts.
 */
#ifndef MDG_METRICS_H
#define MDG_METRICS_H

#include <stdint.h>

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM, /* series made with metrics_histogram() only */
};

#define METRICS_BUCKETS_MAX 16

struct metric_family;

/* A series' value: counters only grow, gauges go both ways. */
typedef int64_t metric_value;

/*
 * Registers a family, or returns the one already registered under name (type and help must
 * match; a mismatch is a programming error and aborts).  The strings must outlive the process
 * (string literals).  Counter names end in "_total" by convention.
 */
struct metric_family *metrics_family(const char *name, const char *help, enum metric_type type);

/*
 * Returns the series of family f with the given label set, creating it (at 0) if needed.
 * labels is the inside of the braces, already escaped, e.g. `listener="store",code="200"`,
 * or "" for none.  The pointer stays valid until metrics_reset().  Thread-safe.
 */
metric_value *metrics_series(struct metric_family *f, const char *labels);

static inline void metrics_add(metric_value *v, int64_t n)
{
	__atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

static inline void metrics_inc(metric_value *v)
{
	__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
}

static inline void metrics_set(metric_value *v, int64_t n)
{
	__atomic_store_n(v, n, __ATOMIC_RELAXED);
}

static inline int64_t metrics_get(const metric_value *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/*
 * One histogram series of family f (METRIC_HISTOGRAM) with the given labels and upper bounds
 * (ascending, at most METRICS_BUCKETS_MAX; +Inf is implied), created on first use like
 * metrics_series().  Rendered as _bucket (cumulative), _sum and _count.  Thread-safe.
 */
struct metric_histogram;
struct metric_histogram *metrics_histogram(struct metric_family *f, const char *labels,
					   const double *bounds, size_t bound_count);
/* Counts one observation of v (for durations: seconds).  Atomic, any thread. */
void metrics_observe(struct metric_histogram *h, double v);

/* Renders every family in registration order.  Returns a malloc'd string (caller frees) and
 * its length in *len, or NULL when out of memory. */
char *metrics_render(size_t *len);

/* Frees every family and series (tests and shutdown). */
void metrics_reset(void);

#endif
