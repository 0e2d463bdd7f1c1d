/*
 * killswitch.c: suspensions set, lifted and received (contract in killswitch.h).
 *
 * Every change is one struct ks_op in a FIFO.  One op at a time runs on the thread pool
 * (signature checks of a list, then the store's transaction: gate_persist()), and its done
 * callback applies it to the gate, logs it, updates the metrics and answers.  Running them one
 * by one keeps memory and the store in the same order (a resume can never overtake the suspend
 * before it), and a ministry list's sequence check and write happen in one transaction.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "killswitch.h"
#include "log.h"
#include "metrics.h"
#include "record.h"

enum ks_origin { ORIGIN_ADMIN, ORIGIN_FEED, ORIGIN_CORE };
static const char *const ks_origin_names[] = {"admin", "feed", "core"};

struct ks_op {
	struct ks_op *next;
	struct killswitch *ks;
	uv_work_t work;
	enum ks_origin origin;
	struct gate_change change;
	struct gate_change ack; /* a resume with ack_integrity_fault: lifts the auto one too */
	bool with_ack;
	char *body; /* GATE_MINISTRY_APPLY: the signed list as received */
	size_t body_len;
	int list_status; /* suslist_parse_verify() */
	struct suslist_error list_err;
	uint64_t received_ns;
	struct conn_pending *pending; /* NULL: nobody waits for the answer */
	char request_id[33];
};

struct killswitch {
	uv_loop_t *loop;
	struct gate *gate;
	char *db_path;
	struct plugin_host *plugins;
	struct suslist_keyring *keys; /* NULL: no ministry section */
	unsigned threshold;
	struct feed *feed;
	struct ks_op *head, **tail;
	bool running;
	size_t plugin_count;
	uv_timer_t tick; /* the expiry gauge, once a second */
	bool tick_open;
	metric_value **m_suspended; /* [plugin][source] */
	metric_value *m_sequence, *m_expired;
	struct metric_family *m_lists;
	struct metric_histogram *m_enforce[GATE_SOURCE_COUNT];
};

/* --- metrics ------------------------------------------------------------------------------- */

static void ks_metrics_setup(struct killswitch *ks)
{
	struct metric_family *susp = metrics_family(
	    "madoguchi_plugin_suspended",
	    "1 while a suspension of this source holds some certificate type of the plugin.",
	    METRIC_GAUGE);
	ks->m_suspended = calloc(ks->plugin_count * GATE_SOURCE_COUNT + 1, sizeof *ks->m_suspended);
	for (size_t p = 0; ks->m_suspended != NULL && p < ks->plugin_count; p++) {
		const char *name = plugin_instance_name(plugin_host_instance(ks->plugins, p));
		for (int s = 0; s < GATE_SOURCE_COUNT; s++) {
			char labels[160];
			snprintf(labels, sizeof labels, "plugin=\"%s\",source=\"%s\"", name,
				 gate_source_name((enum gate_source)s));
			ks->m_suspended[p * GATE_SOURCE_COUNT + (size_t)s] =
			    metrics_series(susp, labels);
		}
	}
	ks->m_sequence = metrics_series(
	    metrics_family("madoguchi_ministry_list_sequence",
			   "Sequence of the ministry suspension list in force (0: none).",
			   METRIC_GAUGE),
	    "");
	ks->m_expired = metrics_series(
	    metrics_family("madoguchi_ministry_list_expired",
			   "1 while the list in force is past its expires_at (still enforced; the "
			   "appliance reports itself degraded).",
			   METRIC_GAUGE),
	    "");
	ks->m_lists = metrics_family("madoguchi_ministry_lists_total",
				     "Signed suspension lists received, by origin and result.",
				     METRIC_COUNTER);
	static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					0.1,   0.25,   0.5,   1,    2.5};
	struct metric_family *lat = metrics_family(
	    "madoguchi_suspension_enforce_seconds",
	    "From a suspension's arrival (request or feed answer) to its being in force.",
	    METRIC_HISTOGRAM);
	for (int s = 0; s < GATE_SOURCE_COUNT; s++) {
		char labels[64];
		snprintf(labels, sizeof labels, "source=\"%s\"",
			 gate_source_name((enum gate_source)s));
		ks->m_enforce[s] =
		    metrics_histogram(lat, labels, bounds, sizeof bounds / sizeof bounds[0]);
	}
}

static void ks_metrics_update(struct killswitch *ks)
{
	for (size_t p = 0; ks->m_suspended != NULL && p < ks->plugin_count; p++) {
		const char *name = plugin_instance_name(plugin_host_instance(ks->plugins, p));
		for (int s = 0; s < GATE_SOURCE_COUNT; s++)
			metrics_set(ks->m_suspended[p * GATE_SOURCE_COUNT + (size_t)s],
				    gate_held_by(ks->gate, (enum gate_source)s, name, 0, NULL));
	}
	uint64_t seq = gate_ministry_sequence(ks->gate);
	metrics_set(ks->m_sequence, seq > INT64_MAX ? INT64_MAX : (int64_t)seq);
	metrics_set(ks->m_expired, gate_ministry_expired(ks->gate, time(NULL)));
}

static void ks_count_list(struct killswitch *ks, enum ks_origin origin, const char *result)
{
	char labels[96];
	snprintf(labels, sizeof labels, "origin=\"%s\",result=\"%s\"", ks_origin_names[origin],
		 result);
	metrics_inc(metrics_series(ks->m_lists, labels));
}

static void ks_tick(uv_timer_t *t)
{
	struct killswitch *ks = t->data;
	metrics_set(ks->m_expired, gate_ministry_expired(ks->gate, time(NULL)));
}

/* --- JSON of what is in force --------------------------------------------------------------- */

/*
 * A list sequence: a JSON integer up to 2^63 - 1 (jansson's limit), the decimal string above it,
 * so an unsigned 64-bit sequence never shows as a negative number.
 */
/* The sequence in decimal, for log lines (log_event() may drop a line: no JSON value to leak). */
static const char *ks_sequence_text(uint64_t sequence, char out[24])
{
	snprintf(out, 24, "%llu", (unsigned long long)sequence);
	return out;
}

static json_t *ks_sequence_json(uint64_t sequence)
{
	if (sequence <= INT64_MAX)
		return json_integer((json_int_t)sequence);
	char text[24];
	snprintf(text, sizeof text, "%llu", (unsigned long long)sequence);
	return json_string(text);
}

static json_t *ks_types_json(uint32_t types)
{
	if (types == gate_all_types())
		return json_pack("[s]", "*");
	json_t *a = json_array();
	for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
		if (types & 1u << t)
			json_array_append_new(a, json_string(record_certificate_types[t]));
	return a;
}

static json_t *ks_municipalities_json(const char *text)
{
	json_t *a = json_array();
	if (text == NULL) {
		json_array_append_new(a, json_string("*"));
		return a;
	}
	for (const char *p = text; *p != '\0';) {
		size_t n = strcspn(p, ",");
		json_array_append_new(a, json_stringn(p, n));
		p += n + (p[n] == ',');
	}
	return a;
}

static json_t *ks_entry_json(const struct gate_entry_view *v, bool with_plugin)
{
	char since[32];
	http_format_time(v->since, since, sizeof since);
	json_t *scope = json_pack("{s:o, s:o}", "certificates", ks_types_json(v->types),
				  "municipalities", ks_municipalities_json(v->municipalities));
	if (v->versions != NULL)
		json_object_set_new(scope, "versions", json_string(v->versions));
	json_t *o =
	    json_pack("{s:s, s:o, s:s, s:s, s:s}", "source", gate_source_name(v->source), "scope",
		      scope, "reason", v->reason, "since", since, "mode", gate_mode_name(v->mode));
	if (with_plugin)
		json_object_set_new(o, "plugin", json_string(v->plugin));
	if (v->id[0] != '\0')
		json_object_set_new(o, "id", json_string(v->id));
	return o;
}

json_t *killswitch_plugin_suspensions(struct killswitch *ks, const char *plugin)
{
	json_t *a = json_array();
	for (size_t i = 0; ks != NULL && i < gate_entry_count(ks->gate); i++) {
		if (!gate_entry_applies(ks->gate, i, plugin))
			continue;
		struct gate_entry_view v;
		gate_entry_at(ks->gate, i, &v);
		json_array_append_new(a, ks_entry_json(&v, false));
	}
	return a;
}

static json_t *ks_list_json(struct killswitch *ks)
{
	const struct suslist *list = gate_ministry_list(ks->gate);
	if (list == NULL)
		return json_null();
	char issued[32], expires[32], received[32];
	http_format_time(suslist_issued_at(list), issued, sizeof issued);
	http_format_time(suslist_expires_at(list), expires, sizeof expires);
	http_format_time(suslist_verified_at(list), received, sizeof received);
	return json_pack(
	    "{s:o, s:s, s:s, s:s, s:b, s:I}", "sequence", ks_sequence_json(suslist_sequence(list)),
	    "issued_at", issued, "expires_at", expires, "received_at", received, "expired",
	    suslist_expired(list, time(NULL)), "suspensions", (json_int_t)suslist_count(list));
}

json_t *killswitch_status_json(struct killswitch *ks)
{
	if (ks == NULL)
		return json_null();
	json_t *o = json_pack("{s:o, s:b}", "ministry_list", ks_list_json(ks), "ministry_keys",
			      ks->keys != NULL);
	if (ks->feed != NULL)
		json_object_set_new(o, "feed", feed_status_json(ks->feed));
	return o;
}

bool killswitch_degraded(struct killswitch *ks, time_t now)
{
	return ks != NULL && gate_ministry_expired(ks->gate, now);
}

void killswitch_list(struct killswitch *ks, const struct http_request *req,
		     struct http_response *resp)
{
	(void)req;
	json_t *a = json_array();
	for (size_t i = 0; i < gate_entry_count(ks->gate); i++) {
		struct gate_entry_view v;
		gate_entry_at(ks->gate, i, &v);
		json_array_append_new(a, ks_entry_json(&v, true));
	}
	json_t *o = json_pack("{s:o, s:o}", "suspensions", a, "ministry_list", ks_list_json(ks));
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text == NULL) {
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", req->id);
		return;
	}
	http_response_body(resp, 200, "application/json", text, strlen(text));
	free(text);
}

/* --- the queue of changes ------------------------------------------------------------------- */

static void ks_start_next(struct killswitch *ks);

static void ks_op_free(struct ks_op *op)
{
	suslist_free(op->change.list);
	free(op->body);
	free(op);
}

static void ks_op_gone(void *arg)
{
	struct ks_op *op = arg;
	conn_answer(op->pending, NULL);
	op->pending = NULL; /* the change goes on: a hang-up does not cancel it */
}

static void ks_answer(struct ks_op *op, int status, json_t *body)
{
	if (op->pending == NULL) {
		json_decref(body);
		return;
	}
	struct http_response r;
	http_response_init(&r);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	if (text == NULL)
		http_response_problem(&r, 500, "INTERNAL_ERROR", "Internal error", "out of memory",
				      op->request_id);
	else
		http_response_body(&r, status, "application/json", text, strlen(text));
	free(text);
	conn_answer(op->pending, &r);
	http_response_free(&r);
	op->pending = NULL;
}

static void ks_problem(struct ks_op *op, int status, const char *code, const char *title,
		       const char *detail, json_t *extra)
{
	if (op->pending == NULL) {
		json_decref(extra);
		return;
	}
	struct http_response r;
	http_response_init(&r);
	http_response_problem_ext(&r, status, code, title, detail, op->request_id, extra);
	conn_answer(op->pending, &r);
	http_response_free(&r);
	op->pending = NULL;
}

static void ks_work(uv_work_t *w)
{
	struct ks_op *op = w->data;
	struct killswitch *ks = op->ks;
	if (op->change.kind == GATE_MINISTRY_APPLY) {
		op->list_status =
		    suslist_parse_verify(ks->keys, ks->threshold, op->body, op->body_len,
					 op->change.at, &op->change.list, &op->list_err);
		if (op->list_status != SUSLIST_OK)
			return;
	}
	gate_persist(ks->db_path, &op->change);
	if (op->with_ack && op->change.status == GATE_OK)
		gate_persist(ks->db_path, &op->ack);
}

/* The types' names for a log line: "*" or "seal,residence". */
static void ks_types_text(uint32_t types, char *out, size_t size)
{
	if (types == gate_all_types()) {
		snprintf(out, size, "*");
		return;
	}
	size_t n = 0;
	out[0] = '\0';
	for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
		if (types & 1u << t)
			n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s",
					      n ? "," : "", record_certificate_types[t]);
}

static bool ks_same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Whether two ministry entries suspend the same thing the same way (every field). */
static bool ks_same_entry(const struct suslist_entry *a, const struct suslist_entry *b)
{
	size_t nc = suslist_entry_certificate_count(a), nm = suslist_entry_municipality_count(a);
	if (!ks_same_text(suslist_entry_id(a), suslist_entry_id(b)) ||
	    !ks_same_text(suslist_entry_plugin(a), suslist_entry_plugin(b)) ||
	    !ks_same_text(suslist_entry_versions(a), suslist_entry_versions(b)) ||
	    !ks_same_text(suslist_entry_reason(a), suslist_entry_reason(b)) ||
	    suslist_entry_mode(a) != suslist_entry_mode(b) ||
	    nc != suslist_entry_certificate_count(b) || nm != suslist_entry_municipality_count(b))
		return false;
	for (size_t i = 0; i < nc; i++)
		if (!ks_same_text(suslist_entry_certificate(a, i), suslist_entry_certificate(b, i)))
			return false;
	for (size_t i = 0; i < nm; i++)
		if (!ks_same_text(suslist_entry_municipality(a, i),
				  suslist_entry_municipality(b, i)))
			return false;
	return true;
}

/*
 * One log line per ministry entry that a new list brings or takes away (ids, not reasons).  An
 * entry kept under its id but changed in any field (plugin, types, versions, places, mode,
 * reason) counts as the old one lifted and the new one set.
 */
static void ks_log_list_diff(const struct suslist *old, const struct suslist *new)
{
	char seq[24];
	for (int pass = 0; pass < 2; pass++) {
		const struct suslist *a = pass == 0 ? new : old, *b = pass == 0 ? old : new;
		for (size_t i = 0; a != NULL && i < suslist_count(a); i++) {
			const struct suslist_entry *e = suslist_entry_at(a, i);
			bool in_b = false;
			for (size_t j = 0; !in_b && b != NULL && j < suslist_count(b); j++)
				in_b = ks_same_entry(e, suslist_entry_at(b, j));
			if (in_b)
				continue;
			log_event(LOG_WARN, pass == 0 ? "suspension_set" : "suspension_lifted",
				  "{s:s, s:s, s:s, s:s, s:s}", "source", "ministry", "plugin",
				  suslist_entry_plugin(e), "id", suslist_entry_id(e), "mode",
				  suslist_entry_mode(e) == SUSLIST_DRAIN ? "drain" : "immediate",
				  "sequence", ks_sequence_text(suslist_sequence(new), seq));
		}
	}
}

static void ks_done_list(struct ks_op *op)
{
	struct killswitch *ks = op->ks;
	struct gate_change *c = &op->change;
	if (op->list_status != SUSLIST_OK) {
		const char *code = suslist_status_code(op->list_status);
		log_event(LOG_WARN, "suspension_list_refused", "{s:s, s:s, s:s, s:s}", "origin",
			  ks_origin_names[op->origin], "code", code, "field", op->list_err.field,
			  "reason", op->list_err.message);
		ks_count_list(ks, op->origin,
			      op->list_status == SUSLIST_SIGNATURE_INVALID ? "signature_invalid"
			      : op->list_status == SUSLIST_MALFORMED	   ? "malformed"
									   : "error");
		if (op->origin == ORIGIN_FEED)
			feed_result(ks->feed, FEED_REFUSED);
		ks_problem(op, suslist_status_http(op->list_status), code,
			   op->list_status == SUSLIST_SIGNATURE_INVALID
			       ? "Suspension list not signed as required"
			       : "Suspension list refused",
			   op->list_err.message,
			   op->list_err.field[0] ? json_pack("{s:s}", "field", op->list_err.field)
						 : NULL);
		return;
	}
	uint64_t seq = suslist_sequence(c->list);
	if (c->status == GATE_NOT_NEWER) {
		char a[24], b[24];
		log_event(LOG_WARN, "suspension_list_refused", "{s:s, s:s, s:s, s:s}", "origin",
			  ks_origin_names[op->origin], "code", "SEQUENCE_NOT_NEWER", "sequence",
			  ks_sequence_text(seq, a), "stored_sequence",
			  ks_sequence_text(c->stored_sequence, b));
		ks_count_list(ks, op->origin, "not_newer");
		if (op->origin == ORIGIN_FEED)
			feed_result(ks->feed, FEED_UNCHANGED);
		ks_problem(op, 409, "SEQUENCE_NOT_NEWER", "Suspension list not newer",
			   "the list's sequence is not greater than the one in force: a replayed "
			   "or older list changes nothing",
			   json_pack("{s:o, s:o}", "sequence", ks_sequence_json(seq),
				     "stored_sequence", ks_sequence_json(c->stored_sequence)));
		return;
	}
	if (c->status != GATE_OK) {
		log_event(LOG_ERROR, "suspension_list_not_stored", "{s:s, s:s}", "origin",
			  ks_origin_names[op->origin], "error", c->err);
		ks_count_list(ks, op->origin, "error");
		if (op->origin == ORIGIN_FEED)
			feed_result(ks->feed, FEED_FAILED);
		ks_problem(op, 500, "SUSPENSION_NOT_PERSISTED", "Suspension list not stored",
			   "the list could not be written to the suspension store; nothing "
			   "changed",
			   NULL);
		return;
	}
	const struct suslist *old = gate_ministry_list(ks->gate);
	ks_log_list_diff(old, c->list);
	time_t expires = suslist_expires_at(c->list);
	size_t entries = suslist_count(c->list);
	bool expired = suslist_expired(c->list, time(NULL));
	gate_apply(ks->gate, c); /* takes the list */
	metrics_observe(ks->m_enforce[GATE_MINISTRY],
			(double)(uv_hrtime() - op->received_ns) / 1e9);
	ks_metrics_update(ks);
	ks_count_list(ks, op->origin, "applied");
	char seqtext[24];
	log_event(expired ? LOG_WARN : LOG_INFO, "suspension_list_applied", "{s:s, s:s, s:I, s:b}",
		  "origin", ks_origin_names[op->origin], "sequence", ks_sequence_text(seq, seqtext),
		  "suspensions", (json_int_t)entries, "expired", expired);
	if (op->origin == ORIGIN_FEED)
		feed_result(ks->feed, FEED_APPLIED);
	char exp[32];
	http_format_time(expires, exp, sizeof exp);
	ks_answer(op, 200,
		  json_pack("{s:b, s:o, s:I, s:s, s:b}", "applied", 1, "sequence",
			    ks_sequence_json(seq), "suspensions", (json_int_t)entries, "expires_at",
			    exp, "expired", expired));
}

static json_t *ks_verdict_json(const struct gate_verdict *v)
{
	char since[32];
	http_format_time(v->since, since, sizeof since);
	return json_pack("{s:s, s:s, s:s}", "source", gate_source_name(v->source), "reason",
			 v->reason, "since", since);
}

static void ks_done_local(struct ks_op *op)
{
	struct killswitch *ks = op->ks;
	struct gate_change *c = &op->change;
	char types[160];
	ks_types_text(c->types, types, sizeof types);
	if (c->status != GATE_OK || (op->with_ack && op->ack.status != GATE_OK)) {
		const char *err = c->status != GATE_OK ? c->err : op->ack.err;
		log_event(LOG_ERROR, "suspension_not_persisted", "{s:s, s:s, s:s}", "plugin",
			  c->plugin, "certificates", types, "error", err);
		ks_problem(op, 500, "SUSPENSION_NOT_PERSISTED", "Change not stored",
			   "the suspension store could not be written; nothing changed", NULL);
		return;
	}
	int changed = gate_apply(ks->gate, c);
	int acked = op->with_ack ? gate_apply(ks->gate, &op->ack) : 0;
	ks_metrics_update(ks);
	if (c->kind == GATE_LOCAL_SUSPEND) {
		metrics_observe(ks->m_enforce[GATE_LOCAL],
				(double)(uv_hrtime() - op->received_ns) / 1e9);
		if (changed > 0)
			log_event(LOG_WARN, "suspension_set", "{s:s, s:s, s:s, s:s}", "source",
				  "local", "plugin", c->plugin, "certificates", types, "mode",
				  gate_mode_name(c->mode));
		ks_answer(op, 200,
			  json_pack("{s:s, s:s, s:o}", "plugin", c->plugin, "state", "suspended",
				    "suspensions", killswitch_plugin_suspensions(ks, c->plugin)));
		return;
	}
	if (changed > 0)
		log_event(LOG_WARN, "suspension_lifted", "{s:s, s:s, s:s}", "source", "local",
			  "plugin", c->plugin, "certificates", types);
	if (acked > 0)
		log_event(LOG_WARN, "suspension_lifted", "{s:s, s:s, s:s}", "source", "auto",
			  "plugin", c->plugin, "detail", "integrity fault acknowledged");
	/* What still holds the named types and is not the city's to lift. */
	struct gate_verdict v;
	bool held = gate_held_by(ks->gate, GATE_MINISTRY, c->plugin, c->types, &v) ||
		    gate_held_by(ks->gate, GATE_AUTO, c->plugin, c->types, &v);
	if (held) {
		ks_problem(op, 409, "SUSPENSION_HELD", "Suspension held",
			   v.source == GATE_MINISTRY
			       ? "a ministry suspension stays in force; only a newer signed list "
				 "lifts it"
			       : "an integrity-fault suspension stays in force; check the backend, "
				 "then resume with ack_integrity_fault",
			   json_pack("{s:o, s:i, s:i}", "suspension", ks_verdict_json(&v), "lifted",
				     changed, "acknowledged", acked));
		return;
	}
	ks_answer(op, 200,
		  json_pack("{s:s, s:i, s:i, s:s, s:o}", "plugin", c->plugin, "lifted", changed,
			    "acknowledged", acked, "state",
			    gate_check(ks->gate, c->plugin, NULL, NULL, NULL, false, NULL)
				? "suspended"
				: "serving",
			    "suspensions", killswitch_plugin_suspensions(ks, c->plugin)));
}

static void ks_done_auto(struct ks_op *op)
{
	struct gate_change *c = &op->change;
	if (c->status != GATE_OK)
		log_event(LOG_ERROR, "suspension_not_persisted", "{s:s, s:s, s:s}", "plugin",
			  c->plugin, "source", "auto", "error", c->err);
	else
		log_event(LOG_INFO, "suspension_persisted", "{s:s, s:s}", "plugin", c->plugin,
			  "source", "auto");
}

static void ks_done(uv_work_t *w, int status)
{
	struct ks_op *op = w->data;
	struct killswitch *ks = op->ks;
	(void)status; /* the pool never cancels it: nothing calls uv_cancel() on these */
	if (op->change.kind == GATE_MINISTRY_APPLY)
		ks_done_list(op);
	else if (op->change.kind == GATE_AUTO_SUSPEND)
		ks_done_auto(op);
	else
		ks_done_local(op);
	ks->running = false;
	ks_op_free(op);
	ks_start_next(ks);
}

static void ks_start_next(struct killswitch *ks)
{
	while (!ks->running && ks->head != NULL) {
		struct ks_op *op = ks->head;
		ks->head = op->next;
		if (ks->head == NULL)
			ks->tail = &ks->head;
		op->work.data = op;
		if (uv_queue_work(ks->loop, &op->work, ks_work, ks_done) == 0) {
			ks->running = true;
			return;
		}
		log_event(LOG_ERROR, "suspension_not_persisted", "{s:s, s:s}", "plugin",
			  op->change.plugin, "error", "cannot queue the change");
		ks_problem(op, 500, "INTERNAL_ERROR", "Internal error", "cannot queue the change",
			   NULL);
		if (op->origin == ORIGIN_FEED)
			feed_result(ks->feed, FEED_FAILED); /* the feed polls again */
		ks_op_free(op);
	}
}

static struct ks_op *ks_op_new(struct killswitch *ks, enum ks_origin origin,
			       enum gate_change_kind kind)
{
	struct ks_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	op->ks = ks;
	op->origin = origin;
	op->change.kind = kind;
	op->change.at = time(NULL);
	op->received_ns = uv_hrtime();
	return op;
}

/* Queues op; with c, the answer is deferred until op is done. */
static void ks_submit(struct killswitch *ks, struct ks_op *op, struct conn *c, const char *route,
		      const struct http_request *req)
{
	if (c != NULL) {
		memcpy(op->request_id, req->id, sizeof op->request_id);
		op->pending = conn_defer(c, route, ks_op_gone, op);
	}
	*ks->tail = op;
	ks->tail = &op->next;
	ks_start_next(ks);
}

bool killswitch_busy(const struct killswitch *ks)
{
	return ks != NULL && (ks->running || ks->head != NULL);
}

/* --- the admin API ------------------------------------------------------------------------- */

static void ks_bad(const struct http_request *req, struct http_response *resp, const char *detail)
{
	http_response_problem(resp, 400, "INVALID_REQUEST", "Invalid request", detail, req->id);
}

/* The request's JSON object (an empty body is {}), or NULL with resp answered. */
static json_t *ks_body(const struct http_request *req, struct http_response *resp,
		       const char *const *allowed)
{
	json_error_t jerr;
	json_t *o = req->body_len == 0
			? json_object()
			: json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		json_decref(o);
		ks_bad(req, resp, "the body must be a JSON object");
		return NULL;
	}
	const char *key;
	json_t *value;
	json_object_foreach(o, key, value)
	{
		bool known = false;
		for (size_t i = 0; !known && allowed[i] != NULL; i++)
			known = strcmp(key, allowed[i]) == 0;
		if (!known) {
			char detail[160];
			snprintf(detail, sizeof detail, "unknown field '%.40s'", key);
			json_decref(o);
			ks_bad(req, resp, detail);
			return NULL;
		}
	}
	return o;
}

/* "certificates": absent = every type; else distinct known types.  0 on error (answered). */
static uint32_t ks_types_of(const json_t *o, const struct http_request *req,
			    struct http_response *resp)
{
	const json_t *a = json_object_get(o, "certificates");
	if (a == NULL)
		return gate_all_types();
	if (!json_is_array(a) || json_array_size(a) == 0) {
		ks_bad(req, resp, "certificates must be a non-empty array of certificate types");
		return 0;
	}
	uint32_t types = 0;
	size_t i;
	const json_t *v;
	json_array_foreach(a, i, v)
	{
		const char *name = json_string_value(v);
		int t = name ? record_certificate_index(name) : -1;
		if (name != NULL && strcmp(name, "*") == 0 && json_array_size(a) == 1)
			return gate_all_types();
		if (t < 0) {
			ks_bad(req, resp,
			       "certificates: each item must be a certificate type of DESIGN §4 "
			       "(residence, seal, …) or the array [\"*\"]");
			return 0;
		}
		types |= 1u << t;
	}
	return types;
}

/* The plugin named in the path, loaded here; NULL with resp answered 404. */
static const char *ks_plugin(struct killswitch *ks, const char *name,
			     const struct http_request *req, struct http_response *resp)
{
	if (ks == NULL) {
		http_response_problem(resp, 404, "NOT_FOUND", "Not found",
				      "this appliance has no issuance section in its config",
				      req->id);
		return NULL;
	}
	if (plugin_host_find(ks->plugins, name) == NULL) {
		http_response_problem(resp, 404, "PLUGIN_NOT_FOUND", "No such plugin",
				      "no plugin instance of that name is loaded (GET /v1/plugins "
				      "lists them)",
				      req->id);
		return NULL;
	}
	return name;
}

static bool ks_text_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

void killswitch_suspend(struct killswitch *ks, const char *name, struct conn *c,
			const struct http_request *req, struct http_response *resp)
{
	static const char *const allowed[] = {"reason", "certificates", "mode", NULL};
	if (ks_plugin(ks, name, req, resp) == NULL)
		return;
	json_t *o = ks_body(req, resp, allowed);
	if (o == NULL)
		return;
	const char *reason = json_string_value(json_object_get(o, "reason"));
	const json_t *mode = json_object_get(o, "mode");
	const char *m = mode ? json_string_value(mode) : "immediate";
	uint32_t types = 0;
	if (reason == NULL || reason[0] == '\0' || strlen(reason) >= GATE_REASON_MAX ||
	    !ks_text_ok(reason))
		ks_bad(req, resp,
		       "reason is required: 1-255 bytes of text without control characters "
		       "(it is shown to store staff and in GET /v1/suspensions; no personal "
		       "data)");
	else if (m == NULL || (strcmp(m, "immediate") != 0 && strcmp(m, "drain") != 0))
		ks_bad(req, resp, "mode must be \"immediate\" or \"drain\"");
	else
		types = ks_types_of(o, req, resp);
	struct ks_op *op = types ? ks_op_new(ks, ORIGIN_ADMIN, GATE_LOCAL_SUSPEND) : NULL;
	if (types != 0 && op == NULL)
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", req->id);
	if (op != NULL) {
		snprintf(op->change.plugin, sizeof op->change.plugin, "%s", name);
		snprintf(op->change.reason, sizeof op->change.reason, "%s", reason);
		op->change.types = types;
		op->change.mode = strcmp(m, "drain") == 0 ? GATE_DRAIN : GATE_IMMEDIATE;
		ks_submit(ks, op, c, "/v1/plugins/{name}/suspend", req);
	}
	json_decref(o);
}

void killswitch_resume(struct killswitch *ks, const char *name, struct conn *c,
		       const struct http_request *req, struct http_response *resp)
{
	static const char *const allowed[] = {"certificates", "ack_integrity_fault", NULL};
	if (ks_plugin(ks, name, req, resp) == NULL)
		return;
	json_t *o = ks_body(req, resp, allowed);
	if (o == NULL)
		return;
	const json_t *ack = json_object_get(o, "ack_integrity_fault");
	uint32_t types = 0;
	if (ack != NULL && !json_is_boolean(ack))
		ks_bad(req, resp, "ack_integrity_fault must be true or false");
	else
		types = ks_types_of(o, req, resp);
	struct ks_op *op = types ? ks_op_new(ks, ORIGIN_ADMIN, GATE_LOCAL_RESUME) : NULL;
	if (types != 0 && op == NULL)
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", req->id);
	if (op != NULL) {
		snprintf(op->change.plugin, sizeof op->change.plugin, "%s", name);
		op->change.types = types;
		if (json_is_true(ack)) {
			op->with_ack = true;
			op->ack = op->change;
			op->ack.kind = GATE_AUTO_ACK;
		}
		ks_submit(ks, op, c, "/v1/plugins/{name}/resume", req);
	}
	json_decref(o);
}

/* A signed list from the admin API or the feed: verified, stored and applied in the queue. */
static int ks_queue_list(struct killswitch *ks, enum ks_origin origin, const char *body, size_t len,
			 uint64_t received_ns, struct conn *c, const struct http_request *req)
{
	struct ks_op *op = ks_op_new(ks, origin, GATE_MINISTRY_APPLY);
	if (op == NULL || (op->body = malloc(len + 1)) == NULL) {
		free(op);
		return -1;
	}
	memcpy(op->body, body, len);
	op->body[len] = '\0';
	op->body_len = len;
	if (received_ns != 0)
		op->received_ns = received_ns;
	ks_submit(ks, op, c, "/v1/ministry/suspension-list", req);
	return 0;
}

void killswitch_ministry_push(struct killswitch *ks, struct conn *c, const struct http_request *req,
			      struct http_response *resp)
{
	if (ks == NULL) {
		http_response_problem(resp, 404, "NOT_FOUND", "Not found",
				      "this appliance has no issuance section in its config, so no "
				      "plugin serves certificates and nothing can be suspended",
				      req->id);
		return;
	}
	if (ks->keys == NULL) {
		http_response_problem(resp, 409, "MINISTRY_NOT_CONFIGURED",
				      "No ministry keys configured",
				      "this appliance has no ministry section with keys, so it "
				      "cannot check a signed list",
				      req->id);
		return;
	}
	if (ks_queue_list(ks, ORIGIN_ADMIN, req->body ? req->body : "", req->body_len, 0, c, req) !=
	    0)
		http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error",
				      "out of memory", req->id);
}

/* The feed's answer: a body to check (feed.h calls this on the loop). */
static void ks_feed_body(void *arg, const char *body, size_t len, uint64_t received_ns)
{
	struct killswitch *ks = arg;
	if (ks_queue_list(ks, ORIGIN_FEED, body, len, received_ns, NULL, NULL) != 0)
		feed_result(ks->feed, FEED_FAILED);
}

void killswitch_auto(struct killswitch *ks, const char *plugin, const char *reason, time_t now)
{
	int added = gate_suspend_auto(ks->gate, plugin, reason, now);
	if (added < 0) {
		log_event(LOG_ERROR, "suspension_failed", "{s:s}", "plugin", plugin);
		return;
	}
	ks_metrics_update(ks);
	if (added == 0)
		return;
	log_event(LOG_ERROR, "suspension_set", "{s:s, s:s, s:s, s:s}", "source", "auto", "plugin",
		  plugin, "certificates", "*", "mode", "immediate");
	struct ks_op *op = ks_op_new(ks, ORIGIN_CORE, GATE_AUTO_SUSPEND);
	if (op == NULL) {
		log_event(LOG_ERROR, "suspension_not_persisted", "{s:s, s:s}", "plugin", plugin,
			  "error", "out of memory");
		return;
	}
	snprintf(op->change.plugin, sizeof op->change.plugin, "%s", plugin);
	snprintf(op->change.reason, sizeof op->change.reason, "%s", reason);
	op->change.at = now;
	op->change.types = gate_all_types();
	ks_submit(ks, op, NULL, NULL, NULL);
}

/* --- life ---------------------------------------------------------------------------------- */

struct gate *killswitch_gate(struct killswitch *ks)
{
	return ks != NULL ? ks->gate : NULL;
}

int killswitch_open(uv_loop_t *loop, const struct config *cfg, struct plugin_host *plugins,
		    struct killswitch **out, char *msg, size_t msg_size)
{
	*out = NULL;
	struct killswitch *ks = calloc(1, sizeof *ks);
	size_t n = plugin_host_count(plugins);
	struct gate_plugin *bound = calloc(n ? n : 1, sizeof *bound);
	if (ks == NULL || bound == NULL ||
	    (ks->db_path = config_data_path(cfg, "gate.sqlite")) == NULL) {
		free(bound);
		free(ks);
		snprintf(msg, msg_size, "out of memory");
		return -1;
	}
	ks->loop = loop;
	ks->plugins = plugins;
	ks->plugin_count = n;
	ks->tail = &ks->head;
	for (size_t i = 0; i < n; i++) {
		struct plugin_instance *inst = plugin_host_instance(plugins, i);
		bound[i].name = plugin_instance_name(inst);
		bound[i].plugin = plugin_instance_descriptor(inst)->name;
		bound[i].version = plugin_instance_descriptor(inst)->version;
	}
	const struct config_list *munis = &cfg->issuance.municipalities;
	int rc = gate_open(ks->db_path, bound, n, (const char *const *)munis->items, munis->count,
			   &ks->gate, msg, msg_size);
	free(bound);
	if (rc == 0 && cfg->ministry.enabled) {
		struct suslist_error err;
		ks->threshold = cfg->ministry.threshold;
		if (suslist_keyring_load((const char *const *)cfg->ministry.keys.items,
					 cfg->ministry.keys.count, &ks->keys, &err) != SUSLIST_OK) {
			snprintf(msg, msg_size, "ministry.keys: %s", err.message);
			rc = -1;
		}
	}
	if (rc != 0) {
		killswitch_free(ks);
		return -1;
	}
	if (cfg->ministry.enabled && cfg->ministry.feed_url != NULL &&
	    feed_start(loop, &cfg->ministry, ks_feed_body, ks, &ks->feed, msg, msg_size) != 0) {
		killswitch_free(ks);
		return -1;
	}
	ks_metrics_setup(ks);
	ks_metrics_update(ks);
	if (uv_timer_init(loop, &ks->tick) == 0) {
		ks->tick.data = ks;
		ks->tick_open = true;
		uv_timer_start(&ks->tick, ks_tick, 1000, 1000);
		uv_unref((uv_handle_t *)&ks->tick);
	}
	const struct suslist *list = gate_ministry_list(ks->gate);
	char seq[24];
	log_event(LOG_INFO, "suspensions_loaded", "{s:I, s:s, s:b}", "suspensions",
		  (json_int_t)gate_entry_count(ks->gate), "sequence",
		  ks_sequence_text(gate_ministry_sequence(ks->gate), seq), "expired",
		  list != NULL && suslist_expired(list, time(NULL)));
	*out = ks;
	return 0;
}

void killswitch_shutdown(struct killswitch *ks)
{
	if (ks == NULL)
		return;
	feed_stop(ks->feed);
	if (ks->tick_open) {
		uv_timer_stop(&ks->tick);
		uv_close((uv_handle_t *)&ks->tick, NULL);
		ks->tick_open = false;
	}
}

void killswitch_free(struct killswitch *ks)
{
	if (ks == NULL)
		return;
	feed_free(ks->feed);
	gate_free(ks->gate);
	suslist_keyring_free(ks->keys);
	free(ks->m_suspended);
	free(ks->db_path);
	free(ks);
}
