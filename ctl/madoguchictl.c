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
 * Exit codes (stable; scripts depend on them):
 *   0  success
 *   1  the daemon answered with an error (problem+json printed as "title: detail (code)")
 *   2  usage error
 *   3  the daemon could not be reached (socket missing, refused, timed out)
 *
 * Single-threaded; all state lives in main()'s ctl_context and in per-call locals.
 */
#include <curl/curl.h>
#include <errno.h>
#include <time.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "doccode.h"
#include "render.h"

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
    {"audit", "verify --db AUDIT.sqlite --public-key PUB.pem | export --db AUDIT.sqlite",
     "check the audit chain and its signed checkpoints, or print its rows as JSON\n"
     "                         lines (offline, on the file; safe while the daemon runs)",
     cmd_audit},
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

/* cmd_audit: "audit verify --db F --public-key P" and "audit export --db F", offline. */
static int cmd_audit(const struct ctl_context *ctx, int argc, char **argv)
{
	const char *db = NULL, *pub = NULL;
	char err[512];
	(void)ctx;
	if (argc < 2 || (strcmp(argv[1], "verify") != 0 && strcmp(argv[1], "export") != 0))
		return ctl_usage_error("audit: the subcommand is 'verify' or 'export'");
	bool verify = strcmp(argv[1], "verify") == 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			db = argv[++i];
		else if (verify && strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
			pub = argv[++i];
		else
			return ctl_usage_error("audit %s: unexpected '%s'", argv[1], argv[i]);
	}
	if (db == NULL || (verify && pub == NULL))
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
	int rc = audit_verify(db, pub, &rep, err, sizeof err);
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

/* ctl_usage: the full help text, generated from ctl_commands[]; to `out`. */
static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: " CTL_PROG " [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
		"       " CTL_PROG " --help | --version\n"
		"\n"
		"Administers a running madoguchid through its admin API (a Unix socket).\n"
		"render and verify work offline, without a daemon (docs/documents.md).\n"
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
		"     render: the record could not be rendered; verify: the code does not verify\n"
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
