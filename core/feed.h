/*
 * feed.h: polling the ministry's suspension feed (DESIGN §6, `ministry.feed_url`).
 *
 * Every poll_interval one HTTPS GET of feed_url with libcurl's multi interface driven by the
 * event loop (sockets watched with uv_poll, curl's timeouts on a uv_timer), TLS verified
 * against feed_ca or the system's CAs.  The ETag of the last list that was applied (or found
 * not newer) goes out as If-None-Match, so an unchanged feed answers 304 with no body.  A 200
 * body (at most SUSLIST_BYTES_MAX bytes) goes to the owner's callback, which reports what
 * became of it with feed_result() before the next poll is timed.
 *
 * A feed that is unreachable, slow, or answers garbage changes nothing in force: it is counted,
 * logged once per outage, and polled again after a backoff of poll_interval doubled per
 * consecutive failure, at most 4 poll_intervals (so a recovered feed is read again soon).
 * Loop thread only.
 */
#ifndef MDG_FEED_H
#define MDG_FEED_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"

enum feed_result {
	FEED_APPLIED,	/* a newer list is in force */
	FEED_UNCHANGED, /* the list's sequence is the one in force, or older */
	FEED_REFUSED,	/* malformed or badly signed */
	FEED_FAILED,	/* it could not be stored */
};

/* A 200 body, on the loop; received_ns is uv_hrtime() when the last byte arrived. */
typedef void (*feed_body_fn)(void *arg, const char *body, size_t len, uint64_t received_ns);

struct feed;

/* Starts polling (the first poll at once).  0 with *out, or -1 with msg filled. */
int feed_start(uv_loop_t *loop, const struct config_ministry *conf, feed_body_fn on_body, void *arg,
	       struct feed **out, char *msg, size_t msg_size);
/* What became of the body last handed to on_body; times the next poll. */
void feed_result(struct feed *feed, enum feed_result result);
/* Stops polling and aborts a transfer under way (NULL is a no-op). */
void feed_stop(struct feed *feed);
/* Frees it once its handles are closed (after feed_stop(); NULL is a no-op). */
void feed_free(struct feed *feed);
/* {"url", "last_attempt", "last_success", "last_result", "failures", "etag"}. */
json_t *feed_status_json(const struct feed *feed);

#endif
