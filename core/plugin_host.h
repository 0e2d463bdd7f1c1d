/*
 * plugin_host.h: loading plugins and running fetches through them.
 *
 * plugin_host_load() loads every instance of the config's `plugins:` section, refusing (with
 * a log line that says why and what to do) any plugin that is not safe to run: wrong ABI,
 * descriptor too small, missing entry symbol or unresolved symbols, a file writable by others
 * or owned by another user, a path outside plugin_dir.  One refusal and nothing is loaded.
 *
 * plugin_fetch() asks one instance for one record under a deadline.  Each fetch has a ticket
 * (128 random bits, single use); the answer reaches the caller's callback on the loop thread
 * exactly once: the record, an error, or MDG_ERR_TIMEOUT.  A completion whose ticket is not
 * live any more is dropped and counted (madoguchi_plugin_late_completions_total): a late
 * or foreign result never reaches another request (incident I1).
 *
 * Loop thread only, except what the SDK marks "any thread".
 */
#ifndef MDG_PLUGIN_HOST_H
#define MDG_PLUGIN_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <madoguchi/plugin.h>

#include "config.h"

struct plugin_host;
struct plugin_instance;
struct plugin_fetch;

/* Receives a fetch's outcome on the loop thread: status MDG_OK with a record (now owned by
 * the callback), or an error with record NULL and a reason (may be NULL). */
typedef void (*plugin_fetch_cb)(void *arg, int status, mdg_record *record, const char *reason);

/* Loads every plugin instance of cfg.  Returns 0, or -1 with msg saying which and why. */
int plugin_host_load(struct plugin_host **out, const struct config *cfg, uv_loop_t *loop, char *msg,
		     size_t msg_size);

/*
 * From inside the loop (the end of a drain): cancels what is in flight (callbacks are not
 * called) and, once no blocking fetch is left on the thread pool, calls every fini(), so the
 * plugins close their handles and uv_run() can return.  No fetch starts afterwards.
 */
void plugin_host_shutdown(struct plugin_host *host);

/* Outside uv_run(): shuts down if that has not happened, waits for it, and unloads. */
void plugin_host_unload(struct plugin_host *host);

size_t plugin_host_count(const struct plugin_host *host);
struct plugin_instance *plugin_host_instance(struct plugin_host *host, size_t i);
struct plugin_instance *plugin_host_find(struct plugin_host *host, const char *name);

const char *plugin_instance_name(const struct plugin_instance *inst);
const struct mdg_plugin_descriptor *plugin_instance_descriptor(const struct plugin_instance *inst);
/* True when the instance's plugin serves certificate. */
int plugin_instance_serves(const struct plugin_instance *inst, const char *certificate);
/* The deadline of one fetch from the instance's config (plugins.NAME.timeout). */
uint64_t plugin_instance_timeout_ms(const struct plugin_instance *inst);
/* Fetches under way now. */
uint32_t plugin_instance_in_flight(const struct plugin_instance *inst);
/* Blocking fetches of the instance queued for or running on the thread pool now, whose
 * fetch() has not returned (0 for a non-blocking plugin); may outlast their tickets. */
uint32_t plugin_instance_blocking_pending(const struct plugin_instance *inst);

/*
 * Starts a fetch.  Returns MDG_OK and (if handle is not NULL) a handle valid until the
 * callback runs or plugin_fetch_abandon() is called; or MDG_ERR_UNAVAILABLE when the
 * instance already has max_in_flight fetches (admission), or the plugin's own error when it
 * could not start.  On error the callback is never called.
 */
int plugin_fetch(struct plugin_instance *inst, const char *certificate, const char *municipality,
		 const char *resident_code, uint32_t options, uint64_t timeout_ms,
		 plugin_fetch_cb cb, void *arg, struct plugin_fetch **handle);

/*
 * The version floor of resident_code: the highest version any plugin announced through
 * notify_change (0 when none).  A record below it is not current.  Loop thread (the floor may
 * rise concurrently from any thread; the value returned was true at some moment of the call).
 */
uint64_t plugin_host_version_floor(struct plugin_host *host, const char *resident_code);

/* The requester is gone: forget the ticket (the plugin is told to cancel); the callback will
 * not run. */
void plugin_fetch_abandon(struct plugin_fetch *fetch);

/* The ticket of a fetch under way (valid while its handle is), to match trace events. */
mdg_ticket plugin_fetch_ticket(const struct plugin_fetch *fetch);

/*
 * Tracing what a plugin does, for the conformance check (`madoguchictl plugin check`,
 * ctl/plugin_check.c), which must see what the host hides from requesters: completions it
 * dropped, how long cancel() and a blocking fetch() took.  The daemon sets no tracer.
 *
 *   PLUGIN_TRACE_COMPLETION      the plugin called complete(): status as it gave it, live
 *                                when the ticket was still live (the requester got it);
 *                                start_ms when complete() was called, end_ms when the loop
 *                                matched it.
 *   PLUGIN_TRACE_CANCEL          the host called cancel() (deadline, abandon or shutdown):
 *                                start_ms..end_ms is the call.  Not traced when the plugin
 *                                has no cancel().
 *   PLUGIN_TRACE_BLOCKING_FETCH  a blocking plugin's fetch() ran on a worker: start_ms..end_ms
 *                                is the call, status what it returned.
 *
 * Times are host->now_ms().  The callback runs on the loop thread, also from inside
 * plugin_host_shutdown() and plugin_host_unload().
 */
enum plugin_trace_kind {
	PLUGIN_TRACE_COMPLETION,
	PLUGIN_TRACE_CANCEL,
	PLUGIN_TRACE_BLOCKING_FETCH,
};

struct plugin_trace_event {
	enum plugin_trace_kind kind;
	const struct plugin_instance *inst;
	mdg_ticket ticket;
	int status;
	int live;
	uint64_t start_ms;
	uint64_t end_ms;
};

typedef void (*plugin_trace_cb)(void *arg, const struct plugin_trace_event *event);

/* Sets (or, with cb NULL, clears) the host's tracer; before the first fetch, since worker
 * threads read it unlocked to decide whether to time a call. */
void plugin_host_set_trace(struct plugin_host *host, plugin_trace_cb cb, void *arg);

#endif
