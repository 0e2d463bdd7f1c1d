/*
 * madoguchictl: the operator's command-line client for madoguchid's admin API.
 *
 * The admin API is HTTP/1.1 with JSON bodies on a Unix socket (DESIGN.md §7); file permissions
 * on that socket decide who may use it, so this program needs no credentials of its own. It
 * finds the socket through --socket, else $MADOGUCHI_SOCKET, else /run/madoguchi/admin.sock,
 * sends one request with libcurl (CURLOPT_UNIX_SOCKET_PATH, URL http://localhost/...), and
 * prints either a human summary or, with --json, the reply pretty-printed.
 *
 * Adding a subcommand: write a handler `static int cmd_NAME(const struct ctl_context *, int,
 * char **)` that calls ctl_call() (or ctl_request() when it must look at the HTTP status
 * itself) and add one row to ctl_commands[]; usage text is generated from that table.
 *
 * The kill-switch commands (DESIGN.md §6) are suspend, resume, suspensions and `ministry apply`;
 * `ministry keygen` and `ministry sign` are the ministry's side of the signed suspension list and
 * run offline, without a daemon (they make and use Ed25519 keys; the list is written in YAML).
 *
 * Exit codes (stable; scripts depend on them):
 *   0  success
 *   1  the daemon answered with an error (problem+json printed as "title: detail (code)"), or
 *      an offline command could not do its work (unusable input file or key)
 *   2  usage error
 *   3  the daemon could not be reached (socket missing, refused, timed out)
 *
 * Single-threaded; all state lives in main()'s ctl_context and in per-call locals.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "audit.h"
#include "doccode.h"
#include "ossl.h"
#include "plugin_check.h"
#include "record.h"
#include "render.h"
#include "suslist.h"

#ifndef PACKAGE_VERSION
#error "PACKAGE_VERSION must be defined (the build passes -include mdg-autoconf.h)"
#endif

#define CTL_PROG	      "madoguchictl"
#define CTL_DEFAULT_SOCKET    "/run/madoguchi/admin.sock"
#define CTL_SOCKET_ENV	      "MADOGUCHI_SOCKET"
#define CTL_DEFAULT_TIMEOUT_S 30.0
/* A reply larger than this is refused rather than buffered; later streaming commands
 * (audit export) should write through instead of using ctl_request(). */
#define CTL_MAX_REPLY_BYTES (64u * 1024u * 1024u)

enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_DAEMON_ERROR = 1,
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_UNREACHABLE = 3,
};

/* What every command needs to talk to the daemon; filled once by main() from the options. */
struct ctl_context {
	const char *socket_path;
	bool json_output;
	long timeout_ms;
};

/* An operator-facing message, written by the function that failed. */
struct ctl_error {
	char message[1024];
};

/* Growable buffer the libcurl write callback appends the reply body to. */
struct ctl_buffer {
	char *data;
	size_t len;
	size_t cap;
	bool too_large;
};

struct ctl_command {
	const char *name;
	const char *args;    /* shown after the name in usage, "" when none */
	const char *summary; /* one line for the usage text */
	int (*run)(const struct ctl_context *ctx, int argc, char **argv);
};

static int cmd_status(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_help(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_render(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_verify(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_keys(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_linkage(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_audit(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_suspend(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_resume(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_suspensions(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_ministry(const struct ctl_context *ctx, int argc, char **argv);
static int cmd_plugin(const struct ctl_context *ctx, int argc, char **argv);

/* The subcommands, in the order usage lists them. Append rows; keep `help` last. */
static const struct ctl_command ctl_commands[] = {
    {"status", "", "show the daemon's state, listeners and plugins (GET /v1/status)", cmd_status},
    {"render", "--record FILE.json --certificate TYPE -o OUT.pdf [--key document.key]",
     "render a certificate preview from a record offline (no daemon); also\n"
     "                         [--municipality-name NAME] [--issuance-id ID] [--mayor-name NAME]\n"
     "                         [--seal MAYOR.png] [--seal-impressions DIR] [--issued-at UNIX]",
     cmd_render},
    {"verify", "--public-key PUB.pem CODE",
     "check a page's verification code offline; prints issuance and page", cmd_verify},
    {"keys", "", "print the document-signing public keys (GET /v1/keys)", cmd_keys},
    {"linkage", "import FILE.csv [--replace]",
     "load card_serial,resident_code lines into the linkage table (POST /v1/linkage);\n"
     "                         --replace makes the file the whole table",
     cmd_linkage},
    {"audit",
     "verify --db AUDIT.sqlite --public-key PUB.pem [--public-key OLD.pem]... | export --db "
     "AUDIT.sqlite",
     "check the audit chain and its signed checkpoints, or print its rows as JSON\n"
     "                         lines (offline, on the file; safe while the daemon runs)",
     cmd_audit},
    {"suspend", "PLUGIN --reason TEXT [--certificates TYPE[,TYPE...]] [--mode immediate|drain]",
     "stop a plugin instance serving all its certificate types (or the named\n"
     "                         ones) until resumed (POST /v1/plugins/PLUGIN/suspend);\n"
     "                         mode immediate (default) also stops deliveries in flight",
     cmd_suspend},
    {"resume", "PLUGIN [--certificates TYPE[,TYPE...]] [--ack-integrity-fault]",
     "lift the city's own suspensions of those types (all when omitted);\n"
     "                         --ack-integrity-fault also lifts an integrity-fault one.\n"
     "                         A ministry suspension is lifted only by a newer signed list",
     cmd_resume},
    {"suspensions", "[--json]",
     "list the suspensions in force and the ministry list in force\n"
     "                         (GET /v1/suspensions)",
     cmd_suspensions},
    {"ministry", "apply FILE.json | keygen --out PREFIX | sign LIST.yaml ...",
     "apply: push a signed suspension list to the appliance\n"
     "                         (POST /v1/ministry/suspension-list).\n"
     "                         Offline, for the ministry's signing station: keygen writes an\n"
     "                         Ed25519 key pair PREFIX.key (mode 0600) and PREFIX.pub and prints\n"
     "                         its key id; sign makes a signed list from YAML:\n"
     "                           sign LIST.yaml --key K.key [--key K2.key ...] --sequence N\n"
     "                                --expires TIME [--issued-at TIME] [-o OUT.json]\n"
     "                         TIME is YYYY-MM-DDTHH:MM:SSZ (UTC); --expires also takes a\n"
     "                         duration from now: 30d, 12h, 90m (docs/kill-switch.md)",
     cmd_ministry},
    {"plugin", "check PATH.so --resident CODE --resident CODE... [--config FILE.yaml]",
     "offline (no daemon): load a plugin in a scratch host, run the conformance\n"
     "                         checks (abi, fetch, deadline, cancel, concurrency, shutdown) and\n"
     "                         print a report for its delivery; also [--certificate TYPE]...\n"
     "                         [--concurrency N] [--municipality CODE] [--json]; exit 0 when\n"
     "                         every check passes, 1 when one fails (docs/plugin-sdk.md)",
     cmd_plugin},
    {"help", "", "show this help", cmd_help},
};

/*
 * ctl_error_set: format an operator-facing message into err (which may be NULL).
 * Returns `code` so callers can write `return ctl_error_set(err, CODE, ...)`.
 */
__attribute__((format(printf, 3, 4))) static int ctl_error_set(struct ctl_error *err, int code,
							       const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* ctl_usage_error: report a command-line mistake; returns CTL_EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) static int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, CTL_PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" CTL_PROG " --help'.\n");
	return CTL_EXIT_USAGE;
}

/*
 * ctl_buffer_append: libcurl write callback; appends the chunk to the ctl_buffer in userdata.
 * Returns the number of bytes taken; anything else makes libcurl abort the transfer
 * (CURLE_WRITE_ERROR), which happens on out-of-memory or past CTL_MAX_REPLY_BYTES.
 */
static size_t ctl_buffer_append(char *chunk, size_t size, size_t nmemb, void *userdata)
{
	struct ctl_buffer *buf = userdata;
	size_t n = size * nmemb;

	if (n > CTL_MAX_REPLY_BYTES - buf->len) {
		buf->too_large = true;
		return 0;
	}
	if (buf->len + n + 1 > buf->cap) {
		size_t cap = buf->cap ? buf->cap : 4096;
		while (cap < buf->len + n + 1)
			cap *= 2;
		char *grown = realloc(buf->data, cap);
		if (grown == NULL)
			return 0;
		buf->data = grown;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, chunk, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/*
 * ctl_describe_unreachable: fill err with why the socket could not be used and what to try.
 * `why` is libcurl's or strerror()'s short text.
 */
static int ctl_describe_unreachable(const struct ctl_context *ctx, const char *why,
				    struct ctl_error *err)
{
	return ctl_error_set(
	    err, CTL_EXIT_UNREACHABLE,
	    "cannot reach madoguchid on the admin socket %s: %s\n"
	    "  Is madoguchid running? Point at its listeners.admin.unix socket with "
	    "--socket PATH or " CTL_SOCKET_ENV "=PATH.",
	    ctx->socket_path, why);
}

/*
 * ctl_request: send one HTTP request to the admin socket and collect the reply.
 *
 * method is "GET", "POST", ...; path starts with '/'; body (borrowed, may be NULL) is sent
 * as application/json. On success returns CTL_EXIT_OK, sets *http_status to the HTTP status
 * (whatever it is: checking it is the caller's job) and *json_reply to the parsed reply, or
 * NULL when the body was empty; the caller owns *json_reply (json_decref). On failure fills
 * err and returns CTL_EXIT_UNREACHABLE (no HTTP answer: socket missing, refused, timed out,
 * connection dropped) or CTL_EXIT_DAEMON_ERROR (an answer that is not JSON or is too large);
 * *json_reply is then NULL.
 */
static int ctl_request(const struct ctl_context *ctx, const char *method, const char *path,
		       const char *body_text, size_t body_len, const char *content_type,
		       long *http_status, json_t **json_reply, struct ctl_error *err)
{
	struct ctl_buffer reply = {0};
	struct curl_slist *headers = NULL;
	char url[2048], type_header[128];
	char curl_message[CURL_ERROR_SIZE] = "";
	int rc = CTL_EXIT_OK;

	*http_status = 0;
	*json_reply = NULL;

	if ((size_t)snprintf(url, sizeof url, "http://localhost%s", path) >= sizeof url)
		return ctl_error_set(err, CTL_EXIT_USAGE, "request path too long: %.64s...", path);

	CURL *curl = curl_easy_init();
	if (curl == NULL)
		return ctl_error_set(err, CTL_EXIT_DAEMON_ERROR,
				     "cannot initialise libcurl (out of memory?)");

	headers = curl_slist_append(headers, "Accept: application/json, application/problem+json");
	headers = curl_slist_append(headers, "Expect:");
	if (body_text != NULL) {
		snprintf(type_header, sizeof type_header, "Content-Type: %s", content_type);
		headers = curl_slist_append(headers, type_header);
	}
	if (headers == NULL) {
		rc =
		    ctl_error_set(err, CTL_EXIT_DAEMON_ERROR, "out of memory building the request");
		goto out;
	}

	curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, ctx->socket_path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	/* The admin socket is local: never let http_proxy and friends redirect it. */
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, CTL_PROG "/" PACKAGE_VERSION);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_message);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ctx->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, ctx->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ctl_buffer_append);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
	if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body_text ? body_text : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body_text ? body_len : 0));
	}

	CURLcode res = curl_easy_perform(curl);
	if (res != CURLE_OK) {
		long os_errno = 0;
		curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
		if (reply.too_large) {
			rc = ctl_error_set(err, CTL_EXIT_DAEMON_ERROR,
					   "%s %s: the daemon's reply exceeds %u MiB; refusing it",
					   method, path, CTL_MAX_REPLY_BYTES / (1024u * 1024u));
		} else if (res == CURLE_OPERATION_TIMEDOUT) {
			char why[128];
			snprintf(why, sizeof why,
				 "no answer within %.3g s (raise it with --timeout)",
				 (double)ctx->timeout_ms / 1000.0);
			rc = ctl_describe_unreachable(ctx, why, err);
		} else if (res == CURLE_COULDNT_CONNECT && os_errno != 0) {
			rc = ctl_describe_unreachable(ctx, strerror((int)os_errno), err);
		} else {
			rc = ctl_describe_unreachable(
			    ctx, curl_message[0] ? curl_message : curl_easy_strerror(res), err);
		}
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, http_status);

	if (reply.len > 0) {
		json_error_t jerr;
		*json_reply = json_loadb(reply.data, reply.len, 0, &jerr);
		if (*json_reply == NULL) {
			rc = ctl_error_set(
			    err, CTL_EXIT_DAEMON_ERROR,
			    "%s %s: the daemon answered HTTP %ld with a body that is "
			    "not JSON (%s at byte %d); is %s really madoguchid's admin "
			    "socket?",
			    method, path, *http_status, jerr.text, jerr.position, ctx->socket_path);
		}
	}

out:
	curl_easy_cleanup(curl);
	curl_slist_free_all(headers);
	free(reply.data);
	return rc;
}

/* ctl_json_string: the string member `key` of object obj, or NULL when absent / not a string. */
static const char *ctl_json_string(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* ctl_print_json: pretty-print value to stdout (the --json output). */
static void ctl_print_json(const json_t *value)
{
	if (value == NULL) {
		puts("null");
		return;
	}
	json_dumpf(value, stdout, JSON_INDENT(2));
	putchar('\n');
}

/*
 * ctl_report_problem: print an error answer to stderr as "madoguchictl: title: detail (code)",
 * using whatever parts of the RFC 9457 problem document are present, and falling back to the
 * HTTP status. With --json the problem document also goes to stdout for scripts.
 * Returns CTL_EXIT_DAEMON_ERROR.
 */
static int ctl_report_problem(const struct ctl_context *ctx, const char *method, const char *path,
			      long http_status, const json_t *problem)
{
	const char *title = ctl_json_string(problem, "title");
	const char *detail = ctl_json_string(problem, "detail");
	const char *code = ctl_json_string(problem, "code");

	if (ctx->json_output && problem != NULL)
		ctl_print_json(problem);

	fprintf(stderr, CTL_PROG ": ");
	if (title != NULL)
		fprintf(stderr, "%s", title);
	else
		fprintf(stderr, "%s %s failed with HTTP %ld (the daemon's log may say why)", method,
			path, http_status);
	if (detail != NULL)
		fprintf(stderr, ": %s", detail);
	if (code != NULL)
		fprintf(stderr, " (%s)", code);
	fputc('\n', stderr);
	return CTL_EXIT_DAEMON_ERROR;
}

/*
 * ctl_call: ctl_request() plus the common handling every plain command wants.
 * On a 2xx answer returns CTL_EXIT_OK with *json_reply owned by the caller (may be NULL for an
 * empty body). Otherwise prints the problem or the transport error to stderr and returns the
 * exit code to use; *json_reply is NULL.
 */
static int ctl_call_raw(const struct ctl_context *ctx, const char *method, const char *path,
			const char *body_text, size_t body_len, const char *content_type,
			json_t **json_reply)
{
	struct ctl_error err = {{0}};
	long http_status = 0;

	int rc = ctl_request(ctx, method, path, body_text, body_len, content_type, &http_status,
			     json_reply, &err);
	if (rc != CTL_EXIT_OK) {
		fprintf(stderr, CTL_PROG ": %s\n", err.message);
		return rc;
	}
	if (http_status < 200 || http_status > 299) {
		rc = ctl_report_problem(ctx, method, path, http_status, *json_reply);
		json_decref(*json_reply);
		*json_reply = NULL;
	}
	return rc;
}

/* ctl_call with a JSON body (or none): see ctl_call_raw(). */
static int ctl_call(const struct ctl_context *ctx, const char *method, const char *path,
		    const json_t *body, json_t **json_reply)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body != NULL && text == NULL) {
		fprintf(stderr, CTL_PROG ": cannot encode the request body as JSON\n");
		return CTL_EXIT_DAEMON_ERROR;
	}
	int rc = ctl_call_raw(ctx, method, path, text, text ? strlen(text) : 0, "application/json",
			      json_reply);
	free(text);
	return rc;
}

/*
 * ctl_scalar_text: render a JSON value for a human in buf (strings unquoted, numbers and
 * booleans as JSON, anything else compact JSON, truncated to fit). Returns buf.
 */
static const char *ctl_scalar_text(const json_t *value, char *buf, size_t size)
{
	if (json_is_string(value)) {
		snprintf(buf, size, "%s", json_string_value(value));
	} else if (json_is_integer(value)) {
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
	} else {
		char *text = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		snprintf(buf, size, "%s", text ? text : "?");
		free(text);
	}
	return buf;
}

/* ctl_format_duration: "3d 4h 5m", "4h 5m 6s", "12s"; writes into buf and returns it. */
static const char *ctl_format_duration(json_int_t seconds, char *buf, size_t size)
{
	json_int_t d = seconds / 86400, h = seconds % 86400 / 3600;
	json_int_t m = seconds % 3600 / 60, s = seconds % 60;

	if (d > 0)
		snprintf(buf, size,
			 "%" JSON_INTEGER_FORMAT "d %" JSON_INTEGER_FORMAT "h %" JSON_INTEGER_FORMAT
			 "m",
			 d, h, m);
	else if (h > 0)
		snprintf(buf, size,
			 "%" JSON_INTEGER_FORMAT "h %" JSON_INTEGER_FORMAT "m %" JSON_INTEGER_FORMAT
			 "s",
			 h, m, s);
	else if (m > 0)
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT "m %" JSON_INTEGER_FORMAT "s", m, s);
	else
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT "s", s);
	return buf;
}

/* ctl_print_field: print "label:  value" for status's member `key`, when present. */
static void ctl_print_field(const json_t *status, const char *label, const char *key)
{
	const json_t *value = json_object_get(status, key);

	if (value != NULL && !json_is_null(value)) {
		char text[512];
		printf("%-10s %s\n", label, ctl_scalar_text(value, text, sizeof text));
	}
}

/* ctl_print_listeners: the "listeners:" block of `status`; odd entries are shown as JSON. */
static void ctl_print_listeners(const json_t *listeners)
{
	size_t i;
	json_t *l;
	int name_w = 4, addr_w = 7;

	if (!json_is_array(listeners))
		return;
	json_array_foreach(listeners, i, l)
	{
		const char *name = ctl_json_string(l, "name");
		const char *addr = ctl_json_string(l, "address");
		if (name != NULL && (int)strlen(name) > name_w)
			name_w = (int)strlen(name);
		if (addr != NULL && (int)strlen(addr) > addr_w)
			addr_w = (int)strlen(addr);
	}
	printf("listeners:%s\n", json_array_size(listeners) == 0 ? " none" : "");
	json_array_foreach(listeners, i, l)
	{
		if (!json_is_object(l)) {
			char text[512];
			printf("  %s\n", ctl_scalar_text(l, text, sizeof text));
			continue;
		}
		const char *name = ctl_json_string(l, "name");
		const char *addr = ctl_json_string(l, "address");
		const json_t *conns = json_object_get(l, "connections");
		printf("  %-*s  ", name_w, name ? name : "?");
		if (json_is_integer(conns)) {
			json_int_t n = json_integer_value(conns);
			printf("%-*s  %" JSON_INTEGER_FORMAT " connection%s", addr_w,
			       addr ? addr : "-", n, n == 1 ? "" : "s");
		} else {
			printf("%s", addr ? addr : "-");
		}
		putchar('\n');
	}
}

/*
 * ctl_print_plugins: the "plugins:" block of `status`. Entries are objects with name, version
 * and state when the daemon has plugins (DESIGN.md §7); anything else is printed as JSON.
 */
static void ctl_print_plugins(const json_t *plugins)
{
	size_t i;
	json_t *p;

	if (!json_is_array(plugins))
		return;
	printf("plugins:%s\n", json_array_size(plugins) == 0 ? "   none" : "");
	json_array_foreach(plugins, i, p)
	{
		if (!json_is_object(p)) {
			char text[512];
			printf("  %s\n", ctl_scalar_text(p, text, sizeof text));
			continue;
		}
		const char *name = ctl_json_string(p, "name");
		const char *version = ctl_json_string(p, "version");
		const char *state = ctl_json_string(p, "state");
		printf("  %s", name ? name : "?");
		if (version != NULL)
			printf(" %s", version);
		if (state != NULL)
			printf(" (%s)", state);
		putchar('\n');
	}
}

/*
 * cmd_status: GET /v1/status and print it. Prints whatever known fields are present and
 * ignores unknown ones, so it keeps working against newer and older daemons.
 */
static int cmd_status(const struct ctl_context *ctx, int argc, char **argv)
{
	json_t *status = NULL;

	if (argc > 1) {
		return ctl_usage_error("status takes no arguments (got '%s')", argv[1]);
	}
	int rc = ctl_call(ctx, "GET", "/v1/status", NULL, &status);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctx->json_output) {
		ctl_print_json(status);
		json_decref(status);
		return CTL_EXIT_OK;
	}
	if (!json_is_object(status)) {
		fprintf(stderr,
			CTL_PROG ": GET /v1/status: expected a JSON object from the daemon; "
				 "run with --json to see what it sent\n");
		json_decref(status);
		return CTL_EXIT_DAEMON_ERROR;
	}

	/* Headline: "madoguchid 0.1.0: serving (pid 123)". */
	const char *version = ctl_json_string(status, "version");
	const char *state = ctl_json_string(status, "state");
	const json_t *pid = json_object_get(status, "pid");
	printf("madoguchid");
	if (version != NULL)
		printf(" %s", version);
	printf(": %s", state ? state : "state unknown");
	if (json_is_integer(pid))
		printf(" (pid %" JSON_INTEGER_FORMAT ")", json_integer_value(pid));
	putchar('\n');

	const json_t *started = json_object_get(status, "started_at");
	const json_t *uptime = json_object_get(status, "uptime_seconds");
	if (json_is_string(started) || json_is_integer(uptime)) {
		printf("%-10s", "started:");
		if (json_is_string(started))
			printf(" %s", json_string_value(started));
		if (json_is_integer(uptime)) {
			char text[64];
			printf(json_is_string(started) ? " (up %s)" : " up %s",
			       ctl_format_duration(json_integer_value(uptime), text, sizeof text));
		}
		putchar('\n');
	}
	ctl_print_field(status, "config:", "config");
	ctl_print_listeners(json_object_get(status, "listeners"));
	ctl_print_plugins(json_object_get(status, "plugins"));

	json_decref(status);
	return CTL_EXIT_OK;
}

/*
 * ctl_read_json_file: parse the JSON file at path; NULL with a message on stderr on failure.
 */
static json_t *ctl_read_json_file(const char *path)
{
	json_error_t jerr;
	json_t *value = json_load_file(path, 0, &jerr);
	if (value == NULL)
		fprintf(stderr, CTL_PROG ": cannot read %s: %s (line %d)\n", path, jerr.text,
			jerr.line);
	return value;
}

/*
 * cmd_render: render a record JSON (the shape of record_json(): certificate, resident_code,
 * version, status, as_of, fields, lists) to a PDF, offline.  Without --key the pages are
 * signed with a throwaway key, which is said on stderr: such a preview's codes verify against
 * nothing an operator holds.
 */
static int cmd_render(const struct ctl_context *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"record", required_argument, NULL, 'r'},
	    {"certificate", required_argument, NULL, 'c'},
	    {"output", required_argument, NULL, 'o'},
	    {"key", required_argument, NULL, 'k'},
	    {"municipality-name", required_argument, NULL, 'm'},
	    {"issuance-id", required_argument, NULL, 'i'},
	    {"mayor-name", required_argument, NULL, 'n'},
	    {"seal", required_argument, NULL, 's'},
	    {"seal-impressions", required_argument, NULL, 'S'},
	    {"issued-at", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	const char *record_path = NULL, *certificate = NULL, *output = NULL, *key_path = NULL;
	struct render_meta meta = {
	    .issuance_id = "preview-000000",
	    .issued_at = time(NULL),
	    .municipality_name = "（市区町村名未設定）",
	};
	int opt;
	(void)ctx;

	optind = 0; /* re-initialise getopt for the command's own options */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			record_path = optarg;
			break;
		case 'c':
			certificate = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case 'k':
			key_path = optarg;
			break;
		case 'm':
			meta.municipality_name = optarg;
			break;
		case 'i':
			meta.issuance_id = optarg;
			break;
		case 'n':
			meta.mayor_name = optarg;
			break;
		case 's':
			meta.seal_png = optarg;
			break;
		case 'S':
			meta.seal_impressions_dir = optarg;
			break;
		case 't': {
			char *end = NULL;
			long long t = strtoll(optarg, &end, 10);
			if (end == optarg || *end != '\0' || t < 0)
				return ctl_usage_error("render: --issued-at needs Unix seconds");
			meta.issued_at = (time_t)t;
			break;
		}
		case ':':
			return ctl_usage_error("render: option '%s' needs a value",
					       argv[optind - 1]);
		default:
			return ctl_usage_error("render: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return ctl_usage_error("render: unexpected argument '%s'", argv[optind]);
	if (record_path == NULL || certificate == NULL || output == NULL)
		return ctl_usage_error("render needs --record FILE.json, --certificate TYPE and -o "
				       "OUT.pdf");
	if (render_certificate_title(certificate) == NULL)
		return ctl_usage_error("render: unknown certificate type '%s' (one of residence, "
				       "residence-record, seal, tax-income, koseki-full, "
				       "koseki-individual, koseki-attachment)",
				       certificate);
	if (!doccode_issuance_id_ok(meta.issuance_id))
		return ctl_usage_error("render: --issuance-id must be 1-64 characters of A-Z a-z "
				       "0-9 . _ -");

	json_t *record = ctl_read_json_file(record_path);
	if (record == NULL)
		return CTL_EXIT_DAEMON_ERROR;
	const char *rec_type = ctl_json_string(record, "certificate");
	if (!json_is_object(record) || (rec_type != NULL && strcmp(rec_type, certificate) != 0)) {
		fprintf(stderr,
			CTL_PROG ": %s is a record for '%s', not for '%s' (or not a JSON object)\n",
			record_path, rec_type ? rec_type : "?", certificate);
		json_decref(record);
		return CTL_EXIT_DAEMON_ERROR;
	}
	json_object_set_new(record, "certificate", json_string(certificate));

	char err[512];
	struct doc_signer *signer = NULL;
	int rc = key_path ? doc_signer_load(key_path, &signer, err, sizeof err)
			  : doc_signer_generate(&signer, err, sizeof err);
	if (rc != DOCCODE_OK) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		json_decref(record);
		return CTL_EXIT_DAEMON_ERROR;
	}
	if (key_path == NULL)
		fprintf(stderr,
			CTL_PROG ": no --key given: signing with a throwaway key (id %s); this "
				 "preview's codes verify against no real key\n",
			doc_signer_key_id(signer));

	struct render_output out;
	rc = render_document(record, &meta, signer, &out, err, sizeof err);
	json_decref(record);
	doc_signer_free(signer);
	render_library_shutdown();
	if (rc != RENDER_OK) {
		fprintf(stderr, CTL_PROG ": cannot render %s: %s\n", record_path, err);
		return CTL_EXIT_DAEMON_ERROR;
	}
	FILE *f = fopen(output, "wb");
	int write_ok = f != NULL && fwrite(out.pdf, 1, out.pdf_len, f) == out.pdf_len;
	if (f != NULL && fclose(f) != 0)
		write_ok = 0;
	if (!write_ok) {
		fprintf(stderr, CTL_PROG ": cannot write %s: %s\n", output, strerror(errno));
		render_output_free(&out);
		return CTL_EXIT_DAEMON_ERROR;
	}
	printf("wrote %s: %s, %u page%s, %zu bytes, digest %s\n", output,
	       render_certificate_title(certificate), out.pages, out.pages == 1 ? "" : "s",
	       out.pdf_len, out.digest);
	render_output_free(&out);
	return CTL_EXIT_OK;
}

/*
 * cmd_verify: check one page code against a public key (PEM SPKI), offline.  Exit 0 and
 * "valid: issuance ID, page n/N" when it verifies; exit 1 with the reason when it does not.
 */
static int cmd_verify(const struct ctl_context *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"public-key", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	const char *pub_path = NULL;
	int opt;
	(void)ctx;

	optind = 0; /* re-initialise getopt for the command's own options */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			pub_path = optarg;
			break;
		case ':':
			return ctl_usage_error("verify: option '%s' needs a value",
					       argv[optind - 1]);
		default:
			return ctl_usage_error("verify: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (pub_path == NULL || optind != argc - 1)
		return ctl_usage_error("verify needs --public-key PUB.pem and one CODE");

	char err[512];
	struct doc_verifier *verifier = NULL;
	if (doc_verifier_load(pub_path, &verifier, err, sizeof err) != DOCCODE_OK) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		return CTL_EXIT_DAEMON_ERROR;
	}
	struct doccode_info info;
	int rc = doccode_verify(verifier, argv[optind], &info, err, sizeof err);
	doc_verifier_free(verifier);
	if (rc != DOCCODE_OK) {
		fprintf(stderr, CTL_PROG ": the code does NOT verify: %s\n", err);
		return CTL_EXIT_DAEMON_ERROR;
	}
	printf("valid: issuance %s, page %u/%u, document digest %s, key %s\n", info.issuance_id,
	       info.page, info.pages, info.digest, info.key_id);
	return CTL_EXIT_OK;
}

/* cmd_keys: GET /v1/keys; prints each key's id and PEM (or the JSON with --json). */
static int cmd_keys(const struct ctl_context *ctx, int argc, char **argv)
{
	json_t *reply = NULL;
	if (argc > 1)
		return ctl_usage_error("keys takes no arguments (got '%s')", argv[1]);
	int rc = ctl_call(ctx, "GET", "/v1/keys", NULL, &reply);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctx->json_output) {
		ctl_print_json(reply);
	} else {
		size_t i;
		json_t *k;
		json_array_foreach(json_object_get(reply, "keys"), i, k)
		{
			printf("key %s (%s)\n%s", ctl_json_string(k, "key_id"),
			       ctl_json_string(k, "alg"), ctl_json_string(k, "public_key_pem"));
		}
		if (json_array_size(json_object_get(reply, "keys")) == 0)
			printf("no document keys (the daemon has no issuance section)\n");
	}
	json_decref(reply);
	return CTL_EXIT_OK;
}

/* Reads a whole file into a malloc'd buffer; NULL with errno set on failure. */
static char *ctl_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t cap = 0, n = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (n + 65536 > cap) {
			char *d = realloc(data, cap = cap ? cap * 2 : 1 << 20);
			if (d == NULL) {
				free(data);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			data = d;
		}
		size_t got = fread(data + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	int failed = ferror(f);
	fclose(f);
	if (failed) {
		free(data);
		errno = EIO;
		return NULL;
	}
	*len = n;
	return data;
}

/* cmd_linkage: "linkage import FILE [--replace]" through POST /v1/linkage. */
static int cmd_linkage(const struct ctl_context *ctx, int argc, char **argv)
{
	bool replace = false;
	const char *file = NULL;
	if (argc < 2 || strcmp(argv[1], "import") != 0)
		return ctl_usage_error("linkage: the subcommand is 'import FILE.csv [--replace]'");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--replace") == 0)
			replace = true;
		else if (file == NULL && argv[i][0] != '-')
			file = argv[i];
		else
			return ctl_usage_error("linkage import: unexpected '%s'", argv[i]);
	}
	if (file == NULL)
		return ctl_usage_error("linkage import needs the CSV file");
	size_t len = 0;
	char *csv = ctl_read_file(file, &len);
	if (csv == NULL) {
		fprintf(stderr, CTL_PROG ": cannot read %s: %s\n", file, strerror(errno));
		return CTL_EXIT_DAEMON_ERROR;
	}
	json_t *reply = NULL;
	int rc = ctl_call_raw(ctx, "POST", replace ? "/v1/linkage?replace=true" : "/v1/linkage",
			      csv, len, "text/csv", &reply);
	free(csv);
	if (rc == CTL_EXIT_OK) {
		if (ctx->json_output)
			ctl_print_json(reply);
		else
			printf("imported %lld card(s)%s; the table now links %lld card(s)\n",
			       (long long)json_integer_value(json_object_get(reply, "imported")),
			       replace ? " (replacing the table)" : "",
			       (long long)json_integer_value(json_object_get(reply, "cards")));
	}
	json_decref(reply);
	return rc;
}

/*
 * cmd_audit: "audit verify --db F --public-key P [--public-key P2 ...]" (the document key and
 * any retired ones, for a database that lived through a key rotation) and "audit export --db
 * F", offline.
 */
static int cmd_audit(const struct ctl_context *ctx, int argc, char **argv)
{
	const char *db = NULL, *pub[AUDIT_VERIFY_KEYS_MAX];
	size_t npub = 0;
	char err[512];
	(void)ctx;
	if (argc < 2 || (strcmp(argv[1], "verify") != 0 && strcmp(argv[1], "export") != 0))
		return ctl_usage_error("audit: the subcommand is 'verify' or 'export'");
	bool verify = strcmp(argv[1], "verify") == 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			db = argv[++i];
		else if (verify && strcmp(argv[i], "--public-key") == 0 && i + 1 < argc) {
			if (npub == AUDIT_VERIFY_KEYS_MAX)
				return ctl_usage_error("audit verify: at most %d --public-key",
						       AUDIT_VERIFY_KEYS_MAX);
			pub[npub++] = argv[++i];
		} else
			return ctl_usage_error("audit %s: unexpected '%s'", argv[1], argv[i]);
	}
	if (db == NULL || (verify && npub == 0))
		return ctl_usage_error(verify ? "audit verify needs --db AUDIT.sqlite and "
						"--public-key PUB.pem"
					      : "audit export needs --db AUDIT.sqlite");
	if (!verify) {
		uint64_t rows = 0;
		if (audit_export(db, stdout, &rows, err, sizeof err) != AUDIT_OK) {
			fprintf(stderr, CTL_PROG ": %s\n", err);
			return CTL_EXIT_DAEMON_ERROR;
		}
		fprintf(stderr, CTL_PROG ": exported %llu row(s)\n", (unsigned long long)rows);
		return CTL_EXIT_OK;
	}
	struct audit_verify_report rep;
	int rc = audit_verify(db, pub, npub, &rep, err, sizeof err);
	if (rc == AUDIT_OK) {
		printf("audit chain intact: %llu row(s), %llu signed checkpoint(s), head %lld %s\n",
		       (unsigned long long)rep.rows_checked,
		       (unsigned long long)rep.checkpoints_checked, (long long)rep.last_seq,
		       rep.last_hash);
		return CTL_EXIT_OK;
	}
	if (rc == AUDIT_CORRUPT)
		fprintf(stderr, CTL_PROG ": the audit chain does NOT verify at row %lld: %s\n",
			(long long)rep.first_bad_seq, rep.problem);
	else
		fprintf(stderr, CTL_PROG ": %s\n", err);
	return CTL_EXIT_DAEMON_ERROR;
}

/* ---- the kill switch: suspend, resume, suspensions (DESIGN.md §6, §7) ---------------------- */

/*
 * ctl_exchange: ctl_request() for commands that look at error answers themselves: prints a
 * transport failure to stderr and returns its exit code; else CTL_EXIT_OK with *http_status
 * and *reply (owned by the caller, may be NULL) whatever the status.
 */
static int ctl_exchange(const struct ctl_context *ctx, const char *method, const char *path,
			const char *body_text, size_t body_len, long *http_status, json_t **reply)
{
	struct ctl_error err = {{0}};
	int rc = ctl_request(ctx, method, path, body_text, body_len, "application/json",
			     http_status, reply, &err);
	if (rc != CTL_EXIT_OK)
		fprintf(stderr, CTL_PROG ": %s\n", err.message);
	return rc;
}

/*
 * ctl_plugin_name_ok: whether name can stand in the URL path as it is. The daemon decides
 * whether such an instance exists (404 PLUGIN_NOT_FOUND); this only keeps "/", "?", "%" and
 * friends out of the path.
 */
static bool ctl_plugin_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SUSLIST_PLUGIN_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* ctl_append_csv: append the comma-separated items of text to array; false on an empty item. */
static bool ctl_append_csv(json_t *array, const char *text)
{
	for (const char *p = text;;) {
		size_t n = strcspn(p, ",");
		if (n == 0)
			return false;
		json_array_append_new(array, json_stringn(p, n));
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

/* ctl_array_has_string: whether array holds the string s. */
static bool ctl_array_has_string(const json_t *array, const char *s)
{
	size_t i;
	const json_t *v;
	json_array_foreach(array, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/*
 * ctl_join: the items of a JSON array joined by ",", strings unquoted (others as JSON),
 * truncated to fit buf; "-" for an empty or missing array. Returns buf.
 */
static const char *ctl_join(const json_t *array, char *buf, size_t size)
{
	size_t i, used = 0;
	const json_t *v;

	snprintf(buf, size, "-");
	json_array_foreach(array, i, v)
	{
		char item[256];
		int n = snprintf(buf + used, size - used, "%s%s", i ? "," : "",
				 ctl_scalar_text(v, item, sizeof item));
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

/*
 * ctl_certificates_text: the certificate types of a suspension for a human: "*" when it covers
 * every type (the array ["*"], or every type of DESIGN §4 listed), else the types joined.
 */
static const char *ctl_certificates_text(const json_t *certificates, char *buf, size_t size)
{
	bool all = json_array_size(certificates) > 0;
	for (size_t t = 0; all && t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
		all = ctl_array_has_string(certificates, record_certificate_types[t]);
	if (all || ctl_array_has_string(certificates, "*")) {
		snprintf(buf, size, "*");
		return buf;
	}
	return ctl_join(certificates, buf, size);
}

/*
 * ctl_group_suspensions: the daemon keeps a local suspension per certificate type, so "all
 * types" comes back as seven entries. This merges entries that differ only in
 * scope.certificates. Returns a new array (caller decrefs) of {"entry": the first entry,
 * "rest": the entry without scope.certificates, "certificates": the merged types}, in the
 * order of first appearance; NULL when out of memory.
 */
static json_t *ctl_group_suspensions(const json_t *suspensions)
{
	json_t *groups = json_array();
	size_t i;
	json_t *e;

	json_array_foreach(suspensions, i, e)
	{
		json_t *rest = json_deep_copy(e);
		json_t *certs = json_array();
		if (groups == NULL || rest == NULL || certs == NULL) {
			json_decref(rest);
			json_decref(certs);
			json_decref(groups);
			return NULL;
		}
		json_t *scope = json_object_get(rest, "scope");
		json_t *c = json_object_get(scope, "certificates");
		if (json_is_array(c))
			json_array_extend(certs, c);
		json_object_del(scope, "certificates");

		json_t *group = NULL, *g;
		size_t j;
		json_array_foreach(groups, j, g)
		{
			if (json_equal(json_object_get(g, "rest"), rest)) {
				group = g;
				break;
			}
		}
		if (group == NULL) {
			json_array_append_new(groups,
					      json_pack("{s:O, s:o, s:o}", "entry", e, "rest", rest,
							"certificates", certs));
			continue;
		}
		json_t *merged = json_object_get(group, "certificates");
		size_t k;
		json_t *t;
		json_array_foreach(certs, k, t)
		{
			if (!json_is_string(t) ||
			    !ctl_array_has_string(merged, json_string_value(t)))
				json_array_append(merged, t);
		}
		json_decref(rest);
		json_decref(certs);
	}
	return groups;
}

/*
 * ctl_print_plugin_line: "registry: suspended (seal; local, drain)" from a suspend or resume
 * answer ({"plugin", "state", "suspensions"}), without the newline. Each group of
 * suspensions in force is shown as (certificates; source, mode[, versions V][, municipalities
 * M][, id I]).
 */
static void ctl_print_plugin_line(const json_t *reply, const char *fallback_name)
{
	const char *plugin = ctl_json_string(reply, "plugin");
	const char *state = ctl_json_string(reply, "state");
	json_t *groups = ctl_group_suspensions(json_object_get(reply, "suspensions"));
	size_t i;
	json_t *g;

	printf("%s: %s", plugin ? plugin : fallback_name, state ? state : "state unknown");
	json_array_foreach(groups, i, g)
	{
		const json_t *e = json_object_get(g, "entry");
		const json_t *scope = json_object_get(e, "scope");
		const char *source = ctl_json_string(e, "source");
		const char *mode = ctl_json_string(e, "mode");
		const char *versions = ctl_json_string(scope, "versions");
		const char *id = ctl_json_string(e, "id");
		const json_t *munis = json_object_get(scope, "municipalities");
		char certs[512];

		printf(
		    " (%s; %s, %s",
		    ctl_certificates_text(json_object_get(g, "certificates"), certs, sizeof certs),
		    source ? source : "?", mode ? mode : "?");
		if (versions != NULL)
			printf(", versions %s", versions);
		if (json_is_array(munis) && !ctl_array_has_string(munis, "*")) {
			char text[512];
			printf(", municipalities %s", ctl_join(munis, text, sizeof text));
		}
		if (id != NULL)
			printf(", id %s", id);
		putchar(')');
	}
	json_decref(groups);
}

/* cmd_suspend: "suspend PLUGIN --reason TEXT [--certificates T,...] [--mode M]". */
/* The one PLUGIN operand left after the options of cmd, or NULL (usage error reported). */
static const char *ctl_one_plugin(const char *cmd, int argc, char **argv)
{
	if (optind != argc - 1) {
		if (optind < argc)
			ctl_usage_error("%s takes one PLUGIN (unexpected '%s')", cmd,
					argv[optind + 1]);
		else
			ctl_usage_error("%s needs a PLUGIN", cmd);
		return NULL;
	}
	if (!ctl_plugin_name_ok(argv[optind])) {
		ctl_usage_error("%s: '%s' is not a plugin instance name ('status' lists them)", cmd,
				argv[optind]);
		return NULL;
	}
	return argv[optind];
}

static int cmd_suspend(const struct ctl_context *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"certificates", required_argument, NULL, 'c'},
	    {"mode", required_argument, NULL, 'm'},
	    {"reason", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	const char *mode = NULL, *reason = NULL;
	json_t *certs = json_array();
	int opt, rc = CTL_EXIT_USAGE;

	optind = 0; /* re-initialise getopt for the command's own options */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (!ctl_append_csv(certs, optarg)) {
				ctl_usage_error("suspend: --certificates needs TYPE[,TYPE...] "
						"(residence, seal, ...), not '%s'",
						optarg);
				goto out;
			}
			break;
		case 'm':
			mode = optarg;
			break;
		case 'r':
			reason = optarg;
			break;
		case ':':
			ctl_usage_error("suspend: option '%s' needs a value", argv[optind - 1]);
			goto out;
		default:
			ctl_usage_error("suspend: unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	const char *plugin = ctl_one_plugin("suspend", argc, argv);
	if (plugin == NULL)
		goto out;
	if (reason == NULL || reason[0] == '\0') {
		ctl_usage_error("suspend needs --reason TEXT: it is shown to store staff and in "
				"'suspensions' (no personal data)");
		goto out;
	}
	if (mode != NULL && strcmp(mode, "immediate") != 0 && strcmp(mode, "drain") != 0) {
		ctl_usage_error(
		    "suspend: --mode is 'immediate' (also stop deliveries in flight) or "
		    "'drain' (new requests only), not '%s'",
		    mode);
		goto out;
	}

	json_t *body = json_pack("{s:s}", "reason", reason);
	if (json_array_size(certs) > 0)
		json_object_set(body, "certificates", certs);
	if (mode != NULL)
		json_object_set_new(body, "mode", json_string(mode));
	char path[128];
	snprintf(path, sizeof path, "/v1/plugins/%s/suspend", plugin);
	json_t *reply = NULL;
	rc = ctl_call(ctx, "POST", path, body, &reply);
	json_decref(body);
	if (rc == CTL_EXIT_OK) {
		if (ctx->json_output) {
			ctl_print_json(reply);
		} else {
			ctl_print_plugin_line(reply, plugin);
			putchar('\n');
		}
	}
	json_decref(reply);
out:
	json_decref(certs);
	return rc;
}

/*
 * ctl_explain_held: after a 409 SUSPENSION_HELD to a resume, say on stderr who holds the
 * plugin, since when and why, and what the operator can do about it.
 */
static void ctl_explain_held(const char *plugin, const json_t *problem)
{
	const json_t *held = json_object_get(problem, "suspension");
	const char *source = ctl_json_string(held, "source");
	const char *reason = ctl_json_string(held, "reason");
	const char *since = ctl_json_string(held, "since");
	json_int_t lifted = json_integer_value(json_object_get(problem, "lifted"));
	json_int_t acked = json_integer_value(json_object_get(problem, "acknowledged"));
	bool ministry = source != NULL && strcmp(source, "ministry") == 0;
	bool integrity = source != NULL && strcmp(source, "auto") == 0;

	fprintf(stderr, CTL_PROG ": %s stays suspended: held by %s suspension", plugin,
		ministry    ? "a ministry"
		: integrity ? "an integrity-fault (auto)"
			    : "a");
	if (!ministry && !integrity && source != NULL)
		fprintf(stderr, " (source %s)", source);
	if (since != NULL)
		fprintf(stderr, " since %s", since);
	if (reason != NULL && reason[0] != '\0')
		fprintf(stderr, ", reason: %s", reason);
	fputc('\n', stderr);
	if (ministry)
		fprintf(stderr,
			"  A ministry suspension cannot be lifted locally: only a newer signed "
			"suspension list from the\n  ministry lifts it ('" CTL_PROG
			" ministry apply FILE').\n");
	else if (integrity)
		fprintf(stderr,
			"  Check the plugin's backend, then acknowledge the fault: '" CTL_PROG
			" resume %s --ack-integrity-fault'.\n",
			plugin);
	/* The daemon applies the rest of the resume before it answers 409: say what changed. */
	if (lifted > 0)
		fprintf(stderr,
			"  Done all the same: %" JSON_INTEGER_FORMAT " local suspension%s of "
			"those types lifted.\n",
			lifted, lifted == 1 ? "" : "s");
	if (acked > 0)
		fprintf(stderr,
			"  Done all the same: %" JSON_INTEGER_FORMAT " integrity fault%s "
			"acknowledged.\n",
			acked, acked == 1 ? "" : "s");
}

/* cmd_resume: "resume PLUGIN [--certificates T,...] [--ack-integrity-fault]". */
static int cmd_resume(const struct ctl_context *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"certificates", required_argument, NULL, 'c'},
	    {"ack-integrity-fault", no_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	bool ack = false;
	json_t *certs = json_array();
	int opt, rc = CTL_EXIT_USAGE;

	optind = 0; /* re-initialise getopt for the command's own options */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (!ctl_append_csv(certs, optarg)) {
				ctl_usage_error("resume: --certificates needs TYPE[,TYPE...] "
						"(residence, seal, ...), not '%s'",
						optarg);
				goto out;
			}
			break;
		case 'a':
			ack = true;
			break;
		case ':':
			ctl_usage_error("resume: option '%s' needs a value", argv[optind - 1]);
			goto out;
		default:
			ctl_usage_error("resume: unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	const char *plugin = ctl_one_plugin("resume", argc, argv);
	if (plugin == NULL)
		goto out;

	json_t *body = json_object();
	if (json_array_size(certs) > 0)
		json_object_set(body, "certificates", certs);
	if (ack)
		json_object_set_new(body, "ack_integrity_fault", json_true());
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL) {
		fprintf(stderr, CTL_PROG ": cannot encode the request body as JSON\n");
		rc = CTL_EXIT_DAEMON_ERROR;
		goto out;
	}
	char path[128];
	snprintf(path, sizeof path, "/v1/plugins/%s/resume", plugin);
	long status = 0;
	json_t *reply = NULL;
	rc = ctl_exchange(ctx, "POST", path, text, strlen(text), &status, &reply);
	free(text);
	if (rc == CTL_EXIT_OK && (status < 200 || status > 299)) {
		rc = ctl_report_problem(ctx, "POST", path, status, reply);
		const char *code = ctl_json_string(reply, "code");
		if (code != NULL && strcmp(code, "SUSPENSION_HELD") == 0)
			ctl_explain_held(plugin, reply);
	} else if (rc == CTL_EXIT_OK && ctx->json_output) {
		ctl_print_json(reply);
	} else if (rc == CTL_EXIT_OK) {
		json_int_t lifted = json_integer_value(json_object_get(reply, "lifted"));
		json_int_t acked = json_integer_value(json_object_get(reply, "acknowledged"));
		ctl_print_plugin_line(reply, plugin);
		if (lifted == 0 && acked == 0)
			printf("; nothing lifted (no local suspension %s)",
			       json_array_size(certs) ? "of those types" : "was in force");
		if (lifted > 0)
			printf("; lifted %" JSON_INTEGER_FORMAT " local suspension%s", lifted,
			       lifted == 1 ? "" : "s");
		if (acked > 0)
			printf("; acknowledged %" JSON_INTEGER_FORMAT " integrity fault%s", acked,
			       acked == 1 ? "" : "s");
		putchar('\n');
	}
	json_decref(reply);
out:
	json_decref(certs);
	return rc;
}

/*
 * ctl_sequence_text: a list sequence for a human. Sequences are unsigned 64-bit; a daemon that
 * passes one above 2^63 - 1 through a signed JSON integer sends it negative, so a negative
 * integer is shown as the unsigned value it stands for.
 */
static const char *ctl_sequence_text(const json_t *value, char *buf, size_t size)
{
	if (json_is_integer(value) && json_integer_value(value) < 0) {
		snprintf(buf, size, "%" PRIu64, (uint64_t)json_integer_value(value));
		return buf;
	}
	return ctl_scalar_text(value, buf, size);
}

/* ctl_print_ministry_line: the "ministry list:" line of `suspensions` from its ministry_list. */
static void ctl_print_ministry_line(const json_t *list)
{
	char text[64];

	if (!json_is_object(list)) {
		printf("ministry list: none applied yet\n");
		return;
	}
	printf("ministry list: sequence %s",
	       ctl_sequence_text(json_object_get(list, "sequence"), text, sizeof text));
	const char *labels[][2] = {
	    {"issued_at", "issued"}, {"expires_at", "expires"}, {"received_at", "received"}};
	for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
		const char *t = ctl_json_string(list, labels[i][0]);
		if (t != NULL)
			printf(", %s %s", labels[i][1], t);
	}
	const json_t *n = json_object_get(list, "suspensions");
	if (json_is_integer(n))
		printf(", %" JSON_INTEGER_FORMAT " suspension%s", json_integer_value(n),
		       json_integer_value(n) == 1 ? "" : "s");
	if (json_is_true(json_object_get(list, "expired")))
		printf(
		    "\n  EXPIRED: still enforced (never fail-open); the appliance reports itself "
		    "degraded until a newer signed list is applied");
	putchar('\n');
}

enum {
	CTL_COL_SOURCE,
	CTL_COL_PLUGIN,
	CTL_COL_ID,
	CTL_COL_CERTIFICATES,
	CTL_COL_VERSIONS,
	CTL_COL_MUNICIPALITIES,
	CTL_COL_MODE,
	CTL_COL_SINCE,
	CTL_COL_REASON,
	CTL_COLS
};

/* cmd_suspensions: GET /v1/suspensions as a table (entries merged per ctl_group_suspensions). */
static int cmd_suspensions(const struct ctl_context *ctx, int argc, char **argv)
{
	static const char *const heads[CTL_COLS] = {"SOURCE",	    "PLUGIN",	"ID",
						    "CERTIFICATES", "VERSIONS", "MUNICIPALITIES",
						    "MODE",	    "SINCE",	"REASON"};
	bool json_output = ctx->json_output;
	json_t *reply = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json_output = true;
		else
			return ctl_usage_error("suspensions: unexpected '%s'", argv[i]);
	}
	int rc = ctl_call(ctx, "GET", "/v1/suspensions", NULL, &reply);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (json_output) {
		ctl_print_json(reply);
		json_decref(reply);
		return CTL_EXIT_OK;
	}

	json_t *groups = ctl_group_suspensions(json_object_get(reply, "suspensions"));
	size_t rows = json_array_size(groups);
	char(*cell)[CTL_COLS][256] = calloc(rows ? rows : 1, sizeof *cell);
	int width[CTL_COLS];
	if (groups == NULL || cell == NULL) {
		fprintf(stderr, CTL_PROG ": out of memory\n");
		free(cell);
		json_decref(groups);
		json_decref(reply);
		return CTL_EXIT_DAEMON_ERROR;
	}
	for (int c = 0; c < CTL_COLS; c++)
		width[c] = (int)strlen(heads[c]);
	for (size_t r = 0; r < rows; r++) {
		const json_t *g = json_array_get(groups, r);
		const json_t *e = json_object_get(g, "entry");
		const json_t *scope = json_object_get(e, "scope");
		const char *versions = ctl_json_string(scope, "versions");
		const char *fields[][2] = {{"source", "?"}, {"plugin", "?"}, {"id", "-"},
					   {"mode", "?"},   {"since", "?"},  {"reason", "-"}};
		const int columns[] = {CTL_COL_SOURCE, CTL_COL_PLUGIN, CTL_COL_ID,
				       CTL_COL_MODE,   CTL_COL_SINCE,  CTL_COL_REASON};
		for (size_t f = 0; f < sizeof columns / sizeof columns[0]; f++) {
			const char *v = ctl_json_string(e, fields[f][0]);
			snprintf(cell[r][columns[f]], sizeof cell[r][0], "%s",
				 v && v[0] ? v : fields[f][1]);
		}
		ctl_certificates_text(json_object_get(g, "certificates"),
				      cell[r][CTL_COL_CERTIFICATES], sizeof cell[r][0]);
		snprintf(cell[r][CTL_COL_VERSIONS], sizeof cell[r][0], "%s",
			 versions ? versions : "*");
		ctl_join(json_object_get(scope, "municipalities"), cell[r][CTL_COL_MUNICIPALITIES],
			 sizeof cell[r][0]);
		for (int c = 0; c < CTL_COLS; c++)
			if ((int)strlen(cell[r][c]) > width[c])
				width[c] = (int)strlen(cell[r][c]);
	}
	if (rows == 0) {
		printf("no suspensions in force: every plugin instance may serve\n");
	} else {
		for (int c = 0; c < CTL_COLS - 1; c++)
			printf("%-*s  ", width[c], heads[c]);
		printf("%s\n", heads[CTL_COLS - 1]);
		for (size_t r = 0; r < rows; r++) {
			for (int c = 0; c < CTL_COLS - 1; c++)
				printf("%-*s  ", width[c], cell[r][c]);
			printf("%s\n", cell[r][CTL_COLS - 1]);
		}
	}
	ctl_print_ministry_line(json_object_get(reply, "ministry_list"));
	free(cell);
	json_decref(groups);
	json_decref(reply);
	return CTL_EXIT_OK;
}

/* ---- the ministry's side: apply, keygen, sign (DESIGN.md §6) -------------------------------- */

#define CTL_SUSLIST_TYPE "madoguchi-suspension-list"

/* ctl_ministry_apply: "ministry apply FILE": POST the file's bytes as they are. */
static int ctl_ministry_apply(const struct ctl_context *ctx, int argc, char **argv)
{
	static const char path[] = "/v1/ministry/suspension-list";

	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage_error("ministry apply needs exactly one FILE (a signed list)");
	size_t len = 0;
	char *body = ctl_read_file(argv[1], &len);
	if (body == NULL) {
		fprintf(stderr, CTL_PROG ": cannot read %s: %s\n", argv[1], strerror(errno));
		return CTL_EXIT_DAEMON_ERROR;
	}
	long status = 0;
	json_t *reply = NULL;
	int rc = ctl_exchange(ctx, "POST", path, body, len, &status, &reply);
	free(body);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (status >= 200 && status <= 299) {
		if (ctx->json_output) {
			ctl_print_json(reply);
		} else {
			char seq[64], n[64];
			const char *expires = ctl_json_string(reply, "expires_at");
			printf(
			    "applied suspension list sequence %s: %s suspension(s) in force, "
			    "expires %s\n",
			    ctl_sequence_text(json_object_get(reply, "sequence"), seq, sizeof seq),
			    ctl_scalar_text(json_object_get(reply, "suspensions"), n, sizeof n),
			    expires ? expires : "?");
		}
		if (json_is_true(json_object_get(reply, "expired")))
			fprintf(stderr,
				CTL_PROG ": warning: this list has EXPIRED: it is enforced anyway, "
					 "and the appliance reports itself degraded until a newer "
					 "list is applied\n");
		json_decref(reply);
		return CTL_EXIT_OK;
	}
	rc = ctl_report_problem(ctx, "POST", path, status, reply);
	const char *code = ctl_json_string(reply, "code");
	const char *field = ctl_json_string(reply, "field");
	if (code != NULL && strcmp(code, "SEQUENCE_NOT_NEWER") == 0) {
		char seq[64], stored[64];
		fprintf(stderr,
			"  the list has sequence %s; the appliance holds sequence %s: only a list "
			"with a greater sequence changes anything\n",
			ctl_sequence_text(json_object_get(reply, "sequence"), seq, sizeof seq),
			ctl_sequence_text(json_object_get(reply, "stored_sequence"), stored,
					  sizeof stored));
	} else if (code != NULL && strcmp(code, "LIST_SIGNATURE_INVALID") == 0) {
		fprintf(stderr, "  the list must be signed by enough of the keys listed under "
				"ministry.keys in the appliance's configuration\n");
	}
	if (field != NULL)
		fprintf(stderr, "  field: %s\n", field[0] ? field : "(the whole list)");
	json_decref(reply);
	return rc;
}

/*
 * ctl_create_pem: create path (refusing an existing file) with the given mode and write key to
 * it: the private key as PKCS#8 PEM when private_key, else the public key as SPKI PEM. On
 * failure prints why, removes what it created and returns false.
 */
static bool ctl_create_pem(const char *path, mode_t mode, EVP_PKEY *key, bool private_key)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		if (errno == EEXIST)
			fprintf(stderr,
				CTL_PROG ": %s already exists; refusing to overwrite a key "
					 "(choose another --out PREFIX or move the file away)\n",
				path);
		else
			fprintf(stderr, CTL_PROG ": cannot create %s: %s\n", path, strerror(errno));
		return false;
	}
	/* The umask may only have narrowed the mode; make it exact for the private key. */
	bool ok = !private_key || fchmod(fd, mode) == 0;
	FILE *f = ok ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		fprintf(stderr, CTL_PROG ": cannot write %s: %s\n", path, strerror(errno));
		close(fd);
		unlink(path);
		return false;
	}
	ok = private_key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1
			 : PEM_write_PUBKEY(f, key) == 1;
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		char why[256];
		fprintf(stderr, CTL_PROG ": cannot write %s: %s\n", path,
			errno ? strerror(errno) : ossl_reason(why, sizeof why, true));
		unlink(path);
	}
	return ok;
}

/* ctl_ministry_keygen: "ministry keygen --out PREFIX": a new Ed25519 ministry key pair. */
static int ctl_ministry_keygen(const struct ctl_context *ctx, int argc, char **argv)
{
	const char *prefix = NULL;
	char key_path[PATH_MAX], pub_path[PATH_MAX], key_id[OSSL_KEY_ID_LEN + 1];

	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "-o") == 0) && i + 1 < argc)
			prefix = argv[++i];
		else if (strncmp(argv[i], "--out=", 6) == 0)
			prefix = argv[i] + 6;
		else
			return ctl_usage_error("ministry keygen: unexpected '%s'", argv[i]);
	}
	if (prefix == NULL || prefix[0] == '\0')
		return ctl_usage_error("ministry keygen needs --out PREFIX (writes PREFIX.key and "
				       "PREFIX.pub)");
	if ((size_t)snprintf(key_path, sizeof key_path, "%s.key", prefix) >= sizeof key_path ||
	    (size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", prefix) >= sizeof pub_path)
		return ctl_usage_error("ministry keygen: --out PREFIX is too long");
	/* Checked before the key is made, so neither file is touched when one exists. */
	const char *paths[] = {key_path, pub_path};
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		if (lstat(paths[i], &st) == 0) {
			fprintf(stderr,
				CTL_PROG ": %s already exists; refusing to overwrite a key (choose "
					 "another --out PREFIX or move the file away)\n",
				paths[i]);
			return CTL_EXIT_DAEMON_ERROR;
		}
	}

	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (key == NULL || ossl_ed25519_key_id(key, key_id) != 0) {
		char why[256];
		fprintf(stderr, CTL_PROG ": cannot make an Ed25519 key: %s\n",
			ossl_reason(why, sizeof why, true));
		EVP_PKEY_free(key);
		return CTL_EXIT_DAEMON_ERROR;
	}
	int rc = CTL_EXIT_DAEMON_ERROR;
	if (ctl_create_pem(key_path, 0600, key, true)) {
		if (ctl_create_pem(pub_path, 0644, key, false))
			rc = CTL_EXIT_OK;
		else
			unlink(key_path); /* half a pair is no use; leave nothing behind */
	}
	EVP_PKEY_free(key);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctx->json_output) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "key_id", key_id, "private_key", key_path,
				      "public_key", pub_path);
		ctl_print_json(o);
		json_decref(o);
	} else {
		printf("wrote %s (Ed25519 private key, PKCS#8, mode 0600: keep it off the "
		       "appliances)\n"
		       "wrote %s (public key: list it under ministry.keys on each appliance)\n"
		       "key id %s\n",
		       key_path, pub_path, key_id);
	}
	return CTL_EXIT_OK;
}

/* ---- ministry sign: the list from YAML ------------------------------------------------------ */

/* ctl_yaml_error: "madoguchictl: FILE:LINE:COLUMN: message" (1-based) on stderr. */
__attribute__((format(printf, 3, 4))) static void ctl_yaml_error(const char *file, yaml_mark_t mark,
								 const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, CTL_PROG ": %s:%zu:%zu: ", file, mark.line + 1, mark.column + 1);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* True for a plain scalar YAML reads as null: "key:" with nothing after it, "~" or "null". */
static bool ctl_yaml_is_null(const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)node->data.scalar.value;
	return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* The value node of key in the mapping map, or NULL when map is no mapping or lacks key. */
static yaml_node_t *ctl_yaml_get(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/*
 * ctl_yaml_check_keys: every key of the mapping map is a scalar named in allowed[] and appears
 * once; else prints where (the key) and returns false. what names the mapping for the message.
 */
static bool ctl_yaml_check_keys(const char *file, yaml_document_t *doc, const yaml_node_t *map,
				const char *const *allowed, const char *what)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k == NULL || k->type != YAML_SCALAR_NODE) {
			ctl_yaml_error(file, k ? k->start_mark : map->start_mark,
				       "a key in %s must be a plain name", what);
			return false;
		}
		const char *name = (const char *)k->data.scalar.value;
		bool known = false;
		for (size_t i = 0; !known && allowed[i] != NULL; i++)
			known = strcmp(name, allowed[i]) == 0;
		if (!known) {
			char list[256] = "";
			for (size_t i = 0; allowed[i] != NULL; i++)
				snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
					 i ? ", " : "", allowed[i]);
			ctl_yaml_error(file, k->start_mark, "unknown key '%.64s' in %s (known: %s)",
				       name, what, list);
			return false;
		}
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *earlier = yaml_document_get_node(doc, q->key);
			if (earlier != NULL && earlier->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)earlier->data.scalar.value, name) == 0) {
				ctl_yaml_error(file, k->start_mark,
					       "'%s' appears twice in %s (first at line %zu)", name,
					       what, earlier->start_mark.line + 1);
				return false;
			}
		}
	}
	return true;
}

/*
 * ctl_yaml_load: parse the one YAML document of path into *doc (the caller deletes it with
 * yaml_document_delete when this returns true). Prints the problem and returns false
 * otherwise (doc then needs no cleanup).
 */
static bool ctl_yaml_load(const char *path, yaml_document_t *doc)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, CTL_PROG ": cannot read %s: %s\n", path, strerror(errno));
		return false;
	}
	if (!yaml_parser_initialize(&parser)) {
		fprintf(stderr, CTL_PROG ": cannot initialise libyaml (out of memory?)\n");
		fclose(f);
		return false;
	}
	yaml_parser_set_input_file(&parser, f);
	bool ok = yaml_parser_load(&parser, doc) == 1;
	if (ok) {
		yaml_document_t extra;
		if (yaml_parser_load(&parser, &extra) == 1) {
			yaml_node_t *root = yaml_document_get_root_node(&extra);
			if (root != NULL) {
				ctl_yaml_error(
				    path, root->start_mark,
				    "a second YAML document; the file must hold one list");
				ok = false;
			}
			yaml_document_delete(&extra);
		} else {
			ok = false;
		}
		if (!ok)
			yaml_document_delete(doc);
	}
	if (!ok && parser.error != YAML_NO_ERROR) {
		ctl_yaml_error(path, parser.problem_mark, "%s%s%s%s",
			       parser.problem ? parser.problem : "not valid YAML",
			       parser.context ? " (" : "", parser.context ? parser.context : "",
			       parser.context ? ")" : "");
		fprintf(stderr,
			"  Quote values that begin with a YAML indicator such as * > & ! |, "
			"e.g. certificates: [\"*\"]\n  and versions: \">=1.0.0,<2.3.1\".\n");
	}
	yaml_parser_delete(&parser);
	fclose(f);
	return ok;
}

/* The keys of one suspension in the file, in the order the payload lists them (DESIGN §6). */
static const char *const ctl_entry_keys[] = {
    "id", "plugin", "versions", "certificates", "municipalities", "mode", "reason", NULL};

/*
 * ctl_yaml_entry: one suspension mapping as a JSON object, its members in ctl_entry_keys
 * order. Strings are taken as written (a municipality code keeps its leading zeros);
 * certificates and municipalities may be one value or a list; an optional key with a null
 * value counts as absent. Returns NULL after printing where the file is wrong. The values
 * themselves are checked later by suslist (see ctl_yaml_locate()).
 */
static json_t *ctl_yaml_entry(const char *file, yaml_document_t *doc, const yaml_node_t *map)
{
	if (!ctl_yaml_check_keys(file, doc, map, ctl_entry_keys, "a suspension"))
		return NULL;
	json_t *o = json_object();
	for (size_t k = 0; o != NULL && ctl_entry_keys[k] != NULL; k++) {
		const char *key = ctl_entry_keys[k];
		yaml_node_t *v = ctl_yaml_get(doc, map, key);
		bool required = k < 2; /* id, plugin */
		bool list = strcmp(key, "certificates") == 0 || strcmp(key, "municipalities") == 0;
		json_t *value = NULL;

		if (v == NULL || ctl_yaml_is_null(v)) {
			if (!required)
				continue;
			if (v != NULL)
				ctl_yaml_error(file, v->start_mark, "%s needs a value", key);
			else
				ctl_yaml_error(file, map->start_mark,
					       "this suspension has no '%s' (id and plugin are "
					       "required)",
					       key);
			goto fail;
		}
		if (v->type == YAML_SCALAR_NODE) {
			value =
			    json_stringn((const char *)v->data.scalar.value, v->data.scalar.length);
			if (list && value != NULL)
				value = json_pack("[o]", value);
		} else if (list && v->type == YAML_SEQUENCE_NODE) {
			value = json_array();
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     value != NULL && it < v->data.sequence.items.top; it++) {
				yaml_node_t *item = yaml_document_get_node(doc, *it);
				if (item == NULL || item->type != YAML_SCALAR_NODE) {
					ctl_yaml_error(
					    file, item ? item->start_mark : v->start_mark,
					    "each item of %s must be a single value", key);
					json_decref(value);
					goto fail;
				}
				json_array_append_new(
				    value, json_stringn((const char *)item->data.scalar.value,
							item->data.scalar.length));
			}
		} else {
			ctl_yaml_error(file, v->start_mark, "%s must be %s", key,
				       list ? "a value or a list of values" : "a single value");
			goto fail;
		}
		if (value == NULL) {
			ctl_yaml_error(file, v->start_mark, "cannot take %s (out of memory)", key);
			goto fail;
		}
		json_object_set_new(o, key, value);
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

/*
 * ctl_yaml_suspensions: the document's "suspensions:" list as a JSON array of suspension
 * objects, or NULL after printing where the file is wrong.
 */
static json_t *ctl_yaml_suspensions(const char *file, yaml_document_t *doc)
{
	static const char *const top_keys[] = {"suspensions", NULL};
	yaml_node_t *root = yaml_document_get_root_node(doc);
	if (root == NULL) {
		fprintf(stderr,
			CTL_PROG ": %s is empty; write 'suspensions:' with a list of suspensions "
				 "('suspensions: []' lifts every ministry suspension)\n",
			file);
		return NULL;
	}
	if (root->type != YAML_MAPPING_NODE) {
		ctl_yaml_error(file, root->start_mark,
			       "the file must be a mapping with the one key 'suspensions:'");
		return NULL;
	}
	if (!ctl_yaml_check_keys(file, doc, root, top_keys, "the list"))
		return NULL;
	yaml_node_t *seq = ctl_yaml_get(doc, root, "suspensions");
	if (seq == NULL || ctl_yaml_is_null(seq) || seq->type != YAML_SEQUENCE_NODE) {
		ctl_yaml_error(
		    file, seq ? seq->start_mark : root->start_mark,
		    "'suspensions:' must be a list of suspensions (write "
		    "'suspensions: []' for a list that lifts every ministry suspension)");
		return NULL;
	}
	json_t *array = json_array();
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     array != NULL && it < seq->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(doc, *it);
		if (item == NULL || item->type != YAML_MAPPING_NODE) {
			ctl_yaml_error(file, item ? item->start_mark : seq->start_mark,
				       "each suspension must be a mapping (id:, plugin:, ...)");
			json_decref(array);
			return NULL;
		}
		json_t *entry = ctl_yaml_entry(file, doc, item);
		if (entry == NULL) {
			json_decref(array);
			return NULL;
		}
		json_array_append_new(array, entry);
	}
	if (array == NULL)
		fprintf(stderr, CTL_PROG ": out of memory reading %s\n", file);
	return array;
}

/*
 * ctl_yaml_locate: the node of the document that a suslist error field such as
 * "suspensions[2].certificates[1]" refers to: the deepest node of the path that exists (so a
 * missing key points at its suspension). NULL when the field is not from the file (sequence,
 * expires_at, ...).
 */
static const yaml_node_t *ctl_yaml_locate(yaml_document_t *doc, const char *field)
{
	static const char top[] = "suspensions";
	yaml_node_t *node = yaml_document_get_root_node(doc);
	const char *p = field;

	if (strncmp(p, top, sizeof top - 1) != 0 || node == NULL)
		return NULL;
	p += sizeof top - 1;
	yaml_node_t *seq = ctl_yaml_get(doc, node, top);
	if (seq != NULL)
		node = seq;
	while (seq != NULL && *p != '\0') {
		yaml_node_t *next = NULL;
		if (*p == '[') {
			char *end = NULL;
			unsigned long i = strtoul(p + 1, &end, 10);
			if (node->type == YAML_SEQUENCE_NODE && *end == ']' &&
			    i < (unsigned long)(node->data.sequence.items.top -
						node->data.sequence.items.start))
				next =
				    yaml_document_get_node(doc, node->data.sequence.items.start[i]);
			p = end + 1;
		} else if (*p == '.') {
			char key[32];
			size_t n = strcspn(p + 1, ".[");
			if (n < sizeof key) {
				memcpy(key, p + 1, n);
				key[n] = '\0';
				next = ctl_yaml_get(doc, node, key);
			}
			p += 1 + n;
		}
		if (next == NULL)
			break;
		node = next;
	}
	return node;
}

/* ctl_format_utc: t as RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" into buf (>= 21 bytes). */
static const char *ctl_format_utc(time_t t, char *buf, size_t size)
{
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "?");
	return buf;
}

/* ctl_parse_utc: "YYYY-MM-DDTHH:MM:SSZ" (UTC, a real calendar time) into *out. */
static bool ctl_parse_utc(const char *text, time_t *out)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	int v[6] = {0};
	const int at[6] = {0, 5, 8, 11, 14, 17}, len[6] = {4, 2, 2, 2, 2, 2};

	if (strlen(text) != sizeof shape - 1)
		return false;
	for (size_t i = 0; i < sizeof shape - 1; i++)
		if (shape[i] == 'd' ? !(text[i] >= '0' && text[i] <= '9') : text[i] != shape[i])
			return false;
	for (int f = 0; f < 6; f++)
		for (int i = 0; i < len[f]; i++)
			v[f] = v[f] * 10 + (text[at[f] + i] - '0');
	struct tm tm = {.tm_year = v[0] - 1900,
			.tm_mon = v[1] - 1,
			.tm_mday = v[2],
			.tm_hour = v[3],
			.tm_min = v[4],
			.tm_sec = v[5]};
	time_t t = timegm(&tm);
	struct tm back;
	/* timegm() normalises 02-30 to 03-02; a date that moved was not a real one. */
	if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != v[0] - 1900 ||
	    back.tm_mon != v[1] - 1 || back.tm_mday != v[2] || back.tm_hour != v[3] ||
	    back.tm_min != v[4] || back.tm_sec != v[5])
		return false;
	*out = t;
	return true;
}

/* ctl_parse_duration: "90s", "90m", "12h", "30d", "2w" into seconds (at most 100 years). */
static bool ctl_parse_duration(const char *text, time_t *seconds)
{
	char *end = NULL;
	if (!(text[0] >= '0' && text[0] <= '9'))
		return false;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno != 0 || end == text || end[0] == '\0' || end[1] != '\0')
		return false;
	unsigned long long unit = end[0] == 's'	  ? 1
				  : end[0] == 'm' ? 60
				  : end[0] == 'h' ? 3600
				  : end[0] == 'd' ? 86400
				  : end[0] == 'w' ? 7 * 86400
						  : 0;
	if (unit == 0 || n == 0 || n > 100ull * 366 * 86400 / unit)
		return false;
	*seconds = (time_t)(n * unit);
	return true;
}

/* ctl_base64: standard padded base64 of in[0..n), no line breaks; malloc'd, NULL on failure. */
static char *ctl_base64(const unsigned char *in, size_t n)
{
	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/*
 * ctl_load_signing_key: the Ed25519 private key in the PEM file at path (PKCS#8, as ministry
 * keygen and scripts/dev-pki write it; an encrypted key asks for its passphrase on the
 * terminal) with its key id. NULL after printing what is wrong.
 */
static EVP_PKEY *ctl_load_signing_key(const char *path, char key_id[OSSL_KEY_ID_LEN + 1])
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, CTL_PROG ": cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL) {
		char why[256];
		fprintf(stderr,
			CTL_PROG ": %s is not a PEM private key (%s); --key takes the ministry's "
				 "Ed25519 private key (PREFIX.key from 'ministry keygen')\n",
			path, ossl_reason(why, sizeof why, true));
		return NULL;
	}
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519 ||
	    ossl_ed25519_key_id(key, key_id) != 0) {
		fprintf(stderr,
			CTL_PROG ": %s is not an Ed25519 key; suspension lists are signed with "
				 "Ed25519 only (DESIGN.md §6)\n",
			path);
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

/* ctl_sign_base64: the Ed25519 signature of msg[0..len) by key, base64; NULL on failure. */
static char *ctl_sign_base64(EVP_PKEY *key, const char *msg, size_t len)
{
	unsigned char sig[64];
	size_t sig_len = sizeof sig;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
		  EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)msg, len) == 1;
	EVP_MD_CTX_free(md);
	return ok ? ctl_base64(sig, sig_len) : NULL;
}

/*
 * ctl_list_payload: the list JSON, compact, members in the order type, sequence, issued_at,
 * expires_at, suspensions. The sequence is written as digits here because it is an unsigned
 * 64-bit integer and jansson's integers stop at 2^63 - 1; the rest is jansson's compact
 * output. malloc'd; NULL when out of memory.
 */
static char *ctl_list_payload(uint64_t sequence, time_t issued_at, time_t expires_at,
			      const json_t *suspensions)
{
	char issued[32], expires[32];
	char *list = json_dumps(suspensions, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (list == NULL)
		return NULL;
	ctl_format_utc(issued_at, issued, sizeof issued);
	ctl_format_utc(expires_at, expires, sizeof expires);
	char *out = NULL;
	if (asprintf(&out,
		     "{\"type\":\"" CTL_SUSLIST_TYPE "\",\"sequence\":%" PRIu64
		     ",\"issued_at\":\"%s\",\"expires_at\":\"%s\",\"suspensions\":%s}",
		     sequence, issued, expires, list) < 0)
		out = NULL;
	free(list);
	return out;
}

/* ctl_write_text: write text and a newline to path (created or replaced) or, for NULL, stdout. */
static bool ctl_write_text(const char *path, const char *text)
{
	FILE *f = path ? fopen(path, "w") : stdout;
	bool ok = f != NULL && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
	if (path != NULL && f != NULL && fclose(f) != 0)
		ok = false;
	if (path == NULL && fflush(stdout) != 0)
		ok = false;
	if (!ok)
		fprintf(stderr, CTL_PROG ": cannot write %s: %s\n", path ? path : "the output",
			strerror(errno));
	return ok;
}

/*
 * ctl_ministry_sign: "ministry sign LIST.yaml --key K.key ... --sequence N --expires TIME
 * [--issued-at TIME] [-o OUT]": the signed list (DESIGN §6) from the YAML file, checked with
 * suslist_parse_stored() (every rule the appliance applies except the signatures) before it is
 * written, so a list this prints is one the appliances take. Offline.
 */
static int ctl_ministry_sign(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},     {"sequence", required_argument, NULL, 'n'},
	    {"expires", required_argument, NULL, 'e'}, {"issued-at", required_argument, NULL, 'i'},
	    {"output", required_argument, NULL, 'o'},  {NULL, 0, NULL, 0},
	};
	const char *key_paths[SUSLIST_SIGNATURES_MAX], *output = NULL, *seq_text = NULL;
	const char *expires_text = NULL, *issued_text = NULL;
	size_t nkeys = 0;
	int opt;

	optind = 0; /* re-initialise getopt for the command's own options */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			if (nkeys == SUSLIST_SIGNATURES_MAX)
				return ctl_usage_error("ministry sign: at most %d --key",
						       SUSLIST_SIGNATURES_MAX);
			key_paths[nkeys++] = optarg;
			break;
		case 'n':
			seq_text = optarg;
			break;
		case 'e':
			expires_text = optarg;
			break;
		case 'i':
			issued_text = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case ':':
			return ctl_usage_error("ministry sign: option '%s' needs a value",
					       argv[optind - 1]);
		default:
			return ctl_usage_error("ministry sign: unknown option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return ctl_usage_error(optind < argc ? "ministry sign takes one LIST.yaml "
						       "(unexpected '%s')"
						     : "ministry sign needs the LIST.yaml file%s",
				       optind < argc ? argv[optind + 1] : "");
	const char *file = argv[optind];
	if (nkeys == 0 || seq_text == NULL || expires_text == NULL)
		return ctl_usage_error("ministry sign needs --key K.key, --sequence N and "
				       "--expires TIME");

	uint64_t sequence = 0;
	char *end = NULL;
	errno = 0;
	unsigned long long seq = strtoull(seq_text, &end, 10);
	if (!(seq_text[0] >= '0' && seq_text[0] <= '9') || errno != 0 || *end != '\0')
		return ctl_usage_error(
		    "ministry sign: --sequence needs an unsigned 64-bit integer, "
		    "not '%s'",
		    seq_text);
	sequence = seq;

	time_t now = time(NULL), issued_at = now, expires_at = 0, span = 0;
	if (issued_text != NULL && !ctl_parse_utc(issued_text, &issued_at))
		return ctl_usage_error(
		    "ministry sign: --issued-at needs YYYY-MM-DDTHH:MM:SSZ (UTC), "
		    "not '%s'",
		    issued_text);
	if (ctl_parse_duration(expires_text, &span))
		expires_at = now + span;
	else if (!ctl_parse_utc(expires_text, &expires_at))
		return ctl_usage_error(
		    "ministry sign: --expires needs YYYY-MM-DDTHH:MM:SSZ (UTC) or "
		    "a duration from now such as 30d, 12h, 90m; not '%s'",
		    expires_text);
	if (expires_at <= issued_at)
		return ctl_usage_error(
		    "ministry sign: --expires must be later than the issue time");

	int rc = CTL_EXIT_DAEMON_ERROR;
	EVP_PKEY *keys[SUSLIST_SIGNATURES_MAX] = {NULL};
	char key_ids[SUSLIST_SIGNATURES_MAX][OSSL_KEY_ID_LEN + 1];
	json_t *suspensions = NULL, *sigs = NULL, *envelope = NULL;
	char *payload = NULL, *payload_b64 = NULL, *text = NULL;
	struct suslist *list = NULL;
	yaml_document_t doc;
	bool have_doc = false;

	for (size_t i = 0; i < nkeys; i++) {
		keys[i] = ctl_load_signing_key(key_paths[i], key_ids[i]);
		if (keys[i] == NULL)
			goto out;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(key_ids[i], key_ids[j]) == 0) {
				fprintf(stderr,
					CTL_PROG ": %s and %s hold the same key (id %s); each key "
						 "counts once towards the threshold, so give it "
						 "once\n",
					key_paths[j], key_paths[i], key_ids[i]);
				goto out;
			}
		}
	}

	have_doc = ctl_yaml_load(file, &doc);
	if (!have_doc || (suspensions = ctl_yaml_suspensions(file, &doc)) == NULL)
		goto out;
	payload = ctl_list_payload(sequence, issued_at, expires_at, suspensions);
	payload_b64 = payload ? ctl_base64((const unsigned char *)payload, strlen(payload)) : NULL;
	sigs = json_array();
	if (payload_b64 == NULL || sigs == NULL) {
		fprintf(stderr, CTL_PROG ": out of memory building the list\n");
		goto out;
	}
	for (size_t i = 0; i < nkeys; i++) {
		char why[256];
		char *sig = ctl_sign_base64(keys[i], payload, strlen(payload));
		if (sig == NULL) {
			fprintf(stderr, CTL_PROG ": cannot sign with %s: %s\n", key_paths[i],
				ossl_reason(why, sizeof why, true));
			goto out;
		}
		json_array_append_new(sigs, json_pack("{s:s, s:s, s:s}", "key_id", key_ids[i],
						      "alg", "ed25519", "sig", sig));
		free(sig);
	}
	envelope = json_pack("{s:s, s:O}", "payload", payload_b64, "signatures", sigs);
	text = envelope ? json_dumps(envelope, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (text == NULL) {
		fprintf(stderr, CTL_PROG ": out of memory building the list\n");
		goto out;
	}

	/* Every check the appliance makes but the signatures, so a bad value is caught here. */
	struct suslist_error serr = {{0}, {0}};
	if (strlen(text) > SUSLIST_BYTES_MAX) {
		fprintf(stderr,
			CTL_PROG ": the signed list would be %zu bytes; appliances take at "
				 "most %d\n",
			strlen(text), SUSLIST_BYTES_MAX);
		goto out;
	}
	if (suslist_parse_stored(text, strlen(text), now, &list, &serr) != SUSLIST_OK) {
		const yaml_node_t *at = ctl_yaml_locate(&doc, serr.field);
		if (at != NULL)
			ctl_yaml_error(file, at->start_mark, "%s: %s", serr.field, serr.message);
		else
			fprintf(stderr, CTL_PROG ": the list is not valid: %s%s%s\n", serr.field,
				serr.field[0] ? ": " : "", serr.message);
		goto out;
	}
	if (!ctl_write_text(output, text))
		goto out;

	/* The summary goes where it does not mix with the list. */
	FILE *info = output ? stdout : stderr;
	char issued[32], expires[32];
	fprintf(info,
		"signed suspension list sequence %" PRIu64 ": %zu suspension%s, issued %s, "
		"expires %s%s; key%s",
		sequence, suslist_count(list), suslist_count(list) == 1 ? "" : "s",
		ctl_format_utc(issued_at, issued, sizeof issued),
		ctl_format_utc(expires_at, expires, sizeof expires),
		suslist_expired(list, now) ? " (ALREADY EXPIRED)" : "", nkeys == 1 ? "" : "s");
	for (size_t i = 0; i < nkeys; i++)
		fprintf(info, " %s", key_ids[i]);
	fprintf(info, "%s%s\n", output ? " -> " : "", output ? output : "");
	rc = CTL_EXIT_OK;
out:
	suslist_free(list);
	free(text);
	json_decref(envelope);
	json_decref(sigs);
	free(payload_b64);
	free(payload);
	json_decref(suspensions);
	if (have_doc)
		yaml_document_delete(&doc);
	for (size_t i = 0; i < nkeys; i++)
		EVP_PKEY_free(keys[i]);
	return rc;
}

/* cmd_ministry: "ministry apply | keygen | sign ..." */
static int cmd_ministry(const struct ctl_context *ctx, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "apply") == 0)
		return ctl_ministry_apply(ctx, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return ctl_ministry_keygen(ctx, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "sign") == 0)
		return ctl_ministry_sign(argc - 1, argv + 1);
	return ctl_usage_error("ministry: the subcommand is 'apply FILE', 'keygen --out PREFIX' "
			       "or 'sign LIST.yaml --key K.key --sequence N --expires TIME'");
}

/* cmd_plugin: "plugin check PATH.so ..." (ctl/plugin_check.c), offline. */
static int cmd_plugin(const struct ctl_context *ctx, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return plugin_check_main(argc - 1, argv + 1, ctx->json_output);
	return ctl_usage_error("plugin: the subcommand is 'check PATH.so --resident CODE "
			       "--resident CODE ...'");
}

/* ctl_usage: the full help text, generated from ctl_commands[]; to `out`. */
static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: " CTL_PROG " [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
		"       " CTL_PROG " --help | --version\n"
		"\n"
		"Administers a running madoguchid through its admin API (a Unix socket).\n"
		"render, verify, audit, ministry keygen, ministry sign and plugin check work\n"
		"offline, without a daemon (docs/documents.md, docs/kill-switch.md,\n"
		"docs/plugin-sdk.md).\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < sizeof ctl_commands / sizeof ctl_commands[0]; i++) {
		char head[128];
		snprintf(head, sizeof head, "%s%s%s", ctl_commands[i].name,
			 ctl_commands[i].args[0] ? " " : "", ctl_commands[i].args);
		if (strlen(head) > 22)
			fprintf(out, "  %s\n  %-22s %s\n", head, "", ctl_commands[i].summary);
		else
			fprintf(out, "  %-22s %s\n", head, ctl_commands[i].summary);
	}
	fprintf(out,
		"\n"
		"Options:\n"
		"  --socket PATH          admin socket (default: $" CTL_SOCKET_ENV
		", else " CTL_DEFAULT_SOCKET ")\n"
		"  --json                 print the daemon's JSON reply instead of a summary;\n"
		"                         error answers are printed as JSON on stdout too\n"
		"  --timeout SECONDS      give up after SECONDS (default: %g)\n"
		"  -h, --help             show this help\n"
		"  -V, --version          show the version\n"
		"\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  the daemon answered with an error (printed as: title: detail (code));\n"
		"     render: the record could not be rendered; verify: the code does not verify;\n"
		"     ministry keygen/sign: a file or key is unusable (the message says where);\n"
		"     plugin check: a conformance check failed (the report says which)\n"
		"  2  usage error\n"
		"  3  the daemon could not be reached (no socket, refused, timed out)\n",
		CTL_DEFAULT_TIMEOUT_S);
}

/* cmd_help: print the usage text to stdout. */
static int cmd_help(const struct ctl_context *ctx, int argc, char **argv)
{
	(void)ctx;
	(void)argc;
	(void)argv;
	ctl_usage(stdout);
	return CTL_EXIT_OK;
}

/* ctl_find_command: the table row named `name`, or NULL. */
static const struct ctl_command *ctl_find_command(const char *name)
{
	for (size_t i = 0; i < sizeof ctl_commands / sizeof ctl_commands[0]; i++)
		if (strcmp(ctl_commands[i].name, name) == 0)
			return &ctl_commands[i];
	return NULL;
}

/*
 * ctl_parse_timeout: parse a positive number of seconds (fractions allowed) into
 * milliseconds. Returns false for anything else.
 */
static bool ctl_parse_timeout(const char *text, long *timeout_ms)
{
	char *end = NULL;
	errno = 0;
	double seconds = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(seconds > 0) || seconds > 86400.0 * 7)
		return false;
	*timeout_ms = (long)(seconds * 1000.0 + 0.5);
	if (*timeout_ms < 1)
		*timeout_ms = 1;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
	    {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
	};
	struct ctl_context ctx = {
	    .socket_path = NULL,
	    .json_output = false,
	    .timeout_ms = (long)(CTL_DEFAULT_TIMEOUT_S * 1000),
	};
	int opt;

	opterr = 0; /* we print our own messages */
	/* '+': stop at the command name, so commands may take options of their own later;
	 * ':': report a missing option value as ':' rather than '?'. */
	while ((opt = getopt_long(argc, argv, "+:hV", long_options, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (optarg[0] == '\0')
				return ctl_usage_error("--socket needs a path");
			ctx.socket_path = optarg;
			break;
		case 'j':
			ctx.json_output = true;
			break;
		case 't':
			if (!ctl_parse_timeout(optarg, &ctx.timeout_ms))
				return ctl_usage_error("--timeout needs a positive number of "
						       "seconds, not '%s'",
						       optarg);
			break;
		case 'h':
			ctl_usage(stdout);
			return CTL_EXIT_OK;
		case 'V':
			printf(CTL_PROG " " PACKAGE_VERSION "\n");
			return CTL_EXIT_OK;
		case ':':
			return ctl_usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return ctl_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return ctl_usage_error("no command given");

	const struct ctl_command *command = ctl_find_command(argv[optind]);
	if (command == NULL)
		return ctl_usage_error("unknown command '%s'", argv[optind]);

	if (ctx.socket_path == NULL) {
		const char *env = getenv(CTL_SOCKET_ENV);
		ctx.socket_path = (env != NULL && env[0] != '\0') ? env : CTL_DEFAULT_SOCKET;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, CTL_PROG ": cannot initialise libcurl\n");
		return CTL_EXIT_UNREACHABLE;
	}
	int rc = command->run(&ctx, argc - optind, argv + optind);
	curl_global_cleanup();
	if (fflush(stdout) != 0 && rc == CTL_EXIT_OK) {
		fprintf(stderr, CTL_PROG ": cannot write output: %s\n", strerror(errno));
		rc = CTL_EXIT_DAEMON_ERROR;
	}
	return rc;
}
