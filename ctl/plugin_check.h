/*
 * plugin_check.h: `madoguchictl plugin check`, the conformance check a vendor runs on a
 * plugin before delivering it (docs/plugin-sdk.md, "Conformance check").
 *
 * It loads the plugin with the daemon's own plugin host (core/plugin_host.c) on a scratch
 * libuv loop, drives fetches through it and prints a report of six checks: abi, fetch,
 * deadline, cancel, concurrency and shutdown.  The report names residents only by number
 * ("resident #2"), never by code or name, so it can be attached to a delivery.
 */
#ifndef MDG_CTL_PLUGIN_CHECK_H
#define MDG_CTL_PLUGIN_CHECK_H

#include <stdbool.h>

/* Exit statuses of plugin_check_main(). */
#define PLUGIN_CHECK_PASS  0 /* every check passed */
#define PLUGIN_CHECK_FAIL  1 /* at least one check failed (the report says which) */
#define PLUGIN_CHECK_USAGE 2 /* bad command line; nothing was checked */

/*
 * Runs the check: argv[0] is "check", then PATH.so and the options
 * [--config FILE.yaml] [--certificate TYPE]... [--resident CODE]... [--concurrency N]
 * [--municipality CODE] [--json].  json: madoguchictl's global --json was given (same as
 * --json here).  Prints the report on stdout, usage errors on stderr; returns a
 * PLUGIN_CHECK_* status.  Single-threaded caller; installs handlers for SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT and SIGALRM so that a crashing or hanging plugin still yields a
 * FAIL verdict naming the check.
 */
int plugin_check_main(int argc, char **argv, bool json);

#endif
