/*
 * metrics.c: registry and text rendering for Prometheus metrics.
 *
 * Families live in a registration-ordered list, series in a list per family; both only grow
 * while the daemon runs, so a series pointer handed out stays valid.  Lookups and renders take
 * one mutex; updates touch only the atomic value and take no lock, so the hot path is one
 * atomic add.  Written by hand because Debian ships no C Prometheus client library; the text
 * format is small and fixed (exposition format 0.0.4).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct metric_histogram {
	size_t bound_count;
	double bounds[METRICS_BUCKETS_MAX];
	metric_value buckets[METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative; last +Inf */
	metric_value count;
	metric_value sum_micro; /* the sum in millionths, so it stays an atomic integer */
};

struct metric_series {
	struct metric_series *next;
	metric_value value;
	struct metric_histogram *hist; /* METRIC_HISTOGRAM families only */
	char labels[];		       /* escaped label set without braces */
};

struct metric_family {
	struct metric_family *next;
	const char *name;
	const char *help;
	enum metric_type type;
	struct metric_series *series;
	struct metric_series **series_tail;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric_family *metrics_families;
static struct metric_family **metrics_tail = &metrics_families;

struct metric_family *metrics_family(const char *name, const char *help, enum metric_type type)
{
	pthread_mutex_lock(&metrics_lock);
	struct metric_family *f;
	for (f = metrics_families; f != NULL; f = f->next) {
		if (strcmp(f->name, name) == 0)
			break;
	}
	if (f != NULL) {
		if (f->type != type)
			abort(); /* two modules disagree on one metric: a programming error */
	} else {
		f = calloc(1, sizeof *f);
		if (f == NULL)
			abort();
		f->name = name;
		f->help = help;
		f->type = type;
		f->series_tail = &f->series;
		*metrics_tail = f;
		metrics_tail = &f->next;
	}
	pthread_mutex_unlock(&metrics_lock);
	return f;
}

metric_value *metrics_series(struct metric_family *f, const char *labels)
{
	pthread_mutex_lock(&metrics_lock);
	struct metric_series *s;
	for (s = f->series; s != NULL; s = s->next) {
		if (strcmp(s->labels, labels) == 0)
			break;
	}
	if (s == NULL) {
		size_t len = strlen(labels);
		s = calloc(1, sizeof *s + len + 1);
		if (s == NULL)
			abort(); /* start-up or first use of a label set: nothing sane to do */
		memcpy(s->labels, labels, len + 1);
		*f->series_tail = s;
		f->series_tail = &s->next;
	}
	pthread_mutex_unlock(&metrics_lock);
	return &s->value;
}

struct metric_histogram *metrics_histogram(struct metric_family *f, const char *labels,
					   const double *bounds, size_t bound_count)
{
	if (f->type != METRIC_HISTOGRAM || bound_count > METRICS_BUCKETS_MAX)
		abort(); /* a programming error, found at start-up */
	metric_value *v = metrics_series(f, labels);
	struct metric_series *s =
	    (struct metric_series *)(void *)((char *)v - offsetof(struct metric_series, value));
	pthread_mutex_lock(&metrics_lock);
	if (s->hist == NULL) {
		s->hist = calloc(1, sizeof *s->hist);
		if (s->hist == NULL)
			abort();
		s->hist->bound_count = bound_count;
		memcpy(s->hist->bounds, bounds, bound_count * sizeof *bounds);
	}
	pthread_mutex_unlock(&metrics_lock);
	return s->hist;
}

void metrics_observe(struct metric_histogram *h, double v)
{
	size_t i = 0;
	while (i < h->bound_count && v > h->bounds[i])
		i++;
	metrics_inc(&h->buckets[i]);
	metrics_inc(&h->count);
	metrics_add(&h->sum_micro, (int64_t)(v * 1e6));
}

/* Appends to a growable string; returns 0 or -1 when out of memory. */
static int metrics_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int metrics_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < *cap - *len) {
			*len += (size_t)n;
			return 0;
		}
		size_t ncap = *cap * 2 + (size_t)n;
		char *nbuf = realloc(*buf, ncap);
		if (nbuf == NULL)
			return -1;
		*buf = nbuf;
		*cap = ncap;
	}
}

/* The _bucket, _sum and _count lines of one histogram series. */
static int metrics_render_histogram(char **buf, size_t *len, size_t *cap, const char *name,
				    const struct metric_series *s)
{
	const struct metric_histogram *h = s->hist;
	const char *sep = s->labels[0] != '\0' ? "," : "";
	long long cumulative = 0;
	int rc = 0;
	for (size_t i = 0; i <= h->bound_count; i++) {
		cumulative += (long long)metrics_get(&h->buckets[i]);
		char le[32];
		if (i < h->bound_count)
			snprintf(le, sizeof le, "%g", h->bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		rc |= metrics_append(buf, len, cap, "%s_bucket{%s%sle=\"%s\"} %lld\n", name,
				     s->labels, sep, le, cumulative);
	}
	long long sum = (long long)metrics_get(&h->sum_micro);
	const char *open = s->labels[0] != '\0' ? "{" : "",
		   *close = s->labels[0] != '\0' ? "}" : "";
	rc |= metrics_append(buf, len, cap, "%s_sum%s%s%s %lld.%06lld\n", name, open, s->labels,
			     close, sum / 1000000, sum % 1000000);
	rc |= metrics_append(buf, len, cap, "%s_count%s%s%s %lld\n", name, open, s->labels, close,
			     (long long)metrics_get(&h->count));
	return rc;
}

char *metrics_render(size_t *out_len)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	buf[0] = '\0';
	int rc = 0;
	pthread_mutex_lock(&metrics_lock);
	for (struct metric_family *f = metrics_families; f != NULL && rc == 0; f = f->next) {
		static const char *const types[] = {"counter", "gauge", "histogram"};
		rc |= metrics_append(&buf, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n", f->name,
				     f->help, f->name, types[f->type]);
		for (struct metric_series *s = f->series; s != NULL && rc == 0; s = s->next) {
			if (s->hist != NULL) {
				rc |= metrics_render_histogram(&buf, &len, &cap, f->name, s);
				continue;
			}
			long long v = (long long)metrics_get(&s->value);
			if (s->labels[0] != '\0')
				rc |= metrics_append(&buf, &len, &cap, "%s{%s} %lld\n", f->name,
						     s->labels, v);
			else
				rc |= metrics_append(&buf, &len, &cap, "%s %lld\n", f->name, v);
		}
	}
	pthread_mutex_unlock(&metrics_lock);
	if (rc != 0) {
		free(buf);
		return NULL;
	}
	*out_len = len;
	return buf;
}

void metrics_reset(void)
{
	pthread_mutex_lock(&metrics_lock);
	struct metric_family *f = metrics_families;
	while (f != NULL) {
		struct metric_family *fnext = f->next;
		struct metric_series *s = f->series;
		while (s != NULL) {
			struct metric_series *snext = s->next;
			free(s->hist);
			free(s);
			s = snext;
		}
		free(f);
		f = fnext;
	}
	metrics_families = NULL;
	metrics_tail = &metrics_families;
	pthread_mutex_unlock(&metrics_lock);
}
