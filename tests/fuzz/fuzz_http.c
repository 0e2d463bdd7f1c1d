/*
 * fuzz_http.c: libFuzzer target for the HTTP/1.1 request path (core/http.c).
 *
 * The input is the plaintext a client sends on one connection.  It is parsed twice, as
 * conn.c does it (the unparsed tail is fed again after each answered request): once arriving
 * all at once, and once arriving in small pieces whose size depends on the input (its last
 * byte).  Both must hand out the same requests: a request split across reads must parse
 * exactly like one that arrived whole (a token spanning two reads is the classic place for
 * such a bug).  Each request is also answered with a problem that echoes its path, and
 * serialised, so the response code sees the parsed strings.
 *
 * Limits are small so that 431 and 413 are within reach of short inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct config_limits fuzz_limits = {
    .max_connections = 1,
    .max_header_bytes = 1024,
    .max_body_bytes = 2048,
    .header_timeout_ms = 1000,
    .body_timeout_ms = 1000,
    .idle_timeout_ms = 1000,
    .max_requests_per_connection = 100,
};

/* FNV-1a, to compare what the two passes saw. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static uint64_t mix_str(uint64_t h, const char *s, size_t n)
{
	if (s == NULL)
		return mix(h, "\xff", 1);
	if (strlen(s) != n) /* the lengths must describe NUL-terminated strings */
		abort();
	return mix(mix(h, s, n), "", 1);
}

/* Reads every field of a complete request, answers it, and folds it into h. */
static uint64_t take_request(uint64_t h, struct http_request *r)
{
	h = mix(h, &r->method, sizeof r->method);
	h = mix_str(h, r->url, r->url_len);
	h = mix_str(h, r->path, r->path_len);
	if (r->header_count > HTTP_MAX_HEADERS)
		abort();
	for (size_t i = 0; i < r->header_count; i++) {
		h = mix_str(h, r->headers[i].name, r->headers[i].name_len);
		h = mix_str(h, r->headers[i].value, r->headers[i].value_len);
	}
	if (r->body_len > fuzz_limits.max_body_bytes || (r->body_len > 0 && r->body == NULL))
		abort();
	if (r->body != NULL)
		h = mix(h, r->body, r->body_len + 1); /* + the NUL the module promises */
	h = mix(h, &r->keep_alive, sizeof r->keep_alive);
	h = mix(h, &r->seq, sizeof r->seq);

	const char *ct = http_request_header(r, "content-type");
	if (ct != NULL)
		h = mix(h, ct, strlen(ct));

	struct http_response resp;
	struct http_buf out = {0};
	http_response_init(&resp);
	http_response_header(&resp, "Madoguchi-Path", r->path);
	http_response_problem(&resp, 404, "NOT_FOUND", "Not found", r->path, r->url);
	http_response_serialize(&resp, r->keep_alive, "Fri, 27 Nov 2026 09:00:00 GMT", &out);
	http_buf_free(&out);
	http_response_free(&resp);
	return h;
}

/* What one pass saw: the requests handed out, and how it ended. */
struct outcome {
	uint64_t requests; /* digest of every request handed out */
	int error_status;  /* 0: no error */
	enum http_phase phase;
};

/*
 * Feeds data as arriving in pieces of at most chunk bytes (0: all at once), like conn.c:
 * the parser sees everything received and not yet consumed.
 */
static struct outcome run(const uint8_t *data, size_t size, size_t chunk)
{
	struct http_session s;
	uint64_t h = 14695981039346656037ull;
	size_t off = 0;	 /* consumed */
	size_t have = 0; /* received */

	http_session_init(&s, &fuzz_limits);
	for (;;) {
		if (off == have) {
			if (have == size)
				break;
			have = chunk == 0 || size - have < chunk ? size : have + chunk;
		}
		size_t used = 0;
		enum http_feed_result r =
		    http_session_feed(&s, (const char *)data + off, have - off, &used);
		if (used > have - off)
			abort();
		off += used;
		if (r == HTTP_FEED_ERROR)
			break;
		if (r == HTTP_FEED_REQUEST) {
			struct http_request *req = http_session_request(&s);
			if (req == NULL)
				abort();
			h = take_request(h, req);
			http_session_next(&s);
			continue;
		}
		if (off != have) /* MORE means everything given was consumed */
			abort();
	}
	struct outcome o = {.requests = h, .error_status = s.error_status, .phase = s.phase};
	http_session_free(&s);
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole = run(data, size, 0);
	size_t chunk = 1 + (size > 0 ? data[size - 1] % 17 : 0);
	struct outcome split = run(data, size, chunk);
	/*
	 * The same requests must come out however the bytes are split.  How a bad request ends
	 * may differ: the header limit is counted as the parser hands out pieces, and it hands
	 * out a piece at the end of each read, so a long header in small reads hits 431 where
	 * one read reaches the invalid byte after it first (400), or the end of the input.
	 */
	if (split.requests != whole.requests)
		abort();
	if (whole.error_status == 0 && split.error_status == 0 && whole.phase != split.phase)
		abort();
	return 0;
}
