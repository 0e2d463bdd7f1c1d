/*
 * sdnotify.c: the daemon's side of systemd's notification protocol (sd_notify(3)).
 *
 * Messages go out at life-cycle transitions only (start, each reload, the start of a drain),
 * never per request.  libsystemd's sd_notify() sends one datagram on a fresh socket and
 * returns; it does not wait for an answer (no sd_notify_barrier() here).  The only way it can
 * wait is a service manager whose notification queue is full, i.e. a PID 1 that no longer
 * reads it.  Without $NOTIFY_SOCKET sd_notify() returns at once without a system call.
 * A failed send is logged once: the service manager then times out the start or reload
 * (TimeoutStartSec), which is where an operator would look.
 * Loop thread only (the "warned" flags are not shared with the worker threads).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "sdnotify.h"

/* Appends "STATUS=" and status, newlines and other control characters made spaces (the
 * protocol is one assignment per line), cut at SDNOTIFY_STATUS_MAX bytes but never inside a
 * UTF-8 character: systemd ignores a STATUS= that is not valid UTF-8 (config values, and so
 * refused-reload messages, may be Japanese). */
static void sdnotify_append_status(char *out, size_t out_size, const char *status)
{
	size_t n = strlen(out);
	int w = snprintf(out + n, out_size - n, "STATUS=");
	if (w < 0 || (size_t)w >= out_size - n)
		return;
	n += (size_t)w;
	size_t start = n, i = 0;
	for (; i < SDNOTIFY_STATUS_MAX && status[i] != '\0' && n + 1 < out_size; i++)
		out[n++] = (unsigned char)status[i] < 0x20 ? ' ' : status[i];
	/* Cut before the text's end: drop a trailing partial character (continuation bytes and
	 * the lead byte they belong to). */
	if (status[i] != '\0' && ((unsigned char)status[i] & 0xC0) == 0x80) {
		while (n > start && ((unsigned char)out[n - 1] & 0xC0) == 0x80)
			n--;
		if (n > start && ((unsigned char)out[n - 1] & 0xC0) == 0xC0)
			n--;
	}
	out[n] = '\0';
}

void sdnotify(enum sdnotify_state state, const char *status)
{
	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	char msg[SDNOTIFY_STATUS_MAX + 128] = "";
	switch (state) {
	case SDNOTIFY_READY:
		snprintf(msg, sizeof msg, "READY=1\n");
		break;
	case SDNOTIFY_RELOADING: {
		/* systemd 253 and later match a reload by this timestamp; older ones ignore it. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\n",
			 (unsigned long long)ts.tv_sec * 1000000ULL +
			     (unsigned long long)ts.tv_nsec / 1000ULL);
		break;
	}
	case SDNOTIFY_STOPPING:
		snprintf(msg, sizeof msg, "STOPPING=1\n");
		break;
	case SDNOTIFY_STATUS_ONLY:
		break;
	}
	if (status != NULL)
		sdnotify_append_status(msg, sizeof msg, status);
	if (msg[0] == '\0')
		return;
#ifdef HAVE_LIBSYSTEMD
	static bool warned_failure;
	int rc = sd_notify(0, msg);
	if (rc < 0 && !warned_failure) {
		warned_failure = true;
		log_event(LOG_WARN, "sd_notify_failed", "{s:s, s:s}", "error", strerror(-rc),
			  "detail",
			  "systemd was not told the daemon's state (NOTIFY_SOCKET is set); "
			  "check that the unit runs madoguchid directly with Type=notify");
	}
#else
	static bool warned_unsupported;
	if (!warned_unsupported) {
		warned_unsupported = true;
		log_event(
		    LOG_WARN, "sd_notify_unsupported", "{s:s}", "detail",
		    "this madoguchid was built without libsystemd and cannot report readiness "
		    "to systemd: rebuild with libsystemd-dev installed, or use Type=exec in the "
		    "unit");
	}
#endif
}
