/*
 * server.c: start-up, reload and drain of the daemon's listeners.
 *
 * Start: the store listener (TLS, required client certificate), the admin Unix socket and the
 * optional metrics listener are opened from one validated config, or nothing is.  SIGHUP
 * re-reads the file: a config that fails validation, or whose TLS material does not load, is
 * logged and changes nothing; a good one applies its limits at once and its TLS material to
 * connections accepted from then on.  Addresses are bound once: a changed address is reported
 * as needing a restart.  SIGTERM/SIGINT drain: stop accepting, close idle connections, let
 * busy ones finish their current request up to shutdown.drain_timeout, then the loop ends.
 * Loop thread only.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "log.h"
#include "sdnotify.h"
#include "server.h"
#include "tls.h"

static void server_listener_setup(struct server *s, struct listener *l, const char *name,
				  const struct config_limits *limits, const struct route *routes,
				  size_t route_count)
{
	l->name = name;
	l->server = s;
	l->limits = *limits;
	l->routes = routes;
	l->route_count = route_count;
	listener_init_metrics(l);
}

static size_t server_connections(const struct server *s)
{
	return (size_t)s->store.connections + s->admin.connections + s->metrics.connections;
}

static void server_close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The last step of a drain: close the remaining long-lived handles so uv_run() returns. */
static void server_finish(struct server *s)
{
	issuance_service_shutdown(s->issuance);
	plugin_host_shutdown(s->plugins);
	log_event(LOG_INFO, "stopped", NULL);
	log_flush();
	server_close_handle((uv_handle_t *)&s->drain_timer);
	server_close_handle((uv_handle_t *)&s->sig_term);
	server_close_handle((uv_handle_t *)&s->sig_int);
	server_close_handle((uv_handle_t *)&s->sig_hup);
	server_close_handle((uv_handle_t *)&s->log_flusher);
}

void server_connection_closed(struct server *s)
{
	if (s->draining && server_connections(s) == 0)
		server_finish(s);
}

static void server_drain_timeout(uv_timer_t *t)
{
	struct server *s = t->data;
	log_event(LOG_WARN, "drain_timeout", "{s:I}", "open_connections",
		  (json_int_t)server_connections(s));
	listener_close_all(&s->store);
	listener_close_all(&s->admin);
	listener_close_all(&s->metrics);
}

void server_drain(struct server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	char status[SDNOTIFY_STATUS_MAX];
	snprintf(status, sizeof status, "Draining %zu open connections (at most %llu ms)",
		 server_connections(s), (unsigned long long)s->cfg->drain_timeout_ms);
	sdnotify(SDNOTIFY_STOPPING, status);
	log_event(LOG_INFO, "draining", "{s:I, s:I}", "open_connections",
		  (json_int_t)server_connections(s), "drain_timeout_ms",
		  (json_int_t)s->cfg->drain_timeout_ms);
	listener_stop(&s->store);
	listener_stop(&s->admin);
	listener_stop(&s->metrics);
	listener_drain(&s->store);
	listener_drain(&s->admin);
	listener_drain(&s->metrics);
	if (server_connections(s) == 0) {
		server_finish(s);
		return;
	}
	uv_timer_start(&s->drain_timer, server_drain_timeout, s->cfg->drain_timeout_ms, 0);
}

/*
 * Logs, for each start-only setting of new that differs from old (the configuration read at
 * start, which those settings still have), that applying it needs a restart.  So a second
 * reload of a changed file warns again, and reverting the change warns no more.
 */
static void server_report_restart_needed(const struct config *old, const struct config *new)
{
	struct {
		const char *key;
		int differs;
	} checks[] = {
	    {"listeners.store.address", strcmp(old->store.address, new->store.address) != 0 ||
					    old->store.port != new->store.port},
	    {"listeners.admin.unix", strcmp(old->admin.unix_path, new->admin.unix_path) != 0},
	    {"listeners.metrics", old->metrics.enabled != new->metrics.enabled ||
				      (new->metrics.enabled &&
				       (strcmp(old->metrics.address, new->metrics.address) != 0 ||
					old->metrics.port != new->metrics.port))},
	    {"data_dir", strcmp(old->data_dir, new->data_dir) != 0},
	    {"worker_threads", old->worker_threads != new->worker_threads},
	    {"listeners.admin.mode", old->admin.mode != new->admin.mode},
	    {"listeners.admin.group",
	     (old->admin.group == NULL) != (new->admin.group == NULL) ||
		 (old->admin.group != NULL && strcmp(old->admin.group, new->admin.group) != 0)},
	};
	const char *detail = "this setting is applied at start only; the running value stays "
			     "until the daemon is restarted";
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		if (checks[i].differs)
			log_event(LOG_WARN, "reload_restart_required", "{s:s, s:s}", "key",
				  checks[i].key, "detail", detail);
	}
	/* The plugin host, the issuance service and the kill switch keep what they loaded. */
	for (size_t i = 0; i < CONFIG_START_ONLY_COUNT; i++) {
		if (memcmp(old->start_only_digest[i], new->start_only_digest[i],
			   sizeof old->start_only_digest[i]) != 0)
			log_event(LOG_WARN, "reload_restart_required", "{s:s, s:s}", "key",
				  config_start_only[i], "detail", detail);
	}
}

void server_notify_serving(const struct server *s, const char *last)
{
	/* An admin reload during a drain must not take back STOPPING=1. */
	if (s->draining)
		return;
	char status[sizeof s->store.address + SDNOTIFY_STATUS_MAX + 32]; /* sdnotify() cuts it */
	snprintf(status, sizeof status, "Serving on %s; %s", s->store.address, last);
	sdnotify(SDNOTIFY_READY, status);
}

int server_reload(struct server *s, char *msg, size_t msg_size)
{
	struct config *fresh = NULL;
	struct config_error err;
	if (!s->draining)
		sdnotify(SDNOTIFY_RELOADING, "Reloading the configuration");
	if (config_load(s->cfg->path, &fresh, &err) != 0) {
		snprintf(msg, msg_size, "%s", err.msg);
		goto fail;
	}
	SSL_CTX *ctx = tls_server_context(fresh, msg, msg_size);
	if (ctx == NULL) {
		config_unref(fresh);
		goto fail;
	}
	server_report_restart_needed(s->started_cfg, fresh);
	SSL_CTX_free(s->store.ssl_ctx); /* live connections hold their own reference */
	s->store.ssl_ctx = ctx;
	s->store.limits = fresh->store.limits;
	s->admin.limits = fresh->admin.limits;
	if (s->cfg->metrics.enabled && fresh->metrics.enabled)
		s->metrics.limits = fresh->metrics.limits;
	log_set_level((enum log_level)fresh->log.level);
	config_unref(s->cfg);
	s->cfg = fresh;
	metrics_inc(s->m_reloads_ok);
	log_event(LOG_INFO, "reloaded", "{s:s}", "config", fresh->path);
	server_notify_serving(s, "configuration reloaded");
	return 0;
fail:
	metrics_inc(s->m_reloads_failed);
	log_event(LOG_ERROR, "reload_failed", "{s:s, s:s}", "error", msg, "detail",
		  "the running configuration stays in force");
	char last[SDNOTIFY_STATUS_MAX];
	snprintf(last, sizeof last, "reload refused, the running configuration stays: %s", msg);
	server_notify_serving(s, last);
	return -1;
}

static void server_signal_cb(uv_signal_t *h, int signum)
{
	struct server *s = h->data;
	if (signum == SIGHUP) {
		char msg[CONFIG_ERROR_MAX];
		server_reload(s, msg, sizeof msg);
		return;
	}
	log_event(LOG_INFO, "signal", "{s:s}", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	server_drain(s);
}

static void server_log_flush_cb(uv_check_t *h)
{
	log_flush();
}

static void server_watch_signal(struct server *s, uv_signal_t *h, int signum)
{
	uv_signal_init(s->loop, h);
	h->data = s;
	uv_signal_start(h, server_signal_cb, signum);
	uv_unref((uv_handle_t *)h);
}

int server_start(struct server *s, uv_loop_t *loop, struct config *cfg, char *msg, size_t msg_size)
{
	memset(s, 0, sizeof *s);
	s->loop = loop;
	s->cfg = config_ref(cfg);
	s->started_cfg = config_ref(cfg);
	s->started_at = time(NULL);
	log_set_level((enum log_level)cfg->log.level);

	metrics_set(
	    metrics_series(metrics_family("madoguchi_build_info",
					  "Version of the running madoguchid.", METRIC_GAUGE),
			   "version=\"" PACKAGE_VERSION "\""),
	    1);
	s->m_reloads_ok =
	    metrics_series(metrics_family("madoguchi_config_reloads_total",
					  "Configuration reloads, by result.", METRIC_COUNTER),
			   "result=\"applied\"");
	s->m_reloads_failed =
	    metrics_series(metrics_family("madoguchi_config_reloads_total",
					  "Configuration reloads, by result.", METRIC_COUNTER),
			   "result=\"rejected\"");

	if (plugin_host_load(&s->plugins, cfg, loop, msg, msg_size) != 0)
		goto fail;
	if (cfg->issuance.enabled &&
	    issuance_service_open(loop, cfg, s->plugins, &s->issuance, msg, msg_size) != 0)
		goto fail;
	s->store.ssl_ctx = tls_server_context(cfg, msg, msg_size);
	if (s->store.ssl_ctx == NULL)
		goto fail;
	server_listener_setup(s, &s->store, "store", &cfg->store.limits, admin_store_routes,
			      admin_store_route_count);
	server_listener_setup(s, &s->admin, "admin", &cfg->admin.limits, admin_admin_routes,
			      admin_admin_route_count);
	server_listener_setup(s, &s->metrics, "metrics", &cfg->metrics.limits, admin_metrics_routes,
			      admin_metrics_route_count);

	if (listener_open_tcp(&s->store, loop, cfg->store.address, cfg->store.port, msg,
			      msg_size) != 0)
		goto fail;
	if (listener_open_unix(&s->admin, loop, cfg->admin.unix_path, cfg->admin.mode,
			       cfg->admin.group, msg, msg_size) != 0)
		goto fail;
	if (cfg->metrics.enabled && listener_open_tcp(&s->metrics, loop, cfg->metrics.address,
						      cfg->metrics.port, msg, msg_size) != 0)
		goto fail;

	uv_timer_init(loop, &s->drain_timer);
	s->drain_timer.data = s;
	uv_check_init(loop, &s->log_flusher);
	uv_check_start(&s->log_flusher, server_log_flush_cb);
	uv_unref((uv_handle_t *)&s->log_flusher);
	server_watch_signal(s, &s->sig_term, SIGTERM);
	server_watch_signal(s, &s->sig_int, SIGINT);
	server_watch_signal(s, &s->sig_hup, SIGHUP);
	log_event(LOG_INFO, "started", "{s:s, s:s, s:i}", "version", PACKAGE_VERSION, "config",
		  cfg->path, "pid", (int)getpid());
	log_flush();
	return 0;
fail:
	listener_stop(&s->store);
	listener_stop(&s->admin);
	listener_stop(&s->metrics);
	server_free(s);
	return -1;
}

void server_free(struct server *s)
{
	if (s->issuance != NULL) {
		/* After a drain this is done; after a failed start it closes what opened. */
		issuance_service_shutdown(s->issuance);
		uv_run(s->loop, UV_RUN_NOWAIT);
		issuance_service_free(s->issuance);
		s->issuance = NULL;
	}
	plugin_host_unload(s->plugins);
	s->plugins = NULL;
	SSL_CTX_free(s->store.ssl_ctx);
	s->store.ssl_ctx = NULL;
	config_unref(s->cfg);
	s->cfg = NULL;
	config_unref(s->started_cfg);
	s->started_cfg = NULL;
}
