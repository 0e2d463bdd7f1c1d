/*
 * sdnotify.h: tells systemd (Type=notify) where the daemon is in its life cycle.
 *
 * READY=1 once the listeners accept connections, RELOADING=1 ... READY=1 around a reload,
 * STOPPING=1 when a drain starts, each with a one-line STATUS= for `systemctl status`.
 * Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.  Built without
 * libsystemd (configure says so), every call does nothing too, and the first one warns if
 * $NOTIFY_SOCKET is set, since a Type=notify unit would then wait for READY=1 in vain.
 * Loop thread only.
 */
#ifndef MDG_SDNOTIFY_H
#define MDG_SDNOTIFY_H

/* The state an sdnotify() message reports, besides its status line. */
enum sdnotify_state {
	SDNOTIFY_STATUS_ONLY, /* only STATUS= */
	SDNOTIFY_READY,	      /* READY=1: serving (after start or after a reload) */
	SDNOTIFY_RELOADING,   /* RELOADING=1 (with MONOTONIC_USEC=): a reload has begun */
	SDNOTIFY_STOPPING,    /* STOPPING=1: draining, the process will exit */
};

/*
 * Sends state and, if status is not NULL, STATUS=status (newlines become spaces; longer than
 * SDNOTIFY_STATUS_MAX bytes is cut) as one datagram to $NOTIFY_SOCKET.  Never fails the
 * caller: a send error is logged (once) and otherwise ignored.
 */
void sdnotify(enum sdnotify_state state, const char *status);

#define SDNOTIFY_STATUS_MAX 512

#endif
