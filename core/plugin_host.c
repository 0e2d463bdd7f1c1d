/*
 * plugin_host.c: the loader, the host services table, and the fetch contract.
 *
 * Loading: each instance's file is resolved inside plugin_dir (realpath, so a symlink cannot
 * lead out), checked (regular file, owned by root or the service user, not writable by group
 * or others), dlopen'ed with RTLD_NOW | RTLD_LOCAL (unresolved symbols fail now, not at the
 * first request), and its descriptor checked against this host's ABI.  init() reads the
 * instance's settings through the host table; a setting the plugin never read is an unknown
 * key, reported like any other config error.
 *
 * Fetching: a pending fetch sits in a slot table; its ticket is the slot number plus 96
 * random bits, so a completion is found in O(1) and a stale, foreign or guessed ticket
 * matches nothing.  Completions may come from any thread: they are queued under a mutex and
 * handed to the loop with uv_async_send(); the loop matches each against the table and drops
 * what is not live.  A non-blocking plugin's fetch() runs on the loop; a blocking plugin's
 * (MDG_PLUGIN_BLOCKING) on the libuv thread pool, with its own copy of the request, so a
 * timed-out fetch can keep running there without touching freed memory.  One blocking
 * instance occupies at most half the pool's threads (pool_limit); its further fetches wait in
 * its own queue, so a slow backend cannot take the threads that card checks and rendering
 * need for every other plugin's types.  A fetch whose deadline passed while it waited is
 * dropped without running.
 *
 * A tracer (plugin_host_set_trace(), used only by the conformance check) sees every
 * completion, dropped ones included, every cancel() and every blocking fetch() with its
 * times; the daemon sets none, and without one nothing is timed (one NULL test per event).
 *
 * Everything here runs on the loop thread except host_complete(), host_log(),
 * host_notify_change(), the record builder, the counters and now_ms(), which any thread may
 * call.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/rand.h>

#include "log.h"
#include "metrics.h"
#include "plugin_host.h"
#include "record.h"

#define PLUGIN_REASON_MAX 200

struct mdg_plugin_ctx {
	struct plugin_host *host;
	struct plugin_instance *inst;
	const struct config_plugin *conf;
	unsigned char *setting_read; /* per setting: the plugin asked for it */
	char **resolved;	     /* per setting: its absolute path, when read as a path */
	char error[CONFIG_ERROR_MAX];
};

struct plugin_instance {
	struct plugin_host *host;
	const char *name;
	void *dl;
	const struct mdg_plugin_descriptor *desc;
	void *state;
	int initialised;
	struct mdg_plugin_ctx ctx;
	uint32_t max_in_flight;
	uint32_t in_flight;
	uint32_t pool_limit;   /* blocking: fetches on the thread pool at once, at most */
	uint32_t pool_running; /* blocking: fetches queued or running on the pool */
	struct plugin_work *waiting, **waiting_tail; /* blocking: fetches waiting for the pool */
	char *counter_names[32];		     /* strings of families the plugin registered */
	size_t counter_name_count;
	metric_value *m_ok;
	metric_value *m_failed;
	metric_value *m_timeouts;
	metric_value *m_late;
	metric_value *m_refused;
	metric_value *m_in_flight;
	metric_value *m_changes;
};

struct plugin_fetch {
	mdg_ticket ticket;
	uint32_t slot;
	struct plugin_instance *inst;
	int certificate; /* index in record_certificate_types */
	plugin_fetch_cb cb;
	void *arg;
	uv_timer_t deadline;
};

/* A completion on its way from any thread to the loop. */
struct plugin_completion {
	struct plugin_completion *next;
	struct plugin_instance *inst;
	mdg_ticket ticket;
	int status;
	mdg_record *record;
	uint64_t at_ms; /* when the plugin called complete() (for the tracer) */
	char reason[PLUGIN_REASON_MAX];
};

/* A blocking plugin's fetch on the thread pool, with its own copy of the request. */
struct plugin_work {
	uv_work_t req;
	struct plugin_work *next; /* in its instance's waiting queue */
	struct plugin_instance *inst;
	struct mdg_fetch fetch;
	int rc;
	uint64_t started_ms, returned_ms; /* of the fetch() call (for the tracer) */
	char certificate[32];
	char municipality[16];
	char resident_code[64];
};

struct mdg_timer {
	uv_timer_t handle;
	void (*cb)(void *arg);
	void *arg;
};

struct plugin_host {
	uv_loop_t *loop;
	struct config *cfg;
	struct plugin_instance *instances;
	size_t count;
	mdg_host table;
	struct plugin_fetch **slots;
	uint32_t slot_cap;
	uint32_t *free_slots;
	uint32_t free_count;
	uv_async_t wakeup;
	int wakeup_open;
	pthread_mutex_t lock; /* guards the completion queue */
	struct plugin_completion *queue;
	struct plugin_completion **queue_tail;
	uint32_t work_pending; /* blocking fetches queued or running on the thread pool */
	int shutting_down;     /* plugin_host_shutdown() was called: no new fetches */
	int finished;	       /* every fini() has run */
	/* The version fence: resident code -> highest version a change notification announced,
	 * raised from any thread, read on the loop (plugin_host_version_floor()). */
	pthread_mutex_t fence_lock;
	GHashTable *fence;
	plugin_trace_cb trace; /* the conformance check's observer; NULL in the daemon */
	void *trace_arg;
};

/* --- host services: logging, config ------------------------------------------------------ */

static void host_log(mdg_plugin_ctx *ctx, enum mdg_log_level level, const char *event,
		     const char *message)
{
	if (level < MDG_LOG_DEBUG || level > MDG_LOG_ERROR)
		level = MDG_LOG_ERROR;
	log_event((enum log_level)level, "plugin", "{s:s, s:s, s:s}", "plugin", ctx->inst->name,
		  "plugin_event", event ? event : "", "message", message ? message : "");
}

/* Records the first config error of the instance, with the position of mark. */
static int host_config_fail(mdg_plugin_ctx *ctx, struct config_mark mark, const char *key,
			    const char *message)
{
	if (ctx->error[0] == '\0')
		snprintf(ctx->error, sizeof ctx->error, "%s:%d:%d: plugins.%s.config.%s: %s",
			 ctx->host->cfg->path, mark.line, mark.column, ctx->inst->name, key,
			 message);
	return MDG_ERR_INVALID;
}

/* Finds key among the instance's settings and marks it read; NULL when absent. */
static const struct config_setting *host_setting(mdg_plugin_ctx *ctx, const char *key,
						 size_t *index)
{
	for (size_t i = 0; i < ctx->conf->setting_count; i++) {
		if (strcmp(ctx->conf->settings[i].key, key) == 0) {
			ctx->setting_read[i] = 1;
			if (index != NULL)
				*index = i;
			return &ctx->conf->settings[i];
		}
	}
	return NULL;
}

/* The common part of the config getters: absent and required is an error at the instance. */
static int host_config_absent(mdg_plugin_ctx *ctx, const char *key, int required)
{
	if (!required)
		return MDG_ERR_NOT_FOUND;
	char msg[160];
	snprintf(msg, sizeof msg, "missing required key (the plugin needs it under config:)");
	return host_config_fail(ctx, ctx->conf->mark, key, msg);
}

static int host_config_string(mdg_plugin_ctx *ctx, const char *key, int required, const char *dflt,
			      const char **out)
{
	const struct config_setting *s = host_setting(ctx, key, NULL);
	*out = s ? s->value : dflt;
	return s ? MDG_OK : host_config_absent(ctx, key, required);
}

static int host_config_path(mdg_plugin_ctx *ctx, const char *key, int required, const char *dflt,
			    const char **out)
{
	size_t i = 0;
	const struct config_setting *s = host_setting(ctx, key, &i);
	*out = dflt;
	if (s == NULL)
		return host_config_absent(ctx, key, required);
	if (s->value[0] == '\0')
		return host_config_fail(ctx, s->mark, key, "expected a path, got nothing");
	if (ctx->resolved[i] == NULL)
		ctx->resolved[i] = config_absolute_path(ctx->host->cfg, s->value);
	if (ctx->resolved[i] == NULL)
		return host_config_fail(ctx, s->mark, key, "out of memory");
	*out = ctx->resolved[i];
	return MDG_OK;
}

static int host_config_int(mdg_plugin_ctx *ctx, const char *key, int required, int64_t min,
			   int64_t max, int64_t dflt, int64_t *out)
{
	const struct config_setting *s = host_setting(ctx, key, NULL);
	*out = dflt;
	if (s == NULL)
		return host_config_absent(ctx, key, required);
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s->value, &end, 10);
	if (errno != 0 || end == s->value || *end != '\0' || v < min || v > max) {
		char msg[200];
		snprintf(msg, sizeof msg, "expected an integer from %lld to %lld, got '%.60s'",
			 (long long)min, (long long)max, s->value);
		return host_config_fail(ctx, s->mark, key, msg);
	}
	*out = v;
	return MDG_OK;
}

static int host_config_duration_ms(mdg_plugin_ctx *ctx, const char *key, int required,
				   uint64_t dflt, uint64_t *out)
{
	const struct config_setting *s = host_setting(ctx, key, NULL);
	*out = dflt;
	if (s == NULL)
		return host_config_absent(ctx, key, required);
	uint64_t ms;
	if (config_parse_duration(s->value, &ms) != 0) {
		char msg[200];
		snprintf(msg, sizeof msg, "expected a duration such as 250ms, 10s, 5m, got '%.60s'",
			 s->value);
		return host_config_fail(ctx, s->mark, key, msg);
	}
	*out = ms;
	return MDG_OK;
}

static int host_config_error(mdg_plugin_ctx *ctx, const char *key, const char *message)
{
	const struct config_setting *s = host_setting(ctx, key, NULL);
	return host_config_fail(ctx, s ? s->mark : ctx->conf->mark, key, message);
}

/* --- host services: loop, timers, work, metrics ------------------------------------------- */

static void *host_loop(mdg_plugin_ctx *ctx)
{
	return ctx->host->loop;
}

static uint64_t host_now_ms(mdg_plugin_ctx *ctx)
{
	(void)ctx;
	return uv_hrtime() / 1000000u;
}

/* The time now for a traced event; 0 when no tracer is set, so the daemon reads no clock. */
static uint64_t host_trace_now(const struct plugin_host *h)
{
	return h->trace != NULL ? uv_hrtime() / 1000000u : 0;
}

/* Hands one event to the tracer, if any (loop thread). */
static void host_trace(struct plugin_host *h, enum plugin_trace_kind kind,
		       const struct plugin_instance *inst, mdg_ticket ticket, int status, int live,
		       uint64_t start_ms, uint64_t end_ms)
{
	if (h->trace == NULL)
		return;
	struct plugin_trace_event ev = {
	    .kind = kind,
	    .inst = inst,
	    .ticket = ticket,
	    .status = status,
	    .live = live,
	    .start_ms = start_ms,
	    .end_ms = end_ms,
	};
	h->trace(h->trace_arg, &ev);
}

static void host_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void host_timer_fired(uv_timer_t *t)
{
	struct mdg_timer *timer = t->data;
	void (*cb)(void *) = timer->cb;
	void *arg = timer->arg;
	uv_close((uv_handle_t *)&timer->handle, host_timer_closed);
	cb(arg);
}

static mdg_timer *host_timer_start(mdg_plugin_ctx *ctx, uint64_t ms, void (*cb)(void *arg),
				   void *arg)
{
	struct mdg_timer *timer = calloc(1, sizeof *timer);
	if (timer == NULL || cb == NULL) {
		free(timer);
		return NULL;
	}
	uv_timer_init(ctx->host->loop, &timer->handle);
	timer->handle.data = timer;
	timer->cb = cb;
	timer->arg = arg;
	uv_timer_start(&timer->handle, host_timer_fired, ms, 0);
	return timer;
}

static void host_timer_stop(mdg_timer *timer)
{
	if (timer != NULL && !uv_is_closing((uv_handle_t *)&timer->handle))
		uv_close((uv_handle_t *)&timer->handle, host_timer_closed);
}

struct host_work {
	uv_work_t req;
	void (*work)(void *arg);
	void (*done)(void *arg, int status);
	void *arg;
};

static void host_work_run(uv_work_t *req)
{
	struct host_work *w = req->data;
	w->work(w->arg);
}

static void host_work_done(uv_work_t *req, int status)
{
	struct host_work *w = req->data;
	if (w->done != NULL)
		w->done(w->arg, status == 0 ? MDG_OK : MDG_ERR_UNAVAILABLE);
	free(w);
}

static int host_queue_work(mdg_plugin_ctx *ctx, void (*work)(void *arg),
			   void (*done)(void *arg, int status), void *arg)
{
	struct host_work *w = calloc(1, sizeof *w);
	if (w == NULL || work == NULL) {
		free(w);
		return MDG_ERR_NO_MEMORY;
	}
	w->req.data = w;
	w->work = work;
	w->done = done;
	w->arg = arg;
	if (uv_queue_work(ctx->host->loop, &w->req, host_work_run, host_work_done) != 0) {
		free(w);
		return MDG_ERR_UNAVAILABLE;
	}
	return MDG_OK;
}

static mdg_counter *host_counter(mdg_plugin_ctx *ctx, const char *name, const char *help,
				 const char *labels)
{
	struct plugin_instance *inst = ctx->inst;
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 48 || help == NULL || inst->counter_name_count + 2 > 32)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_'))
			return NULL;
	}
	char family[96], series[256];
	snprintf(family, sizeof family, "madoguchi_plugin_%s_total", name);
	snprintf(series, sizeof series, "plugin=\"%s\"%s%s", inst->name,
		 labels && labels[0] ? "," : "", labels ? labels : "");
	/* The registry keeps the name and help for the life of the process. */
	char *fname = strdup(family);
	char *fhelp = strdup(help);
	if (fname == NULL || fhelp == NULL) {
		free(fname);
		free(fhelp);
		return NULL;
	}
	inst->counter_names[inst->counter_name_count++] = fname;
	inst->counter_names[inst->counter_name_count++] = fhelp;
	return (mdg_counter *)metrics_series(metrics_family(fname, fhelp, METRIC_COUNTER), series);
}

static void host_counter_add(mdg_counter *counter, uint64_t n)
{
	if (counter != NULL)
		metrics_add((metric_value *)counter, (int64_t)n);
}

/*
 * A backend announces that resident_code's data changed to version: from now on a record of
 * that resident below version is refused (DATA_NOT_CURRENT, incident I3), from any plugin,
 * since versions are the resident's (docs/records.md).  The floor only rises.
 */
static void host_notify_change(mdg_plugin_ctx *ctx, const char *resident_code, uint64_t version)
{
	struct plugin_host *h = ctx->host;
	metrics_inc(ctx->inst->m_changes);
	if (resident_code == NULL || resident_code[0] == '\0' || strlen(resident_code) > 64)
		return;
	pthread_mutex_lock(&h->fence_lock);
	uint64_t *floor = g_hash_table_lookup(h->fence, resident_code);
	if (floor == NULL) {
		floor = g_new(uint64_t, 1);
		*floor = version;
		g_hash_table_insert(h->fence, g_strdup(resident_code), floor);
	} else if (version > *floor) {
		*floor = version;
	}
	pthread_mutex_unlock(&h->fence_lock);
}

uint64_t plugin_host_version_floor(struct plugin_host *h, const char *resident_code)
{
	pthread_mutex_lock(&h->fence_lock);
	const uint64_t *floor = g_hash_table_lookup(h->fence, resident_code);
	uint64_t v = floor ? *floor : 0;
	pthread_mutex_unlock(&h->fence_lock);
	return v;
}

/* --- fetch table ------------------------------------------------------------------------- */

static struct plugin_fetch *fetch_lookup(struct plugin_host *h, mdg_ticket t)
{
	uint32_t slot;
	memcpy(&slot, t.bytes, sizeof slot);
	if (slot >= h->slot_cap || h->slots[slot] == NULL)
		return NULL;
	struct plugin_fetch *f = h->slots[slot];
	return memcmp(f->ticket.bytes, t.bytes, sizeof t.bytes) == 0 ? f : NULL;
}

/* Puts f in a free slot and gives it its ticket.  Returns 0 or -1 (out of memory). */
static int fetch_register(struct plugin_host *h, struct plugin_fetch *f)
{
	if (h->free_count == 0) {
		uint32_t ncap = h->slot_cap ? h->slot_cap * 2 : 64;
		struct plugin_fetch **ns = realloc(h->slots, ncap * sizeof *ns);
		if (ns == NULL)
			return -1;
		h->slots = ns;
		uint32_t *nf = realloc(h->free_slots, ncap * sizeof *nf);
		if (nf == NULL)
			return -1;
		h->free_slots = nf;
		for (uint32_t i = ncap; i > h->slot_cap; i--) {
			h->slots[i - 1] = NULL;
			h->free_slots[h->free_count++] = i - 1;
		}
		h->slot_cap = ncap;
	}
	f->slot = h->free_slots[--h->free_count];
	memcpy(f->ticket.bytes, &f->slot, sizeof f->slot);
	if (RAND_bytes(f->ticket.bytes + sizeof f->slot,
		       (int)(sizeof f->ticket.bytes - sizeof f->slot)) != 1) {
		h->free_slots[h->free_count++] = f->slot;
		return -1;
	}
	h->slots[f->slot] = f;
	return 0;
}

static void fetch_closed(uv_handle_t *handle)
{
	free(handle->data);
}

/* Takes f out of the table (its ticket dies) and frees it once its timer has closed. */
static void fetch_retire(struct plugin_fetch *f)
{
	struct plugin_host *h = f->inst->host;
	h->slots[f->slot] = NULL;
	h->free_slots[h->free_count++] = f->slot;
	f->inst->in_flight--;
	metrics_add(f->inst->m_in_flight, -1);
	uv_timer_stop(&f->deadline);
	uv_close((uv_handle_t *)&f->deadline, fetch_closed);
}

/* Delivers a live fetch's outcome to its requester. */
static void fetch_finish(struct plugin_fetch *f, int status, mdg_record *record, const char *reason)
{
	char why[PLUGIN_REASON_MAX];
	if (status == MDG_OK) {
		if (record == NULL) {
			status = MDG_ERR_BACKEND;
			reason = "the plugin completed without a record";
		} else if (record_validate(record, why, sizeof why) != 0) {
			status = MDG_ERR_BACKEND;
			reason = why;
		} else if (record_certificate_index(record_certificate(record)) != f->certificate) {
			status = MDG_ERR_BACKEND;
			reason = "the record is of another certificate type than asked for";
		}
	} else if (status > 0) {
		status = MDG_ERR_BACKEND; /* not a status of the SDK */
	}
	if (status != MDG_OK) {
		record_free(record);
		record = NULL;
	}
	metrics_inc(status == MDG_OK ? f->inst->m_ok : f->inst->m_failed);
	plugin_fetch_cb cb = f->cb;
	void *arg = f->arg;
	fetch_retire(f);
	cb(arg, status, record, reason);
}

/* Tells the plugin the host gave up on ticket (it may have no cancel()). */
static void plugin_cancel(struct plugin_instance *inst, mdg_ticket ticket)
{
	if (inst->desc->cancel == NULL)
		return;
	uint64_t start = host_trace_now(inst->host);
	inst->desc->cancel(inst->state, ticket);
	host_trace(inst->host, PLUGIN_TRACE_CANCEL, inst, ticket, 0, 0, start,
		   host_trace_now(inst->host));
}

static void fetch_deadline(uv_timer_t *t)
{
	struct plugin_fetch *f = t->data;
	struct plugin_instance *inst = f->inst;
	mdg_ticket ticket = f->ticket;
	plugin_fetch_cb cb = f->cb;
	void *arg = f->arg;
	metrics_inc(inst->m_timeouts);
	fetch_retire(f);
	plugin_cancel(inst, ticket);
	cb(arg, MDG_ERR_TIMEOUT, NULL, "the plugin missed its deadline");
}

void plugin_fetch_abandon(struct plugin_fetch *f)
{
	struct plugin_instance *inst = f->inst;
	mdg_ticket ticket = f->ticket;
	fetch_retire(f);
	plugin_cancel(inst, ticket);
}

mdg_ticket plugin_fetch_ticket(const struct plugin_fetch *f)
{
	return f->ticket;
}

/* --- completions ------------------------------------------------------------------------- */

static void host_complete(mdg_plugin_ctx *ctx, mdg_ticket ticket, int status, mdg_record *record,
			  const char *reason)
{
	struct plugin_host *h = ctx->host;
	struct plugin_completion *c = calloc(1, sizeof *c);
	if (c == NULL) {
		/* The fetch will time out; its requester gets an answer either way. */
		record_free(record);
		return;
	}
	c->inst = ctx->inst;
	c->ticket = ticket;
	c->status = status;
	c->record = record;
	c->at_ms = host_trace_now(h);
	if (reason != NULL)
		snprintf(c->reason, sizeof c->reason, "%s", reason);
	pthread_mutex_lock(&h->lock);
	*h->queue_tail = c;
	h->queue_tail = &c->next;
	pthread_mutex_unlock(&h->lock);
	uv_async_send(&h->wakeup);
}

/* Matches queued completions against live tickets (loop thread). */
static void host_drain_completions(uv_async_t *async)
{
	struct plugin_host *h = async->data;
	pthread_mutex_lock(&h->lock);
	struct plugin_completion *c = h->queue;
	h->queue = NULL;
	h->queue_tail = &h->queue;
	pthread_mutex_unlock(&h->lock);
	while (c != NULL) {
		struct plugin_completion *next = c->next;
		struct plugin_fetch *f = fetch_lookup(h, c->ticket);
		int live = f != NULL && f->inst == c->inst;
		host_trace(h, PLUGIN_TRACE_COMPLETION, c->inst, c->ticket, c->status, live,
			   c->at_ms, host_trace_now(h));
		if (live) {
			fetch_finish(f, c->status, c->record, c->reason[0] ? c->reason : NULL);
		} else {
			/* Timed out, abandoned, already completed, or never ours: drop it. */
			metrics_inc(c->inst->m_late);
			log_event(LOG_INFO, "late_completion_dropped", "{s:s}", "plugin",
				  c->inst->name);
			record_free(c->record);
		}
		free(c);
		c = next;
	}
}

/* --- fetching ---------------------------------------------------------------------------- */

static void plugin_host_finish(struct plugin_host *h);

static void plugin_work_run(uv_work_t *req)
{
	struct plugin_work *w = req->data;
	w->started_ms = host_trace_now(w->inst->host);
	w->rc = w->inst->desc->fetch(w->inst->state, &w->fetch);
	w->returned_ms = host_trace_now(w->inst->host);
}

static void plugin_work_done(uv_work_t *req, int status);

/* Puts w on the thread pool; 0, or -1 when libuv refused it (w is not queued then). */
static int work_queue(struct plugin_work *w)
{
	struct plugin_instance *inst = w->inst;
	if (uv_queue_work(inst->host->loop, &w->req, plugin_work_run, plugin_work_done) != 0)
		return -1;
	inst->pool_running++;
	inst->host->work_pending++;
	return 0;
}

/* Moves waiting fetches of inst onto the pool while it has room; a fetch that ended while it
 * waited (deadline, abandon) is dropped without running. */
static void work_dispatch(struct plugin_instance *inst)
{
	while (inst->waiting != NULL && inst->pool_running < inst->pool_limit) {
		struct plugin_work *w = inst->waiting;
		inst->waiting = w->next;
		if (inst->waiting == NULL)
			inst->waiting_tail = &inst->waiting;
		struct plugin_fetch *f = fetch_lookup(inst->host, w->fetch.ticket);
		if (f == NULL) {
			free(w);
			continue;
		}
		if (work_queue(w) != 0) {
			fetch_finish(f, MDG_ERR_UNAVAILABLE, NULL, "cannot queue the fetch");
			free(w);
		}
	}
}

static void plugin_work_done(uv_work_t *req, int status)
{
	struct plugin_work *w = req->data;
	struct plugin_host *h = w->inst->host;
	h->work_pending--;
	w->inst->pool_running--;
	if (status == 0)
		host_trace(h, PLUGIN_TRACE_BLOCKING_FETCH, w->inst, w->fetch.ticket, w->rc, 0,
			   w->started_ms, w->returned_ms);
	if (h->shutting_down) {
		if (h->work_pending == 0)
			plugin_host_finish(h);
		free(w);
		return;
	}
	int rc = status != 0 ? MDG_ERR_UNAVAILABLE : w->rc;
	if (rc != MDG_OK) {
		/* The plugin could not start: the host completes the ticket itself, if live. */
		struct plugin_fetch *f = fetch_lookup(w->inst->host, w->fetch.ticket);
		if (f != NULL)
			fetch_finish(f, rc < 0 ? rc : MDG_ERR_BACKEND, NULL,
				     "the plugin could not start the fetch");
	}
	struct plugin_instance *inst = w->inst;
	free(w);
	work_dispatch(inst);
}

int plugin_fetch(struct plugin_instance *inst, const char *certificate, const char *municipality,
		 const char *resident_code, uint32_t options, uint64_t timeout_ms,
		 plugin_fetch_cb cb, void *arg, struct plugin_fetch **handle)
{
	struct plugin_host *h = inst->host;
	int cert = record_certificate_index(certificate);
	if (cert < 0 || !plugin_instance_serves(inst, certificate))
		return MDG_ERR_INVALID;
	if (h->shutting_down)
		return MDG_ERR_UNAVAILABLE;
	if (inst->in_flight >= inst->max_in_flight) {
		metrics_inc(inst->m_refused);
		return MDG_ERR_UNAVAILABLE;
	}
	struct plugin_fetch *f = calloc(1, sizeof *f);
	if (f == NULL)
		return MDG_ERR_NO_MEMORY;
	if (fetch_register(h, f) != 0) {
		free(f);
		return MDG_ERR_NO_MEMORY;
	}
	f->inst = inst;
	f->certificate = cert;
	f->cb = cb;
	f->arg = arg;
	uv_timer_init(h->loop, &f->deadline);
	f->deadline.data = f;
	inst->in_flight++;
	metrics_inc(inst->m_in_flight);
	/* libuv times timers from the loop's cached time, which is as old as the callback that
	 * started this fetch: the deadline counts from now. */
	uv_update_time(h->loop);
	uv_timer_start(&f->deadline, fetch_deadline, timeout_ms, 0);

	struct mdg_fetch req = {
	    .size = sizeof req,
	    .ticket = f->ticket,
	    .certificate = record_certificate_types[cert],
	    .municipality = municipality,
	    .resident_code = resident_code,
	    .options = options,
	    .deadline_ms = host_now_ms(&inst->ctx) + timeout_ms,
	};
	int rc;
	if (inst->desc->flags & MDG_PLUGIN_BLOCKING) {
		struct plugin_work *w = calloc(1, sizeof *w);
		rc = MDG_ERR_NO_MEMORY;
		if (w != NULL && strlen(municipality) < sizeof w->municipality &&
		    strlen(resident_code) < sizeof w->resident_code) {
			w->req.data = w;
			w->inst = inst;
			w->fetch = req;
			snprintf(w->certificate, sizeof w->certificate, "%s", req.certificate);
			snprintf(w->municipality, sizeof w->municipality, "%s", municipality);
			snprintf(w->resident_code, sizeof w->resident_code, "%s", resident_code);
			w->fetch.certificate = w->certificate;
			w->fetch.municipality = w->municipality;
			w->fetch.resident_code = w->resident_code;
			rc = MDG_OK;
			if (inst->pool_running < inst->pool_limit) {
				if (work_queue(w) != 0)
					rc = MDG_ERR_UNAVAILABLE;
			} else {
				*inst->waiting_tail = w;
				inst->waiting_tail = &w->next;
			}
		} else if (w != NULL) {
			rc = MDG_ERR_INVALID;
		}
		if (rc != MDG_OK)
			free(w);
	} else {
		rc = inst->desc->fetch(inst->state, &req);
	}
	if (rc != MDG_OK) {
		metrics_inc(inst->m_failed);
		fetch_retire(f);
		return rc < 0 ? rc : MDG_ERR_BACKEND;
	}
	if (handle != NULL)
		*handle = f;
	return MDG_OK;
}

/* --- loading ------------------------------------------------------------------------------ */

static const mdg_host host_table_template = {
    .abi_major = MDG_PLUGIN_ABI_MAJOR,
    .abi_minor = MDG_PLUGIN_ABI_MINOR,
    .size = sizeof(mdg_host),
    .log = host_log,
    .config_string = host_config_string,
    .config_path = host_config_path,
    .config_int = host_config_int,
    .config_duration_ms = host_config_duration_ms,
    .config_error = host_config_error,
    .loop = host_loop,
    .now_ms = host_now_ms,
    .timer_start = host_timer_start,
    .timer_stop = host_timer_stop,
    .queue_work = host_queue_work,
    .counter = host_counter,
    .counter_add = host_counter_add,
    .record_new = record_new,
    .record_set = record_set,
    .record_add_item = record_add_item,
    .item_set = record_item_set,
    .record_free = record_free,
    .complete = host_complete,
    .notify_change = host_notify_change,
};

/* Fills msg with a refusal of inst's file and logs it with what to do; returns -1. */
static int plugin_refuse(const struct config *cfg, const struct config_plugin *conf,
			 const char *file, const char *reason, const char *hint, char *msg,
			 size_t msg_size)
{
	snprintf(msg, msg_size, "%s:%d:%d: plugins.%s: refused %s: %s; %s", cfg->path,
		 conf->file_mark.line, conf->file_mark.column, conf->name, file, reason, hint);
	log_event(LOG_ERROR, "plugin_refused", "{s:s, s:s, s:s, s:s}", "plugin", conf->name, "file",
		  file, "reason", reason, "hint", hint);
	return -1;
}

/* True for a version of dotted numbers, e.g. 1.2.3. */
static int plugin_version_ok(const char *v)
{
	int digits = 0;
	for (; *v != '\0'; v++) {
		if (*v >= '0' && *v <= '9') {
			digits++;
		} else if (*v == '.' && digits > 0) {
			digits = 0;
		} else {
			return 0;
		}
	}
	return digits > 0;
}

/* Checks what the loader requires of a descriptor; returns NULL or the reason. */
static const char *plugin_descriptor_problem(const struct mdg_plugin_descriptor *d, char *buf,
					     size_t size)
{
	if (d == NULL)
		return "mdg_plugin_entry() returned NULL";
	if (d->abi_major != MDG_PLUGIN_ABI_MAJOR) {
		snprintf(buf, size,
			 "built for plugin ABI %u.%u, this host has ABI %u.%u (major "
			 "versions differ)",
			 d->abi_major, d->abi_minor, MDG_PLUGIN_ABI_MAJOR, MDG_PLUGIN_ABI_MINOR);
		return buf;
	}
	if (d->abi_minor > MDG_PLUGIN_ABI_MINOR) {
		snprintf(buf, size, "built for plugin ABI %u.%u, newer than this host's %u.%u",
			 d->abi_major, d->abi_minor, MDG_PLUGIN_ABI_MAJOR, MDG_PLUGIN_ABI_MINOR);
		return buf;
	}
	if (d->size < offsetof(struct mdg_plugin_descriptor, reserved)) {
		snprintf(buf, size, "descriptor is %u bytes, ABI %u.0 needs at least %zu", d->size,
			 MDG_PLUGIN_ABI_MAJOR, offsetof(struct mdg_plugin_descriptor, reserved));
		return buf;
	}
	if (d->name == NULL || d->name[0] == '\0' || d->vendor == NULL)
		return "the descriptor has no name or vendor";
	if (d->version == NULL || !plugin_version_ok(d->version))
		return "the descriptor's version is not dotted numbers (e.g. 1.2.3)";
	if (d->init == NULL || d->fini == NULL || d->fetch == NULL)
		return "the descriptor lacks init, fini or fetch";
	if (d->certificates == NULL || d->certificates[0] == NULL)
		return "the descriptor serves no certificate type";
	for (size_t i = 0; d->certificates[i] != NULL; i++) {
		if (record_certificate_index(d->certificates[i]) < 0) {
			snprintf(buf, size, "unknown certificate type '%.40s'", d->certificates[i]);
			return buf;
		}
	}
	return NULL;
}

/* Resolves and checks the file of one instance; returns its real path (malloc'd) or NULL. */
static char *plugin_check_file(const struct config *cfg, const struct config_plugin *conf,
			       char *msg, size_t msg_size)
{
	char dir_real[PATH_MAX], file_real[PATH_MAX], joined[2 * PATH_MAX + 2];
	const char *file = conf->file;
	if (realpath(cfg->plugin_dir, dir_real) == NULL) {
		char reason[PATH_MAX + 64];
		snprintf(reason, sizeof reason, "plugin_dir %s: %s", cfg->plugin_dir,
			 strerror(errno));
		plugin_refuse(cfg, conf, file, reason, "set plugin_dir to the plugins' directory",
			      msg, msg_size);
		return NULL;
	}
	if (file[0] == '/')
		snprintf(joined, sizeof joined, "%s", file);
	else
		snprintf(joined, sizeof joined, "%s/%s", dir_real, file);
	if (realpath(joined, file_real) == NULL) {
		plugin_refuse(cfg, conf, file, strerror(errno),
			      "install the plugin in plugin_dir or correct `file`", msg, msg_size);
		return NULL;
	}
	size_t dlen = strlen(dir_real);
	if (strncmp(file_real, dir_real, dlen) != 0 ||
	    (file_real[dlen] != '/' && dir_real[dlen - 1] != '/')) {
		plugin_refuse(cfg, conf, file, "the file is outside plugin_dir",
			      "install the plugin into plugin_dir (a symbolic link out of it does "
			      "not count)",
			      msg, msg_size);
		return NULL;
	}
	struct stat st;
	if (stat(file_real, &st) != 0 || !S_ISREG(st.st_mode)) {
		plugin_refuse(cfg, conf, file, "not a regular file",
			      "point `file` at the plugin's .so", msg, msg_size);
		return NULL;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		plugin_refuse(cfg, conf, file, "owned by another user",
			      "chown it to root (or the service user)", msg, msg_size);
		return NULL;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		plugin_refuse(cfg, conf, file, "writable by group or others",
			      "chmod go-w it: anyone who can write it could run code in the "
			      "appliance",
			      msg, msg_size);
		return NULL;
	}
	return strdup(file_real);
}

static void plugin_instance_metrics(struct plugin_instance *inst)
{
	char labels[128];
	struct metric_family *fetches =
	    metrics_family("madoguchi_plugin_fetches_total",
			   "Fetches by plugin instance and result.", METRIC_COUNTER);
	snprintf(labels, sizeof labels, "plugin=\"%s\",result=\"ok\"", inst->name);
	inst->m_ok = metrics_series(fetches, labels);
	snprintf(labels, sizeof labels, "plugin=\"%s\",result=\"failed\"", inst->name);
	inst->m_failed = metrics_series(fetches, labels);
	snprintf(labels, sizeof labels, "plugin=\"%s\",result=\"timeout\"", inst->name);
	inst->m_timeouts = metrics_series(fetches, labels);
	snprintf(labels, sizeof labels, "plugin=\"%s\",result=\"refused\"", inst->name);
	inst->m_refused = metrics_series(fetches, labels);
	snprintf(labels, sizeof labels, "plugin=\"%s\"", inst->name);
	inst->m_late = metrics_series(
	    metrics_family("madoguchi_plugin_late_completions_total",
			   "Completions dropped because their ticket was no longer live.",
			   METRIC_COUNTER),
	    labels);
	inst->m_in_flight =
	    metrics_series(metrics_family("madoguchi_plugin_in_flight",
					  "Fetches under way, by plugin instance.", METRIC_GAUGE),
			   labels);
	inst->m_changes = metrics_series(
	    metrics_family("madoguchi_plugin_change_notifications_total",
			   "Record change notifications received from backends.", METRIC_COUNTER),
	    labels);
}

/* Loads and initialises one instance.  Returns 0, or -1 with msg filled. */
static int plugin_load_one(struct plugin_host *h, struct plugin_instance *inst,
			   const struct config_plugin *conf, char *msg, size_t msg_size)
{
	const struct config *cfg = h->cfg;
	inst->host = h;
	inst->name = conf->name;
	inst->max_in_flight = conf->max_in_flight;
	inst->pool_limit = cfg->worker_threads / 2 > 1 ? cfg->worker_threads / 2 : 1;
	inst->waiting_tail = &inst->waiting;
	char *path = plugin_check_file(cfg, conf, msg, msg_size);
	if (path == NULL)
		return -1;
	dlerror();
	inst->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (inst->dl == NULL) {
		const char *err = dlerror();
		plugin_refuse(
		    cfg, conf, conf->file, err ? err : "dlopen failed",
		    "rebuild it against this host's SDK (pkg-config madoguchi-plugin) and "
		    "install the libraries it needs",
		    msg, msg_size);
		free(path);
		return -1;
	}
	free(path);
	union {
		void *sym;
		const struct mdg_plugin_descriptor *(*fn)(void);
	} entry;
	entry.sym = dlsym(inst->dl, MDG_PLUGIN_ENTRY_SYMBOL);
	if (entry.sym == NULL)
		return plugin_refuse(cfg, conf, conf->file,
				     "no mdg_plugin_entry symbol: not a madoguchi plugin",
				     "export `const struct mdg_plugin_descriptor "
				     "*mdg_plugin_entry(void)`",
				     msg, msg_size);
	inst->desc = entry.fn();
	char buf[256];
	const char *problem = plugin_descriptor_problem(inst->desc, buf, sizeof buf);
	if (problem != NULL)
		return plugin_refuse(cfg, conf, conf->file, problem,
				     "rebuild the plugin against this host's SDK "
				     "(include/madoguchi/plugin.h)",
				     msg, msg_size);

	inst->ctx.host = h;
	inst->ctx.inst = inst;
	inst->ctx.conf = conf;
	inst->ctx.setting_read = calloc(conf->setting_count + 1, 1);
	inst->ctx.resolved = calloc(conf->setting_count + 1, sizeof(char *));
	if (inst->ctx.setting_read == NULL || inst->ctx.resolved == NULL) {
		snprintf(msg, msg_size, "plugins.%s: out of memory", conf->name);
		return -1;
	}
	plugin_instance_metrics(inst);
	int rc = inst->desc->init(&h->table, &inst->ctx, &inst->state);
	if (rc == MDG_OK)
		inst->initialised = 1;
	for (size_t i = 0; rc == MDG_OK && i < conf->setting_count; i++) {
		if (!inst->ctx.setting_read[i]) {
			snprintf(inst->ctx.error, sizeof inst->ctx.error,
				 "%s:%d:%d: unknown key '%s' in plugins.%s.config (plugin %s does "
				 "not read it)",
				 cfg->path, conf->settings[i].mark.line,
				 conf->settings[i].mark.column, conf->settings[i].key, conf->name,
				 inst->desc->name);
			rc = MDG_ERR_INVALID;
		}
	}
	if (rc != MDG_OK) {
		if (inst->ctx.error[0] != '\0')
			snprintf(msg, msg_size, "%s", inst->ctx.error);
		else
			snprintf(msg, msg_size,
				 "%s:%d:%d: plugins.%s: plugin %s failed to start (status %d); "
				 "see its log lines above",
				 cfg->path, conf->mark.line, conf->mark.column, conf->name,
				 inst->desc->name, rc);
		return -1;
	}
	log_event(LOG_INFO, "plugin_loaded", "{s:s, s:s, s:s, s:s, s:b}", "plugin", conf->name,
		  "name", inst->desc->name, "version", inst->desc->version, "vendor",
		  inst->desc->vendor, "blocking", (inst->desc->flags & MDG_PLUGIN_BLOCKING) != 0);
	return 0;
}

int plugin_host_load(struct plugin_host **out, const struct config *cfg, uv_loop_t *loop, char *msg,
		     size_t msg_size)
{
	struct plugin_host *h = calloc(1, sizeof *h);
	*out = NULL;
	if (h == NULL) {
		snprintf(msg, msg_size, "out of memory");
		return -1;
	}
	h->loop = loop;
	h->cfg = config_ref((struct config *)cfg);
	h->table = host_table_template;
	h->queue_tail = &h->queue;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->fence_lock, NULL);
	h->fence = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	if (uv_async_init(loop, &h->wakeup, host_drain_completions) != 0) {
		snprintf(msg, msg_size, "cannot create the plugin completion queue");
		g_hash_table_destroy(h->fence);
		config_unref(h->cfg);
		free(h);
		return -1;
	}
	h->wakeup.data = h;
	h->wakeup_open = 1;
	/* Completions must not keep the loop alive on their own (drain ends it). */
	uv_unref((uv_handle_t *)&h->wakeup);
	h->instances = calloc(cfg->plugin_count + 1, sizeof *h->instances);
	if (h->instances == NULL) {
		snprintf(msg, msg_size, "out of memory");
		plugin_host_unload(h);
		return -1;
	}
	for (size_t i = 0; i < cfg->plugin_count; i++) {
		h->count = i + 1;
		if (plugin_load_one(h, &h->instances[i], &cfg->plugins[i], msg, msg_size) != 0) {
			plugin_host_unload(h);
			return -1;
		}
	}
	*out = h;
	return 0;
}

static void plugin_host_wakeup_closed(uv_handle_t *handle)
{
	struct plugin_host *h = handle->data;
	h->wakeup_open = 0;
}

/* Calls every fini() (once) and closes the completion handle; the last step of shutdown,
 * taken when no blocking fetch is left on the thread pool. */
static void plugin_host_finish(struct plugin_host *h)
{
	if (h->finished)
		return;
	h->finished = 1;
	for (size_t i = h->count; i > 0; i--) {
		struct plugin_instance *inst = &h->instances[i - 1];
		if (inst->initialised)
			inst->desc->fini(inst->state);
		inst->initialised = 0;
	}
	/* Completions still queued belong to nobody now. */
	pthread_mutex_lock(&h->lock);
	struct plugin_completion *c = h->queue;
	h->queue = NULL;
	h->queue_tail = &h->queue;
	pthread_mutex_unlock(&h->lock);
	while (c != NULL) {
		struct plugin_completion *next = c->next;
		host_trace(h, PLUGIN_TRACE_COMPLETION, c->inst, c->ticket, c->status, 0, c->at_ms,
			   host_trace_now(h));
		record_free(c->record);
		free(c);
		c = next;
	}
	if (h->wakeup_open && !uv_is_closing((uv_handle_t *)&h->wakeup))
		uv_close((uv_handle_t *)&h->wakeup, plugin_host_wakeup_closed);
}

void plugin_host_shutdown(struct plugin_host *h)
{
	if (h == NULL || h->shutting_down)
		return;
	h->shutting_down = 1;
	for (uint32_t i = 0; i < h->slot_cap; i++) {
		if (h->slots[i] != NULL)
			plugin_fetch_abandon(h->slots[i]);
	}
	/* Fetches still waiting for the pool never run. */
	for (size_t i = 0; i < h->count; i++) {
		struct plugin_instance *inst = &h->instances[i];
		while (inst->waiting != NULL) {
			struct plugin_work *w = inst->waiting;
			inst->waiting = w->next;
			free(w);
		}
		inst->waiting_tail = &inst->waiting;
	}
	/* A blocking fetch still queued or running on a worker must end before fini() frees
	 * what it uses: then plugin_work_done() finishes the shutdown. */
	if (h->work_pending == 0)
		plugin_host_finish(h);
}

void plugin_host_unload(struct plugin_host *h)
{
	if (h == NULL)
		return;
	plugin_host_shutdown(h);
	/* Outside uv_run(): run the loop until the blocking fetches, fini() and the closes it
	 * caused are through, before the memory they use goes. */
	while (h->work_pending > 0 || h->wakeup_open)
		uv_run(h->loop, UV_RUN_ONCE);
	uv_run(h->loop, UV_RUN_NOWAIT);
	for (size_t i = 0; i < h->count; i++) {
		struct plugin_instance *inst = &h->instances[i];
		for (size_t j = 0; inst->ctx.resolved && j < inst->ctx.conf->setting_count; j++)
			free(inst->ctx.resolved[j]);
		free(inst->ctx.resolved);
		free(inst->ctx.setting_read);
		if (inst->dl != NULL)
			dlclose(inst->dl);
		/* Unloading is the last thing before exit: nothing renders metrics after it. */
		for (size_t j = 0; j < inst->counter_name_count; j++)
			free(inst->counter_names[j]);
	}
	free(h->instances);
	free(h->slots);
	free(h->free_slots);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->fence_lock);
	g_hash_table_destroy(h->fence);
	config_unref(h->cfg);
	free(h);
}

void plugin_host_set_trace(struct plugin_host *h, plugin_trace_cb cb, void *arg)
{
	h->trace = cb;
	h->trace_arg = arg;
}

size_t plugin_host_count(const struct plugin_host *h)
{
	return h ? h->count : 0;
}

struct plugin_instance *plugin_host_instance(struct plugin_host *h, size_t i)
{
	return i < h->count ? &h->instances[i] : NULL;
}

uint64_t plugin_instance_timeout_ms(const struct plugin_instance *inst)
{
	return inst->ctx.conf->timeout_ms;
}

struct plugin_instance *plugin_host_find(struct plugin_host *h, const char *name)
{
	for (size_t i = 0; h != NULL && i < h->count; i++) {
		if (strcmp(h->instances[i].name, name) == 0)
			return &h->instances[i];
	}
	return NULL;
}

const char *plugin_instance_name(const struct plugin_instance *inst)
{
	return inst->name;
}

const struct mdg_plugin_descriptor *plugin_instance_descriptor(const struct plugin_instance *inst)
{
	return inst->desc;
}

int plugin_instance_serves(const struct plugin_instance *inst, const char *certificate)
{
	for (size_t i = 0; inst->desc->certificates[i] != NULL; i++) {
		if (strcmp(inst->desc->certificates[i], certificate) == 0)
			return 1;
	}
	return 0;
}

uint32_t plugin_instance_in_flight(const struct plugin_instance *inst)
{
	return inst->in_flight;
}

uint32_t plugin_instance_blocking_pending(const struct plugin_instance *inst)
{
	uint32_t n = inst->pool_running;
	for (const struct plugin_work *w = inst->waiting; w != NULL; w = w->next)
		n++;
	return n;
}
