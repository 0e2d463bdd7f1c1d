/*
 * mock.c: a plugin for the loader's and the fetch contract's tests.
 *
 * Its config key `mode` chooses what a fetch does: "ok" completes at once, "delay" after
 * delay_ms, "never" never, "late" after delay_ms even if cancelled (a late completion),
 * "error" refuses to start, "invalid" completes with a record whose status is unknown,
 * "foreign" completes with a fabricated ticket (a result for a request that does not exist),
 * "notify" announces versions 7 and then 5 of the resident before completing (version 3),
 * "hold" behaves as a well-made networked plugin should: it answers after delay_ms with a
 * current record, or with MDG_ERR_TIMEOUT at the fetch's deadline if that comes first; cancel()
 * releases the fetch at once; at most `capacity` fetches are held (0: no limit), more are
 * refused with MDG_ERR_UNAVAILABLE, as a backend's connection pool would.  "leaky" refuses
 * every fetch with a reason that breaks the SDK's rule: it carries the resident code, glued to
 * letters, and again at its end where the host cuts long reasons (plugin check must scrub both).
 * Built several times with a -D that breaks one thing, for the loader's refusals; with
 * -DMOCK_BLOCKING it is a blocking plugin (MDG_PLUGIN_BLOCKING) whose "delay" sleeps in
 * fetch() on the host's thread pool, as a slow synchronous backend does.
 *
 * For the conformance check (`madoguchictl plugin check`, tests/e2e/test_plugin_check.py),
 * three variants break "hold" the way real plugins break:
 *   -DMOCK_CROSS_ANSWERS   every answer is built from the resident of the latest fetch, kept in
 *                          one shared variable (incident I2): right one at a time, crossed
 *                          under concurrency;
 *   -DMOCK_IGNORE_CANCEL   cancel() releases nothing: a cancelled fetch keeps its capacity
 *                          until its delay or deadline ends;
 *   -DMOCK_IGNORE_DEADLINE fetch->deadline_ms is ignored (the answer comes after delay_ms
 *                          whatever the deadline) and there is no cancel() to stop it.
 *   -DMOCK_STACK_OVERFLOW  fetch() recurses until the loop thread's stack overflows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <madoguchi/plugin.h>

struct mock {
	const mdg_host *host;
	mdg_plugin_ctx *ctx;
	const char *mode;
	int64_t delay_ms;
	int64_t capacity;	     /* "hold": fetches held at once, 0: no limit */
	int64_t held;		     /* "hold": fetches held now */
	struct mock_held *held_list; /* "hold": those fetches */
	mdg_counter *cancels;
	mdg_counter *fetches;
};

/* A fetch of mode "hold": answered by its timer, or released by cancel() or fini(). */
struct mock_held {
	struct mock_held *next;
	struct mock *m;
	mdg_ticket ticket;
	mdg_timer *timer;
	int times_out; /* the timer is the deadline's, not the answer's */
	char certificate[32];
	char resident_code[64];
};

#ifdef MOCK_CROSS_ANSWERS
/* The bug of incident I2: per-request state in a variable every request shares. */
static char mock_last_resident[64];
#endif

struct mock_pending {
	struct mock *m;
	mdg_ticket ticket;
	char certificate[32];
	char resident_code[64];
};

#ifdef MOCK_UNRESOLVED
/* Defined nowhere: dlopen(RTLD_NOW) must fail on it. */
extern int mdg_symbol_that_does_not_exist(void);
#endif

static int mock_init(const mdg_host *host, mdg_plugin_ctx *ctx, void **instance)
{
#ifdef MOCK_UNRESOLVED
	if (mdg_symbol_that_does_not_exist() != 0)
		return MDG_ERR_INVALID;
#endif
	struct mock *m = calloc(1, sizeof *m);
	if (m == NULL)
		return MDG_ERR_NO_MEMORY;
	m->host = host;
	m->ctx = ctx;
	if (host->config_string(ctx, "mode", 0, "ok", &m->mode) == MDG_ERR_INVALID ||
	    host->config_int(ctx, "delay_ms", 0, 0, 60000, 50, &m->delay_ms) == MDG_ERR_INVALID ||
	    host->config_int(ctx, "capacity", 0, 0, 100000, 0, &m->capacity) == MDG_ERR_INVALID) {
		free(m);
		return MDG_ERR_INVALID;
	}
	const char *modes[] = {"ok",	  "delay",  "never", "late",  "error", "invalid",
			       "foreign", "notify", "hold",  "leaky", NULL};
	int known = 0;
	for (int i = 0; modes[i] != NULL; i++)
		known |= strcmp(modes[i], m->mode) == 0;
	if (!known) {
		free(m);
		return host->config_error(ctx, "mode",
					  "expected ok, delay, never, late, error, invalid, "
					  "foreign, notify, hold or leaky");
	}
	m->cancels = host->counter(ctx, "mock_cancels", "Fetches the host cancelled.", "");
	m->fetches = host->counter(ctx, "mock_fetches", "Fetches started.", "");
	*instance = m;
	return MDG_OK;
}

static void mock_fini(void *instance)
{
	struct mock *m = instance;
	while (m->held_list != NULL) {
		struct mock_held *p = m->held_list;
		m->held_list = p->next;
		m->host->timer_stop(p->timer);
		free(p);
	}
	free(m);
}

static void mock_complete(struct mock *m, mdg_ticket ticket, const char *certificate,
			  const char *resident_code)
{
	const mdg_host *h = m->host;
	int invalid = strcmp(m->mode, "invalid") == 0;
	if (strcmp(m->mode, "notify") == 0) {
		h->notify_change(m->ctx, resident_code, 7);
		h->notify_change(m->ctx, resident_code, 5); /* lower: must not lower the floor */
	}
	mdg_record *r = h->record_new(m->ctx, certificate, resident_code, 3,
				      invalid ? "alive-and-well" : "active", 1795737600);
	h->record_set(r, "name", "見本 太郎");
	mdg_item *item = h->record_add_item(r, "members");
	h->item_set(item, "name", "見本 花子");
	if (strcmp(m->mode, "foreign") == 0) {
		for (size_t i = 0; i < sizeof ticket.bytes; i++)
			ticket.bytes[i] ^= 0x5a;
	}
	h->complete(m->ctx, ticket, MDG_OK, r, NULL);
}

static void mock_timer_fired(void *arg)
{
	struct mock_pending *p = arg;
	mock_complete(p->m, p->ticket, p->certificate, p->resident_code);
	free(p);
}

/* Takes p off the held list (it is there) and frees it. */
static void mock_release(struct mock *m, struct mock_held *p)
{
	for (struct mock_held **pp = &m->held_list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	m->held--;
	free(p);
}

static void mock_held_fired(void *arg)
{
	struct mock_held *p = arg;
	struct mock *m = p->m;
	const mdg_host *h = m->host;
	mdg_ticket ticket = p->ticket;
	if (p->times_out) {
		mock_release(m, p);
		h->complete(m->ctx, ticket, MDG_ERR_TIMEOUT, NULL, "the mock's deadline passed");
		return;
	}
#ifdef MOCK_CROSS_ANSWERS
	const char *resident = mock_last_resident;
#else
	const char *resident = p->resident_code;
#endif
	mdg_record *r =
	    h->record_new(m->ctx, p->certificate, resident, 3, "active", (int64_t)time(NULL));
	h->record_set(r, "name", "見本 太郎");
	mock_release(m, p);
	h->complete(m->ctx, ticket, MDG_OK, r, NULL);
}

/* Mode "hold": see the top of the file. */
static int mock_hold(struct mock *m, const struct mdg_fetch *f)
{
	if (m->capacity > 0 && m->held >= m->capacity)
		return MDG_ERR_UNAVAILABLE;
	struct mock_held *p = calloc(1, sizeof *p);
	if (p == NULL)
		return MDG_ERR_NO_MEMORY;
	p->m = m;
	p->ticket = f->ticket;
	snprintf(p->certificate, sizeof p->certificate, "%s", f->certificate);
	snprintf(p->resident_code, sizeof p->resident_code, "%s", f->resident_code);
#ifdef MOCK_CROSS_ANSWERS
	snprintf(mock_last_resident, sizeof mock_last_resident, "%s", f->resident_code);
#endif
	uint64_t wait = (uint64_t)m->delay_ms;
#ifndef MOCK_IGNORE_DEADLINE
	uint64_t now = m->host->now_ms(m->ctx);
	uint64_t left = f->deadline_ms > now ? f->deadline_ms - now : 0;
	if (left < wait) {
		wait = left;
		p->times_out = 1;
	}
#endif
	p->timer = m->host->timer_start(m->ctx, wait, mock_held_fired, p);
	if (p->timer == NULL) {
		free(p);
		return MDG_ERR_NO_MEMORY;
	}
	p->next = m->held_list;
	m->held_list = p;
	m->held++;
	return MDG_OK;
}

#ifdef MOCK_STACK_OVERFLOW
/* Recurses with 4 KiB frames; the bound is far beyond any thread's stack. */
static int mock_recurse(unsigned depth)
{
	volatile char frame[4096];
	frame[depth % sizeof frame] = (char)depth;
	if (depth > (1u << 30))
		return frame[0];
	return mock_recurse(depth + 1) + frame[depth % sizeof frame];
}
#endif

static int mock_fetch(void *instance, const struct mdg_fetch *f)
{
	struct mock *m = instance;
#ifdef MOCK_STACK_OVERFLOW
	if (mock_recurse(0) == 42)
		return MDG_ERR_BACKEND;
#endif
	m->host->counter_add(m->fetches, 1);
	if (strcmp(m->mode, "hold") == 0)
		return mock_hold(m, f);
	if (strcmp(m->mode, "leaky") == 0) {
		/* 190 bytes, then the code: the host keeps 199 bytes of a reason. */
		char reason[400];
		int n = snprintf(reason, sizeof reason, "backend said rc%sx; ", f->resident_code);
		while (n > 0 && n < 190)
			reason[n++] = '.';
		snprintf(reason + n, sizeof reason - (size_t)n, "%s", f->resident_code);
		m->host->complete(m->ctx, f->ticket, MDG_ERR_BACKEND, NULL, reason);
		return MDG_OK;
	}
	if (strcmp(m->mode, "error") == 0)
		return MDG_ERR_BACKEND;
	if (strcmp(m->mode, "never") == 0)
		return MDG_OK;
	if (strcmp(m->mode, "delay") != 0 && strcmp(m->mode, "late") != 0) {
		mock_complete(m, f->ticket, f->certificate, f->resident_code);
		return MDG_OK;
	}
#ifdef MOCK_BLOCKING
	usleep((useconds_t)m->delay_ms * 1000);
	mock_complete(m, f->ticket, f->certificate, f->resident_code);
	return MDG_OK;
#endif
	struct mock_pending *p = calloc(1, sizeof *p);
	if (p == NULL)
		return MDG_ERR_NO_MEMORY;
	p->m = m;
	p->ticket = f->ticket;
	strncpy(p->certificate, f->certificate, sizeof p->certificate - 1);
	strncpy(p->resident_code, f->resident_code, sizeof p->resident_code - 1);
	if (m->host->timer_start(m->ctx, (uint64_t)m->delay_ms, mock_timer_fired, p) == NULL) {
		free(p);
		return MDG_ERR_NO_MEMORY;
	}
	/* p now belongs to the timer, which frees it in mock_timer_fired(). */
	// cppcheck-suppress memleak
	return MDG_OK;
}

#ifndef MOCK_IGNORE_DEADLINE
static void mock_cancel(void *instance, mdg_ticket ticket)
{
	struct mock *m = instance;
	/* "late" keeps its timer on purpose: its completion must be dropped by the host. */
	m->host->counter_add(m->cancels, 1);
#ifndef MOCK_IGNORE_CANCEL
	for (struct mock_held *p = m->held_list; p != NULL; p = p->next) {
		if (memcmp(p->ticket.bytes, ticket.bytes, sizeof ticket.bytes) == 0) {
			m->host->timer_stop(p->timer);
			mock_release(m, p);
			return;
		}
	}
#else
	(void)ticket;
#endif
}
#endif

static int mock_health(void *instance, char *detail, size_t size)
{
	(void)instance;
	(void)detail;
	(void)size;
	return MDG_OK;
}

static const char *const mock_certificates[] = {"residence", "seal", NULL};

static const struct mdg_plugin_descriptor mock_descriptor = {
#ifdef MOCK_BAD_MAJOR
    .abi_major = MDG_PLUGIN_ABI_MAJOR + 1,
#else
    .abi_major = MDG_PLUGIN_ABI_MAJOR,
#endif
#ifdef MOCK_BAD_MINOR
    .abi_minor = MDG_PLUGIN_ABI_MINOR + 1,
#else
    .abi_minor = MDG_PLUGIN_ABI_MINOR,
#endif
#ifdef MOCK_BAD_SIZE
    .size = 16,
#else
    .size = sizeof(struct mdg_plugin_descriptor),
#endif
#ifdef MOCK_BLOCKING
    .flags = MDG_PLUGIN_BLOCKING,
#else
    .flags = 0,
#endif
    .name = "mock",
    .version = "1.0.0",
    .vendor = "madoguchi tests",
    .certificates = mock_certificates,
    .init = mock_init,
    .fini = mock_fini,
    .fetch = mock_fetch,
#ifdef MOCK_IGNORE_DEADLINE
    .cancel = NULL,
#else
    .cancel = mock_cancel,
#endif
    .health = mock_health,
};

#ifdef MOCK_NO_ENTRY
/* Exported under another name: the loader must not find its entry. */
const struct mdg_plugin_descriptor *mdg_plugin_entry_misspelt(void);
const struct mdg_plugin_descriptor *mdg_plugin_entry_misspelt(void)
#else
const struct mdg_plugin_descriptor *mdg_plugin_entry(void)
#endif
{
	return &mock_descriptor;
}
