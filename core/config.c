/*
 * config.c: loads madoguchi.yaml into an immutable struct config.
 *
 * The file is read into one libyaml document (yaml_parser_load), so every node keeps its
 * position.  A small schema walker then checks the document against the tables below: a
 * section is a table of fields, and a field names its key, its kind (which fixes how the text
 * is parsed and which values are allowed) and where the result goes.  Defaults are written
 * before the walk, so an absent optional key keeps its default.  The first error stops the walk
 * and is reported as "file:line:column: message" (1-based) at the node at fault: the value for
 * a bad value, the key for an unknown or duplicate key, the mapping for a missing key.
 *
 * Nothing here keeps global state, so config_load() may run on any thread (a reload runs it on
 * the loop thread).  A struct config is not modified after config_load() returns; the
 * reference count is its only mutable member and is changed with atomic builtins only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "config.h"

#define KIB	  (UINT64_C(1024))
#define MIB	  (KIB * 1024)
#define GIB	  (MIB * 1024)
#define SECOND_MS (UINT64_C(1000))
#define MINUTE_MS (SECOND_MS * 60)
#define HOUR_MS	  (MINUTE_MS * 60)

/* Longest part of a user's value quoted back in a message. */
#define SHOWN_MAX 80

/* How a field's text is read and checked; the kind also fixes the C type it is stored as. */
enum field_kind {
	KIND_SECTION,	  /* a mapping, described by field.section */
	KIND_PATH,	  /* char *: a path, made absolute against the config directory */
	KIND_FILE,	  /* char *: a path that must name a readable regular file */
	KIND_ADDRESS,	  /* char *: numeric IPv4 or IPv6 address */
	KIND_GROUP,	  /* char *: name of an existing group */
	KIND_INTEGER,	  /* unsigned integer of field.size bytes, in [min, max] */
	KIND_SIZE,	  /* as KIND_INTEGER, written as bytes with an optional KiB/MiB/GiB */
	KIND_DURATION,	  /* as KIND_INTEGER, in milliseconds, written as "250ms", "10s", ... */
	KIND_MODE,	  /* as KIND_INTEGER, an octal file mode up to 0777 */
	KIND_LOG_LEVEL,	  /* enum config_log_level */
	KIND_BOOL,	  /* bool */
	KIND_TLS_VERSION, /* int: 12 or 13 */
	KIND_STRING,	  /* char *: any non-empty text */
	KIND_INSTANCES,	  /* the plugins mapping: instance name -> plugin_fields */
	KIND_SETTINGS,	  /* a plugin's free-form config: scalar keys and values */
	KIND_LIST,	  /* struct config_list: a sequence of scalars, or one scalar */
	KIND_FILE_LIST,	  /* as KIND_LIST, each item a readable file (relative to the config) */
	KIND_PROOF_MODE,  /* enum config_card_proof_mode: required | center-asserted */
};

#define FIELD_REQUIRED	   1u /* missing key is an error */
#define FIELD_SETS_PRESENT 2u /* section: the bool at aux becomes true when the key is there */
#define FIELD_RECORDS_MARK 4u /* section: the key's position is stored at aux */

/* One key of a section.  Offsets are from the base of the enclosing section's struct. */
struct field {
	const char *name; /* NULL ends a table */
	enum field_kind kind;
	unsigned flags;
	size_t offset;
	size_t size;		     /* of the member, for the integer kinds */
	uint64_t min, max;	     /* allowed range, for the integer kinds */
	const struct field *section; /* KIND_SECTION: its keys, offsets from this field's member */
	size_t aux;		     /* FIELD_SETS_PRESENT / FIELD_RECORDS_MARK: offset in it */
};

#define AT(type, member) .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)

/* A section has at most this many keys (the "seen" set in config_walk_section). */
#define SECTION_KEYS_MAX 16

static const struct field limits_fields[] = {
    {.name = "max_connections",
     .kind = KIND_INTEGER,
     AT(struct config_limits, max_connections),
     .min = 1,
     .max = 1000000},
    {.name = "max_header_bytes",
     .kind = KIND_SIZE,
     AT(struct config_limits, max_header_bytes),
     .min = KIB,
     .max = MIB},
    {.name = "max_body_bytes",
     .kind = KIND_SIZE,
     AT(struct config_limits, max_body_bytes),
     .min = 1,
     .max = GIB},
    {.name = "header_timeout",
     .kind = KIND_DURATION,
     AT(struct config_limits, header_timeout_ms),
     .min = 1,
     .max = HOUR_MS},
    {.name = "body_timeout",
     .kind = KIND_DURATION,
     AT(struct config_limits, body_timeout_ms),
     .min = 1,
     .max = HOUR_MS},
    {.name = "idle_timeout",
     .kind = KIND_DURATION,
     AT(struct config_limits, idle_timeout_ms),
     .min = 1,
     .max = HOUR_MS},
    {.name = "max_requests_per_connection",
     .kind = KIND_INTEGER,
     AT(struct config_limits, max_requests_per_connection),
     .min = 1,
     .max = 10000000},
    {.name = NULL},
};

static const struct field tls_fields[] = {
    {.name = "certificate",
     .kind = KIND_FILE,
     .flags = FIELD_REQUIRED,
     AT(struct config_tls, certificate)},
    {.name = "key", .kind = KIND_FILE, .flags = FIELD_REQUIRED, AT(struct config_tls, key)},
    {.name = "client_ca",
     .kind = KIND_FILE,
     .flags = FIELD_REQUIRED,
     AT(struct config_tls, client_ca)},
    {.name = "min_version", .kind = KIND_TLS_VERSION, AT(struct config_tls, min_version)},
    {.name = NULL},
};

static const struct field store_fields[] = {
    {.name = "address",
     .kind = KIND_ADDRESS,
     .flags = FIELD_REQUIRED,
     AT(struct config_store_listener, address)},
    {.name = "port",
     .kind = KIND_INTEGER,
     .flags = FIELD_REQUIRED,
     AT(struct config_store_listener, port),
     .min = 0,
     .max = 65535},
    {.name = "tls",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED | FIELD_RECORDS_MARK,
     AT(struct config_store_listener, tls),
     .section = tls_fields,
     .aux = offsetof(struct config_tls, mark)},
    {.name = "limits",
     .kind = KIND_SECTION,
     AT(struct config_store_listener, limits),
     .section = limits_fields},
    {.name = NULL},
};

static const struct field admin_fields[] = {
    {.name = "unix",
     .kind = KIND_PATH,
     .flags = FIELD_REQUIRED,
     AT(struct config_admin_listener, unix_path)},
    {.name = "mode",
     .kind = KIND_MODE,
     AT(struct config_admin_listener, mode),
     .min = 0,
     .max = 0777},
    {.name = "group", .kind = KIND_GROUP, AT(struct config_admin_listener, group)},
    {.name = "limits",
     .kind = KIND_SECTION,
     AT(struct config_admin_listener, limits),
     .section = limits_fields},
    {.name = NULL},
};

static const struct field metrics_fields[] = {
    {.name = "address",
     .kind = KIND_ADDRESS,
     .flags = FIELD_REQUIRED,
     AT(struct config_metrics_listener, address)},
    {.name = "port",
     .kind = KIND_INTEGER,
     .flags = FIELD_REQUIRED,
     AT(struct config_metrics_listener, port),
     .min = 0,
     .max = 65535},
    {.name = "limits",
     .kind = KIND_SECTION,
     AT(struct config_metrics_listener, limits),
     .section = limits_fields},
    {.name = NULL},
};

/* The sections below live directly in struct config: their offsets are from its start. */
static const struct field listeners_fields[] = {
    {.name = "store",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED,
     AT(struct config, store),
     .section = store_fields},
    {.name = "admin",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED,
     AT(struct config, admin),
     .section = admin_fields},
    {.name = "metrics",
     .kind = KIND_SECTION,
     .flags = FIELD_SETS_PRESENT,
     AT(struct config, metrics),
     .section = metrics_fields,
     .aux = offsetof(struct config_metrics_listener, enabled)},
    {.name = NULL},
};

static const struct field log_fields[] = {
    {.name = "level", .kind = KIND_LOG_LEVEL, AT(struct config, log.level)},
    {.name = "access", .kind = KIND_BOOL, AT(struct config, log.access)},
    {.name = NULL},
};

static const struct field shutdown_fields[] = {
    {.name = "drain_timeout",
     .kind = KIND_DURATION,
     AT(struct config, drain_timeout_ms),
     .min = 0,
     .max = HOUR_MS},
    {.name = NULL},
};

static const struct field plugin_fields[] = {
    {.name = "file", .kind = KIND_STRING, .flags = FIELD_REQUIRED, AT(struct config_plugin, file)},
    {.name = "timeout",
     .kind = KIND_DURATION,
     AT(struct config_plugin, timeout_ms),
     .min = 1,
     .max = 10 * MINUTE_MS},
    {.name = "max_in_flight",
     .kind = KIND_INTEGER,
     AT(struct config_plugin, max_in_flight),
     .min = 1,
     .max = 100000},
    {.name = "config", .kind = KIND_SETTINGS, .offset = 0},
    {.name = NULL},
};

static const struct field card_proof_fields[] = {
    {.name = "ca",
     .kind = KIND_FILE,
     .flags = FIELD_REQUIRED,
     AT(struct config_issuance, card_proof.ca)},
    {.name = "crl", .kind = KIND_FILE, AT(struct config_issuance, card_proof.crl)},
    {.name = "crl_interval",
     .kind = KIND_DURATION,
     AT(struct config_issuance, card_proof.crl_interval_ms),
     .min = SECOND_MS,
     .max = 24 * HOUR_MS},
    {.name = "mode", .kind = KIND_PROOF_MODE, AT(struct config_issuance, card_proof.mode)},
    {.name = "max_skew",
     .kind = KIND_DURATION,
     AT(struct config_issuance, card_proof.max_skew_ms),
     .min = 0,
     .max = HOUR_MS},
    {.name = NULL},
};

static const struct field audit_fields[] = {
    {.name = "checkpoint_rows",
     .kind = KIND_INTEGER,
     AT(struct config_issuance, audit.checkpoint_rows),
     .min = 1,
     .max = 10000000},
    {.name = "checkpoint_interval",
     .kind = KIND_DURATION,
     AT(struct config_issuance, audit.checkpoint_interval_ms),
     .min = SECOND_MS,
     .max = 24 * HOUR_MS},
    {.name = "queue_limit",
     .kind = KIND_INTEGER,
     AT(struct config_issuance, audit.queue_limit),
     .min = 1,
     .max = 1000000},
    {.name = NULL},
};

static const struct field certificate_fields[] = {
    {.name = "plugin",
     .kind = KIND_STRING,
     .flags = FIELD_REQUIRED,
     AT(struct config_certificate, plugin)},
    {.name = "opening", .kind = KIND_STRING, AT(struct config_certificate, opening)},
    {.name = "closing", .kind = KIND_STRING, AT(struct config_certificate, closing)},
    {.name = "always_open", .kind = KIND_BOOL, AT(struct config_certificate, always_open)},
    {.name = "closed", .kind = KIND_LIST, AT(struct config_certificate, closed)},
    {.name = "fee",
     .kind = KIND_INTEGER,
     AT(struct config_certificate, fee),
     .min = 0,
     .max = HOURS_FEE_MAX},
    {.name = "max_age",
     .kind = KIND_DURATION,
     AT(struct config_certificate, max_age_ms),
     .min = SECOND_MS,
     .max = 24 * HOUR_MS},
    {.name = NULL},
};

/* One entry per certificate type, in record_certificate_types' order. */
#define CERTIFICATE_FIELD(type_name, i)                                                            \
	{                                                                                          \
		.name = type_name, .kind = KIND_SECTION, .flags = FIELD_RECORDS_MARK,              \
		AT(struct config_issuance, certificates[i]), .section = certificate_fields,        \
		.aux = offsetof(struct config_certificate, mark)                                   \
	}
static const struct field certificates_fields[] = {
    CERTIFICATE_FIELD("residence", 0),
    CERTIFICATE_FIELD("residence-record", 1),
    CERTIFICATE_FIELD("seal", 2),
    CERTIFICATE_FIELD("tax-income", 3),
    CERTIFICATE_FIELD("koseki-full", 4),
    CERTIFICATE_FIELD("koseki-individual", 5),
    CERTIFICATE_FIELD("koseki-attachment", 6),
    {.name = NULL},
};

static const struct field issuance_fields[] = {
    {.name = "municipalities",
     .kind = KIND_LIST,
     .flags = FIELD_REQUIRED,
     AT(struct config_issuance, municipalities)},
    {.name = "municipality_name",
     .kind = KIND_STRING,
     .flags = FIELD_REQUIRED,
     AT(struct config_issuance, municipality_name)},
    {.name = "node", .kind = KIND_STRING, AT(struct config_issuance, node)},
    {.name = "mayor_name", .kind = KIND_STRING, AT(struct config_issuance, mayor_name)},
    {.name = "mayor_seal", .kind = KIND_FILE, AT(struct config_issuance, mayor_seal)},
    {.name = "seal_impressions", .kind = KIND_PATH, AT(struct config_issuance, seal_impressions)},
    {.name = "document_key",
     .kind = KIND_FILE,
     .flags = FIELD_REQUIRED,
     AT(struct config_issuance, document_key)},
    {.name = "retired_document_keys",
     .kind = KIND_FILE_LIST,
     AT(struct config_issuance, retired_document_keys)},
    {.name = "subject_key", .kind = KIND_PATH, AT(struct config_issuance, subject_key)},
    {.name = "card_proof",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED,
     .offset = 0,
     .section = card_proof_fields},
    {.name = "deadline",
     .kind = KIND_DURATION,
     AT(struct config_issuance, deadline_ms),
     .min = 100,
     .max = 10 * MINUTE_MS},
    {.name = "idempotency_retention",
     .kind = KIND_DURATION,
     AT(struct config_issuance, idempotency_retention_ms),
     .min = MINUTE_MS,
     .max = 30 * 24 * HOUR_MS},
    {.name = "max_pending",
     .kind = KIND_INTEGER,
     AT(struct config_issuance, max_pending),
     .min = 1,
     .max = 1000000},
    {.name = "render_queue",
     .kind = KIND_INTEGER,
     AT(struct config_issuance, render_queue),
     .min = 1,
     .max = 1000000},
    {.name = "audit", .kind = KIND_SECTION, .offset = 0, .section = audit_fields},
    {.name = "certificates",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED,
     .offset = 0,
     .section = certificates_fields},
    {.name = NULL},
};

static const struct field ministry_fields[] = {
    {.name = "keys",
     .kind = KIND_FILE_LIST,
     .flags = FIELD_REQUIRED,
     AT(struct config_ministry, keys)},
    {.name = "threshold",
     .kind = KIND_INTEGER,
     AT(struct config_ministry, threshold),
     .min = 1,
     .max = 16},
    {.name = "feed_url", .kind = KIND_STRING, AT(struct config_ministry, feed_url)},
    {.name = "feed_ca", .kind = KIND_FILE, AT(struct config_ministry, feed_ca)},
    {.name = "poll_interval",
     .kind = KIND_DURATION,
     AT(struct config_ministry, poll_interval_ms),
     .min = SECOND_MS,
     .max = 24 * HOUR_MS},
    {.name = "feed_timeout",
     .kind = KIND_DURATION,
     AT(struct config_ministry, feed_timeout_ms),
     .min = 100,
     .max = 10 * MINUTE_MS},
    {.name = NULL},
};

static const struct field top_fields[] = {
    {.name = "data_dir", .kind = KIND_PATH, AT(struct config, data_dir)},
    {.name = "listeners",
     .kind = KIND_SECTION,
     .flags = FIELD_REQUIRED,
     .offset = 0,
     .section = listeners_fields},
    {.name = "log", .kind = KIND_SECTION, .offset = 0, .section = log_fields},
    {.name = "shutdown", .kind = KIND_SECTION, .offset = 0, .section = shutdown_fields},
    {.name = "plugin_dir", .kind = KIND_PATH, AT(struct config, plugin_dir)},
    {.name = "worker_threads",
     .kind = KIND_INTEGER,
     AT(struct config, worker_threads),
     .min = 1,
     .max = 1024}, /* libuv's own limit */
    {.name = "plugins", .kind = KIND_INSTANCES, .offset = 0, .section = plugin_fields},
    {.name = "issuance",
     .kind = KIND_SECTION,
     .flags = FIELD_SETS_PRESENT,
     AT(struct config, issuance),
     .section = issuance_fields,
     .aux = offsetof(struct config_issuance, enabled)},
    {.name = "ministry",
     .kind = KIND_SECTION,
     .flags = FIELD_SETS_PRESENT,
     AT(struct config, ministry),
     .section = ministry_fields,
     .aux = offsetof(struct config_ministry, enabled)},
    {.name = NULL},
};

/* The walker's "seen" set must cover every table (the +1 is the NULL end). */
#define FITS(table) (sizeof(table) / sizeof((table)[0]) <= SECTION_KEYS_MAX + 1)
_Static_assert(FITS(limits_fields) && FITS(tls_fields) && FITS(store_fields) &&
		   FITS(admin_fields) && FITS(metrics_fields) && FITS(listeners_fields) &&
		   FITS(log_fields) && FITS(shutdown_fields) && FITS(top_fields) &&
		   FITS(plugin_fields) && FITS(card_proof_fields) && FITS(audit_fields) &&
		   FITS(certificate_fields) && FITS(certificates_fields) && FITS(issuance_fields),
	       "a section has more keys than SECTION_KEYS_MAX");

static const char *const level_names[] = {
    [CONFIG_LOG_DEBUG] = "debug",
    [CONFIG_LOG_INFO] = "info",
    [CONFIG_LOG_WARN] = "warn",
    [CONFIG_LOG_ERROR] = "error",
};

/* State of one config_load_opts() call. */
struct loader {
	const char *file; /* as the caller named it, for messages */
	const char *dir;  /* absolute directory of the file, for relative paths */
	unsigned flags;	  /* CONFIG_SKIP_FILE_CHECKS */
	yaml_document_t *doc;
	unsigned char *visited; /* per node: already walked (so it is the target of an alias) */
	struct config_error *err;
};

/* Fills err with "file:line:column: " and the formatted message.  Returns -1 for "return
 * config_fail_at(...)". */
__attribute__((format(printf, 3, 4))) static int config_fail_at(struct loader *ld, yaml_mark_t mark,
								const char *fmt, ...)
{
	char *msg = ld->err->msg;
	int n = snprintf(msg, CONFIG_ERROR_MAX, "%s:%zu:%zu: ", ld->file, mark.line + 1,
			 mark.column + 1);
	if (n >= 0 && n < CONFIG_ERROR_MAX) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg + n, (size_t)(CONFIG_ERROR_MAX - n), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Fills err with "file: " and the formatted message, for errors with no position. */
__attribute__((format(printf, 3, 4))) static int config_fail(struct config_error *err,
							     const char *file, const char *fmt, ...)
{
	int n = snprintf(err->msg, CONFIG_ERROR_MAX, "%s: ", file);
	if (n >= 0 && n < CONFIG_ERROR_MAX) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg + n, (size_t)(CONFIG_ERROR_MAX - n), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Length of text to quote back in a message: all of it, up to SHOWN_MAX bytes. */
static int config_shown(const char *text)
{
	size_t len = strlen(text);
	return (int)(len < SHOWN_MAX ? len : SHOWN_MAX);
}

/* A unit suffix and how many base units (bytes, milliseconds) it stands for. */
struct unit {
	const char *suffix;
	uint64_t scale;
};

static const struct unit integer_units[] = {{"", 1}, {NULL, 0}};
static const struct unit size_units[] = {
    {"", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}, {NULL, 0}};
static const struct unit duration_units[] = {{"", SECOND_MS},  {"ms", 1},      {"s", SECOND_MS},
					     {"m", MINUTE_MS}, {"h", HOUR_MS}, {NULL, 0}};

/* Parses decimal digits followed by exactly one of the suffixes in units.  Returns 0 and sets
 * *out, -1 if the text has another form, -2 if it has the right form but exceeds 64 bits. */
static int config_parse_scaled(const char *text, const struct unit *units, uint64_t *out)
{
	const char *p = text;
	uint64_t n = 0;
	bool overflow = false;

	if (text == NULL || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (n > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			n = n * 10 + d;
	}
	for (; units->suffix != NULL; units++) {
		if (strcmp(p, units->suffix) != 0)
			continue;
		if (overflow || n > UINT64_MAX / units->scale)
			return -2;
		*out = n * units->scale;
		return 0;
	}
	return -1;
}

int config_parse_duration(const char *text, uint64_t *ms)
{
	return config_parse_scaled(text, duration_units, ms) == 0 ? 0 : -1;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
	return config_parse_scaled(text, size_units, bytes) == 0 ? 0 : -1;
}

/* Writes v as the shortest exact text config_parse_size() reads back ("16KiB", "1000"). */
static void config_format_size(char *buf, size_t cap, uint64_t v)
{
	if (v != 0 && v % GIB == 0)
		snprintf(buf, cap, "%" PRIu64 "GiB", v / GIB);
	else if (v != 0 && v % MIB == 0)
		snprintf(buf, cap, "%" PRIu64 "MiB", v / MIB);
	else if (v != 0 && v % KIB == 0)
		snprintf(buf, cap, "%" PRIu64 "KiB", v / KIB);
	else
		snprintf(buf, cap, "%" PRIu64, v);
}

/* Writes ms as the shortest exact text config_parse_duration() reads back ("1h", "250ms"). */
static void config_format_duration(char *buf, size_t cap, uint64_t ms)
{
	if (ms != 0 && ms % HOUR_MS == 0)
		snprintf(buf, cap, "%" PRIu64 "h", ms / HOUR_MS);
	else if (ms != 0 && ms % MINUTE_MS == 0)
		snprintf(buf, cap, "%" PRIu64 "m", ms / MINUTE_MS);
	else if (ms % SECOND_MS == 0)
		snprintf(buf, cap, "%" PRIu64 "s", ms / SECOND_MS);
	else
		snprintf(buf, cap, "%" PRIu64 "ms", ms);
}

/*
 * Returns dir/path (or path alone when it is absolute) with "." components and repeated
 * slashes removed, malloc'd, or NULL when out of memory.  dir must be absolute.  ".." is kept:
 * removing it lexically would be wrong when the component before it is a symbolic link.
 */
static char *config_resolve_path(const char *dir, const char *path)
{
	size_t cap = strlen(dir) + strlen(path) + 2;
	char *out = malloc(cap);
	if (out == NULL)
		return NULL;
	if (path[0] == '/')
		snprintf(out, cap, "%s", path);
	else
		snprintf(out, cap, "%s/%s", dir, path);

	/* In place: each "/component" written was at least as long in the input read so far. */
	size_t w = 0;
	const char *r = out;
	while (*r != '\0') {
		while (*r == '/')
			r++;
		const char *start = r;
		while (*r != '\0' && *r != '/')
			r++;
		size_t n = (size_t)(r - start);
		if (n == 0 || (n == 1 && start[0] == '.'))
			continue;
		out[w++] = '/';
		memmove(out + w, start, n);
		w += n;
	}
	if (w == 0)
		out[w++] = '/';
	out[w] = '\0';
	return out;
}

/* The directory of an absolute file path, malloc'd ("/" for a file at the root); NULL when out
 * of memory. */
static char *config_dir_of(const char *file)
{
	char *dir = strdup(file);
	if (dir == NULL)
		return NULL;
	char *slash = strrchr(dir, '/');
	slash[slash == dir ? 1 : 0] = '\0';
	return dir;
}

/* Looks up a group by name without the static buffer of getgrnam().  Returns 1 if it exists,
 * 0 if not, -1 with errno set if the lookup itself failed. */
static int config_group_exists(const char *name)
{
	for (size_t cap = 1024; cap <= 1024 * 1024; cap *= 4) {
		struct group gr, *found = NULL;
		char *buf = malloc(cap);
		if (buf == NULL) {
			errno = ENOMEM;
			return -1;
		}
		int rc = getgrnam_r(name, &gr, buf, cap, &found);
		free(buf);
		if (rc == ERANGE)
			continue;
		if (rc == 0 || rc == ENOENT || rc == ESRCH)
			return found != NULL;
		errno = rc;
		return -1;
	}
	errno = ERANGE;
	return -1;
}

/* True for a plain scalar YAML reads as null: "key:" with nothing after it, "~" or "null". */
static bool config_node_is_null(const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)node->data.scalar.value;
	return s[0] == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static const char *config_node_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a single value";
	}
}

/* Returns the node with this index, or NULL with err filled when the walk has reached it once
 * already: that only happens through a YAML alias, which the config does not support. */
static yaml_node_t *config_visit(struct loader *ld, int index)
{
	yaml_node_t *node = yaml_document_get_node(ld->doc, index);
	if (node == NULL) {
		snprintf(ld->err->msg, CONFIG_ERROR_MAX, "%s: malformed YAML document", ld->file);
		return NULL;
	}
	if (ld->visited[index - 1]) {
		config_fail_at(ld, node->start_mark,
			       "YAML anchors and aliases are not supported; write the value out "
			       "in each place (this node is used more than once)");
		return NULL;
	}
	ld->visited[index - 1] = 1;
	return node;
}

/* Stores v in an unsigned member of size bytes (checked against its range before). */
static void config_store_uint(void *dst, size_t size, uint64_t v)
{
	switch (size) {
	case sizeof(uint16_t):
		*(uint16_t *)dst = (uint16_t)v;
		break;
	case sizeof(uint32_t):
		*(uint32_t *)dst = (uint32_t)v;
		break;
	default:
		*(uint64_t *)dst = v;
		break;
	}
}

/* Replaces the string at dst by value (malloc'd by the caller), freeing a default. */
static void config_store_string(void *dst, char *value)
{
	char **slot = dst;
	free(*slot);
	*slot = value;
}

/* Checks that path names a readable regular file; name is the key's dotted name. */
static int config_check_file(struct loader *ld, yaml_node_t *value, const char *name,
			     const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0 || access(path, R_OK) != 0)
		return config_fail_at(ld, value->start_mark, "%s: cannot read '%s': %s", name, path,
				      strerror(errno));
	if (!S_ISREG(st.st_mode))
		return config_fail_at(ld, value->start_mark, "%s: '%s' is not a regular file", name,
				      path);
	return 0;
}

/* Reads an integer-like field (integer, size, duration, mode) and checks its range. */
static int config_load_number(struct loader *ld, const struct field *f, yaml_node_t *value,
			      const char *name, const char *text, void *dst)
{
	char lo[32], hi[32];
	const char *expected;
	uint64_t v = 0;
	int rc;

	switch (f->kind) {
	case KIND_INTEGER:
		rc = config_parse_scaled(text, integer_units, &v);
		expected = "an integer";
		snprintf(lo, sizeof lo, "%" PRIu64, f->min);
		snprintf(hi, sizeof hi, "%" PRIu64, f->max);
		break;
	case KIND_SIZE:
		rc = config_parse_scaled(text, size_units, &v);
		expected = "a size in bytes, optionally with a KiB, MiB or GiB suffix "
			   "(KB, MB and GB are not accepted)";
		config_format_size(lo, sizeof lo, f->min);
		config_format_size(hi, sizeof hi, f->max);
		break;
	case KIND_DURATION:
		rc = config_parse_scaled(text, duration_units, &v);
		expected = "a duration such as 250ms, 10s, 5m or 1h (a bare number is seconds)";
		config_format_duration(lo, sizeof lo, f->min);
		config_format_duration(hi, sizeof hi, f->max);
		break;
	default: /* KIND_MODE */
		rc = -1;
		if (text[0] != '\0' && text[strspn(text, "01234567")] == '\0') {
			errno = 0;
			v = strtoull(text, NULL, 8);
			rc = errno == 0 ? 0 : -2;
		}
		expected = "an octal file mode such as 0660";
		snprintf(lo, sizeof lo, "0%" PRIo64, f->min);
		snprintf(hi, sizeof hi, "0%" PRIo64, f->max);
		break;
	}
	if (rc == -1)
		return config_fail_at(ld, value->start_mark, "%s: expected %s, got '%.*s'", name,
				      expected, config_shown(text), text);
	if (rc != 0 || v < f->min || v > f->max)
		return config_fail_at(ld, value->start_mark,
				      "%s: '%.*s' is out of range (%s to %s)", name,
				      config_shown(text), text, lo, hi);
	config_store_uint(dst, f->size, v);
	return 0;
}

/* Reads a single-value field into dst; name is its dotted name, for messages. */
static int config_load_scalar(struct loader *ld, const struct field *f, yaml_node_t *value,
			      const char *name, void *dst)
{
	const char *text = (const char *)value->data.scalar.value;
	char *copy = NULL;
	unsigned char addr[sizeof(struct in6_addr)];

	if (strlen(text) != value->data.scalar.length)
		return config_fail_at(ld, value->start_mark, "%s: contains a NUL character", name);

	switch (f->kind) {
	case KIND_PATH:
	case KIND_FILE:
		if (text[0] == '\0')
			return config_fail_at(ld, value->start_mark,
					      "%s: expected a path, got nothing", name);
		copy = config_resolve_path(ld->dir, text);
		if (copy == NULL)
			return config_fail_at(ld, value->start_mark, "out of memory");
		if (f->kind == KIND_FILE && !(ld->flags & CONFIG_SKIP_FILE_CHECKS) &&
		    config_check_file(ld, value, name, copy) != 0) {
			free(copy);
			return -1;
		}
		config_store_string(dst, copy);
		return 0;
	case KIND_STRING:
		if (text[0] == '\0')
			return config_fail_at(ld, value->start_mark,
					      "%s: expected a value, got nothing", name);
		break;
	case KIND_ADDRESS:
		if (inet_pton(AF_INET, text, addr) != 1 && inet_pton(AF_INET6, text, addr) != 1)
			return config_fail_at(ld, value->start_mark,
					      "%s: expected a numeric IPv4 or IPv6 address "
					      "such as 127.0.0.1 or ::1 (host names are not "
					      "looked up), got '%.*s'",
					      name, config_shown(text), text);
		break;
	case KIND_GROUP:
		switch (text[0] == '\0' ? 0 : config_group_exists(text)) {
		case 1:
			break;
		case 0:
			return config_fail_at(ld, value->start_mark,
					      "%s: group '%.*s' does not exist; create it or "
					      "remove the key to keep the daemon's own group",
					      name, config_shown(text), text);
		default:
			return config_fail_at(ld, value->start_mark,
					      "%s: cannot look up group '%.*s': %s", name,
					      config_shown(text), text, strerror(errno));
		}
		break;
	case KIND_LOG_LEVEL:
		for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
			if (strcasecmp(text, level_names[i]) == 0) {
				*(enum config_log_level *)dst = (enum config_log_level)i;
				return 0;
			}
		}
		return config_fail_at(ld, value->start_mark,
				      "%s: expected one of debug, info, warn, error, got '%.*s'",
				      name, config_shown(text), text);
	case KIND_BOOL:
		if (strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0 ||
		    strcasecmp(text, "on") == 0) {
			*(bool *)dst = true;
			return 0;
		}
		if (strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0 ||
		    strcasecmp(text, "off") == 0) {
			*(bool *)dst = false;
			return 0;
		}
		return config_fail_at(ld, value->start_mark,
				      "%s: expected true or false (or yes/no, on/off), got '%.*s'",
				      name, config_shown(text), text);
	case KIND_PROOF_MODE:
		if (strcmp(text, "required") == 0 || strcmp(text, "center-asserted") == 0) {
			*(enum config_card_proof_mode *)dst =
			    text[0] == 'r' ? CONFIG_CARD_PROOF_REQUIRED
					   : CONFIG_CARD_PROOF_CENTER_ASSERTED;
			return 0;
		}
		return config_fail_at(ld, value->start_mark,
				      "%s: expected required or center-asserted, got '%.*s'", name,
				      config_shown(text), text);
	case KIND_TLS_VERSION:
		/* Unquoted 1.2 is a float to YAML, but its text is still "1.2". */
		if (strcmp(text, "1.2") == 0 || strcmp(text, "1.3") == 0) {
			*(int *)dst = text[2] == '2' ? 12 : 13;
			return 0;
		}
		return config_fail_at(ld, value->start_mark,
				      "%s: expected \"1.2\" or \"1.3\", got '%.*s'", name,
				      config_shown(text), text);
	default:
		return config_load_number(ld, f, value, name, text, dst);
	}

	/* KIND_STRING, KIND_ADDRESS and KIND_GROUP keep the text as written. */
	copy = strdup(text);
	if (copy == NULL)
		return config_fail_at(ld, value->start_mark, "out of memory");
	config_store_string(dst, copy);
	return 0;
}

static int config_walk_section(struct loader *ld, const struct field *fields, unsigned char *base,
			       const char *path, yaml_node_t *map, yaml_mark_t where);

/* True for an instance name: 1 to 63 of [a-z0-9-], starting with a letter or digit. */
static bool config_instance_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	}
	return true;
}

/*
 * Reads `plugins:`, a mapping from instance name to its settings (plugin_fields), into
 * cfg->plugins.  Duplicate names are caught by the mapping walk of YAML keys below.
 */
static int config_walk_instances(struct loader *ld, const struct field *f, struct config *cfg,
				 const char *name, yaml_node_t *key, yaml_node_t *value)
{
	if (config_node_is_null(value))
		return 0;
	if (value->type != YAML_MAPPING_NODE)
		return config_fail_at(ld, value->start_mark,
				      "%s: expected a mapping from instance name to its settings, "
				      "got %s",
				      name, config_node_kind(value));
	size_t count = (size_t)(value->data.mapping.pairs.top - value->data.mapping.pairs.start);
	cfg->plugins = calloc(count ? count : 1, sizeof *cfg->plugins);
	if (cfg->plugins == NULL)
		return config_fail_at(ld, key->start_mark, "out of memory");
	for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
	     pair < value->data.mapping.pairs.top; pair++) {
		yaml_node_t *ikey = config_visit(ld, pair->key);
		yaml_node_t *ival = ikey ? config_visit(ld, pair->value) : NULL;
		if (ival == NULL)
			return -1;
		if (ikey->type != YAML_SCALAR_NODE)
			return config_fail_at(ld, ikey->start_mark,
					      "%s: expected an instance name, got %s", name,
					      config_node_kind(ikey));
		const char *iname = (const char *)ikey->data.scalar.value;
		if (!config_instance_name_ok(iname))
			return config_fail_at(
			    ld, ikey->start_mark,
			    "%s: instance name '%.*s' must be 1 to 63 of a-z, 0-9 "
			    "and '-'",
			    name, config_shown(iname), iname);
		for (size_t i = 0; i < cfg->plugin_count; i++) {
			if (strcmp(cfg->plugins[i].name, iname) == 0)
				return config_fail_at(ld, ikey->start_mark,
						      "duplicate key '%s' in %s (first given at "
						      "line %d)",
						      iname, name, cfg->plugins[i].mark.line);
		}
		struct config_plugin *p = &cfg->plugins[cfg->plugin_count++];
		p->name = strdup(iname);
		if (p->name == NULL)
			return config_fail_at(ld, ikey->start_mark, "out of memory");
		p->mark.line = (int)ikey->start_mark.line + 1;
		p->mark.column = (int)ikey->start_mark.column + 1;
		p->timeout_ms = 2 * SECOND_MS;
		p->max_in_flight = 64;
		if (ival->type != YAML_MAPPING_NODE)
			return config_fail_at(
			    ld, ival->start_mark,
			    "%s.%s: expected a mapping of settings (file, config, "
			    "…), got %s",
			    name, iname, config_node_kind(ival));
		char path[160];
		snprintf(path, sizeof path, "%s.%s", name, iname);
		if (config_walk_section(ld, f->section, (unsigned char *)p, path, ival,
					ival->start_mark) != 0)
			return -1;
		/* The position of `file`, for the loader's refusals. */
		for (yaml_node_pair_t *fp = ival->data.mapping.pairs.start;
		     fp < ival->data.mapping.pairs.top; fp++) {
			yaml_node_t *fk = yaml_document_get_node(ld->doc, fp->key);
			yaml_node_t *fv = yaml_document_get_node(ld->doc, fp->value);
			if (strcmp((const char *)fk->data.scalar.value, "file") == 0) {
				p->file_mark.line = (int)fv->start_mark.line + 1;
				p->file_mark.column = (int)fv->start_mark.column + 1;
			}
		}
	}
	return 0;
}

/* Reads a plugin instance's `config:` mapping of scalars; the plugin checks the keys. */
static int config_walk_settings(struct loader *ld, struct config_plugin *p, const char *name,
				yaml_node_t *key, yaml_node_t *value)
{
	if (config_node_is_null(value))
		return 0;
	if (value->type != YAML_MAPPING_NODE)
		return config_fail_at(
		    ld, value->start_mark,
		    "%s: expected a mapping of settings (key: value lines), got %s", name,
		    config_node_kind(value));
	size_t count = (size_t)(value->data.mapping.pairs.top - value->data.mapping.pairs.start);
	p->settings = calloc(count ? count : 1, sizeof *p->settings);
	if (p->settings == NULL)
		return config_fail_at(ld, key->start_mark, "out of memory");
	for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
	     pair < value->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = config_visit(ld, pair->key);
		yaml_node_t *v = k ? config_visit(ld, pair->value) : NULL;
		if (v == NULL)
			return -1;
		if (k->type != YAML_SCALAR_NODE)
			return config_fail_at(ld, k->start_mark, "%s: expected a key name, got %s",
					      name, config_node_kind(k));
		const char *ktext = (const char *)k->data.scalar.value;
		if (v->type != YAML_SCALAR_NODE)
			return config_fail_at(ld, v->start_mark,
					      "%s.%s: expected a single value, got %s", name, ktext,
					      config_node_kind(v));
		for (size_t i = 0; i < p->setting_count; i++) {
			if (strcmp(p->settings[i].key, ktext) == 0)
				return config_fail_at(ld, k->start_mark,
						      "duplicate key '%.*s' in %s (first given at "
						      "line %d)",
						      config_shown(ktext), ktext, name,
						      p->settings[i].mark.line);
		}
		struct config_setting *st = &p->settings[p->setting_count++];
		st->key = strdup(ktext);
		st->value = strdup((const char *)v->data.scalar.value);
		if (st->key == NULL || st->value == NULL)
			return config_fail_at(ld, k->start_mark, "out of memory");
		st->mark.line = (int)v->start_mark.line + 1;
		st->mark.column = (int)v->start_mark.column + 1;
	}
	return 0;
}

/* Reads a list: a sequence of non-empty scalars, or one scalar (a list of one). */
static int config_walk_list(struct loader *ld, const char *name, yaml_node_t *value,
			    struct config_list *list, bool files)
{
	list->given = true;
	if (config_node_is_null(value))
		return 0;
	if (value->type == YAML_MAPPING_NODE)
		return config_fail_at(
		    ld, value->start_mark,
		    "%s: expected a list of values ([a, b] or '- a' lines), got %s", name,
		    config_node_kind(value));
	size_t count =
	    value->type == YAML_SCALAR_NODE
		? 1
		: (size_t)(value->data.sequence.items.top - value->data.sequence.items.start);
	list->items = calloc(count ? count : 1, sizeof *list->items);
	if (list->items == NULL)
		return config_fail_at(ld, value->start_mark, "out of memory");
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = value->type == YAML_SCALAR_NODE
					? value
					: config_visit(ld, value->data.sequence.items.start[i]);
		if (item == NULL)
			return -1;
		if (item->type != YAML_SCALAR_NODE || item->data.scalar.length == 0)
			return config_fail_at(ld, item->start_mark,
					      "%s: each item must be a single non-empty value",
					      name);
		const char *text = (const char *)item->data.scalar.value;
		char *copy = files ? config_resolve_path(ld->dir, text) : strdup(text);
		if (copy == NULL)
			return config_fail_at(ld, item->start_mark, "out of memory");
		list->items[list->count++] = copy;
		if (files && !(ld->flags & CONFIG_SKIP_FILE_CHECKS) &&
		    config_check_file(ld, item, name, copy) != 0)
			return -1;
	}
	return 0;
}

/* Reads the value of one known key; key is its key node, name its dotted name. */
static int config_walk_field(struct loader *ld, const struct field *f, unsigned char *base,
			     const char *name, yaml_node_t *key, yaml_node_t *value)
{
	void *dst = base + f->offset;

	if (f->kind == KIND_INSTANCES)
		return config_walk_instances(ld, f, (struct config *)base, name, key, value);
	if (f->kind == KIND_SETTINGS)
		return config_walk_settings(ld, (struct config_plugin *)base, name, key, value);
	if (f->kind == KIND_LIST || f->kind == KIND_FILE_LIST)
		return config_walk_list(ld, name, value, dst, f->kind == KIND_FILE_LIST);
	if (f->kind != KIND_SECTION) {
		if (value->type != YAML_SCALAR_NODE)
			return config_fail_at(ld, value->start_mark,
					      "%s: expected a single value, got %s", name,
					      config_node_kind(value));
		return config_load_scalar(ld, f, value, name, dst);
	}

	bool empty = config_node_is_null(value);
	if (!empty && value->type != YAML_MAPPING_NODE)
		return config_fail_at(ld, value->start_mark,
				      "%s: expected a mapping of settings (key: value lines), "
				      "got %s",
				      name, config_node_kind(value));
	if (f->flags & FIELD_SETS_PRESENT)
		*(bool *)((unsigned char *)dst + f->aux) = true;
	if (f->flags & FIELD_RECORDS_MARK) {
		struct config_mark *mark = (struct config_mark *)((unsigned char *)dst + f->aux);
		mark->line = (int)key->start_mark.line + 1;
		mark->column = (int)key->start_mark.column + 1;
	}
	/* "limits:" with nothing after it is an empty section; what it lacks is reported at the
	 * key, since the null value has no useful position of its own. */
	return config_walk_section(ld, f->section, dst, name, empty ? NULL : value,
				   empty ? key->start_mark : value->start_mark);
}

/*
 * Walks one mapping against a table of fields, storing values at base.  map may be NULL for an
 * empty section.  path is the section's dotted name ("" at the top level); where is the position
 * at which a missing required key is reported.
 */
static int config_walk_section(struct loader *ld, const struct field *fields, unsigned char *base,
			       const char *path, yaml_node_t *map, yaml_mark_t where)
{
	bool seen[SECTION_KEYS_MAX] = {false};
	char in[128], name[128];

	if (path[0] == '\0')
		snprintf(in, sizeof in, "at the top level");
	else
		snprintf(in, sizeof in, "in %s", path);

	for (yaml_node_pair_t *pair = map ? map->data.mapping.pairs.start : NULL;
	     map != NULL && pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = config_visit(ld, pair->key);
		if (key == NULL)
			return -1;
		if (key->type != YAML_SCALAR_NODE)
			return config_fail_at(ld, key->start_mark, "expected a key name %s, got %s",
					      in, config_node_kind(key));
		const char *text = (const char *)key->data.scalar.value;
		if (strlen(text) != key->data.scalar.length)
			return config_fail_at(ld, key->start_mark,
					      "key '%.*s' %s contains a NUL character",
					      config_shown(text), text, in);

		for (yaml_node_pair_t *prev = map->data.mapping.pairs.start; prev < pair; prev++) {
			yaml_node_t *pk = yaml_document_get_node(ld->doc, prev->key);
			if (pk->data.scalar.length == key->data.scalar.length &&
			    memcmp(pk->data.scalar.value, text, key->data.scalar.length) == 0)
				return config_fail_at(
				    ld, key->start_mark,
				    "duplicate key '%.*s' %s (first given at line %zu)",
				    config_shown(text), text, in, pk->start_mark.line + 1);
		}

		size_t i = 0;
		while (fields[i].name != NULL && strcmp(fields[i].name, text) != 0)
			i++;
		if (fields[i].name == NULL)
			return config_fail_at(ld, key->start_mark, "unknown key '%.*s' %s",
					      config_shown(text), text, in);
		seen[i] = true;

		yaml_node_t *value = config_visit(ld, pair->value);
		if (value == NULL)
			return -1;
		if (path[0] == '\0')
			snprintf(name, sizeof name, "%s", fields[i].name);
		else
			snprintf(name, sizeof name, "%s.%s", path, fields[i].name);
		if (config_walk_field(ld, &fields[i], base, name, key, value) != 0)
			return -1;
	}

	for (size_t i = 0; fields[i].name != NULL; i++) {
		if ((fields[i].flags & FIELD_REQUIRED) && !seen[i])
			return config_fail_at(ld, where, "missing required key '%s' %s",
					      fields[i].name, in);
	}
	return 0;
}

static void config_list_free(struct config_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
}

static void config_issuance_free(struct config_issuance *is)
{
	config_list_free(&is->municipalities);
	free(is->municipality_name);
	free(is->node);
	free(is->mayor_name);
	free(is->mayor_seal);
	free(is->seal_impressions);
	free(is->document_key);
	config_list_free(&is->retired_document_keys);
	free(is->subject_key);
	free(is->card_proof.ca);
	free(is->card_proof.crl);
	for (size_t i = 0; i < RECORD_CERTIFICATE_TYPE_COUNT; i++) {
		struct config_certificate *c = &is->certificates[i];
		free(c->plugin);
		free(c->opening);
		free(c->closing);
		config_list_free(&c->closed);
	}
}

/* Frees cfg and everything it owns, whatever its reference count. */
static void config_free(struct config *cfg)
{
	config_list_free(&cfg->ministry.keys);
	free(cfg->ministry.feed_url);
	free(cfg->ministry.feed_ca);
	free(cfg->path);
	free(cfg->data_dir);
	free(cfg->store.address);
	free(cfg->store.tls.certificate);
	free(cfg->store.tls.key);
	free(cfg->store.tls.client_ca);
	free(cfg->admin.unix_path);
	free(cfg->admin.group);
	free(cfg->metrics.address);
	free(cfg->plugin_dir);
	for (size_t i = 0; i < cfg->plugin_count; i++) {
		struct config_plugin *p = &cfg->plugins[i];
		free(p->name);
		free(p->file);
		for (size_t j = 0; j < p->setting_count; j++) {
			free(p->settings[j].key);
			free(p->settings[j].value);
		}
		free(p->settings);
	}
	free(cfg->plugins);
	config_issuance_free(&cfg->issuance);
	free(cfg);
}

/* Returns a config holding every default and one reference, or NULL when out of memory. */
static struct config *config_new_default(void)
{
	static const struct config_limits store_limits = {
	    .max_connections = 1024,
	    .max_header_bytes = 16 * KIB,
	    .max_body_bytes = 64 * KIB,
	    .header_timeout_ms = 10 * SECOND_MS,
	    .body_timeout_ms = 10 * SECOND_MS,
	    .idle_timeout_ms = 60 * SECOND_MS,
	    .max_requests_per_connection = 10000,
	};
	static const struct config_limits admin_limits = {
	    .max_connections = 64,
	    .max_header_bytes = 16 * KIB,
	    .max_body_bytes = 16 * MIB,
	    .header_timeout_ms = 10 * SECOND_MS,
	    .body_timeout_ms = 60 * SECOND_MS,
	    .idle_timeout_ms = 300 * SECOND_MS,
	    .max_requests_per_connection = 10000,
	};
	static const struct config_limits metrics_limits = {
	    .max_connections = 64,
	    .max_header_bytes = 8 * KIB,
	    .max_body_bytes = 4 * KIB,
	    .header_timeout_ms = 5 * SECOND_MS,
	    .body_timeout_ms = 5 * SECOND_MS,
	    .idle_timeout_ms = 60 * SECOND_MS,
	    .max_requests_per_connection = 10000,
	};
	struct config *cfg = calloc(1, sizeof *cfg);
	if (cfg == NULL)
		return NULL;
	cfg->refs = 1;
	cfg->data_dir = strdup("/var/lib/madoguchi");
	cfg->worker_threads = CONFIG_DEFAULT_WORKER_THREADS;
	cfg->plugin_dir = strdup(MDG_DEFAULT_PLUGIN_DIR);
	if (cfg->data_dir == NULL || cfg->plugin_dir == NULL) {
		config_free(cfg);
		return NULL;
	}
	cfg->store.tls.min_version = 12;
	cfg->store.limits = store_limits;
	cfg->admin.mode = 0660;
	cfg->admin.limits = admin_limits;
	cfg->metrics.enabled = false;
	cfg->metrics.limits = metrics_limits;
	cfg->log.level = CONFIG_LOG_INFO;
	cfg->log.access = true;
	cfg->drain_timeout_ms = 30 * SECOND_MS;
	cfg->issuance.card_proof.max_skew_ms = 5 * MINUTE_MS;
	cfg->issuance.card_proof.crl_interval_ms = MINUTE_MS;
	cfg->issuance.deadline_ms = 10 * SECOND_MS;
	cfg->issuance.idempotency_retention_ms = 24 * HOUR_MS;
	cfg->issuance.audit.checkpoint_rows = 1000;
	cfg->issuance.audit.checkpoint_interval_ms = MINUTE_MS;
	cfg->issuance.max_pending = 2048;
	cfg->issuance.render_queue = 512;
	cfg->issuance.audit.queue_limit = 8192;
	cfg->ministry.threshold = 1;
	cfg->ministry.poll_interval_ms = MINUTE_MS;
	cfg->ministry.feed_timeout_ms = 10 * SECOND_MS;
	for (size_t i = 0; i < RECORD_CERTIFICATE_TYPE_COUNT; i++) {
		cfg->issuance.certificates[i].fee = CONFIG_FEE_DEFAULT;
		cfg->issuance.certificates[i].max_age_ms = 5 * MINUTE_MS;
	}
	return cfg;
}

/* Fills err from a failed yaml_parser_load(); file is the name for messages. */
static int config_fail_yaml(struct loader *ld, const yaml_parser_t *parser)
{
	switch (parser->error) {
	case YAML_MEMORY_ERROR:
		return config_fail(ld->err, ld->file, "out of memory while reading the file");
	case YAML_READER_ERROR:
		return config_fail(ld->err, ld->file,
				   "cannot read the file: %s at byte %zu (it must be UTF-8 text)",
				   parser->problem ? parser->problem : "read error",
				   parser->problem_offset);
	default:
		if (parser->context != NULL)
			return config_fail_at(ld, parser->problem_mark,
					      "YAML syntax error: %s (%s at line %zu, column %zu)",
					      parser->problem ? parser->problem : "unknown error",
					      parser->context, parser->context_mark.line + 1,
					      parser->context_mark.column + 1);
		return config_fail_at(ld, parser->problem_mark, "YAML syntax error: %s",
				      parser->problem ? parser->problem : "unknown error");
	}
}

/* Fills err with "file:line:column: " at a mark kept from the walk. */
__attribute__((format(printf, 3, 4))) static int
config_fail_mark(struct loader *ld, struct config_mark mark, const char *fmt, ...)
{
	int n = snprintf(ld->err->msg, CONFIG_ERROR_MAX, "%s:%d:%d: ", ld->file, mark.line,
			 mark.column);
	if (n >= 0 && n < CONFIG_ERROR_MAX) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ld->err->msg + n, (size_t)(CONFIG_ERROR_MAX - n), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * Checks what the issuance section's keys say together: municipality codes, that every routed
 * plugin instance exists, and each type's hours, closed days and fee (built into is->hours).
 */
static int config_check_ministry(struct loader *ld, struct config *cfg)
{
	const struct config_ministry *m = &cfg->ministry;
	if (m->keys.count == 0)
		return config_fail(ld->err, ld->file,
				   "ministry.keys: at least one ministry public key is needed");
	if (m->threshold > m->keys.count)
		return config_fail(ld->err, ld->file,
				   "ministry.threshold: %u signatures required but only %zu keys "
				   "configured: no list could ever be accepted",
				   m->threshold, m->keys.count);
	if (m->feed_url != NULL && strncmp(m->feed_url, "https://", 8) != 0)
		return config_fail(ld->err, ld->file,
				   "ministry.feed_url: must be an https:// URL (the feed's TLS "
				   "certificate is verified)");
	return 0;
}

static int config_check_issuance(struct loader *ld, struct config *cfg)
{
	struct config_issuance *is = &cfg->issuance;
	char err[256];
	size_t offered = 0;

	for (size_t i = 0; i < is->municipalities.count; i++) {
		const char *m = is->municipalities.items[i];
		if (strlen(m) != 6 || strspn(m, "0123456789") != 6)
			return config_fail(ld->err, ld->file,
					   "issuance.municipalities: '%.*s' is not a six-digit "
					   "municipality code (e.g. \"141003\")",
					   config_shown(m), m);
	}
	if (is->municipalities.count == 0)
		return config_fail(ld->err, ld->file,
				   "issuance.municipalities: name at least one municipality code");
	if (is->node != NULL &&
	    (strlen(is->node) > CONFIG_NODE_MAX ||
	     strspn(is->node, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(is->node)))
		return config_fail(
		    ld->err, ld->file,
		    "issuance.node: '%.*s' must be 1 to %d of a-z and 0-9 (it is part "
		    "of every issuance id)",
		    config_shown(is->node), is->node, CONFIG_NODE_MAX);
	hours_table_init_defaults(&is->hours);
	for (size_t t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++) {
		const struct config_certificate *c = &is->certificates[t];
		const char *type = record_certificate_types[t];
		if (c->plugin == NULL)
			continue;
		offered++;
		size_t p = 0;
		while (p < cfg->plugin_count && strcmp(cfg->plugins[p].name, c->plugin) != 0)
			p++;
		if (p == cfg->plugin_count)
			return config_fail_mark(
			    ld, c->mark,
			    "issuance.certificates.%s.plugin: no plugin instance "
			    "'%.*s' under plugins",
			    type, config_shown(c->plugin), c->plugin);
		int rc = 0;
		if (c->always_open) {
			rc = hours_set_always_open(&is->hours, type, err, sizeof err);
		} else if (c->opening || c->closing || c->closed.given) {
			static const char *const default_closed[] = {"12-29..01-03"};
			rc = hours_set(&is->hours, type, c->opening ? c->opening : "06:30",
				       c->closing ? c->closing : "23:00",
				       c->closed.given ? (const char *const *)c->closed.items
						       : default_closed,
				       c->closed.given ? c->closed.count : 1, err, sizeof err);
		}
		if (rc == 0 && c->fee != CONFIG_FEE_DEFAULT)
			rc = hours_set_fee(&is->hours, type, (long)c->fee, err, sizeof err);
		if (rc != 0)
			return config_fail_mark(ld, c->mark, "issuance.certificates.%s: %s", type,
						err);
	}
	if (offered == 0)
		return config_fail(ld->err, ld->file,
				   "issuance.certificates: offer at least one certificate type");
	return 0;
}

const char *const config_start_only[CONFIG_START_ONLY_COUNT] = {"plugin_dir", "plugins", "issuance",
								"ministry"};

/* Adds node's subtree to md: kinds, scalar bytes with their lengths, in document order.  Stops
 * (returns -1) past *budget nodes, so aliases cannot make it walk a tree larger than the file. */
static int config_digest_node(yaml_document_t *doc, yaml_node_t *node, EVP_MD_CTX *md,
			      size_t *budget)
{
	if (node == NULL || (*budget)-- == 0)
		return -1;
	unsigned char kind = (unsigned char)node->type;
	EVP_DigestUpdate(md, &kind, 1);
	if (node->type == YAML_SCALAR_NODE) {
		uint64_t len = node->data.scalar.length;
		EVP_DigestUpdate(md, &len, sizeof len);
		EVP_DigestUpdate(md, node->data.scalar.value, node->data.scalar.length);
	} else if (node->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++)
			if (config_digest_node(doc, yaml_document_get_node(doc, *it), md, budget) !=
			    0)
				return -1;
	} else if (node->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
		     p < node->data.mapping.pairs.top; p++)
			if (config_digest_node(doc, yaml_document_get_node(doc, p->key), md,
					       budget) != 0 ||
			    config_digest_node(doc, yaml_document_get_node(doc, p->value), md,
					       budget) != 0)
				return -1;
	}
	kind = 0xff; /* end of this node: [a] [b] differs from [a, b] */
	EVP_DigestUpdate(md, &kind, 1);
	return 0;
}

/* Fills cfg->start_only_digest from the top-level mapping root of doc.  A digest that cannot be
 * made (out of memory; more nodes than the file has) is left all 0xff, which differs from any
 * real one, so a reload reports a change rather than miss one. */
static void config_digest_start_only(yaml_document_t *doc, yaml_node_t *root, struct config *cfg)
{
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *key = yaml_document_get_node(doc, p->key);
		for (size_t i = 0;
		     key != NULL && key->type == YAML_SCALAR_NODE && i < CONFIG_START_ONLY_COUNT;
		     i++) {
			if (strcmp((const char *)key->data.scalar.value, config_start_only[i]) != 0)
				continue;
			size_t budget = (size_t)(doc->nodes.top - doc->nodes.start);
			unsigned int len = 0;
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
			    config_digest_node(doc, yaml_document_get_node(doc, p->value), md,
					       &budget) != 0 ||
			    EVP_DigestFinal_ex(md, cfg->start_only_digest[i], &len) != 1)
				memset(cfg->start_only_digest[i], 0xff, 32);
			EVP_MD_CTX_free(md);
		}
	}
}

/* Parses the open file into ld->doc and walks it into cfg.  The caller deletes the document. */
static int config_read(struct loader *ld, FILE *fp, struct config *cfg, bool *have_doc)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	int rc = -1;

	if (!yaml_parser_initialize(&parser))
		return config_fail(ld->err, ld->file, "out of memory");
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, ld->doc)) {
		config_fail_yaml(ld, &parser);
		goto out;
	}
	*have_doc = true;

	yaml_node_t *root = yaml_document_get_root_node(ld->doc);
	if (root == NULL) {
		config_fail_at(ld, ld->doc->start_mark,
			       "the file is empty; it must hold a mapping with at least "
			       "'listeners' (see conf/madoguchi.yaml)");
		goto out;
	}
	/* A second document would be silently ignored; refuse it instead. */
	if (!yaml_parser_load(&parser, &extra)) {
		config_fail_yaml(ld, &parser);
		goto out;
	}
	yaml_node_t *second = yaml_document_get_root_node(&extra);
	if (second != NULL)
		config_fail_at(ld, second->start_mark,
			       "only one YAML document is allowed; remove everything from the "
			       "second '---' on");
	yaml_document_delete(&extra);
	if (second != NULL)
		goto out;

	size_t nodes = (size_t)(ld->doc->nodes.top - ld->doc->nodes.start);
	ld->visited = calloc(nodes, 1);
	if (ld->visited == NULL) {
		config_fail(ld->err, ld->file, "out of memory");
		goto out;
	}
	root = config_visit(ld, 1);
	if (root == NULL)
		goto out;
	if (root->type != YAML_MAPPING_NODE) {
		config_fail_at(ld, root->start_mark,
			       "the top level must be a mapping of settings (key: value "
			       "lines), got %s",
			       config_node_kind(root));
		goto out;
	}
	rc = config_walk_section(ld, top_fields, (unsigned char *)cfg, "", root, root->start_mark);
	if (rc == 0)
		config_digest_start_only(ld->doc, root, cfg);
	if (rc == 0 && cfg->issuance.enabled)
		rc = config_check_issuance(ld, cfg);
	if (rc == 0 && cfg->ministry.enabled)
		rc = config_check_ministry(ld, cfg);
out:
	yaml_parser_delete(&parser);
	return rc;
}

int config_load_opts(const char *path, unsigned flags, struct config **out,
		     struct config_error *err)
{
	char cwd[PATH_MAX];
	yaml_document_t doc;
	bool have_doc = false;
	struct loader ld = {.file = path, .flags = flags, .doc = &doc, .err = err};
	struct config *cfg = NULL;
	char *dir = NULL;
	FILE *fp = NULL;
	struct stat st;
	int rc = -1;

	*out = NULL;
	err->msg[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return config_fail(err, "(config)", "no configuration file given");

	fp = fopen(path, "rb");
	if (fp == NULL)
		return config_fail(err, path, "cannot open: %s", strerror(errno));
	if (fstat(fileno(fp), &st) != 0) {
		config_fail(err, path, "cannot open: %s", strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		config_fail(err, path, "cannot open: %s", strerror(EISDIR));
		goto out;
	}

	cfg = config_new_default();
	if (cfg == NULL) {
		config_fail(err, path, "out of memory");
		goto out;
	}
	if (path[0] != '/' && getcwd(cwd, sizeof cwd) == NULL) {
		config_fail(err, path, "cannot find the current directory: %s", strerror(errno));
		goto out;
	}
	cfg->path = config_resolve_path(path[0] == '/' ? "/" : cwd, path);
	dir = cfg->path ? config_dir_of(cfg->path) : NULL;
	if (dir == NULL) {
		config_fail(err, path, "out of memory");
		goto out;
	}
	ld.dir = dir;

	rc = config_read(&ld, fp, cfg, &have_doc);
out:
	if (have_doc)
		yaml_document_delete(&doc);
	free(ld.visited);
	free(dir);
	if (fp != NULL)
		fclose(fp);
	if (rc != 0) {
		if (cfg != NULL)
			config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

char *config_absolute_path(const struct config *cfg, const char *path)
{
	char *dir = config_dir_of(cfg->path);
	char *out = dir ? config_resolve_path(dir, path) : NULL;
	free(dir);
	return out;
}

int config_load(const char *path, struct config **out, struct config_error *err)
{
	return config_load_opts(path, 0, out, err);
}

struct config *config_ref(struct config *cfg)
{
	if (cfg != NULL)
		__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg != NULL && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

char *config_data_path(const struct config *cfg, const char *name)
{
	size_t n = strlen(cfg->data_dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", cfg->data_dir, name);
	return p;
}
