/*
 * issuance.c: the issuance pipeline (contract in issuance.h; steps as DESIGN §3).
 *
 * An issuance moves forward through callbacks on the loop thread:
 *
 *   issuance_handle()   steps 3 (schema), municipality and type checks; defers the answer
 *   proof_work()        pool: step 4 (card proof), body digest, step 5 lookup (idempotency)
 *   proof_done()        steps 4-5 decisions, 6 (hours), 7 (route, gate), 8 (linkage),
 *                       9-10 (admission and fetch under the remaining deadline)
 *   fetch_done()        step 11 (verify_record), integrity fault -> auto suspension
 *   render_work()       pool: step 12 (PDF, digest, binding signature, the 201 body)
 *   render_done()       step 13 (gate again), step 14 (audit with the stored answer)
 *   audit_done()        step 15: the answer, only once its row is durable
 *
 * Invariants.  An issuance reaches exactly one conclusion (is_conclude()): an answer chosen
 * by the pipeline, the deadline, or the client going away; every later callback only releases
 * what it carried.  From step 7 on, every conclusion is an audit row and the answer waits for
 * its commit; a document is never answered unless its row committed (DESIGN §10).  The
 * whole-issuance deadline ends the issuance as a whole: the fetch is abandoned (its late
 * completion is dropped by ticket in plugin_host.c) and work still on the pool is discarded
 * when it returns.  The issuance is freed in is_maybe_free() once nothing refers to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "audit.h"
#include "cardproof.h"
#include "doccode.h"
#include "hours.h"
#include "issuance.h"
#include "issuance_req.h"
#include "log.h"
#include "metrics.h"
#include "ossl.h"
#include "record.h"
#include "render.h"
#include "verify.h"

#define SUBJECT_KEY_LEN 32
#define HEX_SHA256	64

/* The answers of DESIGN §4, plus the outcomes only the audit and metrics see. */
struct outcome {
	const char *code;
	int status;
	const char *title;
};
static const struct outcome outcomes[] = {
    {"ISSUED", 201, "Created"},
    {"INVALID_REQUEST", 400, "Invalid request"},
    {"UNSUPPORTED_CERTIFICATE", 400, "Certificate type not offered"},
    {"MUNICIPALITY_NOT_SERVED", 400, "Municipality not served"},
    {"CARD_PROOF_INVALID", 401, "Card proof invalid"},
    {"OUTSIDE_SERVICE_HOURS", 403, "Outside service hours"},
    {"NO_RECORD", 404, "No record"},
    {"REQUEST_ID_CONFLICT", 409, "Request id conflict"},
    {"RECORD_NOT_ISSUABLE", 422, "Record not issuable"},
    {"INTEGRITY_FAULT", 500, "Integrity fault"},
    {"INTERNAL_ERROR", 500, "Internal error"},
    {"BACKEND_ERROR", 502, "Backend error"},
    {"SERVICE_SUSPENDED", 503, "Service suspended"},
    {"DATA_NOT_CURRENT", 503, "Data not current"},
    {"OVERLOADED", 503, "Overloaded"},
    {"AUDIT_UNAVAILABLE", 503, "Audit unavailable"},
    {"BACKEND_TIMEOUT", 504, "Backend timeout"},
    {"REPLAYED", 201, "Created"},	   /* a stored answer sent again (step 5) */
    {"CLIENT_GONE", 499, "Client closed"}, /* the connection closed before the answer */
};
#define OUTCOME_COUNT (sizeof outcomes / sizeof outcomes[0])

static size_t outcome_index(const char *code)
{
	for (size_t i = 0; i < OUTCOME_COUNT; i++)
		if (strcmp(outcomes[i].code, code) == 0)
			return i;
	return 10; /* INTERNAL_ERROR: never reached with our own codes */
}

struct issuance;

struct issuance_service {
	uv_loop_t *loop;
	struct config *cfg;
	const struct config_issuance *conf;
	struct plugin_host *plugins;
	struct plugin_instance *routes[RECORD_CERTIFICATE_TYPE_COUNT]; /* per type, or NULL */
	size_t route_index[RECORD_CERTIFICATE_TYPE_COUNT]; /* the instance's plugin host index */
	struct cardproof_ctx *cards;
	struct doc_signer *signer;
	struct linkage *linkage;
	struct killswitch *ks; /* the gate and whoever changes it */
	struct audit *audit;
	unsigned char subject_key[SUBJECT_KEY_LEN];
	char *keys_json; /* the answer of GET /v1/keys */
	/* Issuance serials: handed out from a block reserved durably in data_dir/issuance.serial
	 * beforehand, so no serial is given twice even after a crash (a crash skips the rest of
	 * the block).  The next block is reserved on the pool when half of this one is used. */
	uint64_t next_serial, serial_limit;
	char *serial_path;
	uv_work_t serial_work;
	bool serial_reserving;
	int serial_status;
	char *audit_path;      /* data_dir/audit.sqlite */
	struct issuance *live; /* every issuance not yet freed */
	/* Load shedding (DESIGN §4 OVERLOADED): live_count is bounded by conf->max_pending at
	 * admission, which bounds memory; render_count by conf->render_queue before step 12. */
	size_t live_count, render_count;
	bool closing;
	/* Metrics: per type, plugin route and outcome, created on first use. */
	struct metric_family *m_issuances;
	metric_value *m_count[RECORD_CERTIFICATE_TYPE_COUNT][OUTCOME_COUNT];
	struct metric_histogram *m_latency[RECORD_CERTIFICATE_TYPE_COUNT];
	metric_value *m_integrity_faults;
	metric_value *m_in_flight;
	metric_value *m_shed_admission, *m_shed_render;
	metric_value *m_audit_rows, *m_audit_failed;
	struct metric_histogram *m_commit_seconds, *m_batch_rows;
	metric_value *m_linkage_cards;
	metric_value *m_card_hits, *m_card_misses;
	uv_timer_t metrics_timer;
	/* Card CRLs (card_proof.crl): the file is checked every crl_interval and, when it
	 * changed, read again on the pool; a file that cannot be read keeps the set in force. */
	uv_timer_t crl_timer;
	uv_work_t crl_work;
	bool crl_busy;
	struct stat crl_seen; /* the file as last read (or tried) */
	int crl_status;
	size_t crl_count, crl_revoked;
	char crl_err[256];
	metric_value *m_crl_revoked;
};

enum issuance_work { WORK_NONE, WORK_PROOF, WORK_RENDER, WORK_LOOKUP };

struct issuance {
	struct issuance_service *svc;
	struct issuance *prev, *next;
	struct conn_pending *pending; /* NULL once answered or the client left */
	char http_id[33];
	uint64_t started_ns;

	/* The request, copied: the connection's memory may go while work runs. */
	char *body;
	size_t body_len;
	char *card_cert, *card_sig; /* header values, or NULL */
	struct issuance_req req;
	bool have_req;
	const struct config_certificate *cert;
	size_t municipality; /* index in issuance.municipalities: the gate's binding */

	/* Step 4-5 results (written by proof_work, read after on the loop). */
	int proof_status;
	char proof_reason[160];
	char card_serial[CARDPROOF_SERIAL_MAX + 1];
	char body_sha256[HEX_SHA256 + 1];
	char card_digest[HEX_SHA256 + 1];
	int stored_status;
	struct audit_response stored;

	/* Steps 7-11. */
	struct plugin_instance *plugin;
	const char *plugin_name, *plugin_version; /* the instance, and its plugin's version */
	const char *plugin_vendor_name;		  /* the plugin as shipped (DESIGN §4 201) */
	bool routed; /* past step 7: every conclusion is an audit row */
	char resident_code[LINKAGE_CODE_MAX + 1];
	char subject_digest[HEX_SHA256 + 1];
	struct plugin_fetch *fetch;
	mdg_record *record;

	/* Step 12 results (render_work). */
	char issuance_id[DOCCODE_ISSUANCE_MAX + 1];
	time_t issued_at;
	int render_status;
	char render_reason[160];
	struct render_output doc;
	char doc_sha256[HEX_SHA256 + 1];
	char *answer; /* the 201 body */
	size_t answer_len;

	/* Lifecycle. */
	uv_timer_t deadline;
	bool timer_closing, timer_closed;
	uv_work_t work;
	enum issuance_work work_kind;
	bool work_busy;
	bool audit_busy;
	bool concluded;
	/* The answer chosen for after the audit commit. */
	size_t outcome;
	char detail[200];
	json_t *extra;
};

static void is_maybe_free(struct issuance *is);
static void is_audit(struct issuance *is, size_t outcome, bool with_document);
static void lookup_work(uv_work_t *w);
static void work_done(uv_work_t *w, int status);
static void is_fail(struct issuance *is, const char *code, const char *detail, json_t *extra);

static void sha256_hex(const void *data, size_t len, char out[HEX_SHA256 + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(data, len, md);
	ossl_hex(md, sizeof md, out);
}

/* The card's digest for the stored answer: the same card signs a replay. */
static void card_digest(const struct issuance_service *svc, const char *serial,
			char out[HEX_SHA256 + 1])
{
	char text[64];
	snprintf(text, sizeof text, "card-serial:%s", serial);
	audit_subject_digest(svc->subject_key, sizeof svc->subject_key, text, out);
}

/* --------------------------------------------------------------------------- metrics */

static void is_count(struct issuance *is, size_t outcome)
{
	struct issuance_service *svc = is->svc;
	if (!is->have_req)
		return; /* no type to count it under: the access log has it */
	int t = is->req.certificate;
	if (svc->m_count[t][outcome] == NULL) {
		char labels[160];
		snprintf(labels, sizeof labels, "certificate=\"%s\",plugin=\"%s\",outcome=\"%s\"",
			 record_certificate_types[t],
			 is->cert && is->cert->plugin ? is->cert->plugin : "",
			 outcomes[outcome].code);
		svc->m_count[t][outcome] = metrics_series(svc->m_issuances, labels);
	}
	metrics_inc(svc->m_count[t][outcome]);
	metrics_observe(svc->m_latency[t], (double)(uv_hrtime() - is->started_ns) / 1e9);
}

/* Audit figures as gauges, refreshed each second (the audit writer keeps them). */
static void metrics_tick(uv_timer_t *t)
{
	struct issuance_service *svc = t->data;
	struct audit_metrics m;
	audit_metrics_snapshot(svc->audit, &m);
	metrics_set(svc->m_audit_rows, (int64_t)m.rows_committed);
	metrics_set(svc->m_audit_failed, (int64_t)m.rows_failed);
	metrics_set(svc->m_linkage_cards, (int64_t)linkage_count(svc->linkage));
	uint64_t hits, misses;
	cardproof_cache_stats(svc->cards, &hits, &misses);
	metrics_set(svc->m_card_hits, (int64_t)hits);
	metrics_set(svc->m_card_misses, (int64_t)misses);
}

/* ------------------------------------------------------------------------ card CRLs */

static void crl_log(const struct issuance_service *svc)
{
	if (svc->crl_status == CARDPROOF_OK) {
		metrics_set(svc->m_crl_revoked, (int64_t)svc->crl_revoked);
		log_event(LOG_INFO, "card_crl_loaded", "{s:s, s:I, s:I}", "path",
			  svc->conf->card_proof.crl, "crls", (json_int_t)svc->crl_count, "revoked",
			  (json_int_t)svc->crl_revoked);
	} else {
		log_event(LOG_ERROR, "card_crl_refused", "{s:s, s:s, s:s}", "path",
			  svc->conf->card_proof.crl, "error", svc->crl_err, "hint",
			  "the CRLs loaded before stay in force; fix the file");
	}
}

static void crl_work_run(uv_work_t *w)
{
	struct issuance_service *svc = w->data;
	svc->crl_status = cardproof_load_crl(svc->cards, svc->conf->card_proof.crl, &svc->crl_count,
					     &svc->crl_revoked, svc->crl_err, sizeof svc->crl_err);
}

static void crl_work_done(uv_work_t *w, int status)
{
	struct issuance_service *svc = w->data;
	svc->crl_busy = false;
	if (status == 0)
		crl_log(svc);
}

static bool crl_changed(const struct stat *a, const struct stat *b)
{
	return a->st_ino != b->st_ino || a->st_size != b->st_size ||
	       a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

static void crl_tick(uv_timer_t *t)
{
	struct issuance_service *svc = t->data;
	struct stat st;
	if (svc->crl_busy || svc->closing || stat(svc->conf->card_proof.crl, &st) != 0 ||
	    !crl_changed(&st, &svc->crl_seen))
		return;
	svc->crl_seen = st;
	svc->crl_work.data = svc;
	if (uv_queue_work(svc->loop, &svc->crl_work, crl_work_run, crl_work_done) == 0)
		svc->crl_busy = true;
}

/* Loads the CRLs at start (a bad file refuses the start) and starts watching the file. */
static int crl_open(struct issuance_service *svc, char *msg, size_t msg_size)
{
	if (svc->conf->card_proof.crl == NULL)
		return 0;
	if (stat(svc->conf->card_proof.crl, &svc->crl_seen) != 0)
		memset(&svc->crl_seen, 0, sizeof svc->crl_seen);
	crl_work_run(&(uv_work_t){.data = svc});
	if (svc->crl_status != CARDPROOF_OK) {
		snprintf(msg, msg_size, "issuance.card_proof.crl: %s", svc->crl_err);
		return -1;
	}
	crl_log(svc);
	uv_timer_init(svc->loop, &svc->crl_timer);
	svc->crl_timer.data = svc;
	uv_timer_start(&svc->crl_timer, crl_tick, svc->conf->card_proof.crl_interval_ms,
		       svc->conf->card_proof.crl_interval_ms);
	uv_unref((uv_handle_t *)&svc->crl_timer);
	return 0;
}

static void metrics_setup(struct issuance_service *svc)
{
	static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
	svc->m_issuances = metrics_family("madoguchi_issuances_total",
					  "Issuance requests by certificate type, plugin route and "
					  "outcome (ISSUED or the problem code).",
					  METRIC_COUNTER);
	struct metric_family *lat =
	    metrics_family("madoguchi_issuance_duration_seconds",
			   "Time from the request's arrival to its answer, by certificate type.",
			   METRIC_HISTOGRAM);
	for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++) {
		char labels[64];
		snprintf(labels, sizeof labels, "certificate=\"%s\"", record_certificate_types[t]);
		svc->m_latency[t] =
		    metrics_histogram(lat, labels, bounds, sizeof bounds / sizeof bounds[0]);
	}
	svc->m_integrity_faults = metrics_series(
	    metrics_family("madoguchi_integrity_faults_total",
			   "Records of another resident or type returned by a plugin (the plugin "
			   "is then suspended).",
			   METRIC_COUNTER),
	    "");
	svc->m_in_flight =
	    metrics_series(metrics_family("madoguchi_issuances_in_flight",
					  "Issuances not yet concluded.", METRIC_GAUGE),
			   "");
	struct metric_family *shed =
	    metrics_family("madoguchi_issuances_shed_total",
			   "Issuances answered 503 OVERLOADED because a queue was full: admission "
			   "(issuance.max_pending) or render (issuance.render_queue).",
			   METRIC_COUNTER);
	svc->m_shed_admission = metrics_series(shed, "queue=\"admission\"");
	svc->m_shed_render = metrics_series(shed, "queue=\"render\"");
	struct metric_family *audit =
	    metrics_family("madoguchi_audit_rows_total",
			   "Audit rows, by whether their batch committed.", METRIC_COUNTER);
	svc->m_audit_rows = metrics_series(audit, "result=\"committed\"");
	svc->m_audit_failed = metrics_series(audit, "result=\"failed\"");
	static const double commit_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01,
					       0.02,   0.05,  0.1,   0.25,  0.5};
	static const double row_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
	svc->m_commit_seconds = metrics_histogram(
	    metrics_family("madoguchi_audit_commit_duration_seconds",
			   "Audit commits (one fsync each): BEGIN to COMMIT done.",
			   METRIC_HISTOGRAM),
	    "", commit_bounds, sizeof commit_bounds / sizeof commit_bounds[0]);
	svc->m_batch_rows = metrics_histogram(
	    metrics_family("madoguchi_audit_batch_rows",
			   "Rows per audit commit (group commit of concurrent issuances).",
			   METRIC_HISTOGRAM),
	    "", row_bounds, sizeof row_bounds / sizeof row_bounds[0]);
	struct metric_family *cards = metrics_family(
	    "madoguchi_card_cache_lookups_total",
	    "Card certificates looked up in the verified-certificate cache, by result (a hit skips "
	    "parsing and the chain check; the signature is always checked).",
	    METRIC_COUNTER);
	svc->m_card_hits = metrics_series(cards, "result=\"hit\"");
	svc->m_crl_revoked = metrics_series(
	    metrics_family("madoguchi_card_crl_revoked",
			   "Card certificates listed as revoked in the CRLs in force "
			   "(issuance.card_proof.crl).",
			   METRIC_GAUGE),
	    "");
	svc->m_card_misses = metrics_series(cards, "result=\"miss\"");
	svc->m_linkage_cards = metrics_series(
	    metrics_family("madoguchi_linkage_cards", "Cards in the linkage table.", METRIC_GAUGE),
	    "");
}

/* ----------------------------------------------------------------- answers and endings */

/* Sends resp if the client is still there; the pending handle is used up either way. */
static void is_send(struct issuance *is, struct http_response *resp)
{
	if (is->pending != NULL) {
		conn_answer(is->pending, resp);
		is->pending = NULL;
	}
}

static void is_send_problem(struct issuance *is, size_t outcome, const char *detail, json_t *extra)
{
	struct http_response resp;
	const struct outcome *o = &outcomes[outcome];
	http_response_init(&resp);
	resp.route = "/v1/issuances";
	if (strcmp(o->code, "OVERLOADED") == 0)
		http_response_header(&resp, "Retry-After", "1");
	http_response_problem_ext(
	    &resp, o->status, o->code, o->title, detail,
	    is->have_req || is->req.request_id[0] ? is->req.request_id : is->http_id, extra);
	is_send(is, &resp);
	http_response_free(&resp);
}

static void is_timer_closed(uv_handle_t *h)
{
	struct issuance *is = h->data;
	is->timer_closed = true;
	is_maybe_free(is);
}

/* Marks the issuance concluded: no later step acts any more. */
static void is_conclude(struct issuance *is)
{
	is->concluded = true;
	if (!is->timer_closing) {
		is->timer_closing = true;
		uv_close((uv_handle_t *)&is->deadline, is_timer_closed);
	}
	if (is->fetch != NULL) {
		plugin_fetch_abandon(is->fetch);
		is->fetch = NULL;
	}
	metrics_add(is->svc->m_in_flight, -1);
}

static void is_free(struct issuance *is)
{
	struct issuance_service *svc = is->svc;
	if (is->prev != NULL)
		is->prev->next = is->next;
	else
		svc->live = is->next;
	if (is->next != NULL)
		is->next->prev = is->prev;
	svc->live_count--;
	free(is->body);
	free(is->card_cert);
	free(is->card_sig);
	audit_response_free(&is->stored);
	record_free(is->record);
	render_output_free(&is->doc);
	free(is->answer);
	json_decref(is->extra);
	free(is);
}

static void is_maybe_free(struct issuance *is)
{
	if (is->concluded && is->pending == NULL && !is->work_busy && is->fetch == NULL &&
	    !is->audit_busy && is->timer_closed)
		is_free(is);
}

/* The audit row of this issuance's conclusion (step 7 on). */
static void audit_done(void *arg, int status, int64_t seq, const char *hash)
{
	struct issuance *is = arg;
	(void)seq;
	(void)hash;
	is->audit_busy = false;
	size_t outcome = is->outcome;
	if (status == AUDIT_DUPLICATE && outcome == 0) {
		/* The same request_id committed its answer meanwhile (two requests raced past step
		 * 5): this one's row was not written.  Look the stored answer up (lookup_done()).
		 */
		free(is->answer);
		is->answer = NULL;
		is->answer_len = 0;
		is->work_kind = WORK_LOOKUP;
		is->work.data = is;
		if (uv_queue_work(is->svc->loop, &is->work, lookup_work, work_done) == 0) {
			is->work_busy = true;
			return;
		}
		snprintf(is->detail, sizeof is->detail,
			 "a request with this request_id was answered meanwhile; send it again to "
			 "get the stored answer");
		is_audit(is, outcome_index("REQUEST_ID_CONFLICT"), false);
		return;
	}
	if (status != AUDIT_OK) {
		log_event(LOG_ERROR, "issuance_not_audited", "{s:s, s:s}", "request", is->http_id,
			  "outcome", outcomes[outcome].code);
		if (outcome == 0) { /* no commit, no document */
			outcome = outcome_index("AUDIT_UNAVAILABLE");
			snprintf(is->detail, sizeof is->detail,
				 "the audit record could not be committed; no document was issued");
		}
	}
	if (outcomes[outcome].status == 201) {
		struct http_response resp;
		http_response_init(&resp);
		resp.route = "/v1/issuances";
		http_response_body(&resp, 201, "application/json", is->answer, is->answer_len);
		is_send(is, &resp);
		http_response_free(&resp);
	} else {
		is_send_problem(is, outcome, is->detail, is->extra);
		is->extra = NULL;
	}
	is_count(is, outcome);
	is_maybe_free(is);
}

/* The stored answer of a request_id that raced this issuance (pool). */
static void lookup_work(uv_work_t *w)
{
	struct issuance *is = w->data;
	char err[160];
	audit_response_free(&is->stored);
	is->stored_status =
	    audit_lookup_response(is->svc->audit, is->req.request_id, &is->stored, err, sizeof err);
}

/* An identical request (same body, same card) gets the stored answer; anything else is 409. */
static void lookup_done(struct issuance *is)
{
	if (is->stored_status == AUDIT_OK && strcmp(is->stored.body_sha256, is->body_sha256) == 0 &&
	    strcmp(is->stored.card_serial_digest, is->card_digest) == 0 &&
	    (is->answer = malloc(is->stored.response_len)) != NULL) {
		memcpy(is->answer, is->stored.response, is->stored.response_len);
		is->answer_len = is->stored.response_len;
		is_audit(is, outcome_index("REPLAYED"), false);
		return;
	}
	snprintf(is->detail, sizeof is->detail,
		 "this request_id was used meanwhile for another request or by another card");
	is_audit(is, outcome_index("REQUEST_ID_CONFLICT"), false);
}

/* Writes the conclusion's audit row; the answer follows in audit_done(). */
static void is_audit(struct issuance *is, size_t outcome, bool with_document)
{
	struct issuance_service *svc = is->svc;
	char err[200], terminal[1024]; /* 3 fields of 64 printable characters, escaped */
	is->outcome = outcome;
	json_t *t = json_pack("{s:s, s:s, s:s}", "kiosk", is->req.terminal_kiosk, "operator",
			      is->req.terminal_operator, "store", is->req.terminal_store);
	char *tj = t ? json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	snprintf(terminal, sizeof terminal, "%s", tj ? tj : "{}");
	free(tj);
	json_decref(t);
	struct audit_row row = {
	    .request_id = is->req.request_id,
	    .issuance_id = with_document ? is->issuance_id : NULL,
	    .municipality = is->req.municipality,
	    .certificate = is->req.certificate_name,
	    .plugin = is->plugin_name ? is->plugin_name : "",
	    .plugin_version = is->plugin_version ? is->plugin_version : "",
	    .terminal = terminal,
	    .subject_digest = is->subject_digest[0] ? is->subject_digest : is->card_digest,
	    .outcome = outcomes[outcome].code,
	    .document_sha256 = with_document ? is->doc_sha256 : NULL,
	};
	struct audit_stored_response stored = {
	    .request_id = is->req.request_id,
	    .body_sha256 = is->body_sha256,
	    .card_serial_digest = is->card_digest,
	    .response = (const unsigned char *)is->answer,
	    .response_len = is->answer_len,
	    .expires_at =
		(int64_t)time(NULL) + (int64_t)(svc->conf->idempotency_retention_ms / 1000),
	};
	if (audit_submit(svc->audit, &row, with_document ? &stored : NULL, audit_done, is, err,
			 sizeof err) == AUDIT_OK) {
		is->audit_busy = true;
		return;
	}
	/* Not even queued (queue full, closing): as a failed commit. */
	audit_done(is, AUDIT_UNAVAILABLE, 0, NULL);
}

/*
 * Concludes with a problem answer: after step 7 through an audit row first, before it at
 * once.  extra (problem members, reference stolen) may be NULL.
 */
static void is_fail(struct issuance *is, const char *code, const char *detail, json_t *extra)
{
	if (is->concluded) {
		json_decref(extra);
		return;
	}
	is_conclude(is);
	size_t outcome = outcome_index(code);
	if (is->routed) {
		snprintf(is->detail, sizeof is->detail, "%s", detail ? detail : "");
		json_decref(is->extra);
		is->extra = extra;
		is_audit(is, outcome, false);
		return;
	}
	is_send_problem(is, outcome, detail, extra);
	is_count(is, outcome);
	is_maybe_free(is);
}

/* ------------------------------------------------------------------------ the pipeline */

static void proof_work(uv_work_t *w);
static void render_work(uv_work_t *w);
static void work_done(uv_work_t *w, int status);

static void is_queue_work(struct issuance *is, enum issuance_work kind)
{
	if (kind == WORK_RENDER) {
		if (is->svc->render_count >= is->svc->conf->render_queue) {
			metrics_add(is->svc->m_shed_render, 1);
			is_fail(is, "OVERLOADED", "the renderer is busy; retry shortly", NULL);
			return;
		}
		is->svc->render_count++;
	}
	is->work_kind = kind;
	is->work.data = is;
	if (uv_queue_work(is->svc->loop, &is->work, kind == WORK_PROOF ? proof_work : render_work,
			  work_done) != 0) {
		if (kind == WORK_RENDER)
			is->svc->render_count--;
		is_fail(is, "INTERNAL_ERROR", "cannot queue work on the thread pool", NULL);
		return;
	}
	is->work_busy = true;
}

static void deadline_expired(uv_timer_t *t)
{
	struct issuance *is = t->data;
	if (!is->concluded)
		is_fail(is, "BACKEND_TIMEOUT",
			"the issuance did not complete within its deadline; nothing of it was "
			"issued",
			NULL);
}

static void client_gone(void *arg)
{
	struct issuance *is = arg;
	conn_answer(is->pending, NULL); /* releases the handle; nothing is sent */
	is->pending = NULL;
	if (!is->concluded)
		is_fail(is, "CLIENT_GONE", "the client closed the connection", NULL);
	else
		is_maybe_free(is);
}

/* Step 4 and the lookups of step 5, on the thread pool. */
static void proof_work(uv_work_t *w)
{
	struct issuance *is = w->data;
	struct issuance_service *svc = is->svc;
	if (svc->conf->card_proof.mode == CONFIG_CARD_PROOF_REQUIRED) {
		struct cardproof_result card;
		is->proof_status = cardproof_verify(svc->cards, is->card_cert, is->card_sig,
						    is->body, is->body_len, time(NULL), &card,
						    is->proof_reason, sizeof is->proof_reason);
		if (is->proof_status == CARDPROOF_OK)
			memcpy(is->card_serial, card.card_serial, sizeof is->card_serial);
	} else {
		is->proof_status = CARDPROOF_OK;
		snprintf(is->card_serial, sizeof is->card_serial, "%s",
			 is->req.subject_card_serial);
	}
	sha256_hex(is->body, is->body_len, is->body_sha256);
	if (is->proof_status == CARDPROOF_OK)
		card_digest(svc, is->card_serial, is->card_digest);
	char err[160];
	is->stored_status =
	    audit_lookup_response(svc->audit, is->req.request_id, &is->stored, err, sizeof err);
}

/* Replays the stored 201 of an identical request (step 5). */
static void is_replay(struct issuance *is)
{
	is_conclude(is);
	struct http_response resp;
	http_response_init(&resp);
	resp.route = "/v1/issuances";
	http_response_body(&resp, 201, "application/json", is->stored.response,
			   is->stored.response_len);
	is_send(is, &resp);
	http_response_free(&resp);
	is_count(is, outcome_index("REPLAYED"));
	is_maybe_free(is);
}

static json_t *suspension_member(const struct gate_verdict *v)
{
	char since[32];
	http_format_time(v->since, since, sizeof since);
	return json_pack("{s:{s:s, s:s, s:s}}", "suspension", "source", gate_source_name(v->source),
			 "reason", v->reason, "since", since);
}

static void fetch_done(void *arg, int status, mdg_record *record, const char *reason);

static void proof_done(struct issuance *is)
{
	struct issuance_service *svc = is->svc;
	const struct config_issuance *conf = svc->conf;
	time_t now = time(NULL);

	if (is->proof_status != CARDPROOF_OK) {
		is_fail(is, "CARD_PROOF_INVALID", is->proof_reason, NULL);
		return;
	}
	/* Step 5: a replay of a stored answer, exempt from the skew. */
	if (is->stored_status == AUDIT_OK) {
		if (strcmp(is->stored.body_sha256, is->body_sha256) == 0 &&
		    strcmp(is->stored.card_serial_digest, is->card_digest) == 0)
			is_replay(is);
		else
			is_fail(is, "REQUEST_ID_CONFLICT",
				"this request_id was used for another request or by another card",
				NULL);
		return;
	}
	if (is->stored_status != AUDIT_NOT_FOUND) {
		is_fail(is, "AUDIT_UNAVAILABLE", "the store of answered requests cannot be read",
			NULL);
		return;
	}
	if (!cardproof_skew_ok(is->req.requested_at, now,
			       (long)(conf->card_proof.max_skew_ms / 1000))) {
		is_fail(is, "CARD_PROOF_INVALID",
			"requested_at is too far from the appliance's clock", NULL);
		return;
	}
	/* Step 6. */
	if (hours_state_at(&conf->hours, is->req.certificate, now) != HOURS_OPEN) {
		char hours[160], detail[200];
		hours_describe(&conf->hours, is->req.certificate, hours, sizeof hours);
		snprintf(detail, sizeof detail, "%s is issued %s", is->req.certificate_name, hours);
		is_fail(is, "OUTSIDE_SERVICE_HOURS", detail, NULL);
		return;
	}
	/* Step 7: from here on every conclusion is an audit row. */
	is->plugin = svc->routes[is->req.certificate];
	const struct mdg_plugin_descriptor *desc = plugin_instance_descriptor(is->plugin);
	is->plugin_name = is->cert->plugin;
	is->plugin_version = desc->version;
	is->plugin_vendor_name = desc->name;
	is->routed = true;
	struct gate_verdict v;
	if (gate_check_at(killswitch_gate(svc->ks), svc->route_index[is->req.certificate],
			  (size_t)is->req.certificate, is->municipality, false, &v)) {
		is_fail(is, "SERVICE_SUSPENDED", "this certificate's backend is suspended",
			suspension_member(&v));
		return;
	}
	/* Step 8. */
	const char *code = linkage_lookup(svc->linkage, is->card_serial);
	if (code == NULL) {
		is_fail(is, "NO_RECORD",
			"this card is not linked to a resident of this municipality", NULL);
		return;
	}
	snprintf(is->resident_code, sizeof is->resident_code, "%s", code);
	audit_subject_digest(svc->subject_key, sizeof svc->subject_key, is->resident_code,
			     is->subject_digest);
	/* Steps 9-10: admission and the fetch, within what is left of the deadline. */
	uint64_t spent_ms = (uv_hrtime() - is->started_ns) / 1000000;
	uint64_t left_ms = conf->deadline_ms > spent_ms ? conf->deadline_ms - spent_ms : 1;
	uint64_t timeout = plugin_instance_timeout_ms(is->plugin);
	if (timeout > left_ms)
		timeout = left_ms;
	uint32_t options = (is->req.household ? MDG_FETCH_HOUSEHOLD : 0) |
			   (is->req.show_my_number ? MDG_FETCH_SHOW_MY_NUMBER : 0) |
			   (is->req.show_domicile ? MDG_FETCH_SHOW_DOMICILE : 0);
	int rc = plugin_fetch(is->plugin, is->req.certificate_name, is->req.municipality,
			      is->resident_code, options, timeout, fetch_done, is, &is->fetch);
	if (rc == MDG_ERR_UNAVAILABLE)
		is_fail(is, "OVERLOADED", "too many requests for this backend; retry shortly",
			NULL);
	else if (rc != MDG_OK)
		is_fail(is, "BACKEND_ERROR", "the backend could not start the request", NULL);
}

#define SERIAL_BLOCK 10000u

/* Writes "limit\n" to path durably (write, fsync, rename).  0 or -1.  Any thread. */
static int serial_store(const char *path, uint64_t limit)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	char text[32];
	int len = snprintf(text, sizeof text, "%llu\n", (unsigned long long)limit);
	int ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok && rename(tmp, path) == 0;
	return ok ? 0 : -1;
}

static void serial_work(uv_work_t *w)
{
	struct issuance_service *svc = w->data;
	svc->serial_status = serial_store(svc->serial_path, svc->serial_limit + SERIAL_BLOCK);
}

static void serial_done(uv_work_t *w, int status)
{
	struct issuance_service *svc = w->data;
	svc->serial_reserving = false;
	if (status == 0 && svc->serial_status == 0)
		svc->serial_limit += SERIAL_BLOCK;
	else
		log_event(LOG_ERROR, "serial_reserve_failed", "{s:s}", "path", svc->serial_path);
}

/*
 * The issuance id: municipality, Tokyo date, and a serial never handed out before.  Returns
 * -1 when the reserved serials ran out (the next block could not be written).
 */
static int make_issuance_id(struct issuance *is)
{
	struct issuance_service *svc = is->svc;
	if (svc->next_serial >= svc->serial_limit)
		return -1;
	if (!svc->serial_reserving && !svc->closing &&
	    svc->serial_limit - svc->next_serial < SERIAL_BLOCK / 2) {
		svc->serial_work.data = svc;
		svc->serial_reserving =
		    uv_queue_work(svc->loop, &svc->serial_work, serial_work, serial_done) == 0;
	}
	time_t jst = is->issued_at + 9 * 3600;
	struct tm tm;
	gmtime_r(&jst, &tm);
	const char *node = svc->conf->node;
	snprintf(is->issuance_id, sizeof is->issuance_id, "%s-%s%s%04d%02d%02d-%06llu",
		 is->req.municipality, node ? node : "", node ? "-" : "", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, (unsigned long long)svc->next_serial++);
	return 0;
}

/* At start: the first serial from the file (or after the audit's rows), a block reserved. */
static int serial_open(struct issuance_service *svc, uint64_t floor, char *msg, size_t msg_size)
{
	FILE *f = fopen(svc->serial_path, "r");
	unsigned long long v = 0;
	if (f != NULL) {
		if (fscanf(f, "%llu", &v) != 1) {
			fclose(f);
			snprintf(msg, msg_size, "%s: expected the next issuance serial (a number)",
				 svc->serial_path);
			return -1;
		}
		fclose(f);
	}
	svc->next_serial = v > floor ? v : floor;
	svc->serial_limit = svc->next_serial + SERIAL_BLOCK;
	if (serial_store(svc->serial_path, svc->serial_limit) != 0) {
		snprintf(msg, msg_size, "cannot write %s: %s", svc->serial_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Step 11, on the loop: what the plugin answered, checked. */
static void fetch_done(void *arg, int status, mdg_record *record, const char *reason)
{
	struct issuance *is = arg;
	struct issuance_service *svc = is->svc;
	(void)reason; /* the host logged it; it may name backend internals */
	is->fetch = NULL;
	if (is->concluded) {
		record_free(record);
		is_maybe_free(is);
		return;
	}
	switch (status) {
	case MDG_OK:
		break;
	case MDG_ERR_NOT_FOUND:
		is_fail(is, "NO_RECORD",
			"the backend holds no record of this type for the resident", NULL);
		return;
	case MDG_ERR_TIMEOUT:
		is_fail(is, "BACKEND_TIMEOUT", "the backend did not answer in time", NULL);
		return;
	case MDG_ERR_UNAVAILABLE:
		is_fail(is, "OVERLOADED", "the backend is busy; retry shortly", NULL);
		return;
	default:
		is_fail(is, "BACKEND_ERROR", "the backend failed", NULL);
		return;
	}
	char why[160];
	time_t now = time(NULL);
	struct verify_expect exp = {
	    .resident_code = is->resident_code,
	    .certificate = is->req.certificate_name,
	    .version_floor = plugin_host_version_floor(svc->plugins, is->resident_code),
	    .max_age_ms = is->cert->max_age_ms,
	    .now = now,
	};
	enum verify_outcome v = verify_record(record, &exp, why, sizeof why);
	if (v == VERIFY_INTEGRITY_FAULT) {
		record_free(record);
		metrics_inc(svc->m_integrity_faults);
		/* An alert without personal data: which plugin, which request. */
		log_event(LOG_ERROR, "integrity_fault", "{s:s, s:s, s:s, s:s}", "plugin",
			  is->plugin_name, "version", is->plugin_version, "request", is->http_id,
			  "action", "plugin suspended (source auto) until acknowledged");
		static const char why_fault[] = "integrity fault: the backend returned a record "
						"of another resident or type";
		killswitch_auto(svc->ks, is->plugin_name, why_fault, now);
		is_fail(is, "INTEGRITY_FAULT",
			"the backend returned a record of another resident; nothing was issued and "
			"the backend is suspended",
			NULL);
		return;
	}
	if (v != VERIFY_OK) {
		record_free(record);
		is_fail(is, verify_outcome_code(v), why, NULL);
		return;
	}
	is->record = record;
	is->issued_at = now;
	if (make_issuance_id(is) != 0) {
		is_fail(is, "OVERLOADED", "no issuance serial is reserved; retry shortly", NULL);
		return;
	}
	is_queue_work(is, WORK_RENDER);
}

/* Step 12 on the thread pool: the PDF, its digest, the binding and the 201 body. */
static void render_work(uv_work_t *w)
{
	struct issuance *is = w->data;
	struct issuance_service *svc = is->svc;
	const struct config_issuance *conf = svc->conf;
	struct render_meta meta = {
	    .issuance_id = is->issuance_id,
	    .issued_at = is->issued_at,
	    .municipality_name = conf->municipality_name,
	    .mayor_name = conf->mayor_name,
	    .seal_png = conf->mayor_seal,
	    .seal_impressions_dir = conf->seal_impressions,
	    .options = (is->req.household ? RENDER_OPT_HOUSEHOLD : 0) |
		       (is->req.show_my_number ? RENDER_OPT_SHOW_MY_NUMBER : 0) |
		       (is->req.show_domicile ? RENDER_OPT_SHOW_DOMICILE : 0),
	};
	is->render_status = render_document(record_json(is->record), &meta, svc->signer, &is->doc,
					    is->render_reason, sizeof is->render_reason);
	if (is->render_status != RENDER_OK)
		return;
	sha256_hex(is->doc.pdf, is->doc.pdf_len, is->doc_sha256);

	char text[512], issued[32], sig_b64[96];
	unsigned char sig[DOCCODE_SIG_LEN];
	int n = snprintf(text, sizeof text, "madoguchi-binding-v1\n%s\n%s\n%s\n%s\n%s\n%s\n",
			 is->issuance_id, is->req.request_id, is->req.municipality,
			 is->req.certificate_name, is->card_serial, is->doc_sha256);
	if (n < 0 || (size_t)n >= sizeof text ||
	    doc_signer_sign(svc->signer, text, (size_t)n, sig) != DOCCODE_OK) {
		is->render_status = RENDER_ERROR;
		snprintf(is->render_reason, sizeof is->render_reason, "cannot sign the binding");
		return;
	}
	EVP_EncodeBlock((unsigned char *)sig_b64, sig, sizeof sig);
	http_format_time(is->issued_at, issued, sizeof issued);
	/*
	 * The 201 body: every member but the document's data through jansson, then the data
	 * (base64: nothing to escape) spliced in by hand, since jansson would copy and scan the
	 * ~60 KB string character by character (measured: the largest cost after rendering).
	 */
	json_t *body = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:I, s:i,"
	    " s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}",
	    "issuance_id", is->issuance_id, "request_id", is->req.request_id, "municipality",
	    is->req.municipality, "certificate", is->req.certificate_name, "issued_at", issued,
	    "subject", "card_serial", is->card_serial, "digest", is->subject_digest, "plugin",
	    "name", is->plugin_vendor_name, "version", is->plugin_version, "fee",
	    (json_int_t)hours_fee(&conf->hours, is->req.certificate) * (json_int_t)is->req.copies,
	    "pages", (int)is->doc.pages, "document", "media_type", "application/pdf", "sha256",
	    is->doc_sha256, "data", "", "binding", "alg", "ed25519", "key_id",
	    doc_signer_key_id(svc->signer), "signature", sig_b64);
	char *json = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	char *hole = json ? strstr(json, "\"data\":\"\"") : NULL;
	size_t b64_len = 4 * ((is->doc.pdf_len + 2) / 3);
	if (hole != NULL) {
		size_t head = (size_t)(hole - json) + strlen("\"data\":\""),
		       tail = strlen(json) - head;
		is->answer = malloc(head + b64_len + tail + 1);
		if (is->answer != NULL) {
			memcpy(is->answer, json, head);
			EVP_EncodeBlock((unsigned char *)is->answer + head, is->doc.pdf,
					(int)is->doc.pdf_len);
			memcpy(is->answer + head + b64_len, json + head, tail + 1);
		}
	}
	free(json);
	if (is->answer == NULL) {
		is->render_status = RENDER_ERROR;
		snprintf(is->render_reason, sizeof is->render_reason, "out of memory");
		return;
	}
	is->answer_len = strlen(is->answer);
	/* The document now lives in the answer; the PDF buffer is not needed any more. */
	render_output_free(&is->doc);
}

static void render_done(struct issuance *is)
{
	struct issuance_service *svc = is->svc;
	if (is->render_status != RENDER_OK) {
		log_event(LOG_ERROR, "render_failed", "{s:s, s:s}", "request", is->http_id,
			  "reason", is->render_reason);
		is_fail(is, "INTERNAL_ERROR", "the document could not be rendered", NULL);
		return;
	}
	/* Step 13: a suspension that arrived meanwhile stops delivery. */
	struct gate_verdict v;
	if (gate_check_at(killswitch_gate(svc->ks), svc->route_index[is->req.certificate],
			  (size_t)is->req.certificate, is->municipality, true, &v)) {
		is_fail(is, "SERVICE_SUSPENDED",
			"this certificate's backend was suspended while the request ran",
			suspension_member(&v));
		return;
	}
	/* Step 14: the row and the stored answer in one commit; the answer waits for it. */
	is_conclude(is);
	is_audit(is, 0, true);
}

static void work_done(uv_work_t *w, int status)
{
	struct issuance *is = w->data;
	is->work_busy = false;
	if (is->work_kind == WORK_RENDER)
		is->svc->render_count--;
	if (is->work_kind == WORK_LOOKUP) { /* concluded already: its answer waits on this */
		lookup_done(is);
		return;
	}
	if (is->concluded || status != 0) {
		if (!is->concluded)
			is_fail(is, "INTERNAL_ERROR", "the work was cancelled", NULL);
		is_maybe_free(is);
		return;
	}
	if (is->work_kind == WORK_PROOF)
		proof_done(is);
	else
		render_done(is);
}

/* ------------------------------------------------------------------------- the route */

/* The code's index in issuance.municipalities (the gate's binding), or -1. */
static long municipality_index(const struct config_issuance *conf, const char *code)
{
	for (size_t i = 0; i < conf->municipalities.count; i++)
		if (strcmp(conf->municipalities.items[i], code) == 0)
			return (long)i;
	return -1;
}

/* The admin and store routes of this module when the config has no issuance section. */
static void answer_no_issuance(const struct http_request *req, struct http_response *resp)
{
	http_response_problem(resp, 404, "NOT_FOUND", "Not found",
			      "this appliance has no issuance section in its config", req->id);
}

static void answer_out_of_memory(const struct http_request *req, struct http_response *resp)
{
	http_response_problem(resp, 500, "INTERNAL_ERROR", "Internal error", "out of memory",
			      req->id);
}

static char *header_copy(const struct http_request *req, const char *name)
{
	const char *v = http_request_header(req, name);
	return v != NULL ? strdup(v) : NULL;
}

void issuance_handle(struct issuance_service *svc, struct conn *c, const struct http_request *req,
		     struct http_response *resp)
{
	if (svc == NULL) {
		answer_no_issuance(req, resp);
		return;
	}
	/* Admission: beyond max_pending the answer costs no parsing, no crypto and no memory. */
	if (svc->live_count >= svc->conf->max_pending) {
		metrics_add(svc->m_shed_admission, 1);
		http_response_header(resp, "Retry-After", "1");
		http_response_problem(resp, 503, "OVERLOADED", "Overloaded",
				      "too many issuances under way; retry shortly", req->id);
		return;
	}
	struct issuance *is = calloc(1, sizeof *is);
	if (is == NULL || (is->body = malloc(req->body_len + 1)) == NULL) {
		free(is);
		answer_out_of_memory(req, resp);
		return;
	}
	is->svc = svc;
	is->started_ns = uv_hrtime();
	memcpy(is->http_id, req->id, sizeof is->http_id);
	memcpy(is->body, req->body ? req->body : "", req->body_len);
	is->body[req->body_len] = '\0';
	is->body_len = req->body_len;
	is->card_cert = header_copy(req, "Madoguchi-Card-Certificate");
	is->card_sig = header_copy(req, "Madoguchi-Card-Signature");
	is->next = svc->live;
	if (svc->live != NULL)
		svc->live->prev = is;
	svc->live = is;
	svc->live_count++;
	uv_timer_init(svc->loop, &is->deadline);
	is->deadline.data = is;
	metrics_add(svc->m_in_flight, 1);
	is->pending = conn_defer(c, "/v1/issuances", client_gone, is);
	if (is->pending == NULL) {
		is_conclude(is);
		answer_out_of_memory(req, resp);
		is_maybe_free(is);
		return;
	}

	/* Step 3, and what the appliance offers. */
	struct issuance_req_error perr;
	unsigned flags = svc->conf->card_proof.mode == CONFIG_CARD_PROOF_CENTER_ASSERTED
			     ? ISSUANCE_REQ_ALLOW_SUBJECT
			     : 0;
	int rc = issuance_req_parse(is->body, is->body_len, flags, &is->req, &perr);
	if (rc != ISSUANCE_REQ_OK) {
		/* The client's request_id, when the body has a well-formed one, so the kiosk can
		 * match the refusal to its request. */
		memset(is->req.request_id, 0, sizeof is->req.request_id);
		json_t *j = json_loadb(is->body, is->body_len, 0, NULL);
		const char *rid = json_string_value(json_object_get(j, "request_id"));
		if (rid != NULL && doccode_issuance_id_ok(rid))
			snprintf(is->req.request_id, sizeof is->req.request_id, "%s", rid);
		json_decref(j);
		char detail[280];
		snprintf(detail, sizeof detail, "%s%s%s", perr.field, perr.field[0] ? ": " : "",
			 perr.message);
		is_fail(is,
			rc == ISSUANCE_REQ_NOMEM ? "INTERNAL_ERROR" : issuance_req_status_code(rc),
			detail, NULL);
		return;
	}
	is->have_req = true;
	is->cert = &svc->conf->certificates[is->req.certificate];
	long muni = municipality_index(svc->conf, is->req.municipality);
	if (muni < 0) {
		is_fail(is, "MUNICIPALITY_NOT_SERVED",
			"this appliance does not serve that municipality", NULL);
		return;
	}
	is->municipality = (size_t)muni;
	if (is->cert->plugin == NULL) {
		is_fail(is, "UNSUPPORTED_CERTIFICATE",
			"this appliance does not offer that certificate type", NULL);
		return;
	}
	if (flags != 0 && !is->req.has_subject) {
		is_fail(is, "INVALID_REQUEST",
			"subject.card_serial: required (card_proof.mode is center-asserted)", NULL);
		return;
	}
	uv_timer_start(&is->deadline, deadline_expired, svc->conf->deadline_ms, 0);
	is_queue_work(is, WORK_PROOF);
}

/* ------------------------------------------------------------------------- keys route */

void issuance_keys(struct issuance_service *svc, struct http_response *resp)
{
	if (svc == NULL) {
		http_response_body(resp, 200, "application/json", "{\"keys\":[]}", 11);
		return;
	}
	http_response_body(resp, 200, "application/json", svc->keys_json, strlen(svc->keys_json));
}

/* -------------------------------------------------------------------- linkage import */

struct linkage_import {
	struct issuance_service *svc;
	struct conn_pending *pending;
	uv_work_t work;
	char *csv;
	size_t len;
	bool replace;
	struct linkage_batch *batch;
	int status; /* 0 ok, 400 malformed, 500 not stored */
	char err[256];
	char id[33];
};

static void import_gone(void *arg)
{
	struct linkage_import *im = arg;
	conn_answer(im->pending, NULL);
	im->pending = NULL;
}

static void import_work(uv_work_t *w)
{
	struct linkage_import *im = w->data;
	if (linkage_parse(im->csv, im->len, &im->batch, im->err, sizeof im->err) != 0) {
		im->status = 400;
		return;
	}
	if (linkage_store(linkage_path(im->svc->linkage), im->batch, im->replace, im->err,
			  sizeof im->err) != 0)
		im->status = 500;
}

static void import_done(uv_work_t *w, int status)
{
	struct linkage_import *im = w->data;
	struct http_response resp;
	http_response_init(&resp);
	resp.route = "/v1/linkage";
	if (status != 0) {
		im->status = 500;
		snprintf(im->err, sizeof im->err, "the import was cancelled");
	}
	if (im->status == 0) {
		/* Applied on the loop after the commit: lookups see all of it or none. */
		linkage_apply(im->svc->linkage, im->batch, im->replace);
		log_event(LOG_INFO, "linkage_imported", "{s:I, s:b, s:I}", "cards",
			  (json_int_t)linkage_batch_count(im->batch), "replace", im->replace,
			  "total", (json_int_t)linkage_count(im->svc->linkage));
		json_t *j = json_pack(
		    "{s:I, s:b, s:I}", "imported", (json_int_t)linkage_batch_count(im->batch),
		    "replace", im->replace, "cards", (json_int_t)linkage_count(im->svc->linkage));
		char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		http_response_body(&resp, 200, "application/json", text ? text : "{}",
				   text ? strlen(text) : 2);
		free(text);
		json_decref(j);
	} else if (im->status == 400) {
		http_response_problem(&resp, 400, "LINKAGE_INVALID", "Linkage file invalid",
				      im->err, im->id);
	} else {
		http_response_problem(&resp, 500, "LINKAGE_NOT_STORED", "Linkage not stored",
				      im->err, im->id);
	}
	if (im->pending != NULL)
		conn_answer(im->pending, &resp);
	http_response_free(&resp);
	linkage_batch_free(im->batch);
	free(im->csv);
	free(im);
}

void issuance_linkage_import(struct issuance_service *svc, struct conn *c,
			     const struct http_request *req, struct http_response *resp)
{
	if (svc == NULL) {
		answer_no_issuance(req, resp);
		return;
	}
	struct linkage_import *im = calloc(1, sizeof *im);
	if (im == NULL || (im->csv = malloc(req->body_len + 1)) == NULL) {
		free(im);
		answer_out_of_memory(req, resp);
		return;
	}
	im->svc = svc;
	memcpy(im->csv, req->body ? req->body : "", req->body_len);
	im->len = req->body_len;
	const char *q = strchr(req->url, '?');
	im->replace = q != NULL && strstr(q, "replace=true") != NULL;
	memcpy(im->id, req->id, sizeof im->id);
	im->work.data = im;
	im->pending = conn_defer(c, "/v1/linkage", import_gone, im);
	if (im->pending == NULL ||
	    uv_queue_work(svc->loop, &im->work, import_work, import_done) != 0) {
		if (im->pending != NULL) {
			struct http_response r;
			http_response_init(&r);
			http_response_problem(&r, 500, "INTERNAL_ERROR", "Internal error",
					      "cannot queue the import", req->id);
			conn_answer(im->pending, &r);
			http_response_free(&r);
		} else {
			answer_out_of_memory(req, resp);
		}
		free(im->csv);
		free(im);
	}
}

/* ------------------------------------------------------------ audit on the admin API */

enum admin_job_kind { JOB_AUDIT_ROWS, JOB_AUDIT_VERIFY };

/* GET /v1/audit and /v1/audit/verify: read the audit file on the pool, answer on the loop. */
struct admin_job {
	struct issuance_service *svc;
	struct conn_pending *pending;
	uv_work_t work;
	enum admin_job_kind kind;
	int64_t after;
	unsigned limit;
	json_t *result;
	int failed;
	char err[512];
	char id[33];
};

static void admin_job_gone(void *arg)
{
	struct admin_job *job = arg;
	conn_answer(job->pending, NULL);
	job->pending = NULL;
}

static void admin_job_work(uv_work_t *w)
{
	struct admin_job *job = w->data;
	struct issuance_service *svc = job->svc;
	if (job->kind == JOB_AUDIT_ROWS) {
		json_t *rows = NULL;
		job->failed = audit_rows_json(svc->audit_path, job->after, job->limit, &rows,
					      job->err, sizeof job->err) != AUDIT_OK;
		if (!job->failed) {
			json_t *last = json_array_get(rows, json_array_size(rows) - 1);
			json_int_t next = last ? json_integer_value(json_object_get(last, "seq"))
					       : (json_int_t)job->after;
			job->result = json_pack("{s:o, s:I}", "rows", rows, "next_after", next);
		}
		return;
	}
	/* The document key in use and the retired ones: checkpoints from before a rotation. */
	const struct config_list *retired = &svc->conf->retired_document_keys;
	const char *keys[AUDIT_VERIFY_KEYS_MAX];
	size_t nkeys = 0;
	keys[nkeys++] = svc->conf->document_key;
	for (size_t i = 0; i < retired->count && nkeys < AUDIT_VERIFY_KEYS_MAX; i++)
		keys[nkeys++] = retired->items[i];
	struct audit_verify_report rep;
	int rc = audit_verify(svc->audit_path, keys, nkeys, &rep, job->err, sizeof job->err);
	if (rc != AUDIT_OK && rc != AUDIT_CORRUPT) {
		job->failed = 1;
		return;
	}
	job->result = json_pack(
	    "{s:b, s:I, s:I, s:I, s:s, s:I, s:s}", "intact", rc == AUDIT_OK, "rows_checked",
	    (json_int_t)rep.rows_checked, "checkpoints_checked",
	    (json_int_t)rep.checkpoints_checked, "head_seq", (json_int_t)rep.last_seq, "head_hash",
	    rep.last_hash, "first_bad_seq", (json_int_t)rep.first_bad_seq, "problem", rep.problem);
}

static void admin_job_done(uv_work_t *w, int status)
{
	struct admin_job *job = w->data;
	struct http_response resp;
	http_response_init(&resp);
	char *text = job->result && status == 0
			 ? json_dumps(job->result, JSON_COMPACT | JSON_PRESERVE_ORDER)
			 : NULL;
	if (text != NULL)
		http_response_body(&resp, 200, "application/json", text, strlen(text));
	else
		http_response_problem(&resp, 500, "AUDIT_UNREADABLE", "Audit unreadable",
				      job->failed ? job->err : "out of memory", job->id);
	if (job->pending != NULL)
		conn_answer(job->pending, &resp);
	http_response_free(&resp);
	free(text);
	json_decref(job->result);
	free(job);
}

/* A query parameter's integer value, or def when absent or not a number. */
static long long query_int(const char *url, const char *name, long long def)
{
	const char *q = strchr(url, '?');
	size_t n = strlen(name);
	for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
		if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '=') {
			char *end;
			long long v = strtoll(p + 2 + n, &end, 10);
			return end != p + 2 + n && (*end == '\0' || *end == '&') ? v : def;
		}
	}
	return def;
}

void issuance_audit(struct issuance_service *svc, bool verify, struct conn *c,
		    const struct http_request *req, struct http_response *resp)
{
	if (svc == NULL) {
		answer_no_issuance(req, resp);
		return;
	}
	struct admin_job *job = calloc(1, sizeof *job);
	if (job == NULL) {
		answer_out_of_memory(req, resp);
		return;
	}
	job->svc = svc;
	job->kind = verify ? JOB_AUDIT_VERIFY : JOB_AUDIT_ROWS;
	long long after = query_int(req->url, "after", 0);
	long long limit = query_int(req->url, "limit", 100);
	job->after = after < 0 ? 0 : after;
	job->limit = limit < 1 ? 1 : limit > 1000 ? 1000 : (unsigned)limit;
	memcpy(job->id, req->id, sizeof job->id);
	job->work.data = job;
	job->pending =
	    conn_defer(c, verify ? "/v1/audit/verify" : "/v1/audit", admin_job_gone, job);
	if (job->pending == NULL) {
		free(job);
		answer_out_of_memory(req, resp);
		return;
	}
	if (uv_queue_work(svc->loop, &job->work, admin_job_work, admin_job_done) != 0) {
		job->failed = 1;
		snprintf(job->err, sizeof job->err, "cannot queue work on the thread pool");
		admin_job_done(&job->work, 0);
	}
}

/* --------------------------------------------------------------------- the service */

/*
 * Reads the subject key (64 hex digits), or makes one (mode 0600) when the file is missing:
 * digests stay comparable only while the key stays the same.
 */
static int subject_key_load(const char *path, unsigned char key[SUBJECT_KEY_LEN], char *msg,
			    size_t msg_size)
{
	char hex[2 * SUBJECT_KEY_LEN + 2];
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		if (RAND_bytes(key, SUBJECT_KEY_LEN) != 1) {
			snprintf(msg, msg_size, "cannot make a subject key: no randomness");
			return -1;
		}
		ossl_hex(key, SUBJECT_KEY_LEN, hex);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (f == NULL || fprintf(f, "%s\n", hex) < 0 || fclose(f) != 0) {
			snprintf(msg, msg_size, "cannot write the subject key %s", path);
			return -1;
		}
		log_event(LOG_INFO, "subject_key_created", "{s:s}", "path", path);
		return 0;
	}
	size_t n = fread(hex, 1, sizeof hex - 1, f);
	fclose(f);
	hex[n] = '\0';
	for (size_t i = 0; i < SUBJECT_KEY_LEN; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			snprintf(msg, msg_size, "%s: expected 64 hexadecimal digits", path);
			return -1;
		}
		key[i] = (unsigned char)v;
	}
	return 0;
}

/* One entry of GET /v1/keys; pem may be NULL (out of memory), which the caller sees. */
static int keys_append(json_t *list, const char *key_id, char *pem)
{
	json_t *k = pem ? json_pack("{s:s, s:s, s:s}", "key_id", key_id, "alg", "ed25519",
				    "public_key_pem", pem)
			: NULL;
	free(pem);
	return k != NULL && json_array_append_new(list, k) == 0 ? 0 : -1;
}

/*
 * Makes the answer of GET /v1/keys: the document key in use first, then the retired ones
 * (issuance.retired_document_keys), so that verifiers can still check documents and audit
 * checkpoints signed before a key rotation.  Refuses a retired key that is not an Ed25519
 * public key, or that repeats a key already listed.  0, or -1 with msg.
 */
static int keys_answer(struct issuance_service *svc, char *msg, size_t msg_size)
{
	const struct config_list *retired = &svc->conf->retired_document_keys;
	if (retired->count >= AUDIT_VERIFY_KEYS_MAX) {
		snprintf(msg, msg_size,
			 "issuance.retired_document_keys: %zu keys, at most %d; keep the oldest "
			 "ones with the audit databases they signed",
			 retired->count, AUDIT_VERIFY_KEYS_MAX - 1);
		return -1;
	}
	json_t *list = json_array();
	int rc = list != NULL ? keys_append(list, doc_signer_key_id(svc->signer),
					    doc_signer_public_pem(svc->signer))
			      : -1;
	for (size_t i = 0; rc == 0 && i < retired->count; i++) {
		struct doc_verifier *v = NULL;
		char err[256];
		if (doc_verifier_load(retired->items[i], &v, err, sizeof err) != DOCCODE_OK) {
			snprintf(msg, msg_size, "issuance.retired_document_keys: %s", err);
			json_decref(list);
			return -1;
		}
		const char *id = doc_verifier_key_id(v);
		for (size_t j = 0; j < json_array_size(list); j++)
			if (strcmp(json_string_value(
				       json_object_get(json_array_get(list, j), "key_id")),
				   id) == 0) {
				snprintf(msg, msg_size,
					 "issuance.retired_document_keys: %s is key %s, which is "
					 "listed already (the document key in use, or twice); "
					 "remove it from the list",
					 retired->items[i], id);
				doc_verifier_free(v);
				json_decref(list);
				return -1;
			}
		rc = keys_append(list, id, doc_verifier_public_pem(v));
		doc_verifier_free(v);
	}
	json_t *answer = rc == 0 ? json_pack("{s:o}", "keys", list) : (json_decref(list), NULL);
	svc->keys_json = answer ? json_dumps(answer, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(answer);
	if (svc->keys_json == NULL) {
		snprintf(msg, msg_size, "out of memory");
		return -1;
	}
	return 0;
}

int issuance_service_open(uv_loop_t *loop, struct config *cfg, struct plugin_host *plugins,
			  struct issuance_service **out, char *msg, size_t msg_size)
{
	const struct config_issuance *conf = &cfg->issuance;
	struct issuance_service *svc = calloc(1, sizeof *svc);
	char err[512], *linkage_db = NULL, *audit_db = NULL, *spool_dir = NULL, *skey = NULL;
	*out = NULL;
	if (svc == NULL) {
		snprintf(msg, msg_size, "out of memory");
		return -1;
	}
	svc->loop = loop;
	svc->cfg = config_ref(cfg);
	svc->conf = conf;
	svc->plugins = plugins;
	for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++) {
		const char *name = conf->certificates[t].plugin;
		if (name == NULL)
			continue;
		struct plugin_instance *inst = plugin_host_find(plugins, name);
		if (inst == NULL || !plugin_instance_serves(inst, record_certificate_types[t])) {
			snprintf(
			    msg, msg_size,
			    "%s:%d:%d: issuance.certificates.%s: plugin instance '%s' does not "
			    "serve %s; route the type to a plugin that does",
			    cfg->path, conf->certificates[t].mark.line,
			    conf->certificates[t].mark.column, record_certificate_types[t], name,
			    record_certificate_types[t]);
			goto fail;
		}
		svc->routes[t] = inst;
		for (size_t i = 0; i < plugin_host_count(plugins); i++)
			if (plugin_host_instance(plugins, i) == inst)
				svc->route_index[t] = i;
	}
	/* A slow backend holds at most its max_in_flight issuances; the others' types must still
	 * find a place under max_pending. */
	uint64_t routed_in_flight = 0;
	for (size_t i = 0; i < cfg->plugin_count; i++)
		for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
			if (conf->certificates[t].plugin != NULL &&
			    strcmp(conf->certificates[t].plugin, cfg->plugins[i].name) == 0) {
				routed_in_flight += cfg->plugins[i].max_in_flight;
				break;
			}
	if (routed_in_flight >= conf->max_pending) {
		snprintf(
		    msg, msg_size,
		    "%s: issuance.max_pending (%u) must exceed the max_in_flight of the routed "
		    "plugins together (%llu), or one slow backend could take every place",
		    cfg->path, conf->max_pending, (unsigned long long)routed_in_flight);
		goto fail;
	}
	if (mkdir(cfg->data_dir, 0750) != 0 && errno != EEXIST) {
		snprintf(msg, msg_size, "cannot create data_dir %s", cfg->data_dir);
		goto fail;
	}
	if (cardproof_ctx_new(conf->card_proof.ca, &svc->cards, err, sizeof err) != CARDPROOF_OK) {
		snprintf(msg, msg_size, "issuance.card_proof.ca: %s", err);
		goto fail;
	}
	if (doc_signer_load(conf->document_key, &svc->signer, err, sizeof err) != DOCCODE_OK) {
		snprintf(msg, msg_size, "issuance.document_key: %s", err);
		goto fail;
	}
	skey = conf->subject_key ? strdup(conf->subject_key) : config_data_path(cfg, "subject.key");
	linkage_db = config_data_path(cfg, "linkage.sqlite");
	audit_db = config_data_path(cfg, "audit.sqlite");
	spool_dir = config_data_path(cfg, "responses");
	if (skey == NULL || linkage_db == NULL || audit_db == NULL || spool_dir == NULL) {
		snprintf(msg, msg_size, "out of memory");
		goto fail;
	}
	if (subject_key_load(skey, svc->subject_key, msg, msg_size) != 0)
		goto fail;
	if (linkage_open(linkage_db, &svc->linkage, msg, msg_size) != 0)
		goto fail;
	if (killswitch_open(loop, cfg, plugins, &svc->ks, msg, msg_size) != 0)
		goto fail;
	metrics_setup(svc);
	if (crl_open(svc, msg, msg_size) != 0)
		goto fail;
	struct audit_options ao = {
	    .commit_seconds = svc->m_commit_seconds,
	    .batch_rows = svc->m_batch_rows,
	    .db_path = audit_db,
	    .spool_dir = spool_dir,
	    .checkpoint_key_path = conf->document_key,
	    .queue_limit = conf->audit.queue_limit,
	    .checkpoint_every_rows = conf->audit.checkpoint_rows,
	    .checkpoint_interval_ms = (uint32_t)conf->audit.checkpoint_interval_ms,
	};
	svc->audit_path = strdup(audit_db);
	if (svc->audit_path == NULL ||
	    audit_open(loop, &ao, &svc->audit, err, sizeof err) != AUDIT_OK) {
		snprintf(msg, msg_size, "audit store %s: %s", audit_db, err);
		goto fail;
	}
	struct audit_metrics am;
	audit_metrics_snapshot(svc->audit, &am);
	svc->serial_path = config_data_path(cfg, "issuance.serial");
	if (svc->serial_path == NULL ||
	    serial_open(svc, (uint64_t)am.head_seq + 1, msg, msg_size) != 0)
		goto fail;

	if (keys_answer(svc, msg, msg_size) != 0)
		goto fail;
	uv_timer_init(loop, &svc->metrics_timer);
	svc->metrics_timer.data = svc;
	uv_timer_start(&svc->metrics_timer, metrics_tick, 0, 1000);
	uv_unref((uv_handle_t *)&svc->metrics_timer);
	log_event(LOG_INFO, "issuance_ready", "{s:I, s:s}", "linked_cards",
		  (json_int_t)linkage_count(svc->linkage), "document_key_id",
		  doc_signer_key_id(svc->signer));
	free(skey);
	free(linkage_db);
	free(audit_db);
	free(spool_dir);
	*out = svc;
	return 0;
fail:
	free(skey);
	free(linkage_db);
	free(audit_db);
	free(spool_dir);
	if (svc->audit != NULL) {
		audit_close(svc->audit);
		svc->audit = NULL;
	}
	if (svc->crl_timer.data != NULL)
		uv_close((uv_handle_t *)&svc->crl_timer, NULL);
	if (svc->ks != NULL) /* its timer and feed are handles on the loop: close them first */
		killswitch_shutdown(svc->ks);
	uv_run(loop, UV_RUN_NOWAIT);
	issuance_service_free(svc);
	return -1;
}

void issuance_service_shutdown(struct issuance_service *svc)
{
	if (svc == NULL || svc->closing)
		return;
	svc->closing = true;
	/* Fetches first: the plugin host cancels what is left without calling back. */
	for (struct issuance *is = svc->live; is != NULL; is = is->next) {
		if (is->fetch != NULL) {
			plugin_fetch_abandon(is->fetch);
			is->fetch = NULL;
			if (!is->concluded)
				is_fail(is, "CLIENT_GONE", "the appliance is shutting down", NULL);
		}
	}
	if (svc->metrics_timer.data != NULL)
		uv_close((uv_handle_t *)&svc->metrics_timer, NULL);
	if (svc->crl_timer.data != NULL)
		uv_close((uv_handle_t *)&svc->crl_timer, NULL);
	killswitch_shutdown(svc->ks);
	audit_close(svc->audit); /* commits what was submitted and runs the callbacks */
	svc->audit = NULL;
	/* A clean stop gives back the unused part of the block (at shutdown, so blocking is
	 * fine); a reservation still on the pool would overwrite it, so only without one. */
	if (svc->serial_path != NULL && !svc->serial_reserving &&
	    serial_store(svc->serial_path, svc->next_serial) != 0)
		log_event(LOG_WARN, "serial_store_failed", "{s:s}", "path", svc->serial_path);
}

void issuance_service_free(struct issuance_service *svc)
{
	if (svc == NULL)
		return;
	while (svc->serial_reserving || svc->crl_busy ||
	       killswitch_busy(svc->ks)) /* work still on the pool */
		uv_run(svc->loop, UV_RUN_ONCE);
	if (svc->audit != NULL)
		audit_close(svc->audit);
	cardproof_ctx_free(svc->cards);
	doc_signer_free(svc->signer);
	linkage_free(svc->linkage);
	killswitch_free(svc->ks);
	free(svc->keys_json);
	free(svc->serial_path);
	free(svc->audit_path);
	config_unref(svc->cfg);
	free(svc);
}

struct gate *issuance_gate(struct issuance_service *svc)
{
	return svc ? killswitch_gate(svc->ks) : NULL;
}

struct killswitch *issuance_killswitch(struct issuance_service *svc)
{
	return svc ? svc->ks : NULL;
}

size_t issuance_linkage_count(const struct issuance_service *svc)
{
	return svc ? linkage_count(svc->linkage) : 0;
}
