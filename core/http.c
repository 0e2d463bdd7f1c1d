/*
 * http.c: request parsing with limits, and response serialisation.
 *
 * libhttp-parser does the parsing; the callbacks here copy the request target and headers into
 * one area per request, sized by the listener's header limit, so a request never points into
 * another request's memory and the limit bounds what a client can make us hold.  After a
 * complete message the parser is paused (http_parser_pause) until the request is answered: a
 * pipelined request waits, unparsed, in the connection's input.
 *
 * Header bytes are counted as the request target plus every header name and value plus four
 * bytes per header line and sixteen for the request line; that is what the header limit means.
 * Loop thread only, like the connection that owns the session.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "http.h"

#define HTTP_REQUEST_LINE_OVERHEAD 16
#define HTTP_HEADER_LINE_OVERHEAD  4

/* --- buffers ------------------------------------------------------------------------------ */

int http_buf_reserve(struct http_buf *b, size_t extra)
{
	if (b->cap - b->len > extra)
		return 0;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap - b->len <= extra) {
		if (ncap > SIZE_MAX / 2)
			return -1;
		ncap *= 2;
	}
	char *n = realloc(b->data, ncap);
	if (n == NULL)
		return -1;
	b->data = n;
	b->cap = ncap;
	return 0;
}

int http_buf_append(struct http_buf *b, const void *data, size_t len)
{
	if (http_buf_reserve(b, len) != 0)
		return -1;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int http_buf_printf(struct http_buf *b, const char *fmt, ...)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (http_buf_reserve(b, attempt == 0 ? 128 : 0) != 0)
			return -1;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return 0;
		}
		if (http_buf_reserve(b, (size_t)n + 1) != 0)
			return -1;
	}
	return -1;
}

void http_buf_free(struct http_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* --- parsing ----------------------------------------------------------------------------- */

static struct http_session *session_of(http_parser *p)
{
	return (struct http_session *)p->data;
}

/* Fails the session with status; returning non-zero from a callback stops the parser. */
static int session_fail(struct http_session *s, int status, const char *detail)
{
	if (s->error_status == 0) {
		s->error_status = status;
		s->error_detail = detail;
	}
	return -1;
}

/*
 * Appends a piece of the current token to the header area.  A token (target, name or value)
 * may arrive in several pieces; the NUL that ends it is written by area_terminate().
 */
static int area_append(struct http_session *s, const char *at, size_t len)
{
	s->header_bytes += len;
	if (s->header_bytes > s->limits->max_header_bytes)
		return session_fail(s, 431, "the request line and headers exceed the limit");
	if (s->area_len + len + 1 > s->area_cap)
		return session_fail(s, 431, "the request line and headers exceed the limit");
	memcpy(s->area + s->area_len, at, len);
	s->area_len += len;
	return 0;
}

static int area_terminate(struct http_session *s)
{
	if (s->area_len + 1 > s->area_cap)
		return session_fail(s, 431, "the request line and headers exceed the limit");
	s->area[s->area_len++] = '\0';
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct http_session *s = session_of(p);
	s->phase = HTTP_PHASE_HEADERS;
	s->header_bytes = HTTP_REQUEST_LINE_OVERHEAD;
	s->area_len = 0;
	s->last = HTTP_TOKEN_TARGET;
	if (s->area == NULL) {
		/* Sized once per connection by the limit; reused by every request on it. */
		s->area_cap = (size_t)s->limits->max_header_bytes + HTTP_MAX_HEADERS * 2 + 2;
		s->area = malloc(s->area_cap);
		if (s->area == NULL)
			return session_fail(s, 503, "out of memory");
	}
	memset(&s->req, 0, sizeof s->req);
	s->req.url = s->area;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_session *s = session_of(p);
	if (area_append(s, at, len) != 0)
		return -1;
	s->req.url_len += len;
	return 0;
}

/*
 * Trailer fields (after a chunked body) come through the header callbacks once the headers
 * are complete.  No route uses them, so they are discarded; they still count against the
 * header limit, which bounds how long a client may keep sending them.
 */
static int trailer_discard(struct http_session *s, int kind, size_t len)
{
	if (kind == HTTP_TOKEN_NAME && s->last != HTTP_TOKEN_NAME)
		s->header_bytes += HTTP_HEADER_LINE_OVERHEAD; /* once per line, however split */
	s->last = kind;
	s->header_bytes += len;
	if (s->header_bytes > s->limits->max_header_bytes)
		return session_fail(s, 431, "the request line and headers exceed the limit");
	return 0;
}

/*
 * Header callbacks arrive as pieces: a name or value split across reads comes in several
 * calls of the same kind.  s->last says which kind came last, so a change of kind ends the
 * token before it.
 */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_session *s = session_of(p);
	struct http_request *r = &s->req;
	if (s->phase == HTTP_PHASE_BODY)
		return trailer_discard(s, HTTP_TOKEN_NAME, len);
	if (s->last != HTTP_TOKEN_NAME) {
		if (area_terminate(s) != 0) /* ends the target or the previous value */
			return -1;
		if (s->last == HTTP_TOKEN_VALUE)
			r->header_count++;
		if (r->header_count >= HTTP_MAX_HEADERS)
			return session_fail(s, 431, "too many header lines");
		r->headers[r->header_count].name = s->area + s->area_len;
		s->header_bytes += HTTP_HEADER_LINE_OVERHEAD;
		s->last = HTTP_TOKEN_NAME;
	}
	if (area_append(s, at, len) != 0)
		return -1;
	r->headers[r->header_count].name_len += len;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_session *s = session_of(p);
	struct http_request *r = &s->req;
	if (s->phase == HTTP_PHASE_BODY)
		return trailer_discard(s, HTTP_TOKEN_VALUE, len);
	/* libhttp-parser lets NUL through in values; RFC 9110 §5.5 says reject (or replace). A
	 * value is handed out as a C string, which a NUL would silently cut short. */
	if (memchr(at, '\0', len) != NULL)
		return session_fail(s, 400, "a header value contains a NUL character");
	if (s->last != HTTP_TOKEN_VALUE) {
		if (area_terminate(s) != 0) /* ends the name */
			return -1;
		r->headers[r->header_count].value = s->area + s->area_len;
		s->last = HTTP_TOKEN_VALUE;
	}
	if (area_append(s, at, len) != 0)
		return -1;
	r->headers[r->header_count].value_len += len;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_session *s = session_of(p);
	struct http_request *r = &s->req;
	if (area_terminate(s) != 0) /* ends the target, or the last value */
		return -1;
	if (s->last == HTTP_TOKEN_NAME)
		return session_fail(s, 400, "a header line has no value");
	if (s->last == HTTP_TOKEN_VALUE)
		r->header_count++;
	/* The path is a separate copy so the target keeps its query string. */
	size_t plen = strcspn(r->url, "?#");
	if (s->area_len + plen + 1 > s->area_cap)
		return session_fail(s, 431, "the request line and headers exceed the limit");
	char *path = s->area + s->area_len;
	memcpy(path, r->url, plen);
	path[plen] = '\0';
	s->area_len += plen + 1;
	r->path = path;
	r->path_len = plen;
	r->method = (enum http_method)p->method;
	r->method_name = http_method_str(r->method);

	if (p->upgrade)
		return session_fail(s, 400, "protocol upgrades are not supported");
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > s->limits->max_body_bytes)
		return session_fail(s, 413, "the request body exceeds the limit");
	if (p->flags & F_CONTENTLENGTH && p->content_length > 0) {
		r->body = malloc((size_t)p->content_length + 1);
		if (r->body == NULL)
			return session_fail(s, 503, "out of memory");
	}
	s->phase = HTTP_PHASE_BODY;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_session *s = session_of(p);
	struct http_request *r = &s->req;
	if (r->body_len + len > s->limits->max_body_bytes)
		return session_fail(s, 413, "the request body exceeds the limit");
	if (!(p->flags & F_CONTENTLENGTH)) {
		/* Chunked: grow as it comes, within the limit checked above. */
		char *n = realloc(r->body, r->body_len + len + 1);
		if (n == NULL)
			return session_fail(s, 503, "out of memory");
		r->body = n;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_session *s = session_of(p);
	struct http_request *r = &s->req;
	if (r->body != NULL)
		r->body[r->body_len] = '\0';
	r->keep_alive = http_should_keep_alive(p) != 0;
	r->seq = ++s->requests;
	s->phase = HTTP_PHASE_READY;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings session_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_session_init(struct http_session *s, const struct config_limits *limits)
{
	memset(s, 0, sizeof *s);
	http_parser_init(&s->parser, HTTP_REQUEST);
	s->parser.data = s;
	s->limits = limits;
}

void http_session_free(struct http_session *s)
{
	free(s->req.body);
	s->req.body = NULL;
	free(s->area);
	s->area = NULL;
}

enum http_feed_result http_session_feed(struct http_session *s, const char *data, size_t len,
					size_t *consumed)
{
	*consumed = 0;
	if (s->error_status != 0)
		return HTTP_FEED_ERROR;
	if (s->phase == HTTP_PHASE_READY)
		return HTTP_FEED_REQUEST;
	size_t n = http_parser_execute(&s->parser, &session_settings, data, len);
	*consumed = n;
	enum http_errno err = HTTP_PARSER_ERRNO(&s->parser);
	if (s->error_status != 0)
		return HTTP_FEED_ERROR;
	if (err == HPE_PAUSED && s->phase == HTTP_PHASE_READY)
		return HTTP_FEED_REQUEST;
	if (err == HPE_HEADER_OVERFLOW) {
		session_fail(s, 431, "the request line and headers exceed the limit");
		return HTTP_FEED_ERROR;
	}
	if (err != HPE_OK) {
		session_fail(s, 400, http_errno_description(err));
		return HTTP_FEED_ERROR;
	}
	if (s->parser.upgrade) {
		session_fail(s, 400, "protocol upgrades are not supported");
		return HTTP_FEED_ERROR;
	}
	return HTTP_FEED_MORE;
}

struct http_request *http_session_request(struct http_session *s)
{
	return s->phase == HTTP_PHASE_READY ? &s->req : NULL;
}

void http_session_next(struct http_session *s)
{
	free(s->req.body);
	memset(&s->req, 0, sizeof s->req);
	s->phase = HTTP_PHASE_IDLE;
	http_parser_pause(&s->parser, 0);
}

const char *http_request_header(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->header_count; i++) {
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	}
	return NULL;
}

/* --- responses --------------------------------------------------------------------------- */

void http_response_init(struct http_response *r)
{
	memset(r, 0, sizeof *r);
	r->status = 500;
}

void http_response_free(struct http_response *r)
{
	http_buf_free(&r->headers);
	http_buf_free(&r->body);
}

int http_response_header(struct http_response *r, const char *name, const char *value)
{
	return http_buf_printf(&r->headers, "%s: %s\r\n", name, value);
}

int http_response_body(struct http_response *r, int status, const char *content_type,
		       const void *body, size_t len)
{
	r->status = status;
	r->content_type = content_type;
	r->body.len = 0;
	return http_buf_append(&r->body, body, len);
}

int http_response_problem(struct http_response *r, int status, const char *code, const char *title,
			  const char *detail, const char *request_id)
{
	return http_response_problem_ext(r, status, code, title, detail, request_id, NULL);
}

int http_response_problem_ext(struct http_response *r, int status, const char *code,
			      const char *title, const char *detail, const char *request_id,
			      json_t *extra)
{
	json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", title,
			      "status", status, "code", code);
	if (p == NULL) {
		json_decref(extra);
		return -1;
	}
	if (detail != NULL)
		json_object_set_new(p, "detail", json_string(detail));
	if (request_id != NULL)
		json_object_set_new(p, "request_id", json_string(request_id));
	if (extra != NULL) {
		json_object_update(p, extra);
		json_decref(extra);
	}
	char *text = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(p);
	if (text == NULL)
		return -1;
	int rc = http_response_body(r, status, "application/problem+json", text, strlen(text));
	free(text);
	r->problem_code = code;
	return rc;
}

const char *http_status_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Unknown";
	}
}

/* Appends a NUL-terminated string. */
static int buf_append_str(struct http_buf *b, const char *s)
{
	return http_buf_append(b, s, strlen(s));
}

/* Appends v in decimal. */
static int buf_append_uint(struct http_buf *b, uint64_t v)
{
	char digits[24];
	size_t i = sizeof digits;
	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return http_buf_append(b, digits + i, sizeof digits - i);
}

int http_response_serialize(const struct http_response *r, bool keep_alive, const char *date,
			    struct http_buf *out)
{
	/* Appends, not printf: this runs for every answer. */
	int rc = buf_append_str(out, "HTTP/1.1 ");
	rc |= buf_append_uint(out, (uint64_t)r->status);
	rc |= http_buf_append(out, " ", 1);
	rc |= buf_append_str(out, http_status_reason(r->status));
	rc |= buf_append_str(out, "\r\nDate: ");
	rc |= buf_append_str(out, date);
	rc |= buf_append_str(out, "\r\nContent-Length: ");
	rc |= buf_append_uint(out, r->body.len);
	rc |= http_buf_append(out, "\r\n", 2);
	if (r->content_type != NULL) {
		rc |= buf_append_str(out, "Content-Type: ");
		rc |= buf_append_str(out, r->content_type);
		rc |= http_buf_append(out, "\r\n", 2);
	}
	if (!keep_alive)
		rc |= buf_append_str(out, "Connection: close\r\n");
	if (r->headers.len > 0)
		rc |= http_buf_append(out, r->headers.data, r->headers.len);
	rc |= http_buf_append(out, "\r\n", 2);
	if (r->body.len > 0)
		rc |= http_buf_append(out, r->body.data, r->body.len);
	return rc == 0 ? 0 : -1;
}

void http_format_time(time_t t, char *out, size_t size)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
