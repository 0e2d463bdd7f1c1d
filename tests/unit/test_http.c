/*
 * test_http.c: the HTTP session's parsing and limits, and response serialisation, without
 * sockets: bytes in, requests or errors out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "conn.h"
#include "http.h"

static struct config_limits test_limits(void)
{
	struct config_limits l = {
	    .max_connections = 10,
	    .max_header_bytes = 1024,
	    .max_body_bytes = 100,
	    .header_timeout_ms = 1000,
	    .body_timeout_ms = 1000,
	    .idle_timeout_ms = 1000,
	    .max_requests_per_connection = 100,
	};
	return l;
}

/* Feeds the whole text; returns the result and the bytes consumed. */
static enum http_feed_result feed_all(struct http_session *s, const char *text, size_t *used)
{
	return http_session_feed(s, text, strlen(text), used);
}

static void a_simple_request_is_parsed_with_path_headers_and_body(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	const char *text = "POST /v1/issuances?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: "
			   "application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
	size_t used;
	assert_int_equal(feed_all(&s, text, &used), HTTP_FEED_REQUEST);
	assert_int_equal(used, strlen(text));
	struct http_request *r = http_session_request(&s);
	assert_non_null(r);
	assert_int_equal(r->method, HTTP_POST);
	assert_string_equal(r->url, "/v1/issuances?x=1");
	assert_string_equal(r->path, "/v1/issuances");
	assert_int_equal(r->header_count, 3);
	assert_string_equal(http_request_header(r, "content-type"), "application/json");
	assert_null(http_request_header(r, "X-Missing"));
	assert_int_equal(r->body_len, 7);
	assert_string_equal(r->body, "{\"a\":1}");
	assert_true(r->keep_alive);
	assert_int_equal(r->seq, 1);
	http_session_free(&s);
}

static void a_request_fed_byte_by_byte_parses_the_same(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	const char *text = "GET /healthz HTTP/1.1\r\nHost: abc\r\nX-Empty:\r\nAccept: */*\r\n\r\n";
	size_t n = strlen(text);
	enum http_feed_result r = HTTP_FEED_MORE;
	for (size_t i = 0; i < n; i++) {
		size_t used;
		r = http_session_feed(&s, text + i, 1, &used);
		assert_int_equal(used, 1);
		if (i + 1 < n)
			assert_int_equal(r, HTTP_FEED_MORE);
	}
	assert_int_equal(r, HTTP_FEED_REQUEST);
	struct http_request *req = http_session_request(&s);
	assert_string_equal(req->path, "/healthz");
	assert_int_equal(req->header_count, 3);
	assert_string_equal(http_request_header(req, "Host"), "abc");
	assert_string_equal(http_request_header(req, "x-empty"), "");
	assert_string_equal(http_request_header(req, "accept"), "*/*");
	http_session_free(&s);
}

static void headers_over_the_limit_fail_with_431(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	char text[4096];
	int n = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nX-Big: ");
	memset(text + n, 'a', 1100);
	strcpy(text + n + 1100, "\r\n\r\n");
	size_t used;
	assert_int_equal(feed_all(&s, text, &used), HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 431);
	http_session_free(&s);
}

static void headers_just_under_the_limit_are_accepted(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	char text[4096];
	/* 16 (request line) + 1 ("/") + 4 + 5 ("X-Big") + value = 1024 */
	size_t value_len = 1024 - 16 - 1 - 4 - 5;
	int n = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nX-Big: ");
	memset(text + n, 'a', value_len);
	strcpy(text + n + value_len, "\r\n\r\n");
	size_t used;
	assert_int_equal(feed_all(&s, text, &used), HTTP_FEED_REQUEST);
	assert_int_equal(strlen(http_session_request(&s)->headers[0].value), value_len);
	http_session_free(&s);
}

static void too_many_header_lines_fail_with_431(void **state)
{
	struct config_limits lim = test_limits();
	lim.max_header_bytes = 64 * 1024;
	struct http_session s;
	http_session_init(&s, &lim);
	char text[8192];
	size_t n = (size_t)snprintf(text, sizeof text, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "X-H%d: v\r\n", i);
	snprintf(text + n, sizeof text - n, "\r\n");
	size_t used;
	assert_int_equal(feed_all(&s, text, &used), HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 431);
	http_session_free(&s);
}

static void a_declared_body_over_the_limit_fails_with_413_before_it_arrives(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(feed_all(&s, "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", &used),
			 HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 413);
	http_session_free(&s);
}

static void a_chunked_body_over_the_limit_fails_with_413(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(
	    feed_all(&s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n", &used),
	    HTTP_FEED_MORE);
	char chunk[200];
	memset(chunk, 'x', 0x50);
	strcpy(chunk + 0x50, "\r\n50\r\n");
	enum http_feed_result r = feed_all(&s, chunk, &used);
	if (r == HTTP_FEED_MORE) {
		memset(chunk, 'y', 0x50);
		chunk[0x50] = '\0';
		r = feed_all(&s, chunk, &used);
	}
	assert_int_equal(r, HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 413);
	http_session_free(&s);
}

static void a_chunked_body_within_the_limit_is_assembled(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(feed_all(&s,
				  "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
				  &used),
			 HTTP_FEED_REQUEST);
	assert_string_equal(http_session_request(&s)->body, "abcde");
	http_session_free(&s);
}

/*
 * Trailer fields arrive through the header callbacks after the headers are complete; they
 * once counted an unset header slot, whose NULL name crashed http_request_header() (found by
 * tests/fuzz/fuzz_http).  They are discarded, and count against the header limit.
 */
static void trailer_fields_of_a_chunked_body_are_discarded(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(feed_all(&s,
				  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "3\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
				  &used),
			 HTTP_FEED_REQUEST);
	struct http_request *r = http_session_request(&s);
	assert_int_equal(r->header_count, 2);
	assert_string_equal(http_request_header(r, "host"), "a");
	assert_null(http_request_header(r, "X-Trailer"));
	assert_null(http_request_header(r, "X-Missing"));
	assert_string_equal(r->body, "abc");
	http_session_free(&s);
}

static void trailers_over_the_header_limit_fail_with_431(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(
	    feed_all(&s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", &used),
	    HTTP_FEED_MORE);
	char line[200];
	memset(line, 'v', sizeof line);
	memcpy(line, "X-T: ", 5);
	strcpy(line + sizeof line - 3, "\r\n");
	enum http_feed_result r = HTTP_FEED_MORE;
	for (int i = 0; i < 20 && r == HTTP_FEED_MORE; i++)
		r = feed_all(&s, line, &used);
	assert_int_equal(r, HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 431);
	http_session_free(&s);
}

/* Values are handed out as C strings, so a NUL in one would cut it short: refused.  The
 * parser itself refuses one inside a value but not where the value begins (fuzz_http). */
static void a_nul_in_a_header_value_fails_with_400(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	static const char text[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Card:\0 abc\r\n\r\n";
	size_t used;
	assert_int_equal(http_session_feed(&s, text, sizeof text - 1, &used), HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 400);
	http_session_free(&s);
}

static void pipelined_requests_are_handed_out_one_at_a_time_in_order(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	const char *text =
	    "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: b\r\n\r\n";
	size_t used;
	assert_int_equal(feed_all(&s, text, &used), HTTP_FEED_REQUEST);
	assert_true(used < strlen(text));
	assert_string_equal(http_session_request(&s)->path, "/one");
	/* Until the first is answered the second is not parsed. */
	size_t again;
	assert_int_equal(http_session_feed(&s, text + used, strlen(text) - used, &again),
			 HTTP_FEED_REQUEST);
	assert_int_equal(again, 0);
	assert_string_equal(http_session_request(&s)->path, "/one");
	http_session_next(&s);
	assert_null(http_session_request(&s));
	assert_int_equal(http_session_feed(&s, text + used, strlen(text) - used, &again),
			 HTTP_FEED_REQUEST);
	assert_int_equal(used + again, strlen(text));
	struct http_request *r = http_session_request(&s);
	assert_string_equal(r->path, "/two");
	assert_string_equal(http_request_header(r, "host"), "b");
	assert_int_equal(r->seq, 2);
	http_session_free(&s);
}

static void a_malformed_request_line_fails_with_400(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(feed_all(&s, "GARBAGE\x01 / HTTP/1.1\r\n\r\n", &used), HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 400);
	/* The session stays failed. */
	assert_int_equal(feed_all(&s, "GET / HTTP/1.1\r\n\r\n", &used), HTTP_FEED_ERROR);
	http_session_free(&s);
}

static void a_protocol_upgrade_is_refused_with_400(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(
	    feed_all(&s, "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		     &used),
	    HTTP_FEED_ERROR);
	assert_int_equal(s.error_status, 400);
	http_session_free(&s);
}

static void http_1_0_without_keep_alive_is_not_kept_alive(void **state)
{
	struct config_limits lim = test_limits();
	struct http_session s;
	http_session_init(&s, &lim);
	size_t used;
	assert_int_equal(feed_all(&s, "GET / HTTP/1.0\r\n\r\n", &used), HTTP_FEED_REQUEST);
	assert_false(http_session_request(&s)->keep_alive);
	http_session_free(&s);
}

static void a_response_serialises_status_length_type_and_close(void **state)
{
	struct http_response r;
	http_response_init(&r);
	assert_int_equal(http_response_body(&r, 200, "text/plain", "ok\n", 3), 0);
	assert_int_equal(http_response_header(&r, "Retry-After", "5"), 0);
	struct http_buf out = {0};
	assert_int_equal(http_response_serialize(&r, false, "Fri, 27 Nov 2026 09:00:00 GMT", &out),
			 0);
	assert_string_equal(out.data, "HTTP/1.1 200 OK\r\nDate: Fri, 27 Nov 2026 09:00:00 GMT\r\n"
				      "Content-Length: 3\r\nContent-Type: text/plain\r\n"
				      "Connection: close\r\nRetry-After: 5\r\n\r\nok\n");
	out.len = 0;
	assert_int_equal(http_response_serialize(&r, true, "D", &out), 0);
	assert_null(strstr(out.data, "Connection: close"));
	http_buf_free(&out);
	http_response_free(&r);
}

static void a_problem_answer_is_rfc9457_json_with_code_and_request_id(void **state)
{
	struct http_response r;
	http_response_init(&r);
	assert_int_equal(
	    http_response_problem(&r, 413, "BODY_TOO_LARGE", "Content Too Large", "too big", "abc"),
	    0);
	assert_int_equal(r.status, 413);
	assert_string_equal(r.content_type, "application/problem+json");
	json_error_t err;
	json_t *j = json_loadb(r.body.data, r.body.len, 0, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "code")), "BODY_TOO_LARGE");
	assert_string_equal(json_string_value(json_object_get(j, "title")), "Content Too Large");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 413);
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "abc");
	assert_string_equal(json_string_value(json_object_get(j, "detail")), "too big");
	assert_non_null(json_object_get(j, "type"));
	json_decref(j);
	http_response_free(&r);
}

/* Routes with a {name} segment match one segment of the allowed characters, nothing else. */
static void route_patterns_match_exactly_one_segment(void **state)
{
	(void)state;
	char name[ROUTE_PARAM_MAX + 1];
	const char *suspend = "/v1/plugins/{name}/suspend";
	assert_true(route_matches("/v1/plugins", "/v1/plugins"));
	assert_false(route_matches("/v1/plugins", "/v1/plugins/"));
	assert_true(route_matches(suspend, "/v1/plugins/fujitsu-like/suspend"));
	assert_true(route_param(suspend, "/v1/plugins/fujitsu-like/suspend", name, sizeof name));
	assert_string_equal(name, "fujitsu-like");
	assert_false(route_matches(suspend, "/v1/plugins//suspend"));
	assert_false(route_matches(suspend, "/v1/plugins/a/b/suspend"));
	assert_false(route_matches(suspend, "/v1/plugins/a%2Fb/suspend"));
	assert_false(route_matches(suspend, "/v1/plugins/vendor/suspended"));
	assert_false(route_matches(suspend, "/v1/plugins/vendor/resume"));
	char longer[ROUTE_PARAM_MAX + 32];
	snprintf(longer, sizeof longer, "/v1/plugins/%0*d/suspend", ROUTE_PARAM_MAX + 1, 7);
	assert_false(route_matches(suspend, longer));
	assert_false(route_param(suspend, "/v1/plugins/x/resume", name, sizeof name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_simple_request_is_parsed_with_path_headers_and_body),
	    cmocka_unit_test(route_patterns_match_exactly_one_segment),
	    cmocka_unit_test(a_request_fed_byte_by_byte_parses_the_same),
	    cmocka_unit_test(headers_over_the_limit_fail_with_431),
	    cmocka_unit_test(headers_just_under_the_limit_are_accepted),
	    cmocka_unit_test(too_many_header_lines_fail_with_431),
	    cmocka_unit_test(a_declared_body_over_the_limit_fails_with_413_before_it_arrives),
	    cmocka_unit_test(a_chunked_body_over_the_limit_fails_with_413),
	    cmocka_unit_test(a_chunked_body_within_the_limit_is_assembled),
	    cmocka_unit_test(trailer_fields_of_a_chunked_body_are_discarded),
	    cmocka_unit_test(trailers_over_the_header_limit_fail_with_431),
	    cmocka_unit_test(a_nul_in_a_header_value_fails_with_400),
	    cmocka_unit_test(pipelined_requests_are_handed_out_one_at_a_time_in_order),
	    cmocka_unit_test(a_malformed_request_line_fails_with_400),
	    cmocka_unit_test(a_protocol_upgrade_is_refused_with_400),
	    cmocka_unit_test(http_1_0_without_keep_alive_is_not_kept_alive),
	    cmocka_unit_test(a_response_serialises_status_length_type_and_close),
	    cmocka_unit_test(a_problem_answer_is_rfc9457_json_with_code_and_request_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
