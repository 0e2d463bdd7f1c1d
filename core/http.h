/*
 * http.h: HTTP/1.1 requests and responses, independent of the transport.
 *
 * An http_session turns the bytes of one connection into requests, one at a time, with the
 * listener's limits (header bytes → 431, body bytes → 413).  It is fed plaintext by conn.c
 * (after TLS) and hands back a complete request; the parser stays paused until the caller has
 * answered it and calls http_session_next(), so pipelined requests are answered in order and
 * never share state.  Parsing is libhttp-parser's; this module adds limits and storage.
 *
 * Each request owns its memory (a header area sized by the header limit, and its body) and it
 * is released in one place, http_session_next() or http_session_free().  Only the thread that
 * owns the connection (the loop thread) touches a session.
 */
#ifndef MDG_HTTP_H
#define MDG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <http_parser.h>
#include <jansson.h>

#include "config.h"

#define HTTP_MAX_HEADERS 64

struct http_header {
	const char *name; /* NUL-terminated, as sent */
	const char *value;
	size_t name_len;
	size_t value_len;
};

struct http_request {
	enum http_method method;
	const char *method_name;
	const char *url; /* request target, NUL-terminated */
	size_t url_len;
	const char *path; /* url without query, NUL-terminated (own copy) */
	size_t path_len;
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t header_count;
	char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
	size_t body_len;
	bool keep_alive; /* what the client asked for */
	uint64_t seq;	 /* 1 for the first request on the connection */
	char id[33];	 /* request id for logs: 128 random bits in hex */
};

enum http_feed_result {
	HTTP_FEED_MORE = 0, /* everything consumed, no complete request yet */
	HTTP_FEED_REQUEST,  /* a request is complete: see http_session_request() */
	HTTP_FEED_ERROR,    /* protocol error or limit: answer error_status, then close */
};

enum http_phase {
	HTTP_PHASE_IDLE = 0, /* between requests: no byte of the next one yet */
	HTTP_PHASE_HEADERS,  /* request line or headers being received */
	HTTP_PHASE_BODY,     /* headers complete, body being received */
	HTTP_PHASE_READY,    /* complete request waiting for its answer */
};

struct http_session {
	http_parser parser;
	const struct config_limits *limits;
	enum http_phase phase;
	int error_status; /* 400, 413, 431 … after HTTP_FEED_ERROR */
	const char *error_detail;
	uint64_t requests;   /* complete requests so far */
	size_t header_bytes; /* counted for the header limit */
	char *area;	     /* header storage of the current request */
	size_t area_len;
	size_t area_cap;
	enum { HTTP_TOKEN_TARGET, HTTP_TOKEN_NAME, HTTP_TOKEN_VALUE } last; /* last callback */
	struct http_request req;
};

/* Prepares a session for a server connection.  limits must outlive the session. */
void http_session_init(struct http_session *s, const struct config_limits *limits);

/* Frees what the current request holds. */
void http_session_free(struct http_session *s);

/*
 * Parses up to len bytes.  *consumed is set to the bytes used; the rest must be fed again
 * after http_session_next() (pipelining).  See enum http_feed_result.
 */
enum http_feed_result http_session_feed(struct http_session *s, const char *data, size_t len,
					size_t *consumed);

/* The complete request after HTTP_FEED_REQUEST; valid until http_session_next(). */
struct http_request *http_session_request(struct http_session *s);

/* Releases the answered request and lets the parser continue with the next one. */
void http_session_next(struct http_session *s);

/* Returns the first value of header name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *r, const char *name);

/* --- responses --------------------------------------------------------------------------- */

/* A growable byte buffer. */
struct http_buf {
	char *data;
	size_t len;
	size_t cap;
};

int http_buf_reserve(struct http_buf *b, size_t extra);
int http_buf_append(struct http_buf *b, const void *data, size_t len);
int http_buf_printf(struct http_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void http_buf_free(struct http_buf *b);

struct http_response {
	int status;
	const char *content_type; /* NULL: no body headers beyond Content-Length */
	struct http_buf headers;  /* extra header lines, each ending in CRLF */
	struct http_buf body;
	bool close;		  /* send Connection: close and close after writing */
	const char *route;	  /* the route that answered, for the access log */
	const char *problem_code; /* the problem code, for the access log */
};

void http_response_init(struct http_response *r);
void http_response_free(struct http_response *r);

/* Adds one header line "name: value". Returns 0 or -1. */
int http_response_header(struct http_response *r, const char *name, const char *value);

/* Sets a body (copied) with its content type. Returns 0 or -1. */
int http_response_body(struct http_response *r, int status, const char *content_type,
		       const void *body, size_t len);

/*
 * Answers with an RFC 9457 problem (application/problem+json) carrying the extension member
 * "code" and, when request_id is not NULL, "request_id".  detail may be NULL.
 */
int http_response_problem(struct http_response *r, int status, const char *code, const char *title,
			  const char *detail, const char *request_id);

/* The standard reason phrase of a status ("Not Found"), or "Unknown". */
/* As http_response_problem(), with extra members (a JSON object, reference stolen; may be NULL),
 * e.g. the suspension of a 503 SERVICE_SUSPENDED. */
int http_response_problem_ext(struct http_response *r, int status, const char *code,
			      const char *title, const char *detail, const char *request_id,
			      json_t *extra);

const char *http_status_reason(int status);

/* t as the API's timestamps: RFC 3339 UTC, whole seconds ("2026-11-27T05:00:00Z"). */
void http_format_time(time_t t, char *out, size_t size);

/*
 * Writes status line, headers and body to out.  keep_alive false adds Connection: close.
 * date is an IMF-fixdate string for the Date header.  Returns 0 or -1 (out of memory).
 */
int http_response_serialize(const struct http_response *r, bool keep_alive, const char *date,
			    struct http_buf *out);

#endif
