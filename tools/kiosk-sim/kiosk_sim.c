/*
 * kiosk_sim.c: madoguchi-kiosk-sim, the store network's side of POST /v1/issuances for tests,
 * the demo and benchmarks (docs/kiosk-sim.md; wire contract DESIGN §4).
 *
 * Sends signed issuance requests from the demo cards (cards/SERIAL.pem + .key) over mutual
 * TLS, checks every 201 (kiosk_request.h: echoes, card serial, document hash, binding with the
 * keys of GET /v1/keys), compares the outcome with the demo truth (residents.jsonl, `issuable`)
 * and reports counts and latencies.  A mismatch (a 201 that must not exist or does not verify)
 * or a transport error makes the exit status 1.
 *
 * Threads: one loop thread owns libcurl (one multi handle, one easy handle per connection, at
 * most one request in flight on each) and the statistics of transfers and answers.  Signer
 * threads build and sign requests ahead into a bounded ring (struct ring, under its mutex), so
 * a signature (~1 ms for an RSA card) is never on the measured path; for up to SIM_RING_MAX
 * requests everything is signed before the clock starts.  A checker thread verifies each 201
 * (struct checker) and alone counts verification results until the loop joins it.  A job
 * (struct job) is owned by the ring until the loop takes it, then by its transfer until the
 * answer is counted, and then freed by xfer_finish or, for a 201, by the checker.  Nothing is
 * retried: libcurl's resend of a request on a fresh connection is
 * refused (seek callback) and counted as a transport error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getline, strndup, gmtime_r, timegm; the build defines it too */
#endif
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kiosk_request.h"

#define SIM_RING_MAX	65536	    /* requests signed ahead, at most (~3 KB each) */
#define SIM_STALE_S	60.0	    /* a request signed longer ago is signed again */
#define SIM_BODY_MAX	(64u << 20) /* bytes of an answer we keep */
#define SIM_SIGNERS_MAX 8	    /* signer threads */
#define SIM_SHOWN_MAX	10	    /* failures described on stderr, per run */
#define SIM_SMALL_RUN	10	    /* runs this short list every answer */
#define SIM_UNBOUNDED	UINT64_MAX

static const char sim_default_muni[] = "141003"; /* DESIGN §11 demo */

/* --- configuration and demo truth --------------------------------------------------------- */

/* One resident with a card, from residents.jsonl. */
struct resident {
	char serial[KIOSK_SERIAL_MAX + 1];
	char municipality[KIOSK_MUNICIPALITY_MAX + 1];
	char *name;				       /* NULL when the line has none */
	signed char issuable[KIOSK_CERTIFICATE_TYPES]; /* 1, 0, or -1: not stated */
};

struct sim_card {
	struct kiosk_card *card;
	const struct resident *res; /* NULL: not in residents.jsonl (or none given) */
};

/* Everything fixed before the run starts; read-only afterwards, shared by all threads. */
struct plan {
	const char *url, *ca, *cert, *key, *cards_dir, *residents_path, *save_dir, *only_card;
	const char *municipality; /* --municipality, or NULL */
	const char *default_muni; /* for cards without a resident line */
	int certificate;	  /* index, or -1 for mix */
	uint64_t total;		  /* requests to send, SIM_UNBOUNDED with --duration alone */
	long connections;
	double rate;	 /* requests per second; 0: closed loop */
	double duration; /* seconds; 0: until total */
	long timeout_ms;
	bool json;
	char issuances_url[1024], keys_url[1024];
	struct resident *residents;
	size_t nresidents;
	struct sim_card *cards;
	size_t ncards;
};

/* --- small helpers ------------------------------------------------------------------------ */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("madoguchi-kiosk-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size);
	if (p == NULL) {
		say("out of memory");
		exit(1);
	}
	return p;
}

/* A count of occurrences per short key (problem codes, curl errors). */
struct tally {
	size_t n, cap;
	struct tally_item {
		char key[64];
		uint64_t count;
	} * items;
};

static void tally_add(struct tally *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->items[i].key, key) == 0) {
			t->items[i].count++;
			return;
		}
	}
	if (t->n == t->cap) {
		size_t cap = t->cap == 0 ? 8 : 2 * t->cap;
		struct tally_item *items = realloc(t->items, cap * sizeof *items);
		if (items == NULL) {
			say("out of memory");
			exit(1);
		}
		t->items = items;
		t->cap = cap;
	}
	snprintf(t->items[t->n].key, sizeof t->items[t->n].key, "%s", key);
	t->items[t->n++].count = 1;
}

static json_t *tally_json(const struct tally *t)
{
	json_t *o = json_object();
	for (size_t i = 0; i < t->n; i++)
		json_object_set_new(o, t->items[i].key,
				    json_integer((json_int_t)t->items[i].count));
	return o;
}

/* --- residents.jsonl ---------------------------------------------------------------------- */

static int resident_cmp(const void *a, const void *b)
{
	return strcmp(((const struct resident *)a)->serial, ((const struct resident *)b)->serial);
}

static const struct resident *resident_find(const struct plan *p, const char *serial)
{
	struct resident key = {.name = NULL};
	snprintf(key.serial, sizeof key.serial, "%s", serial);
	return p->nresidents == 0
		   ? NULL
		   : bsearch(&key, p->residents, p->nresidents, sizeof *p->residents, resident_cmp);
}

/* Loads the residents that have a card; 0, or -1 after saying why. */
static int residents_load(struct plan *p)
{
	FILE *f = fopen(p->residents_path, "r");
	if (f == NULL) {
		say("cannot open --residents %s: %s", p->residents_path, strerror(errno));
		return -1;
	}
	size_t cap = 0, lineno = 0, linecap = 0;
	char *line = NULL;
	ssize_t len;
	int rc = 0;
	while ((len = getline(&line, &linecap, f)) > 0) {
		lineno++;
		if (strspn(line, " \t\r\n") == (size_t)len)
			continue;
		json_error_t je;
		json_t *r = json_loadb(line, (size_t)len, 0, &je);
		if (!json_is_object(r)) {
			say("%s:%zu: not a JSON object (%s); expected one resident per line "
			    "(DESIGN §11)",
			    p->residents_path, lineno, je.text);
			json_decref(r);
			rc = -1;
			break;
		}
		const char *serial = json_string_value(json_object_get(r, "card_serial"));
		const char *muni = json_string_value(json_object_get(r, "municipality"));
		const char *name = json_string_value(json_object_get(r, "name"));
		json_t *iss = json_object_get(r, "issuable");
		if (muni != NULL && p->default_muni == NULL &&
		    strlen(muni) <= KIOSK_MUNICIPALITY_MAX)
			p->default_muni = strdup(muni);
		if (serial == NULL || strlen(serial) > KIOSK_SERIAL_MAX) {
			json_decref(r); /* no card (null), or not a serial we could have */
			continue;
		}
		if (p->nresidents == cap) {
			cap = cap == 0 ? 1024 : 2 * cap;
			struct resident *n = realloc(p->residents, cap * sizeof *n);
			if (n == NULL) {
				say("out of memory");
				exit(1);
			}
			p->residents = n;
		}
		struct resident *res = &p->residents[p->nresidents++];
		memset(res, 0, sizeof *res);
		snprintf(res->serial, sizeof res->serial, "%s", serial);
		snprintf(res->municipality, sizeof res->municipality, "%s",
			 muni != NULL && strlen(muni) <= KIOSK_MUNICIPALITY_MAX ? muni
										: sim_default_muni);
		res->name = name != NULL ? strdup(name) : NULL;
		for (int t = 0; t < KIOSK_CERTIFICATE_TYPES; t++) {
			json_t *v = json_object_get(iss, kiosk_certificate_types[t]);
			res->issuable[t] = json_is_true(v) ? 1 : json_is_false(v) ? 0 : -1;
		}
		json_decref(r);
	}
	free(line);
	if (rc == 0 && ferror(f)) {
		say("cannot read %s", p->residents_path);
		rc = -1;
	}
	fclose(f);
	if (rc == 0)
		qsort(p->residents, p->nresidents, sizeof *p->residents, resident_cmp);
	return rc;
}

/* --- cards -------------------------------------------------------------------------------- */

static bool serial_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > KIOSK_SERIAL_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]) || islower((unsigned char)s[i]))
			return false;
	return true;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Lists the serials of cards_dir that have both SERIAL.pem and SERIAL.key, sorted; or just
 * only_card.  Returns the count (serials in *out, caller frees), or -1 after saying why.
 */
static long cards_list(const struct plan *p, char ***out)
{
	char path[4096];
	*out = NULL;
	if (p->only_card != NULL) {
		snprintf(path, sizeof path, "%s/%s.pem", p->cards_dir, p->only_card);
		bool pem = file_exists(path);
		snprintf(path, sizeof path, "%s/%s.key", p->cards_dir, p->only_card);
		if (!pem || !file_exists(path)) {
			say("--card %s: %s/%s.pem and .key do not both exist (make them with "
			    "scripts/dev-pki --cards)",
			    p->only_card, p->cards_dir, p->only_card);
			return -1;
		}
		*out = xcalloc(1, sizeof **out);
		(*out)[0] = strdup(p->only_card);
		return 1;
	}
	DIR *d = opendir(p->cards_dir);
	if (d == NULL) {
		say("cannot open --cards %s: %s", p->cards_dir, strerror(errno));
		return -1;
	}
	size_t n = 0, cap = 0;
	char **list = NULL;
	const struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 4, ".pem") != 0 ||
		    !serial_name_ok(de->d_name, len - 4))
			continue;
		snprintf(path, sizeof path, "%s/%.*s.key", p->cards_dir, (int)(len - 4),
			 de->d_name);
		if (!file_exists(path))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 256 : 2 * cap;
			char **l = realloc(list, cap * sizeof *l);
			if (l == NULL) {
				say("out of memory");
				exit(1);
			}
			list = l;
		}
		list[n++] = strndup(de->d_name, len - 4);
	}
	closedir(d);
	if (n == 0) {
		free(list);
		say("--cards %s holds no SERIAL.pem + SERIAL.key pair (scripts/dev-pki --cards "
		    "LINKAGE.csv makes them)",
		    p->cards_dir);
		return -1;
	}
	qsort(list, n, sizeof *list, str_cmp);
	*out = list;
	return (long)n;
}

/* Loads the cards the run will use (all, or the first `total`); 0, or -1 after saying why. */
static int cards_load(struct plan *p)
{
	char **serials;
	long n = cards_list(p, &serials);
	if (n < 0)
		return -1;
	size_t use = (size_t)n;
	if (p->total != SIM_UNBOUNDED && p->total < use)
		use = (size_t)p->total; /* round-robin never reaches the others */
	p->cards = xcalloc(use, sizeof *p->cards);
	size_t unknown = 0;
	int rc = 0;
	for (size_t i = 0; i < (size_t)n; i++) {
		if (i < use && rc == 0) {
			char pem[4096], key[4096];
			struct kiosk_error err;
			snprintf(pem, sizeof pem, "%s/%s.pem", p->cards_dir, serials[i]);
			snprintf(key, sizeof key, "%s/%s.key", p->cards_dir, serials[i]);
			if (kiosk_card_load(pem, key, &p->cards[i].card, &err) != KIOSK_OK) {
				say("%s", err.message);
				rc = -1;
			} else if (strcmp(kiosk_card_serial(p->cards[i].card), serials[i]) != 0) {
				say("%s: the certificate's serial is %s, not the file name's; the "
				    "server would answer for another card",
				    pem, kiosk_card_serial(p->cards[i].card));
				kiosk_card_free(p->cards[i].card);
				p->cards[i].card = NULL;
				rc = -1;
			} else {
				p->cards[i].res = resident_find(p, serials[i]);
				unknown += p->residents_path != NULL && p->cards[i].res == NULL;
				p->ncards++;
			}
		}
		free(serials[i]);
	}
	free(serials);
	if (rc == 0 && unknown > 0)
		say("%zu of %zu cards have no line in %s: a 201 for them counts as a mismatch",
		    unknown, p->ncards, p->residents_path);
	return rc;
}

/* Expected outcome of a request of type t with card c: 1 issuable, 0 not, -1 unknown. */
static int expected_outcome(const struct plan *p, const struct sim_card *c, int t)
{
	if (p->residents_path == NULL)
		return -1;
	if (c->res == NULL)
		return 0; /* no resident for this card: nothing may be issued */
	return c->res->issuable[t];
}

/* --- jobs and the ring of signed requests ------------------------------------------------- */

/* One request, from signing to its answer. */
struct job {
	struct kiosk_request req; /* body and what the answer must echo; headers moved out */
	struct curl_slist *headers;
	uint64_t seq;
	size_t card;
	int certificate;
	double built_at; /* monotonic seconds */
};

static void job_free(struct job *j)
{
	kiosk_request_free(&j->req);
	curl_slist_free_all(j->headers);
	j->headers = NULL;
}

/* Appends "name: value" to *list; 0 or -1 (memory). */
static int header_add(struct curl_slist **list, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *h = malloc(n);
	if (h == NULL)
		return -1;
	snprintf(h, n, "%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(*list, h);
	free(h);
	if (l == NULL)
		return -1;
	*list = l;
	return 0;
}

/*
 * Builds and signs request number seq into *j: card seq mod ncards (round-robin), type fixed or
 * the mix (every card meets every type), made-up terminal.  Thread-safe.  0, or -1 with err.
 */
static int job_build(const struct plan *p, uint64_t seq, struct job *j, struct kiosk_error *err)
{
	static const char *const operators[] = {"chain-a", "chain-b", "chain-c"};
	memset(j, 0, sizeof *j);
	j->seq = seq;
	j->card = (size_t)(seq % p->ncards);
	j->certificate = p->certificate >= 0
			     ? p->certificate
			     : (int)((seq + seq / p->ncards) % KIOSK_CERTIFICATE_TYPES);
	const struct sim_card *c = &p->cards[j->card];
	char store[16], kiosk[8];
	snprintf(store, sizeof store, "%06u", (unsigned)((seq * 7919u) % 1000000u));
	snprintf(kiosk, sizeof kiosk, "%02u", (unsigned)(seq % 4u + 1u));
	struct kiosk_fields f = {
	    .municipality = p->municipality != NULL ? p->municipality
			    : c->res != NULL	    ? c->res->municipality
						    : p->default_muni,
	    .certificate = kiosk_certificate_types[j->certificate],
	    .terminal_operator = operators[seq % 3],
	    .terminal_store = store,
	    .terminal_kiosk = kiosk,
	};
	if (kiosk_request_build(c->card, &f, &j->req, err) != KIOSK_OK)
		return -1;
	if (header_add(&j->headers, "Content-Type", "application/json") != 0 ||
	    header_add(&j->headers, "Accept", "application/json") != 0 ||
	    header_add(&j->headers, "Expect", "") != 0 || /* no 100-continue round trip */
	    header_add(&j->headers, KIOSK_HEADER_CERTIFICATE, j->req.certificate_header) != 0 ||
	    header_add(&j->headers, KIOSK_HEADER_SIGNATURE, j->req.signature_header) != 0) {
		job_free(j);
		snprintf(err->message, sizeof err->message, "out of memory");
		return -1;
	}
	/* The header list holds copies; the answer check needs only the body's fields. */
	free(j->req.certificate_header);
	free(j->req.signature_header);
	j->req.certificate_header = j->req.signature_header = NULL;
	j->built_at = now_s();
	return 0;
}

/*
 * The signed requests waiting to be sent, in sequence order.  Signer threads claim sequence
 * numbers (next_seq) at most `cap` ahead of the loop (consumed), sign outside the lock and
 * mark their slot ready; the loop takes slot consumed % cap when it is ready.  Slot s is free
 * again once s + cap has not been claimed, because claims never run `cap` ahead.
 */
struct ring {
	pthread_mutex_t mu;
	pthread_cond_t space; /* consumed moved, or stop */
	pthread_cond_t built; /* built_count moved, or error */
	const struct plan *plan;
	CURLM *multi; /* woken when the slot the loop waits for becomes ready */
	struct ring_slot {
		struct job job;
		bool ready;
	} * slots;
	uint64_t cap, next_seq, consumed, built_count;
	bool stop, waiting, failed;
	struct kiosk_error err; /* the first signing failure */
};

static void *signer_main(void *arg)
{
	struct ring *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->stop && r->next_seq < r->plan->total &&
		       r->next_seq - r->consumed >= r->cap)
			pthread_cond_wait(&r->space, &r->mu);
		if (r->stop || r->next_seq >= r->plan->total)
			break;
		uint64_t seq = r->next_seq++;
		pthread_mutex_unlock(&r->mu);
		struct job j;
		struct kiosk_error err;
		int rc = job_build(r->plan, seq, &j, &err);
		pthread_mutex_lock(&r->mu);
		if (rc != 0) {
			if (!r->failed)
				r->err = err;
			r->failed = r->stop = true;
			pthread_cond_broadcast(&r->built);
			pthread_cond_broadcast(&r->space);
			curl_multi_wakeup(r->multi);
			break;
		}
		struct ring_slot *s = &r->slots[seq % r->cap];
		s->job = j;
		s->ready = true;
		r->built_count++;
		pthread_cond_broadcast(&r->built);
		if (r->waiting && seq == r->consumed)
			curl_multi_wakeup(r->multi);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/*
 * Loop thread: takes the next request into *out if it is signed (1); 0 if it is not yet (a
 * wake-up will come); -1 if signing failed (r->err says why).
 */
static int ring_take(struct ring *r, struct job *out)
{
	pthread_mutex_lock(&r->mu);
	struct ring_slot *s = &r->slots[r->consumed % r->cap];
	bool ok = s->ready, failed = r->failed;
	if (ok) {
		*out = s->job;
		s->ready = false;
		r->consumed++;
		pthread_cond_signal(&r->space);
	}
	r->waiting = !ok;
	pthread_mutex_unlock(&r->mu);
	return ok ? 1 : failed ? -1 : 0;
}

static volatile sig_atomic_t interrupted;

/*
 * Waits until `want` requests are signed, signing failed, or a signal came (checked every
 * 100 ms: a handler cannot signal a condition variable).  0 all signed, -1 signing failed
 * (r->err says why), -2 interrupted.
 */
static int ring_wait_built(struct ring *r, uint64_t want)
{
	pthread_mutex_lock(&r->mu);
	while (!r->failed && !interrupted && r->built_count < want) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->built, &r->mu, &until);
	}
	int rc = r->built_count >= want ? 0 : r->failed ? -1 : -2;
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static void ring_stop(struct ring *r, pthread_t *threads, size_t nthreads)
{
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->space);
	pthread_mutex_unlock(&r->mu);
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	for (uint64_t i = 0; i < r->cap; i++)
		if (r->slots[i].ready)
			job_free(&r->slots[i].job);
}

/* --- statistics --------------------------------------------------------------------------- */

struct stats {
	uint64_t sent, completed, transport_errors, mismatches, verify_failures, not_issuable_201;
	uint64_t expected_refusals, resigned, signing_stalls, connections, saved, save_failures;
	uint64_t by_status[600];
	uint64_t by_check[8]; /* verify failures per -kiosk_verify_status */
	struct tally by_code, unexpected_by_code, transport_by_reason;
	double *lat_ms;
	uint32_t *lat_second; /* the second of the run each latency's origin fell in */
	size_t nlat, caplat;
	double start;	       /* the run's clock origin */
	json_t *p99_by_second; /* p99 of the answers due (or sent) in each second of the run */
	unsigned shown;	       /* failures described on stderr */
	double elapsed_s;
};

static void stats_latency(struct stats *s, double ms, double origin)
{
	if (s->nlat == s->caplat) {
		size_t cap = s->caplat == 0 ? 4096 : 2 * s->caplat;
		double *l = realloc(s->lat_ms, cap * sizeof *l);
		uint32_t *sec = l ? realloc(s->lat_second, cap * sizeof *sec) : NULL;
		if (l == NULL || sec == NULL) {
			say("out of memory");
			exit(1);
		}
		s->lat_ms = l;
		s->lat_second = sec;
		s->caplat = cap;
	}
	s->lat_second[s->nlat] = origin > s->start ? (uint32_t)(origin - s->start) : 0;
	s->lat_ms[s->nlat++] = ms;
}

static void show_failure(struct stats *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Describes one failure on stderr, the first SIM_SHOWN_MAX of a run only.  Both the loop and
 * the checker thread call it.
 */
static void show_failure(struct stats *s, const char *fmt, ...)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&mu);
	if (s->shown > SIM_SHOWN_MAX) {
		pthread_mutex_unlock(&mu);
		return;
	}
	if (s->shown++ == SIM_SHOWN_MAX) {
		say("further failures are counted, not shown");
		pthread_mutex_unlock(&mu);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	fputs("madoguchi-kiosk-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	pthread_mutex_unlock(&mu);
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The index of the nearest-rank percentile q (0..1] among n > 0 sorted values. */
static size_t nearest_rank(size_t n, double q)
{
	double rank = q * (double)n;
	size_t k = (size_t)rank;
	if ((double)k < rank)
		k++;
	return k == 0 ? 0 : k - 1;
}

/* Nearest-rank percentile q (0..1] of the sorted latencies; 0 when there are none. */
static double percentile(const struct stats *s, double q)
{
	return s->nlat == 0 ? 0 : s->lat_ms[nearest_rank(s->nlat, q)];
}

/* x >= 0 rounded to 1/scale, for a report a person reads. */
static double rounded(double x, double scale)
{
	return (double)(uint64_t)(x * scale + 0.5) / scale;
}

struct second_ms {
	uint32_t second;
	double ms;
};

static int second_ms_cmp(const void *a, const void *b)
{
	const struct second_ms *x = a, *y = b;
	if (x->second != y->second)
		return x->second < y->second ? -1 : 1;
	return x->ms < y->ms ? -1 : x->ms > y->ms;
}

/*
 * The p99 latency of each second of an open-loop run (by due time), as a JSON array: a queue
 * that builds up and drains shows as a run of high seconds, a one-off stall as one.
 */
static json_t *p99_by_second(const struct stats *s)
{
	json_t *out = json_array();
	struct second_ms *all = malloc((s->nlat ? s->nlat : 1) * sizeof *all);
	if (out == NULL || all == NULL) {
		free(all);
		return out;
	}
	for (size_t i = 0; i < s->nlat; i++)
		all[i] = (struct second_ms){s->lat_second[i], s->lat_ms[i]};
	qsort(all, s->nlat, sizeof *all, second_ms_cmp);
	for (size_t first = 0, sec = 0; first < s->nlat; sec++) {
		size_t n = 0;
		while (first + n < s->nlat && all[first + n].second == sec)
			n++;
		json_array_append_new(
		    out, json_real(n ? rounded(all[first + nearest_rank(n, 0.99)].ms, 1e3) : 0));
		first += n;
	}
	free(all);
	return out;
}

/* --- the checker: 201s verified off the loop thread ----------------------------------------- */

/*
 * Verifying a 201 (JSON parse, base64 of ~56 KB, SHA-256, an Ed25519 signature) takes about a
 * third of a millisecond.  Done on the loop thread, it held back the reading of every other
 * answer and the sending of due requests, so at 800 requests/s the tool's own queue showed up
 * in the latencies it measures.  Latency is stamped by the loop when the answer is complete;
 * the check follows on this thread, in arrival order.
 */
struct check_task {
	struct check_task *next;
	struct job job;
	char *body;
	size_t len;
	int expect;
};

struct checker {
	pthread_mutex_t mu;
	pthread_cond_t work;
	struct check_task *head, **tail;
	bool stopping;
	pthread_t thread;
	bool started;
	const struct plan *plan;
	const struct kiosk_keyring *keys;
	FILE *index;
	struct stats *stats;
};

static void check_201(const struct plan *p, const struct kiosk_keyring *keys, FILE *index,
		      struct stats *s, struct job *j, const char *body, size_t len, int expect);

static void *checker_main(void *arg)
{
	struct checker *ck = arg;
	pthread_mutex_lock(&ck->mu);
	for (;;) {
		while (ck->head == NULL && !ck->stopping)
			pthread_cond_wait(&ck->work, &ck->mu);
		struct check_task *t = ck->head;
		if (t == NULL)
			break; /* stopping, and everything checked */
		ck->head = t->next;
		if (ck->head == NULL)
			ck->tail = &ck->head;
		pthread_mutex_unlock(&ck->mu);
		check_201(ck->plan, ck->keys, ck->index, ck->stats, &t->job,
			  t->body != NULL ? t->body : "", t->len, t->expect);
		job_free(&t->job);
		free(t->body);
		free(t);
		pthread_mutex_lock(&ck->mu);
	}
	pthread_mutex_unlock(&ck->mu);
	return NULL;
}

/* Hands a 201 to the checker (the job is moved, body taken). */
static void checker_submit(struct checker *ck, struct job *j, char *body, size_t len, int expect)
{
	struct check_task *t = xcalloc(1, sizeof *t);
	t->job = *j;
	memset(j, 0, sizeof *j);
	t->body = body;
	t->len = len;
	t->expect = expect;
	pthread_mutex_lock(&ck->mu);
	*ck->tail = t;
	ck->tail = &t->next;
	pthread_cond_signal(&ck->work);
	pthread_mutex_unlock(&ck->mu);
}

static int checker_start(struct checker *ck, const struct plan *p, const struct kiosk_keyring *keys,
			 FILE *index, struct stats *s)
{
	memset(ck, 0, sizeof *ck);
	pthread_mutex_init(&ck->mu, NULL);
	pthread_cond_init(&ck->work, NULL);
	ck->tail = &ck->head;
	ck->plan = p;
	ck->keys = keys;
	ck->index = index;
	ck->stats = s;
	ck->started = pthread_create(&ck->thread, NULL, checker_main, ck) == 0;
	return ck->started ? 0 : -1;
}

/* Waits until every 201 handed over is checked. */
static void checker_stop(struct checker *ck)
{
	pthread_mutex_lock(&ck->mu);
	ck->stopping = true;
	pthread_cond_signal(&ck->work);
	pthread_mutex_unlock(&ck->mu);
	if (ck->started)
		pthread_join(ck->thread, NULL);
	pthread_cond_destroy(&ck->work);
	pthread_mutex_destroy(&ck->mu);
}

/* --- transfers ---------------------------------------------------------------------------- */

/* One connection's easy handle and the request in flight on it. */
struct xfer {
	CURL *easy;
	bool busy;
	struct job job;
	double origin; /* latency is measured from here: due time, or hand-off to libcurl */
	size_t body_off;
	char *resp;
	size_t resp_len, resp_cap;
	bool too_large, resend_refused;
	char errbuf[CURL_ERROR_SIZE];
};

static size_t xfer_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t left = x->job.req.body_len - x->body_off, n = size * nitems;
	if (n > left)
		n = left;
	memcpy(buf, x->job.req.body + x->body_off, n);
	x->body_off += n;
	return n;
}

/* libcurl asks to rewind only to resend the body on another connection: never silently. */
static int xfer_seek(void *arg, curl_off_t offset, int origin)
{
	struct xfer *x = arg;
	(void)origin;
	if (offset == 0 && x->body_off == 0)
		return CURL_SEEKFUNC_OK; /* nothing sent yet: not a resend */
	x->resend_refused = true;
	return CURL_SEEKFUNC_CANTSEEK;
}

static size_t xfer_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (x->resp_len + n > SIM_BODY_MAX) {
		x->too_large = true;
		return 0;
	}
	if (x->resp_len + n + 1 > x->resp_cap) {
		size_t cap = x->resp_cap == 0 ? 16384 : x->resp_cap;
		while (cap < x->resp_len + n + 1)
			cap *= 2;
		char *r = realloc(x->resp, cap);
		if (r == NULL)
			return 0;
		x->resp = r;
		x->resp_cap = cap;
	}
	memcpy(x->resp + x->resp_len, data, n);
	x->resp_len += n;
	x->resp[x->resp_len] = '\0';
	return n;
}

/* The TLS and limit options every handle shares; 0 or -1. */
static int easy_common(const struct plan *p, CURL *e, char *errbuf)
{
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_CAINFO, p->ca);
	SET(CURLOPT_SSLCERT, p->cert);
	SET(CURLOPT_SSLCERTTYPE, "PEM");
	SET(CURLOPT_SSLKEY, p->key);
	SET(CURLOPT_SSLKEYTYPE, "PEM");
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SET(CURLOPT_TIMEOUT_MS, p->timeout_ms);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_TCP_NODELAY, 1L);
#undef SET
	return rc == CURLE_OK ? 0 : -1;
}

static int xfer_init(const struct plan *p, struct xfer *x)
{
	x->easy = curl_easy_init();
	if (x->easy == NULL || easy_common(p, x->easy, x->errbuf) != 0)
		return -1;
	CURLcode rc = curl_easy_setopt(x->easy, CURLOPT_URL, p->issuances_url);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, xfer_read);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_SEEKFUNCTION, xfer_seek);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_SEEKDATA, x);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, xfer_write);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	return rc == CURLE_OK ? 0 : -1;
}

/* Hands job to the idle transfer x; latency counts from origin. 0, or -1 (libcurl refused). */
static int xfer_start(CURLM *multi, struct xfer *x, struct job *job, double origin)
{
	x->job = *job;
	x->origin = origin;
	x->body_off = 0;
	x->resp_len = 0;
	x->too_large = x->resend_refused = false;
	x->errbuf[0] = '\0';
	if (curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->job.headers) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)x->job.req.body_len) != CURLE_OK ||
	    curl_multi_add_handle(multi, x->easy) != CURLM_OK) {
		job_free(&x->job);
		return -1;
	}
	x->busy = true;
	return 0;
}

/* An issuance id usable as a file name: [A-Za-z0-9._-], not starting with a dot. */
static bool file_name_ok(const char *s)
{
	if (s[0] == '\0' || s[0] == '.')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	return true;
}

/* Writes the document and its index line to --save; 0, or -1 after saying why. */
static int save_document(const struct plan *p, FILE *index, const struct job *j,
			 const struct kiosk_issuance *iss)
{
	if (!file_name_ok(iss->issuance_id)) {
		say("not saving issuance \"%s\": not usable as a file name", iss->issuance_id);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.pdf", p->save_dir, iss->issuance_id);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(iss->document, 1, iss->document_len, f) != iss->document_len ||
	    fclose(f) != 0) {
		say("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	const struct resident *res = p->cards[j->card].res;
	json_t *line = json_pack(
	    "{s:s, s:s, s:s, s:s, s:o}", "issuance_id", iss->issuance_id, "request_id",
	    j->req.request_id, "card_serial", j->req.card_serial, "certificate", j->req.certificate,
	    "name", res != NULL && res->name != NULL ? json_string(res->name) : json_null());
	int rc = line != NULL && json_dumpf(line, index, JSON_COMPACT) == 0 &&
			 fputc('\n', index) != EOF && fflush(index) == 0
		     ? 0
		     : -1;
	json_decref(line);
	if (rc != 0)
		say("cannot append to %s/index.jsonl: %s", p->save_dir, strerror(errno));
	return rc;
}

/*
 * Checks one 201 (its job and answer now the checker's): the binding, the echoes, the truth;
 * saves the document if asked.  Runs on the checker thread, which alone writes these stats
 * fields until the loop has joined it.
 */
static void check_201(const struct plan *p, const struct kiosk_keyring *keys, FILE *index,
		      struct stats *s, struct job *j, const char *body, size_t len, int expect)
{
	const char *serial = j->req.card_serial, *type = j->req.certificate;
	struct kiosk_issuance iss;
	struct kiosk_error err;
	int v = kiosk_response_verify(&j->req, keys, body, len, &iss, &err);
	if (v != KIOSK_VERIFY_OK) {
		s->verify_failures++;
		s->mismatches++;
		s->by_check[-v < 8 ? -v : 7]++;
		show_failure(s, "request %s (card %s, %s): 201 fails verification (%s): %s",
			     j->req.request_id, serial, type, kiosk_verify_name(v), err.message);
		return;
	}
	if (expect == 0) {
		s->mismatches++;
		s->not_issuable_201++;
		show_failure(s,
			     "request %s (card %s, %s): 201 (issuance %s) but residents.jsonl "
			     "says this type is not issuable for this card",
			     j->req.request_id, serial, type, iss.issuance_id);
	}
	bool saved = false;
	if (p->save_dir != NULL) {
		if (save_document(p, index, j, &iss) == 0) {
			s->saved++;
			saved = true;
		} else {
			s->save_failures++;
		}
	}
	if (p->total <= SIM_SMALL_RUN && !p->json)
		printf(
		    "request %s (card %s, %s): 201 issuance %s, %zu-byte PDF verified%s%s%s%s%s\n",
		    j->req.request_id, serial, type, iss.issuance_id, iss.document_len,
		    saved ? ", saved as " : "", saved ? p->save_dir : "", saved ? "/" : "",
		    saved ? iss.issuance_id : "", saved ? ".pdf" : "");
	kiosk_issuance_free(&iss);
}

/*
 * Counts the finished transfer x (result from libcurl) against the plan's truth and frees its
 * job, or hands a 201 with its job to the checker: the two places a job ends.
 */
static void xfer_finish(const struct plan *p, struct checker *ck, struct stats *s, struct xfer *x,
			CURLcode result, double done_at)
{
	struct job *j = &x->job;
	const char *serial = j->req.card_serial, *type = j->req.certificate;
	long connects = 0, status = 0;
	curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
	s->connections += (uint64_t)connects;
	if (result != CURLE_OK) {
		const char *why = x->resend_refused
				      ? "no answer on a kept-alive connection, not resent"
				  : x->too_large ? "answer too large"
						 : curl_easy_strerror(result);
		s->transport_errors++;
		tally_add(&s->transport_by_reason, why);
		show_failure(s, "request %s (card %s, %s): transport error: %s%s%s",
			     j->req.request_id, serial, type, why, x->errbuf[0] ? ": " : "",
			     x->errbuf);
		goto done;
	}
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	s->completed++;
	stats_latency(s, (done_at - x->origin) * 1e3, x->origin);
	if (status >= 100 && status < 600)
		s->by_status[status]++;
	int expect = expected_outcome(p, &p->cards[j->card], j->certificate);
	const char *body = x->resp != NULL ? x->resp : "";
	if (status != 201) {
		char code[64];
		if (kiosk_problem_code(body, x->resp_len, code, sizeof code) != 0)
			snprintf(code, sizeof code, "(no problem code)");
		tally_add(&s->by_code, code);
		if (expect == 1)
			tally_add(&s->unexpected_by_code, code);
		else if (expect == 0)
			s->expected_refusals++;
		if (p->total <= SIM_SMALL_RUN && !p->json)
			printf("request %s (card %s, %s): %ld %s\n", j->req.request_id, serial,
			       type, status, code);
		goto done;
	}
	/* A 201 is checked on the checker thread: the job and the answer go there. */
	checker_submit(ck, j, x->resp, x->resp_len, expect);
	j = NULL;
	x->resp = NULL;
	x->resp_len = x->resp_cap = 0;
done:
	if (j != NULL)
		job_free(j);
	x->busy = false;
}

/* --- the run ------------------------------------------------------------------------------ */

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* GET /v1/keys with the centre's TLS identity; the keyring, or NULL after saying why. */
static struct kiosk_keyring *keys_fetch(const struct plan *p)
{
	struct xfer x;
	memset(&x, 0, sizeof x);
	x.easy = curl_easy_init();
	struct kiosk_keyring *kr = NULL;
	if (x.easy == NULL || easy_common(p, x.easy, x.errbuf) != 0 ||
	    curl_easy_setopt(x.easy, CURLOPT_URL, p->keys_url) != CURLE_OK ||
	    curl_easy_setopt(x.easy, CURLOPT_WRITEFUNCTION, xfer_write) != CURLE_OK ||
	    curl_easy_setopt(x.easy, CURLOPT_WRITEDATA, &x) != CURLE_OK) {
		say("cannot set up libcurl");
		goto done;
	}
	CURLcode rc = curl_easy_perform(x.easy);
	long status = 0;
	curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK) {
		say("GET %s failed: %s%s%s (check --url, and that --ca, --cert and --key are the "
		    "store network's PKI)",
		    p->keys_url, curl_easy_strerror(rc), x.errbuf[0] ? ": " : "", x.errbuf);
		goto done;
	}
	if (status != 200) {
		say("GET %s answered %ld; the appliance must publish its document keys there "
		    "(DESIGN §4) so that bindings can be checked",
		    p->keys_url, status);
		goto done;
	}
	struct kiosk_error err;
	if (kiosk_keyring_parse(x.resp != NULL ? x.resp : "", x.resp_len, &kr, &err) != KIOSK_OK)
		say("%s", err.message);
done:
	curl_easy_cleanup(x.easy);
	free(x.resp);
	return kr;
}

/*
 * Sends the plan's requests through C transfers on one multi handle until the count, the
 * duration or a signal ends it, then waits for the answers in flight.  Latency runs from the
 * due time (--rate) or the hand-off to libcurl (closed loop) to the completion being read.
 */
/* A write callback that keeps nothing (the warm-up's answers). */
static size_t discard(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

/*
 * Opens the C connections before the clock starts, with one GET /v1/keys on each, so the
 * figures are those of keep-alive connections in use: otherwise an open-loop run counts C
 * TLS handshakes at once against its first requests' due times.  A connection that fails here
 * is simply opened again by its first request.
 */
static void warm_up(const struct plan *p, CURLM *multi)
{
	CURL **e = xcalloc((size_t)p->connections, sizeof *e);
	char errbuf[CURL_ERROR_SIZE];
	for (long i = 0; i < p->connections; i++) {
		e[i] = curl_easy_init();
		if (e[i] == NULL || easy_common(p, e[i], errbuf) != 0 ||
		    curl_easy_setopt(e[i], CURLOPT_URL, p->keys_url) != CURLE_OK ||
		    curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard) != CURLE_OK ||
		    curl_multi_add_handle(multi, e[i]) != CURLM_OK) {
			curl_easy_cleanup(e[i]);
			e[i] = NULL;
		}
	}
	int running = 1;
	while (running > 0 && !interrupted) {
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	for (long i = 0; i < p->connections; i++) {
		if (e[i] != NULL) {
			curl_multi_remove_handle(multi, e[i]);
			curl_easy_cleanup(e[i]);
		}
	}
	free(e);
}

static int run(const struct plan *p, const struct kiosk_keyring *keys, FILE *index, struct stats *s)
{
	CURLM *multi = curl_multi_init();
	if (multi == NULL) {
		say("cannot set up libcurl");
		return -1;
	}
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, p->connections);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, p->connections);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, p->connections);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

	struct xfer *xs = xcalloc((size_t)p->connections, sizeof *xs);
	struct xfer **idle = xcalloc((size_t)p->connections, sizeof *idle);
	size_t nidle = 0;
	int rc = 0;
	for (long i = 0; i < p->connections && rc == 0; i++) {
		if (xfer_init(p, &xs[i]) != 0) {
			say("cannot set up libcurl");
			rc = -1;
		}
		idle[nidle++] = &xs[i];
	}

	struct ring ring;
	memset(&ring, 0, sizeof ring);
	pthread_mutex_init(&ring.mu, NULL);
	pthread_cond_init(&ring.space, NULL);
	pthread_cond_init(&ring.built, NULL);
	ring.plan = p;
	ring.multi = multi;
	ring.cap = p->total < SIM_RING_MAX ? p->total : SIM_RING_MAX;
	ring.slots = xcalloc((size_t)ring.cap, sizeof *ring.slots);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nthreads = cpus < 1 ? 1 : cpus > SIM_SIGNERS_MAX ? SIM_SIGNERS_MAX : (size_t)cpus;
	if ((uint64_t)nthreads > p->total)
		nthreads = (size_t)p->total;
	pthread_t threads[SIM_SIGNERS_MAX];
	size_t started = 0;
	for (; rc == 0 && started < nthreads; started++)
		if (pthread_create(&threads[started], NULL, signer_main, &ring) != 0) {
			say("cannot start a signer thread");
			rc = -1;
			break;
		}
	/* Everything the ring holds is signed before the clock starts. */
	int built = rc == 0 ? ring_wait_built(&ring, ring.cap) : 0;
	if (built != 0) {
		if (built == -1)
			say("cannot sign a request: %s", ring.err.message);
		else
			say("interrupted while signing requests ahead; nothing sent");
		rc = -1;
	}

	if (rc == 0)
		warm_up(p, multi);
	struct checker ck;
	if (checker_start(&ck, p, keys, index, s) != 0) {
		say("cannot start the checker thread");
		rc = -1;
	}

	long inflight = 0;
	bool issuing = rc == 0;
	double start = now_s();
	s->start = start;
	while (rc == 0) {
		double t = now_s(), next_due = 0;
		if (issuing && (interrupted || s->sent >= p->total ||
				(p->duration > 0 && t >= start + p->duration)))
			issuing = false;
		while (issuing && nidle > 0) {
			double origin = t;
			if (p->rate > 0) {
				origin = start + (double)s->sent / p->rate;
				if (origin > t) {
					next_due = origin;
					break;
				}
			}
			struct job job;
			int took = ring_take(&ring, &job);
			if (took == 0) {
				s->signing_stalls++;
				break;
			}
			if (took < 0) {
				say("cannot sign a request: %s", ring.err.message);
				issuing = false;
				rc = -1;
				break;
			}
			if (t - job.built_at > SIM_STALE_S) {
				/* Older than any sane card_proof.max_skew allows: sign afresh. */
				uint64_t seq = job.seq;
				struct kiosk_error err;
				job_free(&job);
				if (job_build(p, seq, &job, &err) != 0) {
					say("cannot sign a request: %s", err.message);
					issuing = false;
					rc = -1;
					break;
				}
				s->resigned++;
			}
			if (xfer_start(multi, idle[nidle - 1], &job, origin) != 0) {
				say("libcurl refused a transfer");
				issuing = false;
				rc = -1;
				break;
			}
			nidle--;
			inflight++;
			if (++s->sent >= p->total)
				issuing = false;
		}
		if (!issuing && inflight == 0)
			break;
		int running;
		curl_multi_perform(multi, &running);
		/* Every answer of this batch arrived during perform: one timestamp for all, so
		 * checking one answer does not add to the next one's latency. */
		double done_at = now_s();
		CURLMsg *m;
		int left;
		bool freed = false;
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			struct xfer *x = (struct xfer *)priv;
			CURLcode result = m->data.result;
			curl_multi_remove_handle(multi, x->easy);
			xfer_finish(p, &ck, s, x, result, done_at);
			idle[nidle++] = x;
			inflight--;
			freed = true;
		}
		int wait_ms = 100; /* bounds the reaction to a signal or the duration's end */
		if (freed)	   /* capacity to refill, or maybe the last answer: no waiting */
			wait_ms = 0;
		else if (next_due > 0) {
			/* Rounded up: truncated, the last millisecond before a due time was a
			 * wait of 0, and the loop spun through it calling curl_multi_perform
			 * (a poll() per transfer each time), which at 800 requests/s took a third
			 * of the simulator's CPU from the cores it shares with the appliance.
			 * The request goes at most 1 ms after its due time, and that counts in
			 * its latency. */
			double ms = (next_due - now_s()) * 1e3;
			wait_ms = ms <= 0 ? 0 : ms < 100 ? (int)ms + ((double)(int)ms < ms) : 100;
		}
		if (p->duration > 0 && issuing) {
			double ms = (start + p->duration - now_s()) * 1e3;
			if (ms < wait_ms)
				wait_ms = ms <= 0 ? 0 : (int)ms;
		}
		if (wait_ms > 0)
			curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
	}
	s->elapsed_s = now_s() - start;
	checker_stop(&ck); /* every 201 checked before the report */

	ring_stop(&ring, threads, started);
	for (long i = 0; i < p->connections; i++) {
		if (xs[i].busy) { /* only after a failure above */
			curl_multi_remove_handle(multi, xs[i].easy);
			job_free(&xs[i].job);
		}
		curl_easy_cleanup(xs[i].easy);
		free(xs[i].resp);
	}
	free(xs);
	free(idle);
	free(ring.slots);
	pthread_cond_destroy(&ring.built);
	pthread_cond_destroy(&ring.space);
	pthread_mutex_destroy(&ring.mu);
	curl_multi_cleanup(multi);
	return rc;
}

/* --- reporting ---------------------------------------------------------------------------- */

static json_t *report_json(const struct stats *s)
{
	json_t *by_status = json_object(), *checks = json_object();
	for (int i = 0; i < 600; i++) {
		if (s->by_status[i] > 0) {
			char k[16];
			snprintf(k, sizeof k, "%d", i);
			json_object_set_new(by_status, k,
					    json_integer((json_int_t)s->by_status[i]));
		}
	}
	for (int i = 1; i < 8; i++)
		if (s->by_check[i] > 0)
			json_object_set_new(checks, kiosk_verify_name(-i),
					    json_integer((json_int_t)s->by_check[i]));
	double rate = s->elapsed_s > 0 ? (double)s->completed / s->elapsed_s : 0;
	return json_pack(
	    "{s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:f, s:f, s:{s:f, s:f, s:f, s:f}, s:o, s:I, s:I, "
	    "s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:b, s:o}",
	    "sent", (json_int_t)s->sent, "completed", (json_int_t)s->completed, "by_status",
	    by_status, "by_code", tally_json(&s->by_code), "mismatches", (json_int_t)s->mismatches,
	    "verify_failures", (json_int_t)s->verify_failures, "transport_errors",
	    (json_int_t)s->transport_errors, "elapsed_s", rounded(s->elapsed_s, 1e3), "rate_per_s",
	    rounded(rate, 10), "latency_ms", "p50", rounded(percentile(s, 0.50), 1e3), "p90",
	    rounded(percentile(s, 0.90), 1e3), "p99", rounded(percentile(s, 0.99), 1e3), "max",
	    rounded(percentile(s, 1.0), 1e3), "unexpected_refusals",
	    tally_json(&s->unexpected_by_code), "expected_refusals",
	    (json_int_t)s->expected_refusals, "not_issuable_201", (json_int_t)s->not_issuable_201,
	    "verify_failures_by_check", checks, "transport_errors_by_reason",
	    tally_json(&s->transport_by_reason), "saved", (json_int_t)s->saved, "save_failures",
	    (json_int_t)s->save_failures, "connections_opened", (json_int_t)s->connections,
	    "signing_stalls", (json_int_t)s->signing_stalls, "resigned", (json_int_t)s->resigned,
	    "interrupted", interrupted ? 1 : 0, "p99_by_second_ms",
	    s->p99_by_second ? json_incref(s->p99_by_second) : json_null());
}

static void print_tally(const char *title, const struct tally *t)
{
	if (t->n == 0)
		return;
	printf("  %s:", title);
	for (size_t i = 0; i < t->n; i++)
		printf(" %s %llu", t->items[i].key, (unsigned long long)t->items[i].count);
	printf("\n");
}

static void report_human(const struct plan *p, const struct stats *s)
{
	double rate = s->elapsed_s > 0 ? (double)s->completed / s->elapsed_s : 0;
	printf("madoguchi-kiosk-sim: %llu sent, %llu answered in %.3f s (%.1f/s) over %ld "
	       "connection%s (%llu opened while the clock ran)\n",
	       (unsigned long long)s->sent, (unsigned long long)s->completed, s->elapsed_s, rate,
	       p->connections, p->connections == 1 ? "" : "s", (unsigned long long)s->connections);
	printf("  status:");
	for (int i = 0; i < 600; i++)
		if (s->by_status[i] > 0)
			printf(" %d %llu", i, (unsigned long long)s->by_status[i]);
	printf(s->completed == 0 ? " none\n" : "\n");
	print_tally("problem codes", &s->by_code);
	if (p->residents_path != NULL) {
		print_tally("refused where residents.jsonl expects a 201", &s->unexpected_by_code);
		printf("  refused as residents.jsonl expects: %llu\n",
		       (unsigned long long)s->expected_refusals);
	}
	printf("  mismatches %llu (201 not issuable %llu, 201 failing verification %llu), "
	       "transport errors %llu\n",
	       (unsigned long long)s->mismatches, (unsigned long long)s->not_issuable_201,
	       (unsigned long long)s->verify_failures, (unsigned long long)s->transport_errors);
	print_tally("transport errors", &s->transport_by_reason);
	if (p->save_dir != NULL)
		printf("  saved %llu document%s in %s (index.jsonl)%s\n",
		       (unsigned long long)s->saved, s->saved == 1 ? "" : "s", p->save_dir,
		       s->save_failures > 0 ? ", SOME COULD NOT BE SAVED" : "");
	printf("  latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f%s\n", percentile(s, 0.50),
	       percentile(s, 0.90), percentile(s, 0.99), percentile(s, 1.0),
	       p->rate > 0 ? " (from the due time)" : "");
	if (interrupted)
		printf("  interrupted: stopped sending at the signal\n");
	if (s->signing_stalls > 0 || s->resigned > 0)
		printf("  the signers fell behind %llu time%s; %llu request%s signed again as "
		       "stale\n",
		       (unsigned long long)s->signing_stalls, s->signing_stalls == 1 ? "" : "s",
		       (unsigned long long)s->resigned, s->resigned == 1 ? "" : "s");
}

/* --- command line ------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: madoguchi-kiosk-sim --url https://HOST:PORT --ca STORE-CA.pem --cert "
		"CENTER.pem\n"
		"         --key CENTER.key --cards DIR [--residents FILE] [--certificate "
		"TYPE|mix]\n"
		"         [--count N] [--connections C] [--rate R/s] [--duration S] [--timeout S]\n"
		"         [--save DIR] [--card SERIAL] [--municipality CODE] [--json]\n"
		"TYPE: residence, residence-record, seal, tax-income, koseki-full,\n"
		"      koseki-individual, koseki-attachment (default residence)\n"
		"Exit status: 0 all answers as expected, 1 a mismatch, verification failure,\n"
		"transport error or setup error, 2 usage.\n");
}

/* A positive number with an optional unit suffix ("10", "10s", "500/s"); 0 or -1. */
static int parse_positive(const char *s, const char *suffix, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno != 0 || !(v > 0) || v > max)
		return -1;
	if (*end != '\0' && (suffix == NULL || strcmp(end, suffix) != 0))
		return -1;
	*out = v;
	return 0;
}

static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v == 0 || v > max || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("madoguchi-kiosk-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	usage(stderr);
	return 2;
}

/* Fills p from argv; 0, or the exit status (2 usage, 0 for --help after printing it) + 1. */
static int parse_args(int argc, char **argv, struct plan *p, char *card_buf)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
					     {"ca", required_argument, NULL, 'a'},
					     {"cert", required_argument, NULL, 'c'},
					     {"key", required_argument, NULL, 'k'},
					     {"cards", required_argument, NULL, 'C'},
					     {"residents", required_argument, NULL, 'r'},
					     {"certificate", required_argument, NULL, 't'},
					     {"count", required_argument, NULL, 'n'},
					     {"connections", required_argument, NULL, 'p'},
					     {"rate", required_argument, NULL, 'R'},
					     {"duration", required_argument, NULL, 'd'},
					     {"timeout", required_argument, NULL, 'T'},
					     {"save", required_argument, NULL, 's'},
					     {"card", required_argument, NULL, 'K'},
					     {"municipality", required_argument, NULL, 'm'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	uint64_t count = 0, conns = 1;
	double timeout = 30;
	p->certificate = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			p->url = optarg;
			break;
		case 'a':
			p->ca = optarg;
			break;
		case 'c':
			p->cert = optarg;
			break;
		case 'k':
			p->key = optarg;
			break;
		case 'C':
			p->cards_dir = optarg;
			break;
		case 'r':
			p->residents_path = optarg;
			break;
		case 't':
			p->certificate =
			    strcmp(optarg, "mix") == 0 ? -1 : kiosk_certificate_index(optarg);
			if (p->certificate == -1 && strcmp(optarg, "mix") != 0)
				return 1 + bad_usage("--certificate: unknown type '%s'", optarg);
			break;
		case 'n':
			if (parse_count(optarg, UINT64_MAX - 1, &count) != 0)
				return 1 + bad_usage("--count: a positive whole number, not '%s'",
						     optarg);
			break;
		case 'p':
			if (parse_count(optarg, 10000, &conns) != 0)
				return 1 + bad_usage("--connections: 1 to 10000, not '%s'", optarg);
			break;
		case 'R':
			if (parse_positive(optarg, "/s", 1e6, &p->rate) != 0)
				return 1 + bad_usage("--rate: requests per second (\"500\" or "
						     "\"500/s\"), not '%s'",
						     optarg);
			break;
		case 'd':
			if (parse_positive(optarg, "s", 1e7, &p->duration) != 0)
				return 1 + bad_usage("--duration: seconds, not '%s'", optarg);
			break;
		case 'T':
			if (parse_positive(optarg, "s", 3600, &timeout) != 0)
				return 1 + bad_usage("--timeout: seconds (at most 3600), not '%s'",
						     optarg);
			break;
		case 's':
			p->save_dir = optarg;
			break;
		case 'K': {
			size_t n = strlen(optarg);
			for (size_t i = 0; i < n && i <= KIOSK_SERIAL_MAX; i++)
				card_buf[i] = (char)toupper((unsigned char)optarg[i]);
			card_buf[n <= KIOSK_SERIAL_MAX ? n : KIOSK_SERIAL_MAX] = '\0';
			if (!serial_name_ok(card_buf, n))
				return 1 + bad_usage("--card: a card serial in hex (at most %d "
						     "digits), not '%s'",
						     KIOSK_SERIAL_MAX, optarg);
			p->only_card = card_buf;
			break;
		}
		case 'm':
			if (strlen(optarg) == 0 || strlen(optarg) > KIOSK_MUNICIPALITY_MAX)
				return 1 + bad_usage("--municipality: a municipality code such as "
						     "141003");
			p->municipality = optarg;
			break;
		case 'j':
			p->json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 3;
		}
	}
	if (optind < argc)
		return 1 + bad_usage("unexpected argument '%s'", argv[optind]);
	const char *missing = p->url == NULL	     ? "--url"
			      : p->ca == NULL	     ? "--ca"
			      : p->cert == NULL	     ? "--cert"
			      : p->key == NULL	     ? "--key"
			      : p->cards_dir == NULL ? "--cards"
						     : NULL;
	if (missing != NULL)
		return 1 + bad_usage("%s is required", missing);
	p->connections = (long)conns;
	p->timeout_ms = (long)(timeout * 1e3);
	/* --count bounds the run; --duration alone runs until the time is up; neither: one. */
	p->total = count > 0 ? count : p->duration > 0 ? SIM_UNBOUNDED : 1;
	if (p->rate > 0 && p->duration > 0) {
		double due = p->rate * p->duration;
		if (due < (double)p->total)
			p->total = (uint64_t)due + ((double)(uint64_t)due < due);
	}
	size_t ulen = strlen(p->url);
	while (ulen > 0 && p->url[ulen - 1] == '/')
		ulen--;
	if (ulen + 20 > sizeof p->issuances_url)
		return 1 + bad_usage("--url is too long");
	snprintf(p->issuances_url, sizeof p->issuances_url, "%.*s/v1/issuances", (int)ulen, p->url);
	snprintf(p->keys_url, sizeof p->keys_url, "%.*s/v1/keys", (int)ulen, p->url);
	return 0;
}

/* Checks that the TLS files can be read, so the error names the file; 0 or -1. */
static int files_readable(const struct plan *p)
{
	const char *files[][2] = {{"--ca", p->ca}, {"--cert", p->cert}, {"--key", p->key}};
	for (size_t i = 0; i < 3; i++) {
		if (access(files[i][1], R_OK) != 0) {
			say("%s %s: %s", files[i][0], files[i][1], strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Frees what the plan loaded (cards, residents). */
static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->ncards; i++)
		kiosk_card_free(p->cards[i].card);
	free(p->cards);
	for (size_t i = 0; i < p->nresidents; i++)
		free(p->residents[i].name);
	free(p->residents);
	if (p->default_muni != sim_default_muni)
		free((char *)p->default_muni); /* strdup'd from residents.jsonl */
}

/* Opens --save DIR (made if missing) and its index.jsonl for appending; NULL after saying why. */
static FILE *save_open(const struct plan *p)
{
	char path[4096];
	if (mkdir(p->save_dir, 0755) != 0 && errno != EEXIST) {
		say("cannot create --save %s: %s", p->save_dir, strerror(errno));
		return NULL;
	}
	snprintf(path, sizeof path, "%s/index.jsonl", p->save_dir);
	FILE *index = fopen(path, "a");
	if (index == NULL)
		say("cannot open %s: %s", path, strerror(errno));
	return index;
}

int main(int argc, char **argv)
{
	struct plan p;
	memset(&p, 0, sizeof p);
	char card_buf[KIOSK_SERIAL_MAX + 1];
	int rc = parse_args(argc, argv, &p, card_buf);
	if (rc != 0)
		return rc - 1;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct stats s;
	memset(&s, 0, sizeof s);
	FILE *index = NULL;
	struct kiosk_keyring *keys = NULL;
	bool curl_ready = false;
	rc = -1;
	if (files_readable(&p) != 0 || (p.residents_path != NULL && residents_load(&p) != 0))
		goto done;
	if (p.default_muni == NULL)
		p.default_muni = sim_default_muni;
	if (cards_load(&p) != 0 || (p.save_dir != NULL && (index = save_open(&p)) == NULL))
		goto done;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		say("cannot initialise libcurl");
		goto done;
	}
	curl_ready = true;
	if ((keys = keys_fetch(&p)) == NULL)
		goto done;
	rc = run(&p, keys, index, &s);
	if (p.rate > 0)
		s.p99_by_second = p99_by_second(&s);
	if (s.nlat > 0)
		qsort(s.lat_ms, s.nlat, sizeof *s.lat_ms, dbl_cmp);
	if (p.json) {
		json_t *r = report_json(&s);
		json_dumpf(r, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
		putchar('\n');
		json_decref(r);
	} else {
		report_human(&p, &s);
	}
done:
	if (index != NULL)
		fclose(index);
	kiosk_keyring_free(keys);
	if (curl_ready)
		curl_global_cleanup();
	plan_free(&p);
	free(s.lat_ms);
	free(s.lat_second);
	json_decref(s.p99_by_second);
	free(s.by_code.items);
	free(s.unexpected_by_code.items);
	free(s.transport_by_reason.items);
	bool clean = rc == 0 && s.mismatches == 0 && s.verify_failures == 0 &&
		     s.transport_errors == 0 && s.save_failures == 0;
	return clean ? 0 : 1;
}
