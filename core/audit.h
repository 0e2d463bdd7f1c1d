/*
 * audit.h: the durable, hash-chained audit store and the idempotency store (DESIGN §3 steps 5
 * and 14, §8; the file format and the verification rules are in docs/audit.md).
 *
 * One SQLite database (WAL, synchronous=FULL) holds one row per issuance attempt, each row
 * carrying the SHA-256 of itself and of the row before it, so a changed, inserted or deleted
 * row breaks the chain; signed checkpoints (Ed25519) over (seq, hash) at intervals make a
 * rewritten chain detectable too.  The 201 responses kept for replays (idempotency on
 * request_id) are listed in the same database, written in the same transaction as their audit
 * row; their bytes are appended to the response spool (spool.h) and made durable before that
 * transaction commits.
 *
 * Writing: audit_submit() copies a row on the loop thread and returns at once; one writer
 * thread commits everything queued in one transaction (group commit: one WAL fsync per batch,
 * after the spool segment's when the batch stored responses) and the row's callback then runs
 * on the loop thread with AUDIT_OK, only after COMMIT succeeded.
 * No commit, no document: a caller delivers nothing before its callback says AUDIT_OK.
 *
 * Never put a name, address, card serial, resident code or My Number in a row: the subject is
 * an HMAC digest (audit_subject_digest()), and the fields that could carry clear text are
 * checked to be hex digests, codes or identifiers.  Error texts never repeat a field's value.
 *
 * Threads: audit_open(), audit_submit(), audit_close() on the loop thread; callbacks run on
 * the loop thread.  audit_lookup_response(), audit_metrics_snapshot() from any thread.
 * audit_verify(), audit_export() and audit_subject_digest() need no open store (tools).
 */
#ifndef MDG_AUDIT_H
#define MDG_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "metrics.h"

#define AUDIT_HASH_LEN	    64 /* lower-case hex SHA-256 / HMAC-SHA256 */
#define AUDIT_TIME_LEN	    24 /* 2026-11-27T09:00:01.123Z */
#define AUDIT_KEY_ID_LEN    16 /* first 16 hex of SHA-256 of the raw Ed25519 public key */
#define AUDIT_PROBLEM_MAX   256
#define AUDIT_RESPONSE_MAX  (16u * 1024u * 1024u) /* largest stored response body */
#define AUDIT_GENESIS_HASH  "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_CHECKPOINT_V1 "madoguchi-audit-checkpoint-v1"

enum audit_status {
	AUDIT_OK = 0,
	AUDIT_UNAVAILABLE = -1, /* the batch could not be committed (disk full, I/O error, ...) */
	AUDIT_QUEUE_FULL = -2,	/* too many rows waiting for the writer; answer 503 */
	AUDIT_INVALID = -3,	/* a field is missing or not of its form (err names it) */
	AUDIT_CLOSED = -4,	/* audit_close() has begun */
	AUDIT_DUPLICATE = -5,	/* a response is already stored under this request_id: nothing
				   of this row was written (look it up and replay, or answer 409) */
	AUDIT_NOT_FOUND = -6,	/* lookup: nothing stored under the id, or it expired */
	AUDIT_CORRUPT = -7,	/* verify: the chain or a checkpoint is broken (report says) */
	AUDIT_ERROR = -8,	/* cannot open, read or sign; out of memory (err says) */
};

/*
 * One audit row as the caller gives it; every string is borrowed for the duration of
 * audit_submit() only (it is copied).  Nullable where marked.
 */
struct audit_row {
	const char *time;	     /* RFC 3339 UTC with ms (audit_format_time()); NULL: now */
	const char *request_id;	     /* 1..128 visible ASCII */
	const char *issuance_id;     /* nullable; 1..64 of [A-Za-z0-9._-] */
	const char *municipality;    /* 1..32 visible ASCII (a municipality code) */
	const char *certificate;     /* 1..64 visible ASCII (a certificate type) */
	const char *plugin;	     /* 0..128 visible ASCII (the plugin instance) */
	const char *plugin_version;  /* 0..128 visible ASCII */
	const char *terminal;	     /* JSON object text (the request's terminal), <= 4096 bytes;
					stored canonical: compact, keys sorted, ASCII; no reals */
	const char *subject_digest;  /* AUDIT_HASH_LEN lower-case hex (audit_subject_digest()) */
	const char *outcome;	     /* "ISSUED" or a DESIGN §4 code: 1..40 of [A-Z0-9_] */
	const char *document_sha256; /* nullable; AUDIT_HASH_LEN lower-case hex */
};

/* A 201 response kept for replays; borrowed for the duration of audit_submit(). */
struct audit_stored_response {
	const char *request_id;		/* must equal the row's request_id */
	const char *body_sha256;	/* hex SHA-256 of the request body that was answered */
	const char *card_serial_digest; /* hex digest of the card serial that signed it */
	const unsigned char *response;	/* the full response bytes, 1..AUDIT_RESPONSE_MAX */
	size_t response_len;
	int64_t expires_at; /* Unix seconds; not returned from this second on */
};

/* A stored response as audit_lookup_response() returns it; release with
 * audit_response_free(). */
struct audit_response {
	unsigned char *response;
	size_t response_len;
	char body_sha256[AUDIT_HASH_LEN + 1];
	char card_serial_digest[AUDIT_HASH_LEN + 1];
	int64_t expires_at;
	int64_t seq; /* the audit row written with it */
};

/*
 * Options of audit_open().  Zero for a count means its default.  Strings are copied.
 */
struct audit_options {
	const char *db_path;		 /* required: e.g. data_dir/audit.sqlite */
	const char *spool_dir;		 /* the stored responses' bytes (spool.h); NULL:
					    db_path + ".responses" */
	const char *checkpoint_key_path; /* Ed25519 private key, PEM PKCS#8; NULL: no checkpoints */
	uint32_t queue_limit;		 /* rows submitted and not yet written; default 4096 */
	uint32_t checkpoint_every_rows;	 /* default 1000 */
	uint32_t checkpoint_interval_ms; /* a checkpoint at least this often when rows came;
					    default 60000 */
	uint32_t purge_interval_ms;	 /* expired responses deleted this often; default 60000 */
	/* Optional: each committed batch's duration (seconds) and rows, observed from the writer
	 * thread (metrics.h histograms are safe from any thread). */
	struct metric_histogram *commit_seconds;
	struct metric_histogram *batch_rows;
};

/* Counters of the store; a consistent copy from audit_metrics_snapshot(). */
struct audit_metrics {
	uint64_t rows_committed;   /* rows in committed batches */
	uint64_t rows_failed;	   /* rows whose batch failed (AUDIT_UNAVAILABLE) */
	uint64_t rows_refused;	   /* audit_submit() said AUDIT_QUEUE_FULL */
	uint64_t rows_duplicate;   /* rows answered AUDIT_DUPLICATE */
	uint64_t batches;	   /* committed transactions that carried rows (fsyncs) */
	uint64_t batches_failed;   /* transactions rolled back */
	uint64_t checkpoints;	   /* checkpoints committed */
	uint64_t responses_purged; /* expired stored responses deleted */
	uint64_t last_batch_rows;  /* rows of the last committed batch */
	double avg_batch_rows;	   /* rows_committed / batches */
	uint64_t last_commit_us;   /* BEGIN to COMMIT done, last committed batch */
	uint64_t max_commit_us;
	uint64_t commit_us_total; /* sum over committed batches */
	double avg_commit_us;
	uint32_t queue_depth; /* submitted, not yet through the writer */
	int64_t head_seq;     /* seq of the last committed row (0: empty) */
};

/* What audit_verify() found. */
struct audit_verify_report {
	uint64_t rows_checked;
	uint64_t checkpoints_checked;
	int64_t last_seq;		    /* the chain head */
	char last_hash[AUDIT_HASH_LEN + 1]; /* its hash (the genesis hash when empty) */
	int64_t first_bad_seq;		    /* 0 when everything holds */
	char problem[AUDIT_PROBLEM_MAX];    /* what is wrong at first_bad_seq ("" if none) */
};

struct audit;

/*
 * Receives a row's outcome on the loop thread, exactly once: AUDIT_OK with the row's seq and
 * hash (64 hex, valid during the call only), or AUDIT_UNAVAILABLE / AUDIT_DUPLICATE with seq 0
 * and hash NULL.  A callback may call audit_submit() but not audit_close().
 */
typedef void (*audit_done_cb)(void *arg, int status, int64_t seq, const char *hash);

/*
 * Opens (creating if needed) the database at opt->db_path, continues the chain from its last
 * row, loads the checkpoint key and starts the writer thread.  Refuses a database whose last
 * row does not match its hash (run audit_verify()).  Returns AUDIT_OK with *out, or
 * AUDIT_ERROR with err saying what to do.  Loop thread.
 */
int audit_open(uv_loop_t *loop, const struct audit_options *opt, struct audit **out, char *err,
	       size_t err_size);

/*
 * Queues one row, and with resp (may be NULL) the response to store with it in the same
 * transaction.  Returns AUDIT_OK when queued (cb will run later, exactly once), or at once
 * AUDIT_INVALID (err names the field, never its value), AUDIT_QUEUE_FULL or AUDIT_CLOSED
 * (cb will not run).  Loop thread.
 */
int audit_submit(struct audit *audit, const struct audit_row *row,
		 const struct audit_stored_response *resp, audit_done_cb cb, void *arg, char *err,
		 size_t err_size);

/*
 * The response stored under request_id if it has not expired.  Returns AUDIT_OK with *out
 * filled (release with audit_response_free()), AUDIT_NOT_FOUND, or AUDIT_ERROR with err.  Any
 * thread: lookups share one read connection under a mutex (each holds it for one indexed read
 * and one copy), and never wait for the writer (WAL).  Not after audit_close().
 */
int audit_lookup_response(struct audit *audit, const char *request_id, struct audit_response *out,
			  char *err, size_t err_size);
void audit_response_free(struct audit_response *resp);

/* A consistent copy of the counters.  Any thread. */
void audit_metrics_snapshot(struct audit *audit, struct audit_metrics *out);

/*
 * Loop thread: refuses new rows, lets the writer commit everything already submitted, runs
 * every outstanding callback (before it returns), writes a last checkpoint when rows came
 * since the previous one, stops the writer and frees the store.  The internal uv_async_t is
 * freed by its close callback: run the loop once more before uv_loop_close().  NULL is a no-op.
 */
void audit_close(struct audit *audit);

/*
 * Checks the database at db_path, opened read-only (a live store may keep writing): every
 * row's hash recomputed in seq order, every prev_hash link, seq without gaps from 1, and every
 * checkpoint's hash against its row and (key_count > 0) its signature by the one of the
 * key_count keys whose id it names: the current document key and the retired ones, so that a
 * database that lived through a key rotation verifies whole.  Each key file holds a public key
 * (PEM SPKI) or a private key; at most AUDIT_VERIFY_KEYS_MAX.  Returns AUDIT_OK (rep says how
 * much was checked), AUDIT_CORRUPT (rep->first_bad_seq and rep->problem say what is wrong
 * first), or AUDIT_ERROR with err (cannot open or read, or a key file is bad).
 */
#define AUDIT_VERIFY_KEYS_MAX 32
int audit_verify(const char *db_path, const char *const *key_paths, size_t key_count,
		 struct audit_verify_report *rep, char *err, size_t err_size);

/*
 * Writes every row of the database at db_path to out in seq order, one JSON object per line
 * (members as the table's columns; terminal as an object).  *rows (may be NULL) is set to the
 * count.  Returns AUDIT_OK, or AUDIT_ERROR with err (cannot read, or a write to out failed).
 */
int audit_export(const char *db_path, FILE *out, uint64_t *rows, char *err, size_t err_size);

/*
 * The rows after after_seq, oldest first, at most limit of them, as a JSON array of the
 * export's objects (*out, the caller decrefs).  AUDIT_OK or AUDIT_ERROR with err filled.
 * Opens the file read-only like audit_export(): any thread, while the writer runs.
 */
int audit_rows_json(const char *db_path, int64_t after_seq, unsigned limit, json_t **out, char *err,
		    size_t err_size);

/*
 * The subject digest: lower-case hex HMAC-SHA256 of text under key (the appliance's local
 * key), into out (AUDIT_HASH_LEN + 1 bytes).  Returns AUDIT_OK or AUDIT_ERROR.  Any thread.
 */
int audit_subject_digest(const unsigned char *key, size_t keylen, const char *text,
			 char out[AUDIT_HASH_LEN + 1]);

/* unix_ms as RFC 3339 UTC with milliseconds ("2026-11-27T09:00:01.123Z") into out. */
void audit_format_time(int64_t unix_ms, char out[AUDIT_TIME_LEN + 1]);

/* --- for tests only ------------------------------------------------------------------------ */

enum audit_test_hook {
	/* The writer caps the database at its current size before its next transaction
	 * (PRAGMA max_page_count), so a batch that needs a new page fails with SQLITE_FULL as
	 * on a full disk; off lifts the cap. */
	AUDIT_TEST_DISK_FULL = 1,
	/* The writer takes no batch while on (rows stay queued). */
	AUDIT_TEST_HOLD_WRITER = 2,
};

/* Turns a test hook on (on != 0) or off.  Loop thread. */
void audit_test_hook(struct audit *audit, enum audit_test_hook hook, int on);

#endif
