/*
 * conn.c: accepting connections, TLS over libuv, HTTP exchanges with limits and timeouts.
 *
 * Data path: libuv reads ciphertext into one loop-wide buffer; it is written into the
 * connection's read BIO; SSL_read() turns it into plaintext in c->in; the HTTP session parses
 * c->in one request at a time.  Answers go the other way: SSL_write() into the write BIO, whose
 * bytes are written to the socket (uv_try_write first, a queued uv_write for the rest).  A
 * plaintext listener (admin, metrics) skips the TLS steps.
 *
 * One timer per connection enforces, in turn: the header timeout (TLS handshake plus request
 * line and headers; counted from the first byte, never extended by a trickle, so a slow-loris
 * client is cut off), the body timeout, the idle timeout between requests, and the same idle
 * timeout as a send timeout while answers wait for a client that does not read.
 *
 * Invariants: at most one request of a connection is being answered (c->busy); a connection
 * is freed only in its close callback, after both its handles have closed; the listener's
 * list holds exactly the connections not yet closing.  Loop thread only.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "conn.h"
#include "log.h"
#include "server.h"
#include "tls.h"

/* Plaintext waiting for the parser beyond this stops reading until it is consumed. */
#define CONN_INPUT_HIGH_WATER (256 * 1024)
/* Answers queued for a client that does not read beyond this stop the parsing of its next
 * pipelined requests until the queue drains: memory per connection stays bounded. */
#define CONN_OUTPUT_HIGH_WATER (64 * 1024)
/* After the last answer of a closing connection, unread input is discarded this long. */
#define CONN_LINGER_MS 2000

enum conn_timer_phase {
	CONN_TIMER_NONE = 0,
	CONN_TIMER_HEADER,
	CONN_TIMER_BODY,
	CONN_TIMER_IDLE,
	CONN_TIMER_SEND,
	CONN_TIMER_LINGER,
};

struct conn {
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
		uv_stream_t stream;
		uv_handle_t handle;
	} h;
	uv_timer_t timer;
	struct listener *listener;
	struct conn *prev;
	struct conn *next;
	SSL *ssl;     /* NULL on plaintext listeners */
	BIO *net_in;  /* ciphertext from the socket, read by OpenSSL */
	BIO *net_out; /* ciphertext from OpenSSL, to the socket */
	struct http_session http;
	struct http_buf in; /* plaintext not yet parsed, from in_off */
	size_t in_off;
	struct http_buf out; /* scratch for serialising one answer */
	enum conn_timer_phase timer_phase;
	uint32_t writes_pending;   /* queued uv_write requests */
	size_t out_queued;	   /* bytes in them */
	uint64_t request_begin_ns; /* uv_hrtime() at the current request's first byte */
	char request_id[33];	   /* of the current request, from its first byte */
	int handles_open;
	bool handshake_done;
	bool busy;	 /* a request is being answered */
	bool in_process; /* inside conn_process_input() */
	bool reading;
	bool close_after_write; /* last answer sent: close once written */
	bool lingering;
	bool closing;
	bool peer_eof;
	struct conn_pending *pending; /* the current request's deferred answer, or NULL */
	bool deferred;		      /* the current request's handler called conn_defer() */
};

struct conn_pending {
	struct conn *conn; /* NULL once the connection closed */
	const char *route; /* for the access log */
	conn_gone_fn gone;
	void *arg;
};

/* A queued write and the bytes it owns. */
struct conn_write {
	uv_write_t req;
	struct conn *conn;
	size_t len;
	char data[];
};

static void conn_close(struct conn *c);
static void conn_process_input(struct conn *c);
static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

struct listener *conn_listener(const struct conn *c)
{
	return c->listener;
}

/* --- small helpers ------------------------------------------------------------------------ */

/* Current time as an IMF-fixdate, cached per second (loop thread only). */
static const char *conn_http_date(void)
{
	static char date[40];
	static time_t cached;
	time_t now = time(NULL);
	if (now != cached) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		cached = now;
	}
	return date;
}

/*
 * Fills id with a request id for logs and problem answers: a random per-process prefix and a
 * counter, 32 hex digits.  Unique, cheap, and says nothing about the client.
 */
static void conn_request_id(char id[33])
{
	static uint64_t prefix, counter;
	if (prefix == 0 && RAND_bytes((unsigned char *)&prefix, sizeof prefix) != 1)
		prefix = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	snprintf(id, 33, "%016llx%016llx", (unsigned long long)prefix,
		 (unsigned long long)++counter);
}

static void conn_timer_cb(uv_timer_t *t);

/*
 * Arms the connection's timer for a phase, unless it already runs for that phase; the idle
 * timer always starts again, since idle time counts from the last answer (a request that
 * arrives in one read never changes the phase, so "already running" would mean "running since
 * the first answer" and cut a busy connection off).
 */
static void conn_timer_set(struct conn *c, enum conn_timer_phase phase)
{
	if (c->closing || (c->timer_phase == phase && phase != CONN_TIMER_IDLE))
		return;
	c->timer_phase = phase;
	const struct config_limits *lim = &c->listener->limits;
	uint64_t ms = 0;
	switch (phase) {
	case CONN_TIMER_NONE:
		uv_timer_stop(&c->timer);
		return;
	case CONN_TIMER_HEADER:
		ms = lim->header_timeout_ms;
		break;
	case CONN_TIMER_BODY:
		ms = lim->body_timeout_ms;
		break;
	case CONN_TIMER_IDLE:
	case CONN_TIMER_SEND:
		ms = lim->idle_timeout_ms;
		break;
	case CONN_TIMER_LINGER:
		ms = CONN_LINGER_MS;
		break;
	}
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* Counts an answer by status in the listener's requests_total series. */
static void conn_count_status(struct listener *l, int status)
{
	if (status < 100 || status > 599)
		status = 500;
	if (l->m_requests[status] == NULL) {
		static struct metric_family *family;
		if (family == NULL)
			family = metrics_family(
			    "madoguchi_http_requests_total",
			    "HTTP requests answered, by listener and status code.", METRIC_COUNTER);
		char labels[64];
		snprintf(labels, sizeof labels, "listener=\"%s\",code=\"%d\"", l->name, status);
		l->m_requests[status] = metrics_series(family, labels);
	}
	metrics_inc(l->m_requests[status]);
}

/* --- writing ------------------------------------------------------------------------------ */

static void conn_finish(struct conn *c);

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn_write *w = (struct conn_write *)req;
	struct conn *c = w->conn;
	c->out_queued -= w->len;
	free(w);
	c->writes_pending--;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->writes_pending == 0 && c->close_after_write) {
		conn_finish(c);
		return;
	}
	if (!c->busy && c->out_queued < CONN_OUTPUT_HIGH_WATER && c->in_off < c->in.len) {
		conn_process_input(c); /* pipelined requests held back by the queue */
		return;
	}
	if (c->writes_pending == 0) {
		if (c->peer_eof && !c->busy) {
			conn_close(c);
			return;
		}
		if (!c->busy)
			conn_timer_set(c, c->http.phase == HTTP_PHASE_IDLE ? CONN_TIMER_IDLE
									   : CONN_TIMER_HEADER);
	}
}

/* Writes bytes to the socket: directly when nothing is queued, else after what is. */
static void conn_write_raw(struct conn *c, const char *data, size_t len)
{
	if (c->closing || len == 0)
		return;
	if (c->writes_pending == 0) {
		uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
		int n = uv_try_write(&c->h.stream, &b, 1);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if (n != UV_EAGAIN && n != UV_ENOSYS) {
			conn_close(c);
			return;
		}
		if (len == 0)
			return;
	}
	struct conn_write *w = malloc(sizeof *w + len);
	if (w == NULL) {
		conn_close(c);
		return;
	}
	w->conn = c;
	w->len = len;
	memcpy(w->data, data, len);
	uv_buf_t b = uv_buf_init(w->data, (unsigned int)len);
	if (uv_write(&w->req, &c->h.stream, &b, 1, conn_write_cb) != 0) {
		free(w);
		conn_close(c);
		return;
	}
	c->writes_pending++;
	c->out_queued += len;
	conn_timer_set(c, CONN_TIMER_SEND);
}

/*
 * Moves whatever OpenSSL produced (handshake, records, alerts) to the socket: all of it in one
 * write from the memory BIO's own buffer, then empties the BIO.  A 201 answer is five 16 KB
 * records; reading them out 16 KB at a time cost a copy and a write(2) each on the loop thread.
 */
static void conn_flush_tls(struct conn *c)
{
	char *pending = NULL;
	long n = BIO_get_mem_data(c->net_out, &pending);
	if (n <= 0 || pending == NULL)
		return;
	conn_write_raw(c, pending, (size_t)n); /* copies what the socket does not take now */
	(void)BIO_reset(c->net_out);
}

/* Sends plaintext, through TLS when the listener has it. */
static void conn_send(struct conn *c, const char *data, size_t len)
{
	if (c->ssl == NULL) {
		conn_write_raw(c, data, len);
		return;
	}
	/* A memory BIO accepts everything, so SSL_write completes in one call. */
	if (SSL_write(c->ssl, data, (int)len) <= 0) {
		ERR_clear_error();
		conn_close(c);
		return;
	}
	conn_flush_tls(c);
}

/* --- closing ------------------------------------------------------------------------------ */

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles_open > 0)
		return;
	struct server *srv = c->listener->server;
	http_session_free(&c->http);
	http_buf_free(&c->in);
	http_buf_free(&c->out);
	SSL_free(c->ssl); /* frees both BIOs */
	free(c);
	server_connection_closed(srv);
}

/* Unlinks c from its listener and closes its handles; freed in conn_handle_closed(). */
static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->ssl != NULL && c->handshake_done && c->writes_pending == 0) {
		/* Best effort close_notify, one non-blocking write; the socket closes right after
		 * either way.  Records the socket did not take (a write that failed mid-flush) are
		 * dropped first, so that only the alert goes. */
		(void)BIO_reset(c->net_out);
		SSL_shutdown(c->ssl);
		char buf[512];
		int n = BIO_read(c->net_out, buf, sizeof buf);
		if (n > 0) {
			uv_buf_t b = uv_buf_init(buf, (unsigned int)n);
			(void)uv_try_write(&c->h.stream, &b, 1);
		}
		ERR_clear_error();
	}
	struct listener *l = c->listener;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	l->connections--;
	metrics_add(l->m_open, -1);
	if (c->pending != NULL) {
		struct conn_pending *p = c->pending;
		c->pending = NULL;
		p->conn = NULL;
		if (p->gone != NULL)
			p->gone(p->arg);
	}
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close(&c->h.handle, conn_handle_closed);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;
	free(req);
	if (status < 0 || c->peer_eof)
		conn_close(c);
}

/*
 * Ends a connection whose last answer is queued: half-close our side, keep discarding what
 * the client still sends for a moment (so it reads our answer instead of a reset), then close.
 */
static void conn_finish(struct conn *c)
{
	if (c->closing || c->lingering)
		return;
	if (c->writes_pending > 0) {
		c->close_after_write = true;
		return;
	}
	if (c->ssl != NULL && c->handshake_done) {
		SSL_shutdown(c->ssl);
		conn_flush_tls(c);
		ERR_clear_error();
	}
	uv_shutdown_t *req = malloc(sizeof *req);
	if (req == NULL || c->closing) {
		free(req);
		conn_close(c);
		return;
	}
	req->data = c;
	if (uv_shutdown(req, &c->h.stream, conn_shutdown_cb) != 0) {
		free(req);
		conn_close(c);
		return;
	}
	c->lingering = true;
	if (!c->reading && !c->peer_eof)
		c->reading = uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) == 0;
	conn_timer_set(c, CONN_TIMER_LINGER);
}

/* --- answering ---------------------------------------------------------------------------- */

static void conn_access_log(struct conn *c, const char *method, const struct http_response *resp)
{
	struct listener *l = c->listener;
	if (!l->server->cfg->log.access || !log_enabled(LOG_INFO))
		return;
	uint64_t us = (uv_hrtime() - c->request_begin_ns) / 1000;
	/*
	 * Formatted by hand: this runs for every request, and every value is one of our own
	 * tokens (listener and route names from the route table, a method name from the parser's
	 * table, a hex id, a problem code), so nothing needs escaping.  The route, not the raw
	 * target, is logged: a target is client-chosen text and could carry personal data.
	 */
	char fields[512];
	int n =
	    snprintf(fields, sizeof fields,
		     "\"listener\":\"%s\",\"request_id\":\"%s\",\"method\":\"%s\","
		     "\"route\":\"%s\",\"status\":%d,\"duration_ms\":%llu.%03u%s%s%s",
		     l->name, c->request_id, method, resp->route ? resp->route : "unmatched",
		     resp->status, (unsigned long long)(us / 1000), (unsigned)(us % 1000),
		     resp->problem_code ? ",\"code\":\"" : "",
		     resp->problem_code ? resp->problem_code : "", resp->problem_code ? "\"" : "");
	if (n > 0 && (size_t)n < sizeof fields)
		log_event_preformatted(LOG_INFO, "access", fields);
}

/* Serialises and sends resp for the current request, then readies the next one. */
static void conn_send_answer(struct conn *c, struct http_response *resp)
{
	struct listener *l = c->listener;
	struct http_request *req = http_session_request(&c->http);
	bool keep_alive = req->keep_alive && !resp->close && l->open && !c->lingering &&
			  req->seq < l->limits.max_requests_per_connection;

	c->out.len = 0;
	if (http_response_serialize(resp, keep_alive, conn_http_date(), &c->out) != 0) {
		conn_close(c);
		return;
	}
	conn_count_status(l, resp->status);
	conn_access_log(c, req->method_name, resp);
	conn_send(c, c->out.data, c->out.len);
	if (c->out.cap > 64 * 1024)
		http_buf_free(&c->out); /* do not keep a large answer's buffer around */
	http_session_next(&c->http);
	c->busy = false;
	if (c->closing)
		return;
	if (!keep_alive) {
		conn_finish(c);
		return;
	}
	if (c->writes_pending == 0)
		conn_timer_set(c, CONN_TIMER_IDLE);
	if (!c->in_process)
		conn_process_input(c);
}

bool route_matches(const char *pattern, const char *path)
{
	while (*pattern != '\0' && *path != '\0') {
		if (*pattern == '{') {
			const char *close = strchr(pattern, '}');
			size_t n = strcspn(path, "/");
			if (close == NULL || n == 0 || n > ROUTE_PARAM_MAX ||
			    strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					 "0123456789._-") < n)
				return false;
			pattern = close + 1;
			path += n;
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	return *pattern == '\0' && *path == '\0';
}

bool route_param(const char *pattern, const char *path, char *out, size_t size)
{
	const char *open = strchr(pattern, '{');
	if (open == NULL || !route_matches(pattern, path) || size == 0)
		return false;
	const char *p = path + (open - pattern);
	size_t n = strcspn(p, "/");
	if (n >= size)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

/* Looks up the route for req and lets it answer. */
static void conn_dispatch(struct conn *c, struct http_request *req)
{
	struct listener *l = c->listener;
	struct http_response resp;
	http_response_init(&resp);
	memcpy(req->id, c->request_id, sizeof req->id);
	c->busy = true;

	const struct route *found = NULL;
	bool path_known = false;
	for (size_t i = 0; i < l->route_count; i++) {
		if (!route_matches(l->routes[i].path, req->path))
			continue;
		path_known = true;
		if (l->routes[i].method == req->method) {
			found = &l->routes[i];
			break;
		}
	}
	if (found != NULL) {
		resp.route = found->path;
		c->deferred = false;
		found->handler(c, req, &resp);
		if (c->deferred) { /* answered through conn_answer(), later or already */
			c->deferred = false;
			http_response_free(&resp);
			return;
		}
	} else if (path_known) {
		for (size_t i = 0; i < l->route_count; i++) {
			if (route_matches(l->routes[i].path, req->path)) {
				resp.route = l->routes[i].path;
				http_response_header(&resp, "Allow",
						     http_method_str(l->routes[i].method));
			}
		}
		http_response_problem(&resp, 405, "METHOD_NOT_ALLOWED", "Method not allowed",
				      "this resource does not accept that method", req->id);
	} else {
		http_response_problem(&resp, 404, "NOT_FOUND", "Not found",
				      "no such resource on this listener", req->id);
	}
	conn_send_answer(c, &resp);
	http_response_free(&resp);
}

struct conn_pending *conn_defer(struct conn *c, const char *route, conn_gone_fn gone, void *arg)
{
	if (c->pending != NULL || !c->busy)
		abort(); /* one deferred answer per request, only inside its handler */
	struct conn_pending *p = malloc(sizeof *p);
	if (p == NULL)
		return NULL;
	*p = (struct conn_pending){.conn = c, .route = route, .gone = gone, .arg = arg};
	c->pending = p;
	c->deferred = true;
	return p;
}

void conn_answer(struct conn_pending *p, struct http_response *resp)
{
	struct conn *c = p->conn;
	const char *route = p->route;
	free(p);
	if (c == NULL)
		return;
	c->pending = NULL;
	if (resp == NULL) {
		/* Released without an answer: the request cannot be answered any more. */
		conn_close(c);
		return;
	}
	if (resp->route == NULL)
		resp->route = route;
	conn_send_answer(c, resp);
}

bool conn_pending_alive(const struct conn_pending *p)
{
	return p->conn != NULL;
}

/* Answers a request that could not be parsed (or broke a limit) and closes. */
static void conn_reject(struct conn *c, int status, const char *detail)
{
	struct http_response resp;
	http_response_init(&resp);
	const char *code = status == 413   ? "BODY_TOO_LARGE"
			   : status == 431 ? "HEADERS_TOO_LARGE"
			   : status == 408 ? "REQUEST_TIMEOUT"
			   : status == 503 ? "OVERLOADED"
					   : "INVALID_REQUEST";
	http_response_problem(&resp, status, code, http_status_reason(status), detail,
			      c->request_id);
	resp.close = true;
	c->out.len = 0;
	if (http_response_serialize(&resp, false, conn_http_date(), &c->out) == 0) {
		conn_count_status(c->listener, status);
		/* The method is known once the request line is through. */
		const char *method = c->http.phase == HTTP_PHASE_BODY
					 ? http_method_str((enum http_method)c->http.parser.method)
					 : "-";
		conn_access_log(c, method, &resp);
		conn_send(c, c->out.data, c->out.len);
	}
	http_response_free(&resp);
	c->busy = true; /* nothing more is parsed on this connection */
	conn_finish(c);
}

/* --- reading ------------------------------------------------------------------------------ */

/* Parses buffered plaintext and dispatches complete requests, one at a time. */
static void conn_process_input(struct conn *c)
{
	c->in_process = true;
	while (!c->closing && !c->busy && !c->lingering && c->in_off < c->in.len &&
	       c->out_queued < CONN_OUTPUT_HIGH_WATER) {
		enum http_phase before = c->http.phase;
		size_t used = 0;
		enum http_feed_result r = http_session_feed(&c->http, c->in.data + c->in_off,
							    c->in.len - c->in_off, &used);
		c->in_off += used;
		if (before == HTTP_PHASE_IDLE &&
		    (c->http.phase != HTTP_PHASE_IDLE || r == HTTP_FEED_ERROR)) {
			c->request_begin_ns = uv_hrtime();
			conn_request_id(c->request_id);
		}
		if (r == HTTP_FEED_ERROR) {
			conn_reject(c, c->http.error_status, c->http.error_detail);
			break;
		}
		if (r == HTTP_FEED_REQUEST) {
			conn_dispatch(c, http_session_request(&c->http));
			continue;
		}
		if (c->http.phase == HTTP_PHASE_HEADERS)
			conn_timer_set(c, CONN_TIMER_HEADER);
		else if (c->http.phase == HTTP_PHASE_BODY)
			conn_timer_set(c, CONN_TIMER_BODY);
		break;
	}
	c->in_process = false;
	if (c->closing)
		return;
	/* Keep only the unparsed tail. */
	if (c->in_off == c->in.len) {
		c->in.len = c->in_off = 0;
	} else if (c->in_off > 0) {
		memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
		c->in.len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in.cap > CONN_INPUT_HIGH_WATER && c->in.len == 0)
		http_buf_free(&c->in);
	if (c->peer_eof && !c->busy && c->writes_pending == 0) {
		conn_close(c);
		return;
	}
	/* Back-pressure: a client that pipelines faster than we answer waits in the kernel. */
	bool want = c->in.len < CONN_INPUT_HIGH_WATER && !c->peer_eof;
	if (want && !c->reading)
		c->reading = uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) == 0;
	else if (!want && c->reading) {
		uv_read_stop(&c->h.stream);
		c->reading = false;
	}
}

/* Decrypts what the read BIO holds into c->in.  Returns 0, or -1 when c was closed. */
static int conn_tls_input(struct conn *c)
{
	struct listener *l = c->listener;
	if (!c->handshake_done) {
		int rc = SSL_do_handshake(c->ssl);
		if (rc != 1) {
			int err = SSL_get_error(c->ssl, rc);
			conn_flush_tls(c); /* our part of the handshake, or an alert */
			if (err == SSL_ERROR_WANT_READ || c->closing)
				return c->closing ? -1 : 0;
			metrics_inc(l->m_tls_failures);
			if (log_enabled(LOG_DEBUG)) {
				char msg[512] = "handshake failed";
				tls_error_string(msg, sizeof msg);
				log_event(LOG_DEBUG, "tls_handshake_failed", "{s:s, s:s}",
					  "listener", l->name, "reason", msg);
			}
			ERR_clear_error();
			conn_close(c);
			return -1;
		}
		c->handshake_done = true;
		conn_flush_tls(c);
		if (c->closing)
			return -1;
	}
	for (;;) {
		if (http_buf_reserve(&c->in, 16384) != 0) {
			conn_close(c);
			return -1;
		}
		int n = SSL_read(c->ssl, c->in.data + c->in.len, (int)(c->in.cap - c->in.len - 1));
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		int err = SSL_get_error(c->ssl, n);
		conn_flush_tls(c); /* post-handshake messages (tickets, key updates) */
		if (c->closing)
			return -1;
		if (err == SSL_ERROR_WANT_READ)
			return 0;
		if (err == SSL_ERROR_ZERO_RETURN) {
			c->peer_eof = true;
			return 0;
		}
		ERR_clear_error();
		conn_close(c);
		return -1;
	}
}

/* One read buffer for the whole loop: data is copied out before the callback returns. */
static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char loop_read_buffer[65536];
	buf->base = loop_read_buffer;
	buf->len = sizeof loop_read_buffer;
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = stream->data;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		/* EOF or error: answer what is being answered, then close. */
		uv_read_stop(stream);
		c->reading = false;
		c->peer_eof = true;
		if (c->lingering || (!c->busy && c->writes_pending == 0) || nread != UV_EOF)
			conn_close(c);
		return;
	}
	if (c->lingering)
		return; /* discarding after our last answer */
	if (c->ssl != NULL) {
		if (BIO_write(c->net_in, buf->base, (int)nread) != (int)nread) {
			conn_close(c);
			return;
		}
		if (conn_tls_input(c) != 0)
			return;
	} else if (http_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
		conn_close(c);
		return;
	}
	conn_process_input(c);
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	enum conn_timer_phase phase = c->timer_phase;
	c->timer_phase = CONN_TIMER_NONE;
	/* The header or idle timer is left running while a request is answered (one timer
	 * operation less per request); once the request is in, neither applies: the answer's
	 * own deadline bounds it. */
	if (c->busy &&
	    (phase == CONN_TIMER_HEADER || phase == CONN_TIMER_BODY || phase == CONN_TIMER_IDLE))
		return;
	if (phase == CONN_TIMER_LINGER || phase == CONN_TIMER_IDLE || phase == CONN_TIMER_SEND) {
		conn_close(c);
		return;
	}
	static const char *const names[] = {"none", "header", "body", "idle", "send", "linger"};
	metrics_inc(c->listener->m_timeouts);
	log_event(LOG_INFO, "request_timeout", "{s:s, s:s}", "listener", c->listener->name, "phase",
		  names[phase]);
	/* A request that started gets a 408; a silent or half-handshaken client just a close. */
	if ((c->ssl == NULL || c->handshake_done) && c->http.phase != HTTP_PHASE_IDLE && !c->busy)
		conn_reject(c, 408, "the request was not received in time");
	else
		conn_close(c);
}

/* --- accepting ---------------------------------------------------------------------------- */

static void listener_connection_cb(uv_stream_t *server_stream, int status)
{
	struct listener *l = server_stream->data;
	if (status < 0) {
		log_event(LOG_WARN, "accept_failed", "{s:s, s:s}", "listener", l->name, "error",
			  uv_strerror(status));
		return;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return;
	uv_loop_t *loop = l->server->loop;
	int rc = l->is_unix ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
	if (rc != 0) {
		free(c);
		return;
	}
	uv_timer_init(loop, &c->timer);
	c->h.handle.data = c;
	c->timer.data = c;
	c->listener = l;
	c->handles_open = 2;
	http_session_init(&c->http, &l->limits);

	/* Link first, so conn_close() can always unlink. */
	c->next = l->conns;
	if (l->conns != NULL)
		l->conns->prev = c;
	l->conns = c;
	l->connections++;
	metrics_inc(l->m_open);

	if (uv_accept(server_stream, &c->h.stream) != 0) {
		conn_close(c);
		return;
	}
	if (l->connections > l->limits.max_connections || !l->open) {
		metrics_inc(l->m_rejected);
		conn_close(c);
		return;
	}
	metrics_inc(l->m_accepted);
	if (!l->is_unix) {
		uv_tcp_nodelay(&c->h.tcp, 1);
	}
	if (l->ssl_ctx != NULL) {
		c->ssl = SSL_new(l->ssl_ctx);
		c->net_in = BIO_new(BIO_s_mem());
		c->net_out = BIO_new(BIO_s_mem());
		if (c->ssl == NULL || c->net_in == NULL || c->net_out == NULL) {
			if (c->ssl == NULL) {
				BIO_free(c->net_in);
				BIO_free(c->net_out);
			} else {
				SSL_set_bio(c->ssl, c->net_in, c->net_out);
			}
			conn_close(c);
			return;
		}
		BIO_set_mem_eof_return(c->net_in, -1);
		SSL_set_bio(c->ssl, c->net_in, c->net_out);
		SSL_set_accept_state(c->ssl);
	}
	conn_timer_set(c, CONN_TIMER_HEADER);
	c->reading = uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) == 0;
	if (!c->reading)
		conn_close(c);
}

void listener_init_metrics(struct listener *l)
{
	char labels[64];
	snprintf(labels, sizeof labels, "listener=\"%s\"", l->name);
	l->m_accepted =
	    metrics_series(metrics_family("madoguchi_connections_accepted_total",
					  "Connections accepted, by listener.", METRIC_COUNTER),
			   labels);
	l->m_rejected = metrics_series(
	    metrics_family("madoguchi_connections_rejected_total",
			   "Connections closed at accept because the listener was full.",
			   METRIC_COUNTER),
	    labels);
	l->m_open =
	    metrics_series(metrics_family("madoguchi_connections_open",
					  "Connections open now, by listener.", METRIC_GAUGE),
			   labels);
	l->m_timeouts = metrics_series(
	    metrics_family("madoguchi_request_timeouts_total",
			   "Connections cut off by the header or body timeout.", METRIC_COUNTER),
	    labels);
	if (l->ssl_ctx != NULL)
		l->m_tls_failures = metrics_series(
		    metrics_family("madoguchi_tls_handshake_failures_total",
				   "TLS handshakes that failed (bad or missing client "
				   "certificate, protocol, cipher).",
				   METRIC_COUNTER),
		    labels);
}

int listener_open_tcp(struct listener *l, uv_loop_t *loop, const char *address, uint16_t port,
		      char *msg, size_t msg_size)
{
	struct sockaddr_storage sa;
	bool v6 = strchr(address, ':') != NULL;
	int rc = v6 ? uv_ip6_addr(address, port, (struct sockaddr_in6 *)&sa)
		    : uv_ip4_addr(address, port, (struct sockaddr_in *)&sa);
	if (rc == 0)
		rc = uv_tcp_init(loop, &l->h.tcp);
	if (rc != 0) {
		snprintf(msg, msg_size, "listener %s: bad address %s: %s", l->name, address,
			 uv_strerror(rc));
		return rc;
	}
	l->h.handle.data = l;
	l->is_unix = false;
	rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen(&l->h.stream, 511, listener_connection_cb);
	if (rc != 0) {
		snprintf(msg, msg_size,
			 "listener %s: cannot listen on %s port %u: %s (is another process using "
			 "it?)",
			 l->name, address, (unsigned)port, uv_strerror(rc));
		uv_close(&l->h.handle, NULL);
		return rc;
	}
	int len = sizeof sa;
	uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&sa, &len);
	unsigned real_port = ntohs(v6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
				      : ((struct sockaddr_in *)&sa)->sin_port);
	snprintf(l->address, sizeof l->address, v6 ? "[%s]:%u" : "%s:%u", address, real_port);
	l->open = true;
	log_event(LOG_INFO, "listening", "{s:s, s:s, s:i, s:b}", "listener", l->name, "address",
		  address, "port", (int)real_port, "tls", l->ssl_ctx != NULL);
	return 0;
}

int listener_open_unix(struct listener *l, uv_loop_t *loop, const char *path, uint32_t mode,
		       const char *group, char *msg, size_t msg_size)
{
	int rc = uv_pipe_init(loop, &l->h.pipe, 0);
	if (rc != 0) {
		snprintf(msg, msg_size, "listener %s: %s", l->name, uv_strerror(rc));
		return rc;
	}
	l->h.handle.data = l;
	l->is_unix = true;
	/* A socket file left by a crash would make bind fail; only a socket is removed. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	const char *step = "bind"; /* which step failed, for the operator */
	rc = uv_pipe_bind(&l->h.pipe, path);
	if (rc == 0 && chmod(path, (mode_t)mode) != 0) {
		step = "set the mode of";
		rc = uv_translate_sys_error(errno);
	}
	if (rc == 0 && group != NULL) {
		struct group *gr = getgrnam(group);
		step = gr == NULL ? "find the group (no such group) for"
				  : "give the group to (chown; is the daemon a member, and does a "
				    "system call filter allow chown?)";
		if (gr == NULL || chown(path, (uid_t)-1, gr->gr_gid) != 0)
			rc = gr == NULL ? UV_EINVAL : uv_translate_sys_error(errno);
	}
	if (rc == 0) {
		step = "listen on";
		rc = uv_listen(&l->h.stream, 64, listener_connection_cb);
	}
	if (rc != 0) {
		snprintf(msg, msg_size, "listener %s: cannot %s %s: %s", l->name, step, path,
			 uv_strerror(rc));
		uv_close(&l->h.handle, NULL);
		return rc;
	}
	snprintf(l->address, sizeof l->address, "%s", path);
	l->open = true;
	log_event(LOG_INFO, "listening", "{s:s, s:s}", "listener", l->name, "path", path);
	return 0;
}

void listener_stop(struct listener *l)
{
	if (!l->open)
		return;
	l->open = false;
	uv_close(&l->h.handle, NULL);
	if (l->is_unix)
		unlink(l->address);
}

void listener_drain(struct listener *l)
{
	struct conn *c = l->conns;
	while (c != NULL) {
		struct conn *next = c->next;
		if (!c->busy && c->writes_pending == 0 && c->http.phase == HTTP_PHASE_IDLE)
			conn_close(c);
		/* Busy ones see !l->open and answer with Connection: close. */
		c = next;
	}
}

void listener_close_all(struct listener *l)
{
	while (l->conns != NULL)
		conn_close(l->conns);
}
