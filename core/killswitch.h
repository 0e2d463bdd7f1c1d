/*
 * killswitch.h: who may suspend which plugin, and how a suspension arrives (DESIGN §6, §7).
 *
 * The gate (gate.h) answers "suspended?" on the hot path; this module changes what it holds:
 *
 *   - the city's local suspensions, POST /v1/plugins/{name}/suspend and .../resume;
 *   - the acknowledgement that lifts an automatic suspension (resume with ack_integrity_fault);
 *   - automatic suspensions on an integrity fault (killswitch_auto(), from the issuance code);
 *   - the ministry's signed lists, pushed (POST /v1/ministry/suspension-list) or polled from
 *     ministry.feed_url.
 *
 * Every change is made durable in data_dir/gate.sqlite on the thread pool and then applied to
 * the gate on the loop, one change at a time in arrival order, and only then answered: an API
 * that said yes has a suspension that is in force and survives a crash.  A client that hangs
 * up does not cancel its change.  Loop thread only.
 */
#ifndef MDG_KILLSWITCH_H
#define MDG_KILLSWITCH_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "conn.h"
#include "gate.h"
#include "http.h"
#include "plugin_host.h"

struct killswitch;

/*
 * Opens data_dir/gate.sqlite, binds the gate to the loaded plugin instances and the
 * municipalities served, loads the ministry keys and starts polling the feed when one is
 * configured.  0 with *out, or -1 with msg filled.  Blocking: at start.
 */
int killswitch_open(uv_loop_t *loop, const struct config *cfg, struct plugin_host *plugins,
		    struct killswitch **out, char *msg, size_t msg_size);
/* Stops polling; changes under way still finish (killswitch_busy()). */
void killswitch_shutdown(struct killswitch *ks);
bool killswitch_busy(const struct killswitch *ks);
void killswitch_free(struct killswitch *ks);

struct gate *killswitch_gate(struct killswitch *ks);

/*
 * An integrity fault: plugin is suspended (source auto) in memory at once and then in the
 * store.  reason must hold no personal data.
 */
void killswitch_auto(struct killswitch *ks, const char *plugin, const char *reason, time_t now);

/* The admin API (DESIGN §7).  name is the {name} of the path. */
void killswitch_suspend(struct killswitch *ks, const char *name, struct conn *c,
			const struct http_request *req, struct http_response *resp);
void killswitch_resume(struct killswitch *ks, const char *name, struct conn *c,
		       const struct http_request *req, struct http_response *resp);
void killswitch_list(struct killswitch *ks, const struct http_request *req,
		     struct http_response *resp);
void killswitch_ministry_push(struct killswitch *ks, struct conn *c, const struct http_request *req,
			      struct http_response *resp);

/*
 * The suspensions that apply to one loaded plugin instance at its version, as GET /v1/plugins
 * shows them (a new array).
 */
json_t *killswitch_plugin_suspensions(struct killswitch *ks, const char *plugin);
/* {"sequence", "issued_at", "expires_at", "expired", "feed": {…}} for GET /v1/status. */
json_t *killswitch_status_json(struct killswitch *ks);
/* True when the ministry list in force has expired (the appliance is then degraded). */
bool killswitch_degraded(struct killswitch *ks, time_t now);

#endif
