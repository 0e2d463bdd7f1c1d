/*
 * fujitsu_like.c: the "fujitsu-like" backend plugin, a client of a legacy vendor system over
 * TCP (docs/vendor-protocol.md, plugins/fujitsu-like/README.md).
 *
 * Non-blocking: every socket lives on the host's libuv loop.  A pool of pool_size
 * connections carries requests pipelined up to max_in_flight_per_connection each; a request
 * that finds no free slot waits in a queue until one frees or its deadline passes.  Each
 * request has its own correlation id; an answer completes only the request whose id it
 * echoes.  The plugin does not check whose record came back: it hands the host what the
 * backend said, and the core verifies the identity (DESIGN §3 step 11).
 *
 * A request whose ticket the host gave up on (cancel) or that passed its deadline stays in
 * its connection's table until its answer arrives, so that the stream stays in step; the
 * answer is then still completed and the host drops it as a late completion (incident I1).
 * A frame that fails validation fails the request it names (or all of the connection's
 * when the header itself is bad) with MDG_ERR_BACKEND, and the connection is reset and
 * reconnected after a backoff.
 *
 * Threads: loop thread only (every callback of the SDK and of libuv).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <madoguchi/plugin.h>

#include "wire.h"

#define FJ_BACKOFF_MAX_MS 5000u
#define FJ_READ_CHUNK	  65536u

struct fj;
struct fj_conn;

enum fj_req_state {
	FJ_QUEUED,   /* waiting for a free slot */
	FJ_SENT,     /* on a connection, waiting for its answer */
	FJ_ABANDONED /* on a connection; the ticket was cancelled or timed out */
};

/* One fetch: owned by the plugin from fetch() until its answer, error or cancel. */
struct fj_req {
	struct fj_req *next, *prev; /* in the queue or in its connection's list */
	struct fj *fj;
	struct fj_conn *conn;
	enum fj_req_state state;
	uint64_t correlation_id;
	mdg_ticket ticket;
	mdg_timer *deadline;
	struct wire_request wire;
};

enum fj_conn_state {
	FJ_DOWN,       /* waiting for the backoff timer */
	FJ_CONNECTING, /* connect under way, timer = connect timeout */
	FJ_READY,
};

/* A socket of one connection attempt; freed in its close callback, so that it may outlive
 * the connection (and the instance) until libuv lets it go. */
struct fj_sock {
	uv_tcp_t tcp;
	uv_connect_t connect;
	struct fj_conn *conn; /* NULL once detached */
};

struct fj_conn {
	struct fj *fj;
	size_t index;
	enum fj_conn_state state;
	struct fj_sock *sock;
	mdg_timer *timer; /* connect timeout or backoff */
	uint64_t backoff_ms;
	struct wire_reader reader;
	struct fj_req *reqs; /* in flight here */
	uint32_t in_flight;
	int ever_connected;
};

struct fj {
	const mdg_host *host;
	mdg_plugin_ctx *ctx;
	uv_loop_t *loop;
	struct sockaddr_storage addr;
	int64_t pool_size;
	int64_t max_in_flight;
	uint64_t connect_timeout_ms;
	uint64_t backoff_ms;
	struct fj_conn *conns;
	struct fj_req *queue_head, *queue_tail;
	uint64_t next_correlation;
	mdg_counter *m_reconnects;
	mdg_counter *m_rejected;
	mdg_counter *m_drops;
};

static void conn_connect(struct fj_conn *c);
static void dispatch(struct fj *fj);

/* --- request bookkeeping ---------------------------------------------------------- */

static void queue_remove(struct fj *fj, struct fj_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		fj->queue_head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		fj->queue_tail = r->prev;
	r->next = r->prev = NULL;
}

static void queue_push(struct fj *fj, struct fj_req *r)
{
	r->prev = fj->queue_tail;
	r->next = NULL;
	if (fj->queue_tail != NULL)
		fj->queue_tail->next = r;
	else
		fj->queue_head = r;
	fj->queue_tail = r;
}

static void conn_remove(struct fj_conn *c, struct fj_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
	r->conn = NULL;
	c->in_flight--;
}

static void req_free(struct fj_req *r)
{
	if (r->deadline != NULL)
		r->fj->host->timer_stop(r->deadline);
	free(r);
}

/* Completes r's ticket (unless the ticket is already settled) and frees r; r must be out of
 * every list.  An abandoned request's answer is still completed: the host drops it and
 * counts it (late completion). */
static void req_finish(struct fj_req *r, int status, mdg_record *record, const char *reason)
{
	struct fj *fj = r->fj;
	fj->host->complete(fj->ctx, r->ticket, status, record, reason);
	req_free(r);
}

/* --- connections ------------------------------------------------------------------ */

static void sock_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Closes the connection's socket (if any) and detaches it. */
static void conn_close_sock(struct fj_conn *c)
{
	if (c->sock != NULL) {
		c->sock->conn = NULL;
		uv_close((uv_handle_t *)&c->sock->tcp, sock_closed);
		c->sock = NULL;
	}
	wire_reader_free(&c->reader);
	wire_reader_init(&c->reader);
}

static void conn_backoff_fired(void *arg)
{
	struct fj_conn *c = arg;
	c->timer = NULL;
	c->fj->host->counter_add(c->fj->m_reconnects, 1);
	conn_connect(c);
}

/* Fails everything in flight on c, closes it and schedules a reconnect. */
static void conn_reset(struct fj_conn *c, const char *reason)
{
	struct fj *fj = c->fj;
	if (c->timer != NULL) {
		fj->host->timer_stop(c->timer);
		c->timer = NULL;
	}
	conn_close_sock(c);
	if (c->state == FJ_READY)
		c->backoff_ms = fj->backoff_ms; /* it worked before: retry soon */
	c->state = FJ_DOWN;
	while (c->reqs != NULL) {
		struct fj_req *r = c->reqs;
		conn_remove(c, r);
		req_finish(r, MDG_ERR_BACKEND, NULL, reason);
	}
	c->timer = fj->host->timer_start(fj->ctx, c->backoff_ms, conn_backoff_fired, c);
	c->backoff_ms =
	    c->backoff_ms * 2 > FJ_BACKOFF_MAX_MS ? FJ_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void write_done(uv_write_t *req, int status)
{
	(void)status; /* a failed write shows up as a read error or EOF */
	free(req);
}

/* Sends r on c (which has a free slot). */
static int conn_send(struct fj_conn *c, struct fj_req *r)
{
	char *frame;
	size_t len;
	if (wire_request_encode(r->correlation_id, &r->wire, &frame, &len) != WIRE_OK)
		return MDG_ERR_INVALID;
	uv_write_t *w = malloc(sizeof *w + len);
	if (w == NULL) {
		free(frame);
		return MDG_ERR_NO_MEMORY;
	}
	char *data = (char *)(w + 1);
	memcpy(data, frame, len);
	free(frame);
	uv_buf_t buf = uv_buf_init(data, (unsigned)len);
	if (uv_write(w, (uv_stream_t *)&c->sock->tcp, &buf, 1, write_done) != 0) {
		free(w);
		return MDG_ERR_BACKEND;
	}
	r->conn = c;
	r->state = FJ_SENT;
	r->prev = NULL;
	r->next = c->reqs;
	if (c->reqs != NULL)
		c->reqs->prev = r;
	c->reqs = r;
	c->in_flight++;
	return MDG_OK;
}

/* Moves queued requests onto ready connections with free slots, least loaded first. */
static void dispatch(struct fj *fj)
{
	while (fj->queue_head != NULL) {
		struct fj_conn *best = NULL;
		for (int64_t i = 0; i < fj->pool_size; i++) {
			struct fj_conn *c = &fj->conns[i];
			if (c->state == FJ_READY && c->in_flight < (uint32_t)fj->max_in_flight &&
			    (best == NULL || c->in_flight < best->in_flight))
				best = c;
		}
		if (best == NULL)
			return;
		struct fj_req *r = fj->queue_head;
		queue_remove(fj, r);
		int rc = conn_send(best, r);
		if (rc != MDG_OK)
			req_finish(r, rc == MDG_ERR_INVALID ? MDG_ERR_INVALID : MDG_ERR_BACKEND,
				   NULL, "could not send the request to the backend");
	}
}

static struct fj_req *conn_find(struct fj_conn *c, uint64_t correlation_id)
{
	for (struct fj_req *r = c->reqs; r != NULL; r = r->next) {
		if (r->correlation_id == correlation_id)
			return r;
	}
	return NULL;
}

/* Turns a decoded record into a host record.  Returns NULL when the host refuses it. */
static mdg_record *build_record(struct fj *fj, const struct wire_record *w)
{
	const mdg_host *h = fj->host;
	mdg_record *rec = h->record_new(fj->ctx, w->certificate, w->resident_code, w->version,
					w->status, w->as_of);
	if (rec == NULL)
		return NULL;
	for (size_t i = 0; i < w->field_count; i++) {
		if (h->record_set(rec, w->fields[i].name, w->fields[i].value) != MDG_OK)
			goto fail;
	}
	for (size_t i = 0; i < w->list_count; i++) {
		const struct wire_list *ls = &w->lists[i];
		for (size_t j = 0; j < ls->item_count; j++) {
			mdg_item *item = h->record_add_item(rec, ls->name);
			if (item == NULL)
				goto fail;
			for (size_t k = 0; k < ls->items[j].field_count; k++) {
				const struct wire_field *f = &ls->items[j].fields[k];
				if (h->item_set(item, f->name, f->value) != MDG_OK)
					goto fail;
			}
		}
	}
	return rec;
fail:
	h->record_free(rec);
	return NULL;
}

/* Handles one response frame on c.  Returns 0, or -1 when the connection must be reset. */
static int conn_answer(struct fj_conn *c, const struct wire_header *hdr, const char *payload)
{
	struct fj *fj = c->fj;
	struct fj_req *r = conn_find(c, hdr->correlation_id);
	if (hdr->type != WIRE_RESPONSE || r == NULL) {
		fj->host->counter_add(fj->m_rejected, 1);
		return -1; /* out of step: nothing on this stream can be trusted */
	}
	conn_remove(c, r);
	struct wire_record *w = NULL;
	char err[160];
	int rc = wire_response_decode(payload, hdr->payload_len, &w, err, sizeof err);
	if (rc != WIRE_OK) {
		fj->host->counter_add(fj->m_rejected, 1);
		fj->host->log(fj->ctx, MDG_LOG_WARN, "frame_rejected", err);
		req_finish(r, MDG_ERR_BACKEND, NULL,
			   rc == WIRE_ERR_INCOMPLETE ? "incomplete record from the backend"
						     : "malformed frame from the backend");
		return rc == WIRE_ERR_INCOMPLETE ? 0 : -1;
	}
	if (w->result == WIRE_RESULT_NOT_FOUND) {
		req_finish(r, MDG_ERR_NOT_FOUND, NULL, "the backend holds no such record");
	} else if (w->result == WIRE_RESULT_ERROR) {
		req_finish(r, MDG_ERR_BACKEND, NULL, "the backend reported an error");
	} else {
		mdg_record *rec = build_record(fj, w);
		if (rec == NULL)
			req_finish(r, MDG_ERR_BACKEND, NULL, "the backend's record was refused");
		else
			req_finish(r, MDG_OK, rec, NULL);
	}
	wire_record_free(w);
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = malloc(FJ_READ_CHUNK);
	buf->len = buf->base != NULL ? FJ_READ_CHUNK : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct fj_sock *s = stream->data;
	struct fj_conn *c = s->conn;
	if (c == NULL || nread == 0) {
		free(buf->base);
		return;
	}
	struct fj *fj = c->fj;
	if (nread < 0) {
		free(buf->base);
		fj->host->counter_add(fj->m_drops, 1);
		conn_reset(c, "the backend closed the connection");
		dispatch(fj);
		return;
	}
	int rc = wire_reader_feed(&c->reader, buf->base, (size_t)nread);
	free(buf->base);
	if (rc != WIRE_OK) {
		conn_reset(c, "out of memory");
		dispatch(fj);
		return;
	}
	for (;;) {
		struct wire_header hdr;
		const char *payload;
		char err[160];
		rc = wire_reader_next(&c->reader, &hdr, &payload, err, sizeof err);
		if (rc == 0)
			break;
		if (rc < 0 || conn_answer(c, &hdr, payload) != 0) {
			if (rc < 0) {
				fj->host->counter_add(fj->m_rejected, 1);
				fj->host->log(fj->ctx, MDG_LOG_WARN, "frame_rejected", err);
			}
			conn_reset(c, "malformed frame from the backend");
			break;
		}
	}
	dispatch(fj);
}

static void conn_connect_timeout(void *arg)
{
	struct fj_conn *c = arg;
	c->timer = NULL;
	conn_reset(c, "could not connect to the backend");
}

static void on_connect(uv_connect_t *req, int status)
{
	struct fj_sock *s = req->data;
	struct fj_conn *c = s->conn;
	if (c == NULL)
		return; /* detached (reset or fini) */
	struct fj *fj = c->fj;
	if (c->timer != NULL) {
		fj->host->timer_stop(c->timer);
		c->timer = NULL;
	}
	if (status != 0 || uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0) {
		conn_reset(c, "could not connect to the backend");
		return;
	}
	c->state = FJ_READY;
	c->backoff_ms = fj->backoff_ms;
	if (!c->ever_connected)
		c->ever_connected = 1;
	dispatch(fj);
}

static void conn_connect(struct fj_conn *c)
{
	struct fj *fj = c->fj;
	struct fj_sock *s = calloc(1, sizeof *s);
	if (s == NULL) {
		conn_reset(c, "out of memory");
		return;
	}
	uv_tcp_init(fj->loop, &s->tcp);
	s->tcp.data = s;
	s->connect.data = s;
	s->conn = c;
	c->sock = s;
	c->state = FJ_CONNECTING;
	uv_tcp_nodelay(&s->tcp, 1);
	if (uv_tcp_connect(&s->connect, &s->tcp, (const struct sockaddr *)&fj->addr, on_connect) !=
	    0) {
		conn_reset(c, "could not connect to the backend");
		return;
	}
	c->timer = fj->host->timer_start(fj->ctx, fj->connect_timeout_ms, conn_connect_timeout, c);
}

/* --- SDK callbacks ----------------------------------------------------------------- */

static void fj_fini(void *instance)
{
	struct fj *fj = instance;
	while (fj->queue_head != NULL) {
		struct fj_req *r = fj->queue_head;
		queue_remove(fj, r);
		req_free(r);
	}
	for (int64_t i = 0; i < fj->pool_size && fj->conns != NULL; i++) {
		struct fj_conn *c = &fj->conns[i];
		if (c->timer != NULL)
			fj->host->timer_stop(c->timer);
		conn_close_sock(c);
		wire_reader_free(&c->reader);
		while (c->reqs != NULL) {
			struct fj_req *r = c->reqs;
			conn_remove(c, r);
			req_free(r);
		}
	}
	free(fj->conns);
	free(fj);
}

/* Parses "a.b.c.d:port" or "[v6]:port" (numeric only: resolving a name would block). */
static int parse_endpoint(const char *s, struct sockaddr_storage *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof host)
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || colon[1] == '\0' || port < 1 || port > 65535)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof *out);
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 3 || host[n - 1] != ']')
			return -1;
		host[n - 1] = '\0';
		return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0 : -1;
	}
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : -1;
}

static int fj_init(const mdg_host *host, mdg_plugin_ctx *ctx, void **instance)
{
	struct fj *fj = calloc(1, sizeof *fj);
	if (fj == NULL)
		return MDG_ERR_NO_MEMORY;
	fj->host = host;
	fj->ctx = ctx;
	fj->loop = host->loop(ctx);
	const char *endpoint = NULL;
	if (host->config_string(ctx, "endpoint", 1, NULL, &endpoint) != MDG_OK ||
	    host->config_int(ctx, "pool_size", 0, 1, 64, 4, &fj->pool_size) == MDG_ERR_INVALID ||
	    host->config_int(ctx, "max_in_flight_per_connection", 0, 1, 1024, 16,
			     &fj->max_in_flight) == MDG_ERR_INVALID ||
	    host->config_duration_ms(ctx, "connect_timeout", 0, 1000, &fj->connect_timeout_ms) ==
		MDG_ERR_INVALID ||
	    host->config_duration_ms(ctx, "reconnect_backoff", 0, 100, &fj->backoff_ms) ==
		MDG_ERR_INVALID) {
		free(fj);
		return MDG_ERR_INVALID;
	}
	if (parse_endpoint(endpoint, &fj->addr) != 0) {
		free(fj);
		return host->config_error(ctx, "endpoint",
					  "expected a numeric address and port, e.g. 10.0.0.5:7001 "
					  "or [fd00::5]:7001");
	}
	if (fj->connect_timeout_ms == 0)
		fj->connect_timeout_ms = 1;
	if (fj->backoff_ms == 0)
		fj->backoff_ms = 1;
	fj->conns = calloc((size_t)fj->pool_size, sizeof *fj->conns);
	if (fj->conns == NULL) {
		free(fj);
		return MDG_ERR_NO_MEMORY;
	}
	fj->m_reconnects = host->counter(ctx, "fujitsu_like_reconnects",
					 "Reconnection attempts to the vendor backend.", "");
	fj->m_rejected =
	    host->counter(ctx, "fujitsu_like_frames_rejected",
			  "Frames from the vendor backend that failed validation.", "");
	fj->m_drops = host->counter(ctx, "fujitsu_like_connection_drops",
				    "Connections to the vendor backend lost.", "");
	for (int64_t i = 0; i < fj->pool_size; i++) {
		struct fj_conn *c = &fj->conns[i];
		c->fj = fj;
		c->index = (size_t)i;
		c->backoff_ms = fj->backoff_ms;
		wire_reader_init(&c->reader);
		conn_connect(c);
	}
	*instance = fj;
	return MDG_OK;
}

static void req_deadline(void *arg)
{
	struct fj_req *r = arg;
	r->deadline = NULL;
	if (r->state == FJ_QUEUED) {
		queue_remove(r->fj, r);
		req_finish(r, MDG_ERR_TIMEOUT, NULL, "no connection to the backend in time");
		return;
	}
	/* On a connection: settle the ticket now, keep the slot until the answer comes. */
	r->state = FJ_ABANDONED;
	r->fj->host->complete(r->fj->ctx, r->ticket, MDG_ERR_TIMEOUT, NULL,
			      "the backend did not answer in time");
}

static int fj_fetch(void *instance, const struct mdg_fetch *fetch)
{
	struct fj *fj = instance;
	uint64_t now = fj->host->now_ms(fj->ctx);
	if (fetch->deadline_ms <= now)
		return MDG_ERR_TIMEOUT;
	struct fj_req *r = calloc(1, sizeof *r);
	if (r == NULL)
		return MDG_ERR_NO_MEMORY;
	r->fj = fj;
	r->ticket = fetch->ticket;
	r->state = FJ_QUEUED;
	if (snprintf(r->wire.certificate, sizeof r->wire.certificate, "%s", fetch->certificate) >=
		(int)sizeof r->wire.certificate ||
	    snprintf(r->wire.municipality, sizeof r->wire.municipality, "%s",
		     fetch->municipality) >= (int)sizeof r->wire.municipality ||
	    snprintf(r->wire.resident_code, sizeof r->wire.resident_code, "%s",
		     fetch->resident_code) >= (int)sizeof r->wire.resident_code) {
		free(r);
		return MDG_ERR_INVALID;
	}
	r->wire.options = fetch->options;
	fj->next_correlation = fj->next_correlation % WIRE_MAX_CORRELATION + 1;
	r->correlation_id = fj->next_correlation;
	/* Validate now, so that a request the wire cannot carry fails at once. */
	char *probe;
	size_t probe_len;
	if (wire_request_encode(r->correlation_id, &r->wire, &probe, &probe_len) != WIRE_OK) {
		free(r);
		return MDG_ERR_INVALID;
	}
	free(probe);
	r->deadline = fj->host->timer_start(fj->ctx, fetch->deadline_ms - now, req_deadline, r);
	if (r->deadline == NULL) {
		free(r);
		return MDG_ERR_NO_MEMORY;
	}
	queue_push(fj, r);
	dispatch(fj);
	return MDG_OK;
}

static void fj_cancel(void *instance, mdg_ticket ticket)
{
	struct fj *fj = instance;
	for (struct fj_req *r = fj->queue_head; r != NULL; r = r->next) {
		if (memcmp(r->ticket.bytes, ticket.bytes, sizeof ticket.bytes) == 0) {
			queue_remove(fj, r);
			req_free(r);
			return;
		}
	}
	for (int64_t i = 0; i < fj->pool_size; i++) {
		for (struct fj_req *r = fj->conns[i].reqs; r != NULL; r = r->next) {
			if (memcmp(r->ticket.bytes, ticket.bytes, sizeof ticket.bytes) == 0) {
				/* Stop waiting; the slot stays until the answer keeps the stream
				 * in step (or the connection goes). */
				r->state = FJ_ABANDONED;
				if (r->deadline != NULL) {
					fj->host->timer_stop(r->deadline);
					r->deadline = NULL;
				}
				return;
			}
		}
	}
}

static int fj_health(void *instance, char *detail, size_t detail_size)
{
	struct fj *fj = instance;
	int64_t ready = 0;
	uint32_t in_flight = 0;
	for (int64_t i = 0; i < fj->pool_size; i++) {
		if (fj->conns[i].state == FJ_READY)
			ready++;
		in_flight += fj->conns[i].in_flight;
	}
	snprintf(detail, detail_size, "%lld of %lld connections up, %u requests in flight",
		 (long long)ready, (long long)fj->pool_size, in_flight);
	return ready > 0 ? MDG_OK : MDG_ERR_UNAVAILABLE;
}

static const char *const fj_certificates[] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment", NULL};

static const struct mdg_plugin_descriptor fj_descriptor = {
    .abi_major = MDG_PLUGIN_ABI_MAJOR,
    .abi_minor = MDG_PLUGIN_ABI_MINOR,
    .size = sizeof(struct mdg_plugin_descriptor),
    .flags = 0,
    .name = "fujitsu-like",
    .version = "1.0.0",
    .vendor = "Fujitsu-like Systems (simulated)",
    .certificates = fj_certificates,
    .init = fj_init,
    .fini = fj_fini,
    .fetch = fj_fetch,
    .cancel = fj_cancel,
    .health = fj_health,
};

const struct mdg_plugin_descriptor *mdg_plugin_entry(void)
{
	return &fj_descriptor;
}
