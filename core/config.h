/*
 * config.h: the appliance's configuration, read from one YAML file.
 *
 * config_load() parses the file with libyaml, validates every key against a schema (unknown
 * keys, wrong types, out-of-range values, missing required keys, unreadable files) and
 * returns an immutable struct config.  Every error is reported as "file:line:column: message"
 * so an operator can go straight to the offending line.  Relative paths in the file are
 * resolved against the directory of the config file.
 *
 * A loaded config is never modified.  A reload builds a new one and swaps it in on the loop
 * thread; whoever still holds the old one (for example a connection that started under it)
 * keeps it alive through config_ref()/config_unref().  The refcount is atomic, so any thread
 * may ref or unref.
 */
#ifndef MDG_CONFIG_H
#define MDG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hours.h"
#include "record.h"

#define CONFIG_ERROR_MAX 1024
/*
 * The thread pool's default size: with the client on the same 2 cores, 6 gave a p99 of 39-58 ms
 * at 800 issuances/s where libuv's 4 gave 67-125 ms (tests/bench/issuance.sh, RATE=800).
 */
#define CONFIG_DEFAULT_WORKER_THREADS 6

/* Where a key stood in the file (1-based), kept for errors found after loading. */
struct config_mark {
	int line;
	int column;
};

/* Filled by config_load() on failure: "file:line:column: message" (or "file: message"). */
struct config_error {
	char msg[CONFIG_ERROR_MAX];
};

enum config_log_level {
	CONFIG_LOG_DEBUG = 0,
	CONFIG_LOG_INFO,
	CONFIG_LOG_WARN,
	CONFIG_LOG_ERROR,
};

/* Limits applied to one listener's connections.  All have defaults (see conf/madoguchi.yaml). */
struct config_limits {
	uint32_t max_connections;	      /* accepted at once; more are closed at accept */
	uint32_t max_header_bytes;	      /* request line + headers; beyond: 431 */
	uint64_t max_body_bytes;	      /* beyond: 413 */
	uint64_t header_timeout_ms;	      /* first byte (or TLS start) to end of headers */
	uint64_t body_timeout_ms;	      /* end of headers to end of body */
	uint64_t idle_timeout_ms;	      /* between requests on a keep-alive connection */
	uint32_t max_requests_per_connection; /* then the connection is closed after answering */
};

struct config_tls {
	char *certificate;	 /* PEM chain, absolute path */
	char *key;		 /* PEM private key, absolute path */
	char *client_ca;	 /* PEM bundle that client certificates must chain to */
	int min_version;	 /* 12 for TLS 1.2, 13 for TLS 1.3 */
	struct config_mark mark; /* of the "tls" key, for errors found when loading keys */
};

struct config_store_listener {
	char *address; /* numeric IPv4 or IPv6 address */
	uint16_t port; /* 0: any free port (reported in the "listening" log line) */
	struct config_tls tls;
	struct config_limits limits;
};

struct config_admin_listener {
	char *unix_path; /* absolute path of the Unix socket */
	uint32_t mode;	 /* file mode of the socket, e.g. 0660 */
	char *group;	 /* group owning the socket; NULL: the daemon's group */
	struct config_limits limits;
};

struct config_metrics_listener {
	bool enabled; /* false when the section is absent */
	char *address;
	uint16_t port;
	struct config_limits limits;
};

/* One key of a plugin instance's free-form `config:` mapping, handed to the plugin. */
struct config_setting {
	char *key;
	char *value;		 /* the scalar as written */
	struct config_mark mark; /* of the value */
};

/* One plugin instance: `plugins: {NAME: {file: …, config: {…}}}`. */
struct config_plugin {
	char *name;		 /* the instance's name, [a-z0-9-], unique */
	char *file;		 /* the shared object as written; relative to plugin_dir */
	struct config_mark mark; /* of the instance's key */
	struct config_mark file_mark;
	uint64_t timeout_ms;	/* deadline of one fetch */
	uint32_t max_in_flight; /* fetches under way at once */
	struct config_setting *settings;
	size_t setting_count;
};

/* A YAML sequence of scalars (or one scalar, a list of one). */
struct config_list {
	char **items;
	size_t count;
	bool given; /* the key was in the file (an empty list is then "none", not "default") */
};

enum config_card_proof_mode {
	CONFIG_CARD_PROOF_REQUIRED = 0,	   /* the card's signature must come with every request */
	CONFIG_CARD_PROOF_CENTER_ASSERTED, /* trust subject.card_serial from the mTLS centre */
};

/* One certificate type the appliance offers: `issuance.certificates.TYPE`. */
struct config_certificate {
	char *plugin;		   /* instance name; NULL: the type is not offered */
	struct config_mark mark;   /* of the type's key */
	char *opening, *closing;   /* "HH:MM"; NULL: the defaults 06:30 and 23:00 */
	bool always_open;	   /* every hour of every day (the demo) */
	struct config_list closed; /* "MM-DD" or "MM-DD..MM-DD"; not given: 12-29..01-03 */
	uint32_t fee;		   /* yen per copy; CONFIG_FEE_DEFAULT: hours.h's default */
	uint64_t max_age_ms;	   /* a record's as_of may be at most this old */
};
#define CONFIG_FEE_DEFAULT UINT32_MAX
#define CONFIG_NODE_MAX	   8 /* characters of issuance.node */

/* The issuance endpoint (DESIGN §3, §4, §8); absent: the store listener serves no issuances. */
struct config_issuance {
	bool enabled;
	struct config_mark mark;
	struct config_list municipalities; /* six-digit codes served */
	char *municipality_name;	   /* printed on documents */
	char *node;	  /* this appliance among the city's: in issuance ids; NULL: the only one */
	char *mayor_name; /* NULL: "{municipality_name}長" */
	char *mayor_seal; /* PNG; NULL: a marked placeholder */
	char *seal_impressions; /* directory of seal impression PNGs, or NULL */
	char *document_key;	/* Ed25519 PEM: page codes, bindings, audit checkpoints */
	struct config_list retired_document_keys; /* public PEMs of earlier document keys */
	char *subject_key; /* HMAC key of subject digests; NULL: data_dir/subject.key */
	struct {
		char *ca;		  /* PEM bundle the cards chain to */
		char *crl;		  /* PEM CRLs of those CAs, or NULL: no revocation check */
		uint64_t crl_interval_ms; /* how often the CRL file is checked for a new one */
		enum config_card_proof_mode mode;
		uint64_t max_skew_ms;
	} card_proof;
	uint64_t deadline_ms;		   /* a whole issuance, from its last body byte */
	uint64_t idempotency_retention_ms; /* stored 201 answers are replayed this long */
	uint32_t max_pending;  /* issuances under way at once (memory bound); beyond: 503 */
	uint32_t render_queue; /* issuances waiting for or at the renderer; beyond: 503 */
	struct {
		uint32_t checkpoint_rows;	 /* a signed checkpoint after this many rows */
		uint64_t checkpoint_interval_ms; /* ... or this long, whichever comes first */
		uint32_t queue_limit;		 /* rows waiting for the writer; beyond: 503 */
	} audit;
	struct config_certificate certificates[RECORD_CERTIFICATE_TYPE_COUNT];
	struct hours_table hours; /* built from certificates[] when loading */
};

/* The ministry's kill switch (DESIGN §6); absent: no signed list is accepted. */
struct config_ministry {
	bool enabled;
	struct config_list keys;   /* Ed25519 public key files (PEM), absolute */
	uint32_t threshold;	   /* distinct configured keys that must have signed a list */
	char *feed_url;		   /* https URL polled for the signed list; NULL: push only */
	char *feed_ca;		   /* CA bundle for the feed's TLS; NULL: the system's */
	uint64_t poll_interval_ms; /* between polls of feed_url */
	uint64_t feed_timeout_ms;  /* one poll, connect to last byte */
};

/* The top-level sections the daemon reads at start only: the plugin host, the issuance
 * service and the kill switch keep what they loaded; a reload applies none of them. */
#define CONFIG_START_ONLY_COUNT 4
extern const char *const config_start_only[CONFIG_START_ONLY_COUNT];

struct config {
	char *path;	/* the file it was loaded from, absolute */
	char *data_dir; /* absolute */
	struct config_store_listener store;
	struct config_admin_listener admin;
	struct config_metrics_listener metrics;
	struct {
		enum config_log_level level;
		bool access; /* one access line per request */
	} log;
	uint64_t drain_timeout_ms; /* SIGTERM: how long in-flight requests may take */
	char *plugin_dir;	   /* absolute; plugins load only from here */
	unsigned worker_threads;   /* libuv's thread pool (UV_THREADPOOL_SIZE), set at start */
	struct config_plugin *plugins;
	size_t plugin_count;
	struct config_issuance issuance;
	struct config_ministry ministry;
	/* SHA-256 of the YAML of each section a reload does not apply (config_start_only[]), so
	 * that a reload can say which of them changed; all zero for a section not in the file. */
	unsigned char start_only_digest[CONFIG_START_ONLY_COUNT][32];
	int refs; /* atomic; see config_ref() */
};

/*
 * Loads and validates path.  On success returns 0 and *out holds a config with one reference.
 * On failure returns -1, *out is NULL and err holds one message naming file, line and column.
 */
int config_load(const char *path, struct config **out, struct config_error *err);

/* config_load_opts() flag: do not require the TLS files to exist (checking an example). */
#define CONFIG_SKIP_FILE_CHECKS 1u

/* As config_load(), with flags: config_load(p, o, e) is config_load_opts(p, 0, o, e). */
int config_load_opts(const char *path, unsigned flags, struct config **out,
		     struct config_error *err);

/* Takes a reference; returns cfg for convenience. */
struct config *config_ref(struct config *cfg);

/* Drops a reference; the last one frees everything.  NULL is ignored. */
void config_unref(struct config *cfg);

/* Returns path made absolute against the directory of cfg's file (malloc'd; NULL when out of
 * memory).  An absolute path is only normalised. */
char *config_absolute_path(const struct config *cfg, const char *path);

/* Parses a duration such as "250ms", "10s", "5m", "1h" (a bare number is seconds).
 * Returns 0 and sets *ms, or -1 for anything else (negative, overflow, unknown unit). */
int config_parse_duration(const char *text, uint64_t *ms);

/* Parses a size such as "65536", "64KiB", "1MiB", "2GiB".  Returns 0 or -1. */
int config_parse_size(const char *text, uint64_t *bytes);

/* data_dir/name, malloc'd (the caller frees it), or NULL when out of memory. */
char *config_data_path(const struct config *cfg, const char *name);

#endif
