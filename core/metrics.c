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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct metric_series {
	struct metric_series *next;
	metric_value value;
	char labels[]; /* escaped label set without braces */
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
		rc |= metrics_append(&buf, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n", f->name,
				     f->help, f->name,
				     f->type == METRIC_COUNTER ? "counter" : "gauge");
		for (struct metric_series *s = f->series; s != NULL && rc == 0; s = s->next) {
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
