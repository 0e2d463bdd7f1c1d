/*
 * admin.c: handlers of the admin API and the probes.
 *
 * GET /v1/status reports what the daemon runs (version, state, listeners; plugins arrive with
 * the plugin loader) so the city and the ministry can see each installation (incident I7).
 * /healthz says the loop is alive; /readyz says whether it should get traffic (not while
 * draining).  /metrics renders the registry in metrics.c.  Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin.h"
#include "record.h"
#include "server.h"

static struct server *admin_server(struct conn *c)
{
	return conn_listener(c)->server;
}

/* Sends a JSON value (stolen) as the answer. */
static void admin_json(struct http_response *resp, int status, json_t *value)
{
	char *text = value ? json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(value);
	if (text == NULL) {
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", NULL);
		return;
	}
	http_response_body(resp, status, "application/json", text, strlen(text));
	free(text);
}

static json_t *admin_listener_json(const struct listener *l)
{
	return json_pack("{s:s, s:s, s:i, s:b}", "name", l->name, "address", l->address,
			 "connections", (int)l->connections, "tls", l->ssl_ctx != NULL);
}

/* The fleet view of the plugins (incident I7): which plugin and version each instance runs. */
static json_t *admin_plugins_json(struct server *s)
{
	json_t *list = json_array();
	for (size_t i = 0; i < plugin_host_count(s->plugins); i++) {
		struct plugin_instance *inst = plugin_host_instance(s->plugins, i);
		const struct mdg_plugin_descriptor *d = plugin_instance_descriptor(inst);
		json_t *certs = json_array();
		for (size_t c = 0; d->certificates[c] != NULL; c++)
			json_array_append_new(certs, json_string(d->certificates[c]));
		struct killswitch *ks = issuance_killswitch(s->issuance);
		const char *name = plugin_instance_name(inst);
		json_t *suspensions = killswitch_plugin_suspensions(ks, name);
		json_t *entry = json_pack(
		    "{s:s, s:s, s:s, s:s, s:o, s:s, s:i, s:o}", "name", name, "plugin", d->name,
		    "version", d->version, "vendor", d->vendor, "certificates", certs, "state",
		    json_array_size(suspensions) > 0 ? "suspended" : "serving", "in_flight",
		    (int)plugin_instance_in_flight(inst), "suspensions", suspensions);
		json_array_append_new(list, entry);
	}
	return list;
}

static void handle_status(struct conn *c, const struct http_request *req,
			  struct http_response *resp)
{
	struct server *s = admin_server(c);
	char started[32];
	http_format_time(s->started_at, started, sizeof started);
	json_t *listeners = json_array();
	json_array_append_new(listeners, admin_listener_json(&s->store));
	json_array_append_new(listeners, admin_listener_json(&s->admin));
	if (s->cfg->metrics.enabled)
		json_array_append_new(listeners, admin_listener_json(&s->metrics));
	json_t *status = json_pack("{s:s, s:s, s:i, s:s, s:I, s:s, s:o, s:o}", "version",
				   PACKAGE_VERSION, "state", s->draining ? "draining" : "serving",
				   "pid", (int)getpid(), "started_at", started, "uptime_seconds",
				   (json_int_t)(time(NULL) - s->started_at), "config", s->cfg->path,
				   "listeners", listeners, "plugins", admin_plugins_json(s));
	struct killswitch *ks = issuance_killswitch(s->issuance);
	json_object_set_new(status, "kill_switch", killswitch_status_json(ks));
	/* Serving, but a ministry list in force has expired: the operators should know. */
	json_object_set_new(status, "degraded", json_boolean(killswitch_degraded(ks, time(NULL))));
	admin_json(resp, 200, status);
}

static void handle_healthz(struct conn *c, const struct http_request *req,
			   struct http_response *resp)
{
	http_response_body(resp, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void handle_readyz(struct conn *c, const struct http_request *req,
			  struct http_response *resp)
{
	static const char degraded[] = "degraded: the ministry suspension list in force has "
				       "expired (still enforced)\n";
	if (admin_server(c)->draining)
		http_response_body(resp, 503, "text/plain; charset=utf-8", "draining\n", 9);
	else if (killswitch_degraded(issuance_killswitch(admin_server(c)->issuance), time(NULL)))
		http_response_body(resp, 200, "text/plain; charset=utf-8", degraded,
				   sizeof degraded - 1);
	else
		http_response_body(resp, 200, "text/plain; charset=utf-8", "ready\n", 6);
}

static void handle_metrics(struct conn *c, const struct http_request *req,
			   struct http_response *resp)
{
	size_t len = 0;
	char *text = metrics_render(&len);
	if (text == NULL) {
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", req->id);
		return;
	}
	http_response_body(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void handle_issuances(struct conn *c, const struct http_request *req,
			     struct http_response *resp)
{
	issuance_handle(admin_server(c)->issuance, c, req, resp);
}

static void handle_keys(struct conn *c, const struct http_request *req, struct http_response *resp)
{
	(void)req;
	issuance_keys(admin_server(c)->issuance, resp);
}

static void handle_linkage(struct conn *c, const struct http_request *req,
			   struct http_response *resp)
{
	issuance_linkage_import(admin_server(c)->issuance, c, req, resp);
}

static void handle_audit(struct conn *c, const struct http_request *req, struct http_response *resp)
{
	issuance_audit(admin_server(c)->issuance, false, c, req, resp);
}

static void handle_audit_verify(struct conn *c, const struct http_request *req,
				struct http_response *resp)
{
	issuance_audit(admin_server(c)->issuance, true, c, req, resp);
}

/* GET /v1/plugins (DESIGN §7): each instance, the types routed to it, its state. */
static void handle_plugins(struct conn *c, const struct http_request *req,
			   struct http_response *resp)
{
	struct server *s = admin_server(c);
	json_t *list = json_array();
	(void)req;
	for (size_t i = 0; i < plugin_host_count(s->plugins); i++) {
		struct plugin_instance *inst = plugin_host_instance(s->plugins, i);
		const char *name = plugin_instance_name(inst);
		const struct mdg_plugin_descriptor *d = plugin_instance_descriptor(inst);
		json_t *routes = json_array();
		for (int t = 0; s->cfg->issuance.enabled && t < RECORD_CERTIFICATE_TYPE_COUNT;
		     t++) {
			const char *p = s->cfg->issuance.certificates[t].plugin;
			if (p != NULL && strcmp(p, name) == 0)
				json_array_append_new(routes,
						      json_string(record_certificate_types[t]));
		}
		json_t *suspensions =
		    killswitch_plugin_suspensions(issuance_killswitch(s->issuance), name);
		json_array_append_new(
		    list,
		    json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o}", "name", name, "plugin",
			      d->name, "version", d->version, "vendor", d->vendor, "routes", routes,
			      "state", json_array_size(suspensions) > 0 ? "suspended" : "serving",
			      "suspensions", suspensions));
	}
	admin_json(resp, 200, json_pack("{s:o}", "plugins", list));
}

/* POST /v1/reload: as SIGHUP, answered with the outcome. */
static void handle_reload(struct conn *c, const struct http_request *req,
			  struct http_response *resp)
{
	char msg[CONFIG_ERROR_MAX];
	if (server_reload(admin_server(c), msg, sizeof msg) != 0) {
		http_response_problem(resp, 400, "CONFIG_INVALID", "Configuration not reloaded",
				      msg, req->id);
		return;
	}
	admin_json(resp, 200,
		   json_pack("{s:b, s:s}", "reloaded", 1, "config", admin_server(c)->cfg->path));
}

/* POST /v1/plugins/{name}/suspend and /resume, GET /v1/suspensions (DESIGN §7). */
static void handle_suspend(struct conn *c, const struct http_request *req,
			   struct http_response *resp)
{
	char name[ROUTE_PARAM_MAX + 1] = "";
	route_param("/v1/plugins/{name}/suspend", req->path, name, sizeof name);
	killswitch_suspend(issuance_killswitch(admin_server(c)->issuance), name, c, req, resp);
}

static void handle_resume(struct conn *c, const struct http_request *req,
			  struct http_response *resp)
{
	char name[ROUTE_PARAM_MAX + 1] = "";
	route_param("/v1/plugins/{name}/resume", req->path, name, sizeof name);
	killswitch_resume(issuance_killswitch(admin_server(c)->issuance), name, c, req, resp);
}

static void handle_suspensions(struct conn *c, const struct http_request *req,
			       struct http_response *resp)
{
	struct killswitch *ks = issuance_killswitch(admin_server(c)->issuance);
	if (ks == NULL)
		http_response_problem(resp, 404, "NOT_FOUND", "Not found",
				      "this appliance has no issuance section in its config",
				      req->id);
	else
		killswitch_list(ks, req, resp);
}

static void handle_ministry_list(struct conn *c, const struct http_request *req,
				 struct http_response *resp)
{
	killswitch_ministry_push(issuance_killswitch(admin_server(c)->issuance), c, req, resp);
}

const struct route admin_store_routes[] = {
    {HTTP_GET, "/healthz", handle_healthz},
    {HTTP_POST, "/v1/issuances", handle_issuances},
    {HTTP_GET, "/v1/keys", handle_keys},
};
const size_t admin_store_route_count = sizeof admin_store_routes / sizeof admin_store_routes[0];

const struct route admin_admin_routes[] = {
    {HTTP_GET, "/v1/status", handle_status},
    {HTTP_GET, "/metrics", handle_metrics},
    {HTTP_GET, "/healthz", handle_healthz},
    {HTTP_GET, "/readyz", handle_readyz},
    {HTTP_GET, "/v1/keys", handle_keys},
    {HTTP_POST, "/v1/linkage", handle_linkage},
    {HTTP_GET, "/v1/audit", handle_audit},
    {HTTP_GET, "/v1/audit/verify", handle_audit_verify},
    {HTTP_GET, "/v1/plugins", handle_plugins},
    {HTTP_POST, "/v1/reload", handle_reload},
    {HTTP_POST, "/v1/plugins/{name}/suspend", handle_suspend},
    {HTTP_POST, "/v1/plugins/{name}/resume", handle_resume},
    {HTTP_GET, "/v1/suspensions", handle_suspensions},
    {HTTP_POST, "/v1/ministry/suspension-list", handle_ministry_list},
};
const size_t admin_admin_route_count = sizeof admin_admin_routes / sizeof admin_admin_routes[0];

const struct route admin_metrics_routes[] = {
    {HTTP_GET, "/metrics", handle_metrics},
    {HTTP_GET, "/healthz", handle_healthz},
    {HTTP_GET, "/readyz", handle_readyz},
};
const size_t admin_metrics_route_count =
    sizeof admin_metrics_routes / sizeof admin_metrics_routes[0];
