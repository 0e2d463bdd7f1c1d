/*
 * main.c: madoguchid, the appliance daemon.
 *
 * Parses the command line, loads and validates the config (exit 2 on any error, with the
 * file:line:column message), prepares the data directory, starts the listeners on one libuv
 * loop, tells systemd it is ready (sdnotify.c) and runs the loop until a drain completes.
 * --check-config validates a file, TLS material included, without starting anything.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "render.h"
#include "sdnotify.h"
#include "server.h"
#include "tls.h"

#define MADOGUCHID_DEFAULT_CONFIG "/etc/madoguchi/madoguchi.yaml"

enum {
	EXIT_RUNTIME = 1, /* could not start: port in use, bad TLS material at start … */
	EXIT_CONFIG = 2,  /* the config file is invalid, or bad usage */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: madoguchid [--config FILE]\n"
		"       madoguchid --check-config FILE\n"
		"       madoguchid --version | --help\n"
		"\n"
		"Runs the madoguchi certificate-issuance gateway (default config %s).\n"
		"Logs are JSON lines on standard error. SIGTERM or SIGINT drain and stop;\n"
		"SIGHUP reloads the config (an invalid one is logged and ignored).\n"
		"\n"
		"Exit status: 0 stopped cleanly or config valid; 1 could not start;\n"
		"2 invalid config or usage.\n",
		MADOGUCHID_DEFAULT_CONFIG);
}

/* Validates path completely, TLS material included.  Prints the verdict; returns the exit
 * status. */
static int check_config(const char *path)
{
	struct config *cfg = NULL;
	struct config_error err;
	if (config_load(path, &cfg, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return EXIT_CONFIG;
	}
	char msg[CONFIG_ERROR_MAX];
	SSL_CTX *ctx = tls_server_context(cfg, msg, sizeof msg);
	if (ctx == NULL) {
		fprintf(stderr, "%s\n", msg);
		config_unref(cfg);
		return EXIT_CONFIG;
	}
	SSL_CTX_free(ctx);
	printf("%s: ok\n", cfg->path);
	config_unref(cfg);
	return 0;
}

/* Creates the data directory (one level) if it does not exist. */
static int prepare_data_dir(const char *dir)
{
	if (mkdir(dir, 0750) == 0 || errno == EEXIST)
		return 0;
	log_event(LOG_ERROR, "data_dir_unusable", "{s:s, s:s, s:s}", "path", dir, "error",
		  strerror(errno), "detail",
		  "create the directory, owned by the service user, or fix data_dir");
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", required_argument, NULL, 'k'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = MADOGUCHID_DEFAULT_CONFIG;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			return check_config(optarg);
		case 'V':
			printf("madoguchid %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_CONFIG;
	}

	signal(SIGPIPE, SIG_IGN);
	/* Before any thread: the ministry feed poller (feed.c) uses libcurl. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_event(LOG_ERROR, "start_failed", "{s:s}", "error", "libcurl cannot initialise");
		log_flush();
		return EXIT_RUNTIME;
	}
	struct config *cfg = NULL;
	struct config_error err;
	if (config_load(config_path, &cfg, &err) != 0) {
		log_event(LOG_ERROR, "config_invalid", "{s:s, s:s}", "error", err.msg, "detail",
			  "fix the file and start again; madoguchid --check-config FILE checks it");
		log_flush();
		return EXIT_CONFIG;
	}
	if (prepare_data_dir(cfg->data_dir) != 0) {
		config_unref(cfg);
		log_flush();
		return EXIT_RUNTIME;
	}

	/*
	 * libuv sizes its thread pool from the environment when the first work is queued, which
	 * is after this point.  Certificates render there, card proofs and plugin calls run there.
	 */
	char threads[16];
	snprintf(threads, sizeof threads, "%u", cfg->worker_threads);
	setenv("UV_THREADPOOL_SIZE", threads, 1);

	uv_loop_t *loop = uv_default_loop();
	struct server server;
	char msg[CONFIG_ERROR_MAX];
	if (server_start(&server, loop, cfg, msg, sizeof msg) != 0) {
		log_event(LOG_ERROR, "start_failed", "{s:s}", "error", msg);
		log_flush();
		config_unref(cfg);
		uv_run(loop, UV_RUN_NOWAIT); /* let closed handles finish */
		uv_loop_close(loop);
		return EXIT_RUNTIME;
	}
	config_unref(cfg); /* the server holds its own reference */
	/* Every listener is listening: connections queue in the kernel until the loop runs. */
	server_notify_serving(&server, "started");
	uv_run(loop, UV_RUN_DEFAULT);

	server_free(&server);
	uv_run(loop, UV_RUN_NOWAIT);
	uv_loop_close(loop);
	/* Joins the thread pool now, while OpenSSL is still initialised: its per-thread state
	 * (the error queue of each worker) is freed when a thread exits, but not for threads
	 * that outlive OpenSSL's own atexit cleanup, as libuv's destructor would let them. */
	uv_library_shutdown();
	/* The renderer's process-wide caches (faces, fontconfig), so leak checkers see none: the
	 * thread pool is idle once the loop has ended. */
	render_library_shutdown();
	metrics_reset();
	log_flush();
	return 0;
}
