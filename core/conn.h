/*
 * conn.h: listeners and their connections.
 *
 * A listener accepts TCP or Unix-socket connections, optionally wraps them in TLS (OpenSSL
 * with memory BIOs, so libuv does all socket I/O), parses HTTP/1.1 with the listener's limits
 * and timeouts, and hands each complete request to the listener's route table.  Requests on
 * one connection are answered strictly in order, one at a time; the next pipelined request is
 * not even parsed until the previous answer is queued, so no two requests share state.
 *
 * Loop thread only.  A connection owns everything of its requests and frees it in
 * conn_close()'s close callback; nothing else keeps a pointer into a connection.
 */
#ifndef MDG_CONN_H
#define MDG_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "metrics.h"

struct conn;
struct listener;
struct server;

/* A route handler fills resp for req; the connection sends it. */
typedef void (*route_fn)(struct conn *c, const struct http_request *req,
			 struct http_response *resp);

/*
 * A route's path is matched exactly, except that a segment written "{name}" matches any one
 * segment of 1 to ROUTE_PARAM_MAX characters of A-Z a-z 0-9 . _ - ("/v1/plugins/{name}/suspend").
 * resp->route is the pattern, so logs and metrics never carry the segment's value.
 */
struct route {
	enum http_method method;
	const char *path;
	route_fn handler;
};
#define ROUTE_PARAM_MAX 64

bool route_matches(const char *pattern, const char *path);
/* The value of the pattern's (first) {…} segment in path; false when it does not match. */
bool route_param(const char *pattern, const char *path, char *out, size_t size);

struct listener {
	const char *name; /* "store", "admin", "metrics" */
	struct server *server;
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
		uv_stream_t stream;
		uv_handle_t handle;
	} h;
	bool is_unix;
	bool open;		     /* accepting */
	SSL_CTX *ssl_ctx;	     /* NULL: plaintext; replaced on reload */
	struct config_limits limits; /* replaced on reload; connections read it live */
	const struct route *routes;
	size_t route_count;
	char address[256];    /* for status and logs: "127.0.0.1:8443" or a path */
	uint32_t connections; /* open now */
	struct conn *conns;   /* open connections, for drain */
	metric_value *m_accepted;
	metric_value *m_rejected;
	metric_value *m_open;
	metric_value *m_tls_failures;
	metric_value *m_timeouts;
	metric_value *m_requests[600]; /* by status code, created on first use */
};

/*
 * Opens the listener: binds, listens and starts accepting.  For TCP, port 0 picks a free port
 * (l->address then holds the real one).  Returns 0, or a libuv error code with msg filled.
 */
int listener_open_tcp(struct listener *l, uv_loop_t *loop, const char *address, uint16_t port,
		      char *msg, size_t msg_size);
int listener_open_unix(struct listener *l, uv_loop_t *loop, const char *path, uint32_t mode,
		       const char *group, char *msg, size_t msg_size);

/* Registers the listener's metric series.  Call once before opening. */
void listener_init_metrics(struct listener *l);

/* Stops accepting; open connections go on. */
void listener_stop(struct listener *l);

/*
 * Drain: idle connections are closed now, busy ones after their current answer (which says
 * Connection: close).  Call after listener_stop().
 */
void listener_drain(struct listener *l);

/* Closes every connection at once (drain timeout). */
void listener_close_all(struct listener *l);

/* The listener a connection came in on (handlers use it to reach the server). */
struct listener *conn_listener(const struct conn *c);

/*
 * Deferred answers.  A handler that needs work off the loop (an issuance) calls conn_defer()
 * and returns without filling its response; the connection then waits (it parses nothing more)
 * until conn_answer() is called with the answer, on the loop thread.  Every conn_defer() is
 * matched by exactly one conn_answer(): with the response to send, or NULL to only release the
 * handle.  When the connection closes first (client gone, drain timeout), gone(arg) is called
 * once, on the loop thread, and a later conn_answer() sends nothing; the caller decides what
 * a vanished client means for its work.  The request's memory (body included) belongs to the
 * connection: copy what the work needs before returning from the handler.
 */
struct conn_pending;
typedef void (*conn_gone_fn)(void *arg);

/* Defers the current request's answer; NULL when out of memory (answer synchronously then). */
struct conn_pending *conn_defer(struct conn *c, const char *route, conn_gone_fn gone, void *arg);

/* Sends resp (unless the connection is gone) and frees p.  resp may be NULL. */
void conn_answer(struct conn_pending *p, struct http_response *resp);

/* True while the connection of p is still open. */
bool conn_pending_alive(const struct conn_pending *p);

#endif
