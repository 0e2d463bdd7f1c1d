/*
 * feed.c: the ministry feed poller (contract in feed.h).
 *
 * libcurl's multi "socket" interface on libuv, the pattern of curl's own multi-uv example:
 * curl tells us which sockets to watch (feed_socket_cb: one uv_poll_t per socket, kept as the
 * socket's curl_multi_assign() pointer) and when to call it back (feed_curl_timer_cb: one
 * uv_timer_t); we hand readiness back with curl_multi_socket_action() and collect finished
 * transfers with curl_multi_info_read().  At most one transfer exists at a time.
 *
 * Every uv handle is closed asynchronously; `handles` counts those open, and feed_free() leaves
 * the last close callback to free the struct when some are still closing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "feed.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "suslist.h"

#define FEED_ETAG_MAX	    256
#define FEED_BACKOFF_FACTOR 4 /* the longest wait, in poll intervals */

struct feed {
	uv_loop_t *loop;
	CURLM *multi;
	CURL *easy; /* the transfer under way, or NULL */
	struct curl_slist *headers;
	uv_timer_t poll_timer; /* the next poll */
	uv_timer_t curl_timer; /* libcurl's own timeout */
	unsigned handles;      /* uv handles open or closing */
	bool stopping, free_when_closed, awaiting_result;
	char *url, *ca;
	uint64_t interval_ms, timeout_ms;
	feed_body_fn on_body;
	void *arg;
	char *body;
	size_t body_len, body_cap;
	bool too_big;
	char etag[FEED_ETAG_MAX];     /* of the list in force: sent as If-None-Match */
	char new_etag[FEED_ETAG_MAX]; /* of the body being judged */
	unsigned failures;	      /* consecutive */
	time_t last_attempt, last_success;
	const char *last_result;
	struct metric_family *m_polls;
};

static void feed_schedule(struct feed *feed, uint64_t delay_ms);

static void feed_release(struct feed *feed)
{
	free(feed->url);
	free(feed->ca);
	free(feed->body);
	free(feed);
}

static void feed_handle_closed(uv_handle_t *h)
{
	struct feed *feed = h->data;
	if (--feed->handles == 0 && feed->free_when_closed)
		feed_release(feed);
}

static void feed_count(struct feed *feed, const char *result)
{
	char labels[64];
	snprintf(labels, sizeof labels, "result=\"%s\"", result);
	metrics_inc(metrics_series(feed->m_polls, labels));
	feed->last_result = result;
}

/* --- libcurl on the loop ------------------------------------------------------------------ */

struct feed_socket {
	uv_poll_t poll;
	curl_socket_t fd;
	struct feed *feed;
};

static void feed_socket_closed(uv_handle_t *h)
{
	struct feed_socket *fs = h->data;
	struct feed *feed = fs->feed;
	free(fs);
	if (--feed->handles == 0 && feed->free_when_closed)
		feed_release(feed);
}

static void feed_check_done(struct feed *feed);

static void feed_poll_cb(uv_poll_t *h, int status, int events)
{
	struct feed_socket *fs = h->data;
	struct feed *feed = fs->feed;
	int flags = status < 0 ? CURL_CSELECT_ERR
			       : ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
				     ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(feed->multi, fs->fd, flags, &running);
	feed_check_done(feed);
}

static int feed_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct feed *feed = userp;
	struct feed_socket *fs = socketp;
	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (fs != NULL) {
			uv_poll_stop(&fs->poll);
			uv_close((uv_handle_t *)&fs->poll, feed_socket_closed);
			curl_multi_assign(feed->multi, s, NULL);
		}
		return 0;
	}
	if (fs == NULL) {
		fs = calloc(1, sizeof *fs);
		if (fs == NULL || uv_poll_init_socket(feed->loop, &fs->poll, s) != 0) {
			free(fs);
			return -1;
		}
		fs->fd = s;
		fs->feed = feed;
		fs->poll.data = fs;
		feed->handles++;
		curl_multi_assign(feed->multi, s, fs);
	}
	int events = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? UV_READABLE : 0) |
		     (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? UV_WRITABLE : 0);
	uv_poll_start(&fs->poll, events, feed_poll_cb);
	return 0;
}

static void feed_curl_timeout(uv_timer_t *t)
{
	struct feed *feed = t->data;
	int running = 0;
	curl_multi_socket_action(feed->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	feed_check_done(feed);
}

static int feed_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct feed *feed = userp;
	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&feed->curl_timer);
	else
		uv_timer_start(&feed->curl_timer, feed_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

static size_t feed_write_cb(char *data, size_t size, size_t n, void *userp)
{
	struct feed *feed = userp;
	size_t len = size * n;
	if (feed->body_len + len > SUSLIST_BYTES_MAX) {
		feed->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (feed->body_len + len + 1 > feed->body_cap) {
		size_t cap = feed->body_cap ? feed->body_cap : 16384;
		while (cap < feed->body_len + len + 1)
			cap *= 2;
		char *b = realloc(feed->body, cap);
		if (b == NULL)
			return 0;
		feed->body = b;
		feed->body_cap = cap;
	}
	memcpy(feed->body + feed->body_len, data, len);
	feed->body_len += len;
	feed->body[feed->body_len] = '\0';
	return len;
}

/* Keeps the ETag of the answer (a quoted string up to FEED_ETAG_MAX - 1 bytes). */
static size_t feed_header_cb(char *data, size_t size, size_t n, void *userp)
{
	struct feed *feed = userp;
	size_t len = size * n;
	if (len > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		const char *v = data + 5;
		size_t vlen = len - 5;
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
				    v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (vlen > 0 && vlen < sizeof feed->new_etag) {
			memcpy(feed->new_etag, v, vlen);
			feed->new_etag[vlen] = '\0';
		}
	}
	return len;
}

/* --- polls --------------------------------------------------------------------------------- */

static void feed_fail(struct feed *feed, const char *result, const char *detail)
{
	feed_count(feed, result);
	if (feed->failures++ == 0) /* once per outage; the metric counts every poll */
		log_event(LOG_WARN, "ministry_feed_unreachable", "{s:s, s:s, s:s}", "url",
			  feed->url, "result", result, "detail", detail);
	uint64_t wait = feed->interval_ms;
	for (unsigned i = 1; i < feed->failures && wait < FEED_BACKOFF_FACTOR * feed->interval_ms;
	     i++)
		wait *= 2;
	if (wait > FEED_BACKOFF_FACTOR * feed->interval_ms)
		wait = FEED_BACKOFF_FACTOR * feed->interval_ms;
	feed_schedule(feed, wait);
}

static void feed_transfer_done(struct feed *feed, CURLcode code)
{
	long status = 0;
	curl_easy_getinfo(feed->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(feed->multi, feed->easy);
	curl_easy_cleanup(feed->easy);
	feed->easy = NULL;
	curl_slist_free_all(feed->headers);
	feed->headers = NULL;
	if (feed->stopping)
		return;
	if (code != CURLE_OK) {
		feed_fail(feed, feed->too_big ? "too_large" : "error",
			  feed->too_big ? "the answer is larger than a signed list may be"
					: curl_easy_strerror(code));
		return;
	}
	if (status == 304) {
		feed_count(feed, "not_modified");
		feed->failures = 0;
		feed->last_success = time(NULL);
		feed_schedule(feed, feed->interval_ms);
		return;
	}
	if (status != 200) {
		char detail[64];
		snprintf(detail, sizeof detail, "HTTP status %ld", status);
		feed_fail(feed, "http_error", detail);
		return;
	}
	if (feed->failures > 0)
		log_event(LOG_INFO, "ministry_feed_reachable", "{s:s, s:i}", "url", feed->url,
			  "failed_polls", (int)feed->failures);
	feed->failures = 0;
	feed->last_success = time(NULL);
	feed->awaiting_result = true;
	feed->on_body(feed->arg, feed->body ? feed->body : "", feed->body_len, uv_hrtime());
}

static void feed_check_done(struct feed *feed)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(feed->multi, &left)) != NULL)
		if (m->msg == CURLMSG_DONE && m->easy_handle == feed->easy)
			feed_transfer_done(feed, m->data.result);
}

static void feed_poll_now(uv_timer_t *t)
{
	struct feed *feed = t->data;
	if (feed->stopping || feed->easy != NULL || feed->awaiting_result)
		return;
	feed->body_len = 0;
	feed->too_big = false;
	feed->new_etag[0] = '\0';
	feed->last_attempt = time(NULL);
	curl_slist_free_all(feed->headers); /* left by a poll that could not start */
	feed->headers = NULL;
	CURL *e = curl_easy_init();
	char inm[FEED_ETAG_MAX + 32];
	if (feed->etag[0] != '\0') {
		snprintf(inm, sizeof inm, "If-None-Match: %s", feed->etag);
		feed->headers = curl_slist_append(NULL, inm);
	}
	if (e == NULL) {
		feed_fail(feed, "error", "out of memory");
		return;
	}
	curl_easy_setopt(e, CURLOPT_URL, feed->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (feed->ca != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, feed->ca);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)feed->timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "madoguchi/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, feed_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, feed);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, feed_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, feed);
	if (feed->headers != NULL)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, feed->headers);
	if (curl_multi_add_handle(feed->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		feed_fail(feed, "error", "cannot start the transfer");
		return;
	}
	feed->easy = e;
}

static void feed_schedule(struct feed *feed, uint64_t delay_ms)
{
	if (!feed->stopping)
		uv_timer_start(&feed->poll_timer, feed_poll_now, delay_ms, 0);
}

void feed_result(struct feed *feed, enum feed_result result)
{
	if (feed == NULL)
		return;
	feed->awaiting_result = false;
	switch (result) {
	case FEED_APPLIED:
	case FEED_UNCHANGED:
		/* The list is judged: do not fetch the same bytes again. */
		snprintf(feed->etag, sizeof feed->etag, "%s", feed->new_etag);
		feed_count(feed, result == FEED_APPLIED ? "applied" : "unchanged");
		break;
	case FEED_REFUSED:
		feed_count(feed, "refused");
		break;
	case FEED_FAILED:
		feed_count(feed, "error");
		break;
	}
	feed_schedule(feed, feed->interval_ms);
}

json_t *feed_status_json(const struct feed *feed)
{
	char attempt[32] = "", success[32] = "";
	if (feed->last_attempt)
		http_format_time(feed->last_attempt, attempt, sizeof attempt);
	if (feed->last_success)
		http_format_time(feed->last_success, success, sizeof success);
	return json_pack("{s:s, s:I, s:s?, s:s?, s:s?, s:i, s:s?}", "url", feed->url,
			 "poll_interval_ms", (json_int_t)feed->interval_ms, "last_attempt",
			 attempt[0] ? attempt : NULL, "last_success", success[0] ? success : NULL,
			 "last_result", feed->last_result, "failures", (int)feed->failures, "etag",
			 feed->etag[0] ? feed->etag : NULL);
}

int feed_start(uv_loop_t *loop, const struct config_ministry *conf, feed_body_fn on_body, void *arg,
	       struct feed **out, char *msg, size_t msg_size)
{
	*out = NULL;
	struct feed *feed = calloc(1, sizeof *feed);
	if (feed == NULL || (feed->url = strdup(conf->feed_url)) == NULL ||
	    (conf->feed_ca != NULL && (feed->ca = strdup(conf->feed_ca)) == NULL) ||
	    (feed->multi = curl_multi_init()) == NULL) {
		if (feed != NULL) {
			free(feed->url);
			free(feed->ca);
		}
		free(feed);
		snprintf(msg, msg_size, "ministry feed: out of memory");
		return -1;
	}
	feed->loop = loop;
	feed->interval_ms = conf->poll_interval_ms;
	feed->timeout_ms = conf->feed_timeout_ms;
	feed->on_body = on_body;
	feed->arg = arg;
	feed->m_polls = metrics_family("madoguchi_ministry_feed_polls_total",
				       "Polls of ministry.feed_url, by result.", METRIC_COUNTER);
	curl_multi_setopt(feed->multi, CURLMOPT_SOCKETFUNCTION, feed_socket_cb);
	curl_multi_setopt(feed->multi, CURLMOPT_SOCKETDATA, feed);
	curl_multi_setopt(feed->multi, CURLMOPT_TIMERFUNCTION, feed_curl_timer_cb);
	curl_multi_setopt(feed->multi, CURLMOPT_TIMERDATA, feed);
	uv_timer_init(loop, &feed->poll_timer);
	uv_timer_init(loop, &feed->curl_timer);
	feed->poll_timer.data = feed->curl_timer.data = feed;
	feed->handles = 2;
	/* Polling alone does not keep the daemon running. */
	uv_unref((uv_handle_t *)&feed->poll_timer);
	uv_unref((uv_handle_t *)&feed->curl_timer);
	log_event(LOG_INFO, "ministry_feed_polling", "{s:s, s:I}", "url", feed->url,
		  "poll_interval_ms", (json_int_t)feed->interval_ms);
	feed_schedule(feed, 0);
	*out = feed;
	return 0;
}

void feed_stop(struct feed *feed)
{
	if (feed == NULL || feed->stopping)
		return;
	feed->stopping = true;
	if (feed->easy != NULL) {
		curl_multi_remove_handle(feed->multi, feed->easy); /* closes its sockets */
		curl_easy_cleanup(feed->easy);
		feed->easy = NULL;
	}
	curl_slist_free_all(feed->headers);
	feed->headers = NULL;
	uv_timer_stop(&feed->poll_timer);
	uv_timer_stop(&feed->curl_timer);
	uv_close((uv_handle_t *)&feed->poll_timer, feed_handle_closed);
	uv_close((uv_handle_t *)&feed->curl_timer, feed_handle_closed);
}

void feed_free(struct feed *feed)
{
	if (feed == NULL)
		return;
	feed_stop(feed);
	curl_multi_cleanup(feed->multi);
	feed->multi = NULL;
	if (feed->handles > 0)
		feed->free_when_closed = true;
	else
		feed_release(feed);
}
