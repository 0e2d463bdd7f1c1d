/*
 * server.h: the daemon's life cycle: start, reload, drain.
 *
 * One struct server owns the loop's long-lived handles: the three listeners, the signal
 * watchers (SIGTERM/SIGINT drain, SIGHUP reload) and the current config.  Loop thread only.
 */
#ifndef MDG_SERVER_H
#define MDG_SERVER_H

#include <stdbool.h>
#include <time.h>

#include <uv.h>

#include "config.h"
#include "conn.h"
#include "issuance.h"
#include "plugin_host.h"

struct server {
	uv_loop_t *loop;
	struct config *cfg;	     /* current; replaced by a successful reload */
	struct config *started_cfg;  /* the one read at start: what start-only settings still are */
	struct plugin_host *plugins; /* loaded at start from the config of that time */
	struct issuance_service *issuance; /* NULL without an issuance section */
	struct listener store;
	struct listener admin;
	struct listener metrics;
	uv_signal_t sig_term;
	uv_signal_t sig_int;
	uv_signal_t sig_hup;
	uv_check_t log_flusher; /* flushes buffered log lines once per loop iteration */
	uv_timer_t drain_timer;
	bool draining;
	time_t started_at;
	metric_value *m_reloads_ok;
	metric_value *m_reloads_failed;
};

/*
 * Loads the plugins of cfg, opens its listeners (taking a reference to cfg) and installs the
 * signal handlers.  Returns 0, or -1 with msg filled; on failure whatever was opened is
 * closed again.  Plugins are loaded once: a reload does not reload them.
 */
int server_start(struct server *s, uv_loop_t *loop, struct config *cfg, char *msg, size_t msg_size);

/*
 * Re-reads the config file.  A valid one replaces the running config: limits at once, TLS
 * material for new connections.  An invalid one is logged and the running config stays.
 * systemd is told RELOADING=1 first and READY=1 after, either way (not while draining).
 * Returns 0 when the new config was applied.
 */
int server_reload(struct server *s, char *msg, size_t msg_size);

/*
 * Tells systemd (READY=1) that the daemon serves, with a status line naming the store
 * listener and last, what happened last ("started", "configuration reloaded" …).  Does
 * nothing once a drain has begun.
 */
void server_notify_serving(const struct server *s, const char *last);

/* Starts draining: stop accepting, finish in-flight requests, then let the loop end.  systemd
 * is told STOPPING=1. */
void server_drain(struct server *s);

/* Releases what server_start() set up and the loop no longer uses (after uv_run). */
void server_free(struct server *s);

/* Called by a listener when one of its connections has closed. */
void server_connection_closed(struct server *s);

#endif
