/*
 * audit.c: the hash-chained audit store and the idempotency store (contract in audit.h,
 * format in docs/audit.md).
 *
 * Invariants: seq runs 1, 2, 3, ... without gaps; each row's prev_hash is the hash of the row
 * before it (the genesis hash for seq 1); each row's hash is SHA-256 over the canonical
 * serialisation of its other columns (audit_row_hash()).  The writer's chain head (head_seq,
 * head_hash) only moves after a COMMIT returned SQLITE_OK; after any failed transaction it is
 * re-read from the database before the next one, so it can never run ahead of or behind what
 * is durable.  A stored response is inserted in the same transaction as its row.  A callback
 * says AUDIT_OK only for a row whose transaction committed.
 *
 * Threads: the loop thread owns struct audit's loop side (submit, callbacks, close, the
 * `outstanding` count that keeps the loop alive while callbacks are owed).  The writer thread
 * owns the writer connection, its statements, the chain head and the checkpoint key.  They
 * meet only under `lock`: the submit queue (loop to writer), the done list (writer to loop,
 * announced with uv_async_send()), the metrics and the test hooks.  Lookups from any thread
 * use the read connection under `read_lock`; WAL lets them read while the writer writes.
 *
 * WAL checkpoints (copying committed pages from the WAL into the database file) run on a
 * third thread with its own connection, not inside the writer's COMMIT as SQLite's automatic
 * checkpoint would: with 60 KB stored responses a 64 MB checkpoint held one commit, and every
 * issuance behind it, for 50-250 ms (tests/bench/issuance.sh).  The writer's WAL hook wakes the
 * checkpointer when the WAL passes AUDIT_WAL_WAKE_BYTES; a PASSIVE checkpoint never blocks
 * the writer.  Should the checkpointer fall AUDIT_WAL_WRITER_BYTES behind, the writer
 * checkpoints itself, so the WAL stays bounded whatever happens to that thread.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, gmtime_r, pthread_condattr_setclock */
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libdeflate.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "audit.h"
#include "log.h"
#include "ossl.h"
#include "spool.h"

#define AUDIT_APPLICATION_ID   0x4d444741 /* "MDGA" in the SQLite header (1296320321) */
#define AUDIT_SCHEMA_VERSION   2	  /* 2: responses' bytes in the spool (spool.h) */
#define AUDIT_ROW_PREFIX       "madoguchi-audit-row-v1\n"
#define AUDIT_SIG_LEN	       64
#define AUDIT_SIG_B64_LEN      88 /* standard base64 of 64 bytes, padded */
#define AUDIT_TERMINAL_MAX     4096
#define AUDIT_BUSY_TIMEOUT_MS  5000
#define AUDIT_DEFAULT_QUEUE    4096
#define AUDIT_DEFAULT_CP_ROWS  1000
#define AUDIT_DEFAULT_CP_MS    60000
#define AUDIT_DEFAULT_PURGE_MS 60000
#define AUDIT_REASON_MAX       256
#define AUDIT_WAL_WAKE_BYTES   (4 << 20)  /* WAL size that wakes the checkpointer */
#define AUDIT_WAL_WRITER_BYTES (64 << 20) /* ... and at which the writer checkpoints itself */

/* The hashed columns besides seq and prev_hash, in hash (and table) order. */
enum audit_field {
	AF_TIME,
	AF_REQUEST_ID,
	AF_ISSUANCE_ID,
	AF_MUNICIPALITY,
	AF_CERTIFICATE,
	AF_PLUGIN,
	AF_PLUGIN_VERSION,
	AF_TERMINAL,
	AF_SUBJECT_DIGEST,
	AF_OUTCOME,
	AF_DOCUMENT_SHA256,
	AF_COUNT
};

static const char *const audit_field_names[AF_COUNT] = {
    "time",	      "request_id", "issuance_id",    "municipality", "certificate",	 "plugin",
    "plugin_version", "terminal",   "subject_digest", "outcome",      "document_sha256",
};

/* Column indexes of AUDIT_ROW_SELECT: seq, the AF_COUNT fields, prev_hash, hash. */
#define COL_SEQ	 0
#define COL_PREV (AF_COUNT + 1)
#define COL_HASH (AF_COUNT + 2)

#define AUDIT_ROW_COLUMNS                                                                          \
	"seq, time, request_id, issuance_id, municipality, certificate, plugin, plugin_version, "  \
	"terminal, subject_digest, outcome, document_sha256, prev_hash, hash"

static const char audit_schema[] =
    "CREATE TABLE IF NOT EXISTS audit_rows ("
    " seq INTEGER PRIMARY KEY, time TEXT NOT NULL, request_id TEXT NOT NULL, issuance_id TEXT,"
    " municipality TEXT NOT NULL, certificate TEXT NOT NULL, plugin TEXT NOT NULL,"
    " plugin_version TEXT NOT NULL, terminal TEXT NOT NULL, subject_digest TEXT NOT NULL,"
    " outcome TEXT NOT NULL, document_sha256 TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoints ("
    " seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL,"
    " signature TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS stored_responses ("
    " request_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body_sha256 TEXT NOT NULL,"
    " card_serial_digest TEXT NOT NULL, response BLOB NOT NULL, expires_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS stored_responses_expiry ON stored_responses(expires_at);";

/*
 * Schema 2: a stored response's bytes are in the spool (spool.h); its row says where, with
 * the bytes' CRC-32, and keeps an empty `response`.  A row with `segment` NULL (written by
 * schema 1) still holds its bytes in `response`.  The CRC-32 catches a damaged or misplaced
 * segment before a reprint goes out (a checksum, not a seal: whoever can rewrite the segment
 * can rewrite the row; the certificate's own signed codes are the seal).  response_segments
 * lists every segment a committed row refers to, with the latest expiry among its responses:
 * the purge removes a segment once that has passed.
 */
static const char audit_schema_v2[] =
    "ALTER TABLE stored_responses ADD COLUMN segment INTEGER;"
    "ALTER TABLE stored_responses ADD COLUMN offset INTEGER;"
    "ALTER TABLE stored_responses ADD COLUMN length INTEGER;"
    "ALTER TABLE stored_responses ADD COLUMN response_crc32 INTEGER;"
    "CREATE TABLE response_segments (id INTEGER PRIMARY KEY, expires_at INTEGER NOT NULL);";

/* One submitted row on its way through the writer and back; one allocation with its strings
 * and response bytes behind it. */
struct audit_item {
	struct audit_item *next;
	audit_done_cb cb;
	void *arg;
	int status;
	int64_t seq;
	char hash[AUDIT_HASH_LEN + 1];
	const char *v[AF_COUNT]; /* NULL where the column is NULL */
	int has_response;
	char body_sha256[AUDIT_HASH_LEN + 1];
	char card_serial_digest[AUDIT_HASH_LEN + 1];
	int64_t expires_at;
	const unsigned char *response;
	size_t response_len;
	int spooled; /* its bytes were appended to the spool in this batch */
};

/* The writer connection and what only the writer thread touches. */
struct audit_writer {
	sqlite3 *db;
	sqlite3_stmt *begin, *commit, *rollback;
	sqlite3_stmt *insert_row, *response_exists, *insert_response;
	sqlite3_stmt *insert_checkpoint, *purge;
	sqlite3_stmt *note_segment, *expired_segments, *forget_segments;
	struct spool *spool;
	int wal_wake_frames, wal_writer_frames;
	EVP_MD_CTX *md;
	EVP_PKEY *key; /* NULL: no checkpoints */
	char key_id[AUDIT_KEY_ID_LEN + 1];
	int64_t head_seq;
	char head_hash[AUDIT_HASH_LEN + 1];
	int head_valid; /* 0 after a failed transaction: re-read the head first */
	int64_t checkpoint_seq;
	uint64_t checkpoint_ns; /* monotonic time of the last checkpoint (or of open) */
	uint64_t purge_ns;
	int disk_capped; /* the AUDIT_TEST_DISK_FULL cap is applied */
};

struct audit {
	uv_loop_t *loop;
	uv_async_t *wakeup; /* own allocation: freed by its close callback after audit_close() */
	pthread_t thread;
	pthread_t checkpointer;
	int checkpointer_started;
	sqlite3 *checkpoint_db; /* the checkpointer's own connection */
	uint32_t queue_limit;
	uint32_t checkpoint_every_rows;
	uint64_t checkpoint_interval_ns;
	uint64_t purge_interval_ns;
	char *path;
	char *spool_dir;
	struct metric_histogram *commit_seconds, *batch_rows; /* optional */

	/* Loop thread only. */
	int closing;
	uint64_t outstanding; /* submitted, callback not yet run */

	/* Under lock. */
	pthread_mutex_t lock;
	pthread_cond_t work;		  /* the writer waits here for rows, stop or a deadline */
	pthread_cond_t checkpoint_wanted; /* the checkpointer waits here */
	int checkpoint_due, checkpointer_stopping;
	struct audit_item *queue, **queue_tail;
	struct audit_item *done, **done_tail;
	uint32_t pending; /* submitted, not yet through the writer */
	int stopping;
	int hold_writer;
	int disk_full;
	struct audit_metrics metrics;

	/* Writer thread only (set up by audit_open() before the thread starts). */
	struct audit_writer w;

	/* Lookups, under read_lock. */
	pthread_mutex_t read_lock;
	sqlite3 *read_db;
	sqlite3_stmt *lookup;
};

/* --- small helpers ------------------------------------------------------------------------ */

static int audit_fail(char *err, size_t err_size, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills err (if any) and returns status. */
static int audit_fail(char *err, size_t err_size, int status, const char *fmt, ...)
{
	if (err != NULL && err_size > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return status;
}

static uint64_t audit_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t audit_now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void audit_format_time(int64_t unix_ms, char out[AUDIT_TIME_LEN + 1])
{
	int64_t ms = unix_ms % 1000;
	time_t secs = (time_t)(unix_ms / 1000);
	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	struct tm tm;
	if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		memset(&tm, 0, sizeof tm);
	snprintf(out, AUDIT_TIME_LEN + 1, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)ms % 1000u);
}

/* --- validation ---------------------------------------------------------------------------- */

/* min..max bytes, each in 0x21..0x7e. */
static int audit_visible(const char *s, size_t min, size_t max)
{
	if (s == NULL)
		return 0;
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		if (n >= max || s[n] < 0x21 || s[n] > 0x7e)
			return 0;
	}
	return n >= min;
}

/* min..max bytes, each a byte of set. */
static int audit_charset(const char *s, size_t min, size_t max, const char *set)
{
	if (s == NULL)
		return 0;
	size_t n = strlen(s);
	return n >= min && n <= max && strspn(s, set) == n;
}

static int audit_is_hex64(const char *s)
{
	return audit_charset(s, AUDIT_HASH_LEN, AUDIT_HASH_LEN, "0123456789abcdef");
}

/* Two digits at s within lo..hi. */
static int audit_two_digits(const char *s, int lo, int hi)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return 0;
	int v = (s[0] - '0') * 10 + (s[1] - '0');
	return v >= lo && v <= hi;
}

/* Exactly YYYY-MM-DDTHH:MM:SS.mmmZ. */
static int audit_time_ok(const char *s)
{
	if (strlen(s) != AUDIT_TIME_LEN)
		return 0;
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	for (size_t i = 0; i < AUDIT_TIME_LEN; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return 0;
	}
	return audit_two_digits(s + 5, 1, 12) && audit_two_digits(s + 8, 1, 31) &&
	       audit_two_digits(s + 11, 0, 23) && audit_two_digits(s + 14, 0, 59) &&
	       audit_two_digits(s + 17, 0, 60);
}

/* True when v holds no real number anywhere (their text form is not canonical). */
static int audit_json_no_reals(const json_t *v, int depth)
{
	if (depth > 16 || json_is_real(v))
		return 0;
	if (json_is_object(v)) {
		const char *k;
		const json_t *m;
		json_object_foreach((json_t *)v, k, m)
		{
			if (!audit_json_no_reals(m, depth + 1))
				return 0;
		}
	} else if (json_is_array(v)) {
		size_t i;
		const json_t *m;
		json_array_foreach(v, i, m)
		{
			if (!audit_json_no_reals(m, depth + 1))
				return 0;
		}
	}
	return 1;
}

/* The canonical text of a terminal object (caller frees), or NULL when it is not one. */
static char *audit_terminal_canonical(const char *text)
{
	if (text == NULL || strlen(text) > AUDIT_TERMINAL_MAX)
		return NULL;
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	char *out = NULL;
	if (json_is_object(v) && audit_json_no_reals(v, 0))
		out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(v);
	return out;
}

#define ISSUANCE_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
#define OUTCOME_CHARS  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

/* Checks row and resp field by field; names the first bad field in err. */
static int audit_check_row(const struct audit_row *row, const struct audit_stored_response *resp,
			   char *err, size_t err_size)
{
	const char *bad = NULL;
	if (row->time != NULL && !audit_time_ok(row->time))
		bad = "time (want YYYY-MM-DDTHH:MM:SS.mmmZ)";
	else if (!audit_visible(row->request_id, 1, 128))
		bad = "request_id";
	else if (row->issuance_id != NULL &&
		 !audit_charset(row->issuance_id, 1, 64, ISSUANCE_CHARS))
		bad = "issuance_id";
	else if (!audit_visible(row->municipality, 1, 32))
		bad = "municipality";
	else if (!audit_visible(row->certificate, 1, 64))
		bad = "certificate";
	else if (!audit_visible(row->plugin, 0, 128))
		bad = "plugin";
	else if (!audit_visible(row->plugin_version, 0, 128))
		bad = "plugin_version";
	else if (!audit_is_hex64(row->subject_digest))
		bad = "subject_digest (want 64 lower-case hex: an HMAC, never the clear value)";
	else if (!audit_charset(row->outcome, 1, 40, OUTCOME_CHARS))
		bad = "outcome";
	else if (row->document_sha256 != NULL && !audit_is_hex64(row->document_sha256))
		bad = "document_sha256";
	else if (resp != NULL &&
		 (resp->request_id == NULL || strcmp(resp->request_id, row->request_id) != 0))
		bad = "response request_id (must equal the row's)";
	else if (resp != NULL && !audit_is_hex64(resp->body_sha256))
		bad = "response body_sha256";
	else if (resp != NULL && !audit_is_hex64(resp->card_serial_digest))
		bad = "response card_serial_digest";
	else if (resp != NULL && (resp->response == NULL || resp->response_len == 0 ||
				  resp->response_len > AUDIT_RESPONSE_MAX))
		bad = "response bytes";
	else if (resp != NULL && resp->expires_at <= 0)
		bad = "response expires_at";
	if (bad != NULL)
		return audit_fail(err, err_size, AUDIT_INVALID, "audit row: bad %s", bad);
	return AUDIT_OK;
}

/* --- hashing ------------------------------------------------------------------------------- */

/* Appends one field to the digest: "~" for NULL, else "<decimal length>:<bytes>,". */
static int audit_hash_field(EVP_MD_CTX *md, const char *v, size_t len)
{
	if (v == NULL)
		return EVP_DigestUpdate(md, "~", 1);
	char prefix[24];
	int n = snprintf(prefix, sizeof prefix, "%zu:", len);
	return EVP_DigestUpdate(md, prefix, (size_t)n) == 1 && EVP_DigestUpdate(md, v, len) == 1 &&
	       EVP_DigestUpdate(md, ",", 1) == 1;
}

/*
 * The row hash: SHA-256 of AUDIT_ROW_PREFIX followed by F(seq) F(time) ... F(document_sha256)
 * F(prev_hash), seq in decimal (docs/audit.md).  len[i] is the byte length of v[i] (ignored
 * for NULL).  Writes 64 hex into out; returns 0, or -1 on an OpenSSL failure.
 */
static int audit_row_hash(EVP_MD_CTX *md, int64_t seq, const char *const v[AF_COUNT],
			  const size_t len[AF_COUNT], const char *prev, size_t prev_len,
			  char out[AUDIT_HASH_LEN + 1])
{
	char seqtext[24];
	int n = snprintf(seqtext, sizeof seqtext, "%" PRId64, seq);
	unsigned char digest[32];
	unsigned int dlen = 0;
	int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(md, AUDIT_ROW_PREFIX, strlen(AUDIT_ROW_PREFIX)) == 1 &&
		 audit_hash_field(md, seqtext, (size_t)n) == 1;
	for (int i = 0; ok && i < AF_COUNT; i++)
		ok = audit_hash_field(md, v[i], len[i]) == 1;
	ok = ok && audit_hash_field(md, prev, prev_len) == 1 &&
	     EVP_DigestFinal_ex(md, digest, &dlen) == 1 && dlen == sizeof digest;
	if (!ok) {
		ERR_clear_error();
		return -1;
	}
	ossl_hex(digest, sizeof digest, out);
	return 0;
}

/* The signed text of a checkpoint into buf; returns its length. */
static size_t audit_checkpoint_text(char *buf, size_t size, int64_t seq, const char *hash,
				    const char *stamp)
{
	int n =
	    snprintf(buf, size, AUDIT_CHECKPOINT_V1 "\n%" PRId64 "\n%s\n%s\n", seq, hash, stamp);
	return n < 0 ? 0 : (size_t)n;
}

/* --- keys ---------------------------------------------------------------------------------- */

/* Loads an Ed25519 key from a PEM file: the private key (PKCS#8), or with public_ok the public
 * key (SPKI) too.  Returns the key, or NULL with err filled. */
static EVP_PKEY *audit_load_key(const char *path, int public_ok, char key_id[AUDIT_KEY_ID_LEN + 1],
				char *err, size_t err_size)
{
	char why[160];
	BIO *bio = BIO_new_file(path, "r");
	if (bio == NULL) {
		audit_fail(err, err_size, AUDIT_ERROR, "cannot read the audit key %s: %s", path,
			   ossl_reason(why, sizeof why, true));
		return NULL;
	}
	EVP_PKEY *key = NULL;
	if (public_ok) {
		key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		if (key == NULL) {
			ERR_clear_error();
			(void)BIO_reset(bio);
		}
	}
	if (key == NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL) {
		audit_fail(err, err_size, AUDIT_ERROR, "%s holds no PEM %s key: %s", path,
			   public_ok ? "Ed25519 public or private" : "Ed25519 private (PKCS#8)",
			   ossl_reason(why, sizeof why, true));
		return NULL;
	}
	if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 || ossl_ed25519_key_id(key, key_id) != 0) {
		EVP_PKEY_free(key);
		audit_fail(err, err_size, AUDIT_ERROR, "the key in %s is not an Ed25519 key", path);
		return NULL;
	}
	return key;
}

/* Signs msg with key into b64 (AUDIT_SIG_B64_LEN + 1 bytes).  Returns 0 or -1. */
static int audit_sign(EVP_PKEY *key, const char *msg, size_t len, char b64[AUDIT_SIG_B64_LEN + 1])
{
	unsigned char sig[AUDIT_SIG_LEN];
	size_t sig_len = sizeof sig;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
		 EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)msg, len) == 1 &&
		 sig_len == sizeof sig;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)sizeof sig);
	return 0;
}

/* True when b64 is the canonical base64 of a valid signature over msg by key. */
static int audit_signature_ok(EVP_PKEY *key, const char *msg, size_t len, const char *b64)
{
	if (b64 == NULL || strlen(b64) != AUDIT_SIG_B64_LEN)
		return 0;
	unsigned char sig[AUDIT_SIG_LEN + 3];
	char again[AUDIT_SIG_B64_LEN + 1];
	if (EVP_DecodeBlock(sig, (const unsigned char *)b64, AUDIT_SIG_B64_LEN) !=
	    AUDIT_SIG_LEN + 2)
		return 0;
	EVP_EncodeBlock((unsigned char *)again, sig, AUDIT_SIG_LEN);
	if (strcmp(again, b64) != 0)
		return 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		 EVP_DigestVerify(ctx, sig, AUDIT_SIG_LEN, (const unsigned char *)msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* --- database ------------------------------------------------------------------------------ */

/* Runs one statement that returns no rows and resets it.  Returns SQLITE_OK or the error,
 * with the message in reason (if not NULL). */
static int audit_step_done(sqlite3_stmt *st, char *reason, size_t reason_size)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && reason != NULL)
		snprintf(reason, reason_size, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The single integer a query returns, or fallback. */
static int64_t audit_query_int(sqlite3 *db, const char *sql, int64_t fallback)
{
	sqlite3_stmt *st = NULL;
	int64_t v = fallback;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Column i of a row statement as pointer and length (NULL for SQL NULL). */
static const char *audit_column(sqlite3_stmt *st, int i, size_t *len)
{
	const char *v = (const char *)sqlite3_column_text(st, i);
	*len = v == NULL ? 0 : (size_t)sqlite3_column_bytes(st, i);
	return v;
}

/* Recomputes the hash of the current row of st (AUDIT_ROW_COLUMNS) into out.  Returns 0 or
 * -1. */
static int audit_rehash_row(EVP_MD_CTX *md, sqlite3_stmt *st, char out[AUDIT_HASH_LEN + 1])
{
	const char *v[AF_COUNT];
	size_t len[AF_COUNT], prev_len;
	for (int i = 0; i < AF_COUNT; i++)
		v[i] = audit_column(st, 1 + i, &len[i]);
	const char *prev = audit_column(st, COL_PREV, &prev_len);
	return audit_row_hash(md, sqlite3_column_int64(st, COL_SEQ), v, len, prev, prev_len, out);
}

/*
 * Reads the chain head (last seq and hash) into w, checking that the last row matches its
 * hash.  Returns 0, or -1 with reason filled.
 */
static int audit_load_head(struct audit_writer *w, char *reason, size_t reason_size)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
	    w->db, "SELECT " AUDIT_ROW_COLUMNS " FROM audit_rows ORDER BY seq DESC LIMIT 1", -1,
	    &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		w->head_seq = 0;
		snprintf(w->head_hash, sizeof w->head_hash, "%s", AUDIT_GENESIS_HASH);
		sqlite3_finalize(st);
		w->head_valid = 1;
		return 0;
	}
	if (rc != SQLITE_ROW) {
		snprintf(reason, reason_size, "cannot read the chain head: %s",
			 sqlite3_errmsg(w->db));
		sqlite3_finalize(st);
		return -1;
	}
	char again[AUDIT_HASH_LEN + 1];
	size_t len;
	const char *hash = audit_column(st, COL_HASH, &len);
	int64_t seq = sqlite3_column_int64(st, COL_SEQ);
	if (audit_rehash_row(w->md, st, again) != 0 || hash == NULL || strcmp(again, hash) != 0) {
		snprintf(reason, reason_size,
			 "the last audit row (seq %" PRId64
			 ") does not match its hash: the database "
			 "was changed outside madoguchi; run `madoguchictl audit verify` and keep "
			 "the file for investigation",
			 seq);
		sqlite3_finalize(st);
		return -1;
	}
	w->head_seq = seq;
	memcpy(w->head_hash, hash, AUDIT_HASH_LEN + 1);
	w->head_valid = 1;
	sqlite3_finalize(st);
	return 0;
}

/*
 * Opens the response spool and removes its orphans: segments no committed row refers to (the
 * bytes of batches that failed or were cut off by a crash, or a segment the purge had
 * forgotten when the process stopped).  Returns 0, or -1 with err filled.
 */
static int audit_open_spool(struct audit *a, char *err, size_t err_size)
{
	struct audit_writer *w = &a->w;
	if (spool_open(a->spool_dir, &w->spool, err, err_size) != 0)
		return -1;
	spool_note_id(w->spool,
		      (uint32_t)audit_query_int(w->db, "SELECT max(id) FROM response_segments", 0));
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(w->db, "SELECT 1 FROM response_segments WHERE id = ?1", -1, &st,
			       NULL) != SQLITE_OK)
		return audit_fail(err, err_size, -1, "cannot read response_segments: %s",
				  sqlite3_errmsg(w->db));
	size_t n;
	const uint32_t *ids = spool_found(w->spool, &n);
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(st, 1, ids[i]);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			char why[AUDIT_REASON_MAX];
			if (spool_remove(w->spool, ids[i], why, sizeof why) != 0)
				log_event(LOG_WARN, "audit_spool_orphan_kept", "{s:s}", "reason",
					  why);
		} else if (rc != SQLITE_ROW) {
			audit_fail(err, err_size, -1, "cannot read response_segments: %s",
				   sqlite3_errmsg(w->db));
			sqlite3_finalize(st);
			return -1;
		}
	}
	sqlite3_finalize(st);
	return 0;
}

/* Opens and sets up the writer connection.  Returns 0, or -1 with err filled. */
static int audit_open_writer(struct audit *a, char *err, size_t err_size)
{
	struct audit_writer *w = &a->w;
	int rc =
	    sqlite3_open_v2(a->path, &w->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return audit_fail(err, err_size, -1, "cannot open the audit database %s: %s",
				  a->path, w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
	sqlite3_extended_result_codes(w->db, 1);
	sqlite3_busy_timeout(w->db, AUDIT_BUSY_TIMEOUT_MS);
	int64_t app = audit_query_int(w->db, "PRAGMA application_id", -1);
	int64_t objects = audit_query_int(w->db, "SELECT count(*) FROM sqlite_master", -1);
	if (app < 0 || objects < 0)
		return audit_fail(err, err_size, -1, "cannot read the audit database %s: %s",
				  a->path, sqlite3_errmsg(w->db));
	if (app != AUDIT_APPLICATION_ID && objects > 0)
		return audit_fail(err, err_size, -1,
				  "%s is not a madoguchi audit database (it holds other tables); "
				  "point the audit path at a new file",
				  a->path);
	if (app == AUDIT_APPLICATION_ID &&
	    audit_query_int(w->db, "PRAGMA user_version", 0) > AUDIT_SCHEMA_VERSION)
		return audit_fail(err, err_size, -1,
				  "%s was written by a newer madoguchi (schema version above %d); "
				  "upgrade this appliance",
				  a->path, AUDIT_SCHEMA_VERSION);
	char *msg = NULL;
	sqlite3_stmt *st = NULL;
	/* A new file keeps SQLite's 4 KiB pages: its rows are small (the responses' bytes are in
	 * the spool), and every commit rewrites the pages it touches into the WAL.  A file made
	 * by schema 1 may have 64 KiB pages; the size is fixed once a file is in WAL mode. */
	int64_t version =
	    app == AUDIT_APPLICATION_ID ? audit_query_int(w->db, "PRAGMA user_version", 0) : 0;
	int wal =
	    sqlite3_prepare_v2(w->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
	    strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	if (!wal)
		return audit_fail(err, err_size, -1,
				  "cannot put %s in WAL mode: %s (is the directory writable?)",
				  a->path, sqlite3_errmsg(w->db));
	if (sqlite3_exec(w->db,
			 "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864;"
			 "BEGIN IMMEDIATE;",
			 NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(w->db, audit_schema, NULL, NULL, &msg) != SQLITE_OK ||
	    (version < 2 && sqlite3_exec(w->db, audit_schema_v2, NULL, NULL, &msg) != SQLITE_OK) ||
	    sqlite3_exec(w->db, "PRAGMA application_id=1296320321; PRAGMA user_version=2; COMMIT;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		audit_fail(err, err_size, -1, "cannot set up the audit database %s: %s", a->path,
			   msg ? msg : sqlite3_errmsg(w->db));
		sqlite3_free(msg);
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (version == 1)
		log_event(LOG_INFO, "audit_schema_upgraded", "{s:s, s:i, s:i}", "path", a->path,
			  "from", 1, "to", AUDIT_SCHEMA_VERSION);
	int64_t page = audit_query_int(w->db, "PRAGMA page_size", 4096);
	w->wal_wake_frames = (int)(AUDIT_WAL_WAKE_BYTES / page);
	w->wal_writer_frames = (int)(AUDIT_WAL_WRITER_BYTES / page);
	const struct {
		sqlite3_stmt **slot;
		const char *sql;
	} stmts[] = {
	    {&w->begin, "BEGIN IMMEDIATE"},
	    {&w->commit, "COMMIT"},
	    {&w->rollback, "ROLLBACK"},
	    {&w->insert_row,
	     "INSERT INTO audit_rows(" AUDIT_ROW_COLUMNS
	     ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"},
	    {&w->response_exists, "SELECT 1 FROM stored_responses WHERE request_id = ?1"},
	    {&w->insert_response,
	     "INSERT INTO stored_responses(request_id, seq, body_sha256, card_serial_digest, "
	     "response, expires_at, segment, offset, length, response_crc32) "
	     "VALUES(?1, ?2, ?3, ?4, x'', ?5, ?6, ?7, ?8, ?9)"},
	    {&w->note_segment, "INSERT INTO response_segments(id, expires_at) VALUES(?1, ?2) "
			       "ON CONFLICT(id) DO UPDATE SET "
			       "expires_at = max(expires_at, excluded.expires_at)"},
	    {&w->expired_segments, "SELECT id FROM response_segments WHERE expires_at <= ?1"},
	    {&w->forget_segments, "DELETE FROM response_segments WHERE expires_at <= ?1"},
	    {&w->insert_checkpoint, "INSERT INTO audit_checkpoints(seq, hash, time, key_id, "
				    "signature) VALUES(?1, ?2, ?3, ?4, ?5)"},
	    {&w->purge, "DELETE FROM stored_responses WHERE expires_at <= ?1"},
	};
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
		if (sqlite3_prepare_v3(w->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       stmts[i].slot, NULL) != SQLITE_OK)
			return audit_fail(err, err_size, -1, "cannot prepare audit statements: %s",
					  sqlite3_errmsg(w->db));
	}
	char reason[AUDIT_PROBLEM_MAX * 2];
	if (audit_load_head(w, reason, sizeof reason) != 0)
		return audit_fail(err, err_size, -1, "%s: %s", a->path, reason);
	w->checkpoint_seq = audit_query_int(w->db, "SELECT max(seq) FROM audit_checkpoints", 0);
	return audit_open_spool(a, err, err_size);
}

static void audit_close_writer(struct audit_writer *w)
{
	sqlite3_stmt *all[] = {
	    w->begin,		w->commit,	     w->rollback,	   w->insert_row,
	    w->response_exists, w->insert_response,  w->insert_checkpoint, w->purge,
	    w->note_segment,	w->expired_segments, w->forget_segments};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		sqlite3_finalize(all[i]);
	sqlite3_close(w->db);
	spool_close(w->spool);
	EVP_MD_CTX_free(w->md);
	EVP_PKEY_free(w->key);
	memset(w, 0, sizeof *w);
}

/* --- the writer thread --------------------------------------------------------------------- */

/* Applies or lifts the AUDIT_TEST_DISK_FULL cap as the hook asks. */
static void writer_apply_disk_cap(struct audit *a)
{
	pthread_mutex_lock(&a->lock);
	int want = a->disk_full;
	pthread_mutex_unlock(&a->lock);
	if (want == a->w.disk_capped)
		return;
	/* max_page_count cannot go below the current size: 1 means "as it is now". */
	sqlite3_exec(a->w.db, want ? "PRAGMA max_page_count=1" : "PRAGMA max_page_count=4294967294",
		     NULL, NULL, NULL);
	spool_test_full(a->w.spool, want);
	a->w.disk_capped = want;
}

/*
 * Inserts a checkpoint over (seq, hash) inside the open transaction.  Returns 0; 1 when the
 * key could not sign (the transaction goes on without a checkpoint); -1 when the insert
 * failed (the transaction must be rolled back), with reason filled.
 */
static int writer_insert_checkpoint(struct audit_writer *w, int64_t seq, const char *hash,
				    char *reason, size_t reason_size)
{
	char stamp[AUDIT_TIME_LEN + 1], text[256], sig[AUDIT_SIG_B64_LEN + 1];
	audit_format_time(audit_now_unix_ms(), stamp);
	size_t len = audit_checkpoint_text(text, sizeof text, seq, hash, stamp);
	if (audit_sign(w->key, text, len, sig) != 0) {
		char why[160];
		log_event(LOG_ERROR, "audit_checkpoint_unsigned", "{s:I, s:s}", "seq",
			  (json_int_t)seq, "reason", ossl_reason(why, sizeof why, true));
		return 1;
	}
	sqlite3_stmt *st = w->insert_checkpoint;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, hash, AUDIT_HASH_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, stamp, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, w->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sig, -1, SQLITE_TRANSIENT);
	return audit_step_done(st, reason, reason_size) == SQLITE_OK ? 0 : -1;
}

/* Writes one item's row (and response) at seq after prev.  Returns SQLITE_OK, or the error
 * with reason filled. */
static int writer_insert_item(struct audit_writer *w, struct audit_item *it, int64_t seq,
			      const char *prev, char *reason, size_t reason_size)
{
	size_t len[AF_COUNT];
	for (int i = 0; i < AF_COUNT; i++)
		len[i] = it->v[i] ? strlen(it->v[i]) : 0;
	if (audit_row_hash(w->md, seq, it->v, len, prev, AUDIT_HASH_LEN, it->hash) != 0) {
		snprintf(reason, reason_size, "cannot compute a row hash (OpenSSL)");
		return SQLITE_ERROR;
	}
	sqlite3_stmt *st = w->insert_row;
	sqlite3_bind_int64(st, 1, seq);
	for (int i = 0; i < AF_COUNT; i++) {
		if (it->v[i] == NULL)
			sqlite3_bind_null(st, 2 + i);
		else
			sqlite3_bind_text(st, 2 + i, it->v[i], (int)len[i], SQLITE_STATIC);
	}
	sqlite3_bind_text(st, COL_PREV + 1, prev, AUDIT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, COL_HASH + 1, it->hash, AUDIT_HASH_LEN, SQLITE_STATIC);
	int rc = audit_step_done(st, reason, reason_size);
	if (rc != SQLITE_OK || !it->has_response)
		return rc;
	/* The bytes go to the spool; the row says where, with their checksum. */
	uint32_t segment;
	uint64_t offset;
	if (spool_append(w->spool, it->response, it->response_len, time(NULL), &segment, &offset,
			 reason, reason_size) != 0)
		return SQLITE_IOERR;
	it->spooled = 1;
	st = w->insert_response;
	sqlite3_bind_text(st, 1, it->v[AF_REQUEST_ID], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, seq);
	sqlite3_bind_text(st, 3, it->body_sha256, AUDIT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, it->card_serial_digest, AUDIT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, it->expires_at);
	sqlite3_bind_int64(st, 6, segment);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)offset);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)it->response_len);
	sqlite3_bind_int64(st, 9, libdeflate_crc32(0, it->response, it->response_len));
	return audit_step_done(st, reason, reason_size);
}

/*
 * Before COMMIT: records the batch's segment with its latest expiry and makes the bytes
 * appended to it durable, so the COMMIT never refers to bytes a power cut could lose.
 * Returns SQLITE_OK, or an error with reason filled.
 */
static int writer_seal_spool(struct audit_writer *w, const struct audit_item *batch, char *reason,
			     size_t reason_size)
{
	int64_t expires = INT64_MIN;
	for (const struct audit_item *it = batch; it != NULL; it = it->next)
		if (it->spooled && it->expires_at > expires)
			expires = it->expires_at;
	if (expires == INT64_MIN)
		return SQLITE_OK;
	sqlite3_stmt *st = w->note_segment;
	sqlite3_bind_int64(st, 1, spool_current(w->spool));
	sqlite3_bind_int64(st, 2, expires);
	int rc = audit_step_done(st, reason, reason_size);
	if (rc == SQLITE_OK && spool_sync(w->spool, reason, reason_size) != 0)
		rc = SQLITE_IOERR;
	return rc;
}

/* 1 when a response is stored under the item's request_id, 0 when not, -1 on error. */
static int writer_response_exists(struct audit_writer *w, const struct audit_item *it, char *reason,
				  size_t reason_size)
{
	sqlite3_stmt *st = w->response_exists;
	sqlite3_bind_text(st, 1, it->v[AF_REQUEST_ID], -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		snprintf(reason, reason_size, "%s", sqlite3_errmsg(w->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Rolls back whatever is open; afterwards the head is re-read before the next transaction. */
static void writer_rollback(struct audit_writer *w)
{
	if (!sqlite3_get_autocommit(w->db))
		audit_step_done(w->rollback, NULL, 0);
	w->head_valid = 0;
}

/*
 * Commits one batch (the list at batch, n items) in one transaction: assigns seq, prev_hash
 * and hash in order, writes each row and its response, adds a checkpoint when one is due,
 * COMMITs.  Sets every item's status; moves the head only after COMMIT returned SQLITE_OK.
 */
static void writer_commit_batch(struct audit *a, struct audit_item *batch, size_t n)
{
	struct audit_writer *w = &a->w;
	char reason[AUDIT_REASON_MAX] = "";
	uint64_t t0 = audit_now_ns();
	int64_t seq = 0, checkpoint_seq = w->checkpoint_seq;
	char prev[AUDIT_HASH_LEN + 1];
	size_t written = 0, duplicates = 0, checkpoints = 0;

	writer_apply_disk_cap(a);
	/* A batch's responses go to one segment: rotation happens only here. */
	spool_rotate_if_due(w->spool, time(NULL));
	if (audit_step_done(w->begin, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	if (!w->head_valid && audit_load_head(w, reason, sizeof reason) != 0)
		goto failed;
	seq = w->head_seq;
	memcpy(prev, w->head_hash, sizeof prev);
	for (struct audit_item *it = batch; it != NULL; it = it->next) {
		if (it->has_response) {
			int exists = writer_response_exists(w, it, reason, sizeof reason);
			if (exists < 0)
				goto failed;
			if (exists) {
				it->status = AUDIT_DUPLICATE;
				duplicates++;
				continue;
			}
		}
		if (writer_insert_item(w, it, seq + 1, prev, reason, sizeof reason) != SQLITE_OK)
			goto failed;
		it->seq = ++seq;
		it->status = AUDIT_OK;
		memcpy(prev, it->hash, sizeof prev);
		written++;
		/* Every checkpoint_every_rows rows a checkpoint, in the same transaction. */
		if (w->key != NULL &&
		    (uint64_t)(seq - checkpoint_seq) >= a->checkpoint_every_rows) {
			int rc = writer_insert_checkpoint(w, seq, prev, reason, sizeof reason);
			if (rc < 0)
				goto failed;
			if (rc == 0) {
				checkpoint_seq = seq;
				checkpoints++;
			}
		}
	}
	if (writer_seal_spool(w, batch, reason, sizeof reason) != SQLITE_OK ||
	    audit_step_done(w->commit, reason, sizeof reason) != SQLITE_OK)
		goto failed;

	uint64_t us = (audit_now_ns() - t0) / 1000;
	w->head_seq = seq;
	memcpy(w->head_hash, prev, sizeof prev);
	if (checkpoints > 0) {
		w->checkpoint_seq = checkpoint_seq;
		w->checkpoint_ns = audit_now_ns();
	}
	pthread_mutex_lock(&a->lock);
	struct audit_metrics *m = &a->metrics;
	m->rows_committed += written;
	m->rows_duplicate += duplicates;
	m->checkpoints += checkpoints;
	m->head_seq = seq;
	if (written > 0) {
		m->batches++;
		m->last_batch_rows = written;
		m->avg_batch_rows = (double)m->rows_committed / (double)m->batches;
		m->last_commit_us = us;
		m->commit_us_total += us;
		if (us > m->max_commit_us)
			m->max_commit_us = us;
		m->avg_commit_us = (double)m->commit_us_total / (double)m->batches;
	}
	pthread_mutex_unlock(&a->lock);
	if (written > 0 && a->commit_seconds != NULL)
		metrics_observe(a->commit_seconds, (double)us / 1e6);
	if (written > 0 && a->batch_rows != NULL)
		metrics_observe(a->batch_rows, (double)written);
	return;

failed:
	writer_rollback(w);
	spool_abandon(w->spool);
	for (struct audit_item *it = batch; it != NULL; it = it->next) {
		it->status = AUDIT_UNAVAILABLE;
		it->seq = 0;
		it->hash[0] = '\0';
	}
	pthread_mutex_lock(&a->lock);
	a->metrics.rows_failed += n;
	a->metrics.batches_failed++;
	pthread_mutex_unlock(&a->lock);
	log_event(LOG_ERROR, "audit_commit_failed", "{s:s, s:I, s:I}", "reason", reason, "rows",
		  (json_int_t)n, "head_seq", (json_int_t)w->head_seq);
}

/* A checkpoint in a transaction of its own (timer, shutdown). */
static void writer_checkpoint_now(struct audit *a)
{
	struct audit_writer *w = &a->w;
	char reason[AUDIT_REASON_MAX] = "";
	w->checkpoint_ns = audit_now_ns(); /* success or not, the next try is an interval away */
	if (audit_step_done(w->begin, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	if (!w->head_valid && audit_load_head(w, reason, sizeof reason) != 0)
		goto failed;
	if (w->head_seq <= w->checkpoint_seq) {
		writer_rollback(w);
		w->head_valid = 1;
		return;
	}
	int rc = writer_insert_checkpoint(w, w->head_seq, w->head_hash, reason, sizeof reason);
	if (rc < 0)
		goto failed;
	if (rc > 0) {
		writer_rollback(w);
		return;
	}
	if (audit_step_done(w->commit, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	w->checkpoint_seq = w->head_seq;
	pthread_mutex_lock(&a->lock);
	a->metrics.checkpoints++;
	pthread_mutex_unlock(&a->lock);
	return;
failed:
	writer_rollback(w);
	log_event(LOG_ERROR, "audit_checkpoint_failed", "{s:s, s:I}", "reason", reason, "head_seq",
		  (json_int_t)w->head_seq);
}

/*
 * Deletes the stored responses that have expired and forgets the spool segments all of whose
 * responses have, in one transaction; the segment files are removed once it committed (a
 * crash in between leaves orphans, which the next start removes).
 */
static void writer_purge(struct audit *a)
{
	struct audit_writer *w = &a->w;
	char reason[AUDIT_REASON_MAX] = "";
	sqlite3_int64 now = (sqlite3_int64)time(NULL);
	uint32_t *gone = NULL;
	size_t gone_count = 0, gone_cap = 0;
	uint64_t purged = 0;
	w->purge_ns = audit_now_ns();
	if (audit_step_done(w->begin, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	sqlite3_bind_int64(w->purge, 1, now);
	if (audit_step_done(w->purge, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	purged = (uint64_t)sqlite3_changes(w->db);
	sqlite3_stmt *st = w->expired_segments;
	sqlite3_bind_int64(st, 1, now);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (gone_count == gone_cap) {
			size_t cap = gone_cap ? gone_cap * 2 : 8;
			uint32_t *n = realloc(gone, cap * sizeof *n);
			if (n == NULL)
				break;
			gone = n;
			gone_cap = cap;
		}
		gone[gone_count++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		snprintf(reason, sizeof reason, "%s", sqlite3_errmsg(w->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) { /* an error, or out of memory: try again next time */
		if (rc == SQLITE_ROW)
			snprintf(reason, sizeof reason, "out of memory");
		goto failed;
	}
	sqlite3_bind_int64(w->forget_segments, 1, now);
	if (audit_step_done(w->forget_segments, reason, sizeof reason) != SQLITE_OK ||
	    audit_step_done(w->commit, reason, sizeof reason) != SQLITE_OK)
		goto failed;
	for (size_t i = 0; i < gone_count; i++)
		if (spool_remove(w->spool, gone[i], reason, sizeof reason) != 0)
			log_event(LOG_WARN, "audit_spool_remove_failed", "{s:s}", "reason", reason);
	free(gone);
	pthread_mutex_lock(&a->lock);
	a->metrics.responses_purged += purged;
	pthread_mutex_unlock(&a->lock);
	return;
failed:
	writer_rollback(w);
	free(gone);
	log_event(LOG_WARN, "audit_purge_failed", "{s:s}", "reason", reason);
}

/* Monotonic time of the writer's next timed duty (checkpoint or purge). */
static uint64_t writer_next_due(const struct audit *a)
{
	uint64_t due = a->w.purge_ns + a->purge_interval_ns;
	if (a->w.key != NULL && a->w.head_seq > a->w.checkpoint_seq &&
	    a->w.checkpoint_ns + a->checkpoint_interval_ns < due)
		due = a->w.checkpoint_ns + a->checkpoint_interval_ns;
	return due;
}

static void writer_timed_duties(struct audit *a)
{
	uint64_t now = audit_now_ns();
	if (a->w.key != NULL && a->w.head_seq > a->w.checkpoint_seq &&
	    now - a->w.checkpoint_ns >= a->checkpoint_interval_ns)
		writer_checkpoint_now(a);
	if (now - a->w.purge_ns >= a->purge_interval_ns)
		writer_purge(a);
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while ((a->queue == NULL || a->hold_writer) && !a->stopping) {
			uint64_t due = writer_next_due(a), now = audit_now_ns();
			if (due <= now)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t wait = due - now;
			ts.tv_sec += (time_t)(wait / 1000000000u);
			ts.tv_nsec += (long)(wait % 1000000000u);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&a->work, &a->lock, &ts);
		}
		struct audit_item *batch = a->hold_writer && !a->stopping ? NULL : a->queue;
		size_t n = 0;
		if (batch != NULL) {
			a->queue = NULL;
			a->queue_tail = &a->queue;
		}
		pthread_mutex_unlock(&a->lock);

		for (const struct audit_item *it = batch; it != NULL; it = it->next)
			n++;
		if (batch != NULL)
			writer_commit_batch(a, batch, n);
		writer_timed_duties(a);

		pthread_mutex_lock(&a->lock);
		if (batch != NULL) {
			*a->done_tail = batch;
			struct audit_item *last = batch;
			while (last->next != NULL)
				last = last->next;
			a->done_tail = &last->next;
			a->pending -= (uint32_t)n;
			a->metrics.queue_depth = a->pending;
			uv_async_send(a->wakeup);
		}
		if (a->stopping && a->queue == NULL)
			break;
	}
	pthread_mutex_unlock(&a->lock);
	if (a->w.key != NULL && a->w.head_seq > a->w.checkpoint_seq)
		writer_checkpoint_now(a);
	return NULL;
}

/* --- the loop side ------------------------------------------------------------------------- */

/* Runs the callbacks of every finished item (loop thread), in commit order. */
static void audit_run_callbacks(struct audit *a)
{
	pthread_mutex_lock(&a->lock);
	struct audit_item *it = a->done;
	a->done = NULL;
	a->done_tail = &a->done;
	pthread_mutex_unlock(&a->lock);
	while (it != NULL) {
		struct audit_item *next = it->next;
		if (--a->outstanding == 0)
			uv_unref((uv_handle_t *)a->wakeup);
		int ok = it->status == AUDIT_OK;
		it->cb(it->arg, it->status, ok ? it->seq : 0, ok ? it->hash : NULL);
		free(it);
		it = next;
	}
}

static void audit_wakeup_cb(uv_async_t *handle)
{
	struct audit *a = handle->data;
	if (a != NULL)
		audit_run_callbacks(a);
}

static void audit_wakeup_closed(uv_handle_t *handle)
{
	free(handle);
}

/* Copies row and resp into one new item.  Returns AUDIT_OK with *out, or an error. */
static int audit_item_new(const struct audit_row *row, const struct audit_stored_response *resp,
			  struct audit_item **out, char *err, size_t err_size)
{
	char now[AUDIT_TIME_LEN + 1];
	if (row->time == NULL)
		audit_format_time(audit_now_unix_ms(), now);
	char *terminal = audit_terminal_canonical(row->terminal);
	*out = NULL;
	if (terminal == NULL) {
		audit_fail(err, err_size, AUDIT_INVALID,
			   "audit row: bad terminal (want a JSON object, without real numbers, of "
			   "at most %d bytes)",
			   AUDIT_TERMINAL_MAX);
		return AUDIT_INVALID;
	}
	const char *src[AF_COUNT] = {
	    [AF_TIME] = row->time ? row->time : now,	 [AF_REQUEST_ID] = row->request_id,
	    [AF_ISSUANCE_ID] = row->issuance_id,	 [AF_MUNICIPALITY] = row->municipality,
	    [AF_CERTIFICATE] = row->certificate,	 [AF_PLUGIN] = row->plugin,
	    [AF_PLUGIN_VERSION] = row->plugin_version,	 [AF_TERMINAL] = terminal,
	    [AF_SUBJECT_DIGEST] = row->subject_digest,	 [AF_OUTCOME] = row->outcome,
	    [AF_DOCUMENT_SHA256] = row->document_sha256,
	};
	size_t size = sizeof(struct audit_item), len[AF_COUNT];
	for (int i = 0; i < AF_COUNT; i++) {
		len[i] = src[i] ? strlen(src[i]) : 0;
		size += src[i] ? len[i] + 1 : 0;
	}
	if (resp != NULL)
		size += resp->response_len;
	struct audit_item *it = malloc(size);
	if (it == NULL) {
		free(terminal);
		audit_fail(err, err_size, AUDIT_ERROR, "out of memory");
		return AUDIT_ERROR;
	}
	memset(it, 0, sizeof *it);
	char *p = (char *)(it + 1);
	for (int i = 0; i < AF_COUNT; i++) {
		if (src[i] == NULL)
			continue;
		memcpy(p, src[i], len[i] + 1);
		it->v[i] = p;
		p += len[i] + 1;
	}
	free(terminal);
	if (resp != NULL) {
		it->has_response = 1;
		memcpy(it->body_sha256, resp->body_sha256, AUDIT_HASH_LEN + 1);
		memcpy(it->card_serial_digest, resp->card_serial_digest, AUDIT_HASH_LEN + 1);
		it->expires_at = resp->expires_at;
		memcpy(p, resp->response, resp->response_len);
		it->response = (const unsigned char *)p;
		it->response_len = resp->response_len;
	}
	*out = it;
	return AUDIT_OK;
}

int audit_submit(struct audit *a, const struct audit_row *row,
		 const struct audit_stored_response *resp, audit_done_cb cb, void *arg, char *err,
		 size_t err_size)
{
	if (a == NULL || row == NULL || cb == NULL)
		return audit_fail(err, err_size, AUDIT_INVALID,
				  "audit_submit: no store, row or cb");
	if (a->closing)
		return audit_fail(err, err_size, AUDIT_CLOSED, "the audit store is closing");
	int rc = audit_check_row(row, resp, err, err_size);
	if (rc != AUDIT_OK)
		return rc;
	/* Only this thread adds to pending, so a check now still holds at the append. */
	pthread_mutex_lock(&a->lock);
	int full = a->pending >= a->queue_limit;
	if (full)
		a->metrics.rows_refused++;
	pthread_mutex_unlock(&a->lock);
	if (full)
		return audit_fail(err, err_size, AUDIT_QUEUE_FULL,
				  "the audit queue is full (%" PRIu32 " rows wait for the disk)",
				  a->queue_limit);
	struct audit_item *it = NULL;
	rc = audit_item_new(row, resp, &it, err, err_size);
	if (rc != AUDIT_OK)
		return rc;
	it->cb = cb;
	it->arg = arg;
	pthread_mutex_lock(&a->lock);
	*a->queue_tail = it;
	a->queue_tail = &it->next;
	a->pending++;
	a->metrics.queue_depth = a->pending;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
	if (a->outstanding++ == 0)
		uv_ref((uv_handle_t *)a->wakeup);
	return AUDIT_OK;
}

/* Frees what audit_open() made, in any partial state; the thread is not running. */
/* --- WAL checkpoints ------------------------------------------------------------------------ */

/* The checkpointer thread: one PASSIVE checkpoint each time the writer's hook asks. */
static void *checkpointer_main(void *arg)
{
	struct audit *a = arg;
	pthread_mutex_lock(&a->lock);
	while (!a->checkpointer_stopping) {
		if (!a->checkpoint_due) {
			pthread_cond_wait(&a->checkpoint_wanted, &a->lock);
			continue;
		}
		a->checkpoint_due = 0;
		pthread_mutex_unlock(&a->lock);
		int rc = sqlite3_wal_checkpoint_v2(a->checkpoint_db, NULL,
						   SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_event(LOG_WARN, "audit_wal_checkpoint_failed", "{s:s, s:s}", "path",
				  a->path, "reason", sqlite3_errmsg(a->checkpoint_db));
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* The writer connection's WAL hook, after each commit (writer thread, `lock` not held). */
static int audit_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct audit *a = arg;
	if (frames >= a->w.wal_writer_frames) {
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else if (frames >= a->w.wal_wake_frames) {
		pthread_mutex_lock(&a->lock);
		a->checkpoint_due = 1;
		pthread_cond_signal(&a->checkpoint_wanted);
		pthread_mutex_unlock(&a->lock);
	}
	return SQLITE_OK;
}

/* Opens the checkpointer's connection and starts it; the writer's hook is installed after. */
static int audit_start_checkpointer(struct audit *a, char *err, size_t err_size)
{
	if (sqlite3_open_v2(a->path, &a->checkpoint_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(a->checkpoint_db, AUDIT_BUSY_TIMEOUT_MS) != SQLITE_OK ||
	    sqlite3_exec(a->checkpoint_db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
		SQLITE_OK)
		return audit_fail(
		    err, err_size, AUDIT_ERROR, "cannot open %s for WAL checkpoints: %s", a->path,
		    a->checkpoint_db ? sqlite3_errmsg(a->checkpoint_db) : "out of memory");
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&a->checkpointer, NULL, checkpointer_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return audit_fail(err, err_size, AUDIT_ERROR,
				  "cannot start the audit checkpointer: %s", strerror(rc));
	a->checkpointer_started = 1;
	sqlite3_wal_hook(a->w.db, audit_wal_hook, a); /* replaces SQLite's own autocheckpoint */
	return 0;
}

static void audit_stop_checkpointer(struct audit *a)
{
	if (a->checkpointer_started) {
		pthread_mutex_lock(&a->lock);
		a->checkpointer_stopping = 1;
		pthread_cond_signal(&a->checkpoint_wanted);
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->checkpointer, NULL);
		a->checkpointer_started = 0;
	}
	sqlite3_close(a->checkpoint_db);
	a->checkpoint_db = NULL;
}

static void audit_free(struct audit *a)
{
	/* The read-only lookup connection first: the last connection to close checkpoints the
	 * WAL into the database and removes it, which a read-only one cannot do.  So a clean stop
	 * leaves audit.sqlite whole, without -wal and -shm files beside it. */
	sqlite3_finalize(a->lookup);
	sqlite3_close(a->read_db);
	audit_stop_checkpointer(a);
	audit_close_writer(&a->w);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->read_lock);
	pthread_cond_destroy(&a->work);
	pthread_cond_destroy(&a->checkpoint_wanted);
	free(a->path);
	free(a->spool_dir);
	free(a);
}

int audit_open(uv_loop_t *loop, const struct audit_options *opt, struct audit **out, char *err,
	       size_t err_size)
{
	*out = NULL;
	if (loop == NULL || opt == NULL || opt->db_path == NULL || opt->db_path[0] == '\0')
		return audit_fail(err, err_size, AUDIT_ERROR, "audit: no database path given");
	struct audit *a = calloc(1, sizeof *a);
	if (a != NULL && (a->path = strdup(opt->db_path)) != NULL) {
		if (opt->spool_dir != NULL)
			a->spool_dir = strdup(opt->spool_dir);
		else if ((a->spool_dir = malloc(strlen(a->path) + sizeof ".responses")) != NULL)
			snprintf(a->spool_dir, strlen(a->path) + sizeof ".responses",
				 "%s.responses", a->path);
	}
	if (a == NULL || a->spool_dir == NULL) {
		if (a != NULL)
			free(a->path);
		free(a);
		return audit_fail(err, err_size, AUDIT_ERROR, "out of memory");
	}
	a->loop = loop;
	a->queue_limit = opt->queue_limit ? opt->queue_limit : AUDIT_DEFAULT_QUEUE;
	a->commit_seconds = opt->commit_seconds;
	a->batch_rows = opt->batch_rows;
	a->checkpoint_every_rows =
	    opt->checkpoint_every_rows ? opt->checkpoint_every_rows : AUDIT_DEFAULT_CP_ROWS;
	a->checkpoint_interval_ns =
	    (uint64_t)(opt->checkpoint_interval_ms ? opt->checkpoint_interval_ms
						   : AUDIT_DEFAULT_CP_MS) *
	    1000000u;
	a->purge_interval_ns =
	    (uint64_t)(opt->purge_interval_ms ? opt->purge_interval_ms : AUDIT_DEFAULT_PURGE_MS) *
	    1000000u;
	a->queue_tail = &a->queue;
	a->done_tail = &a->done;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&a->work, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&a->checkpoint_wanted, NULL);
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->read_lock, NULL);

	a->w.md = EVP_MD_CTX_new();
	if (a->w.md == NULL) {
		audit_free(a);
		return audit_fail(err, err_size, AUDIT_ERROR, "out of memory");
	}
	if (opt->checkpoint_key_path != NULL) {
		a->w.key = audit_load_key(opt->checkpoint_key_path, 0, a->w.key_id, err, err_size);
		if (a->w.key == NULL) {
			audit_free(a);
			return AUDIT_ERROR;
		}
	}
	if (audit_open_writer(a, err, err_size) != 0 ||
	    audit_start_checkpointer(a, err, err_size) != 0) {
		audit_free(a);
		return AUDIT_ERROR;
	}
	if (sqlite3_open_v2(a->path, &a->read_db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(a->read_db, AUDIT_BUSY_TIMEOUT_MS) != SQLITE_OK ||
	    sqlite3_prepare_v3(a->read_db,
			       "SELECT body_sha256, card_serial_digest, response, expires_at, seq, "
			       "segment, offset, length, response_crc32 "
			       "FROM stored_responses WHERE request_id = ?1",
			       -1, SQLITE_PREPARE_PERSISTENT, &a->lookup, NULL) != SQLITE_OK) {
		audit_fail(err, err_size, AUDIT_ERROR, "cannot open %s for lookups: %s", a->path,
			   a->read_db ? sqlite3_errmsg(a->read_db) : "out of memory");
		audit_free(a);
		return AUDIT_ERROR;
	}
	a->metrics.head_seq = a->w.head_seq;
	a->w.checkpoint_ns = a->w.purge_ns = audit_now_ns();

	a->wakeup = malloc(sizeof *a->wakeup);
	if (a->wakeup == NULL || uv_async_init(loop, a->wakeup, audit_wakeup_cb) != 0) {
		free(a->wakeup);
		audit_free(a);
		return audit_fail(err, err_size, AUDIT_ERROR, "cannot create the audit wakeup");
	}
	a->wakeup->data = a;
	/* The loop is kept alive only while callbacks are owed (audit_submit refs it). */
	uv_unref((uv_handle_t *)a->wakeup);

	/* The writer takes no signals: they belong to the loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&a->thread, NULL, writer_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		a->wakeup->data = NULL;
		uv_close((uv_handle_t *)a->wakeup, audit_wakeup_closed);
		audit_free(a);
		return audit_fail(err, err_size, AUDIT_ERROR, "cannot start the audit writer: %s",
				  strerror(rc));
	}
	log_event(LOG_INFO, "audit_opened", "{s:s, s:I, s:b}", "path", a->path, "head_seq",
		  (json_int_t)a->w.head_seq, "checkpoints", a->w.key != NULL);
	*out = a;
	return AUDIT_OK;
}

void audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	a->closing = 1;
	pthread_mutex_lock(&a->lock);
	a->stopping = 1;
	a->hold_writer = 0;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	audit_run_callbacks(a);
	a->wakeup->data = NULL;
	uv_close((uv_handle_t *)a->wakeup, audit_wakeup_closed);
	log_event(LOG_INFO, "audit_closed", "{s:I}", "head_seq", (json_int_t)a->w.head_seq);
	audit_free(a);
}

void audit_test_hook(struct audit *a, enum audit_test_hook hook, int on)
{
	pthread_mutex_lock(&a->lock);
	if (hook == AUDIT_TEST_DISK_FULL)
		a->disk_full = on != 0;
	else if (hook == AUDIT_TEST_HOLD_WRITER)
		a->hold_writer = on != 0;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
}

void audit_metrics_snapshot(struct audit *a, struct audit_metrics *out)
{
	pthread_mutex_lock(&a->lock);
	*out = a->metrics;
	pthread_mutex_unlock(&a->lock);
}

/* --- lookups ------------------------------------------------------------------------------- */

/* Where a stored response's bytes are: inline (schema 1 rows) or in the spool. */
struct audit_response_place {
	int spooled;
	uint32_t segment;
	uint64_t offset;
	size_t length;
	uint32_t crc32;
};

/* Copies the looked-up row of st into out and place (inline bytes included).  Returns
 * AUDIT_OK or AUDIT_ERROR with err. */
static int audit_lookup_row(sqlite3_stmt *st, struct audit_response *out,
			    struct audit_response_place *place, char *err, size_t err_size)
{
	const char *body = (const char *)sqlite3_column_text(st, 0);
	const char *card = (const char *)sqlite3_column_text(st, 1);
	int64_t crc = sqlite3_column_int64(st, 8);
	place->spooled = sqlite3_column_type(st, 5) != SQLITE_NULL;
	if (!audit_is_hex64(body) || !audit_is_hex64(card) ||
	    (place->spooled &&
	     (crc < 0 || crc > UINT32_MAX || sqlite3_column_int64(st, 5) <= 0 ||
	      sqlite3_column_int64(st, 5) > UINT32_MAX || sqlite3_column_int64(st, 6) < 0 ||
	      sqlite3_column_int64(st, 7) <= 0 ||
	      sqlite3_column_int64(st, 7) > AUDIT_RESPONSE_MAX)))
		return audit_fail(err, err_size, AUDIT_ERROR, "stored response: a malformed row");
	memcpy(out->body_sha256, body, AUDIT_HASH_LEN + 1);
	memcpy(out->card_serial_digest, card, AUDIT_HASH_LEN + 1);
	out->expires_at = sqlite3_column_int64(st, 3);
	out->seq = sqlite3_column_int64(st, 4);
	if (place->spooled) {
		place->segment = (uint32_t)sqlite3_column_int64(st, 5);
		place->offset = (uint64_t)sqlite3_column_int64(st, 6);
		place->length = (size_t)sqlite3_column_int64(st, 7);
		place->crc32 = (uint32_t)crc;
		return AUDIT_OK;
	}
	size_t n = (size_t)sqlite3_column_bytes(st, 2);
	out->response = n > 0 ? malloc(n) : NULL;
	if (out->response == NULL)
		return audit_fail(err, err_size, AUDIT_ERROR,
				  "stored response unreadable (out of memory or empty)");
	memcpy(out->response, sqlite3_column_blob(st, 2), n);
	out->response_len = n;
	return AUDIT_OK;
}

/* Reads a spooled response's bytes into out and checks them against their checksum. */
static int audit_read_spooled(struct audit *a, const struct audit_response_place *place,
			      struct audit_response *out, char *err, size_t err_size)
{
	char why[AUDIT_REASON_MAX] = "";
	int rc = spool_read(a->spool_dir, place->segment, place->offset, place->length,
			    &out->response, why, sizeof why);
	if (rc == -2 && out->expires_at <= (int64_t)time(NULL))
		return AUDIT_NOT_FOUND; /* expired meanwhile and purged with its segment */
	if (rc == -2)
		snprintf(why, sizeof why, "its spool segment %" PRIu32 " is missing",
			 place->segment);
	else if (rc == 0 && libdeflate_crc32(0, out->response, place->length) != place->crc32)
		snprintf(why, sizeof why,
			 "its bytes in spool segment %" PRIu32 " do not match their checksum",
			 place->segment);
	else if (rc == 0) {
		out->response_len = place->length;
		return AUDIT_OK;
	}
	free(out->response);
	out->response = NULL;
	/* seq names the row for the operator; the request_id is the kiosk's and stays out. */
	log_event(LOG_ERROR, "audit_stored_response_unreadable", "{s:I, s:s}", "seq",
		  (json_int_t)out->seq, "reason", why);
	return audit_fail(err, err_size, AUDIT_ERROR, "stored response unreadable: %s", why);
}

int audit_lookup_response(struct audit *a, const char *request_id, struct audit_response *out,
			  char *err, size_t err_size)
{
	memset(out, 0, sizeof *out);
	if (!audit_visible(request_id, 1, 128))
		return AUDIT_NOT_FOUND;
	int status = AUDIT_NOT_FOUND;
	struct audit_response_place place = {0};
	pthread_mutex_lock(&a->read_lock);
	sqlite3_stmt *st = a->lookup;
	sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_int64(st, 3) > (int64_t)time(NULL))
		status = audit_lookup_row(st, out, &place, err, err_size);
	else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		status = audit_fail(err, err_size, AUDIT_ERROR, "cannot read stored responses: %s",
				    sqlite3_errmsg(a->read_db));
	sqlite3_reset(st); /* ends the read transaction: the WAL can be checkpointed */
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&a->read_lock);
	/* The file is read outside the mutex: lookups of other ids need not wait for it. */
	if (status == AUDIT_OK && place.spooled)
		status = audit_read_spooled(a, &place, out, err, err_size);
	if (status != AUDIT_OK)
		audit_response_free(out);
	return status;
}

void audit_response_free(struct audit_response *resp)
{
	if (resp == NULL)
		return;
	free(resp->response);
	memset(resp, 0, sizeof *resp);
}

/* --- verify and export --------------------------------------------------------------------- */

/* Opens db_path read-only and begins one read transaction (one snapshot).  Returns the
 * connection, or NULL with err filled. */
static sqlite3 *audit_open_snapshot(const char *db_path, char *err, size_t err_size)
{
	sqlite3 *db = NULL;
	if (db_path == NULL) {
		audit_fail(err, err_size, AUDIT_ERROR, "no audit database given");
		return NULL;
	}
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, AUDIT_BUSY_TIMEOUT_MS);
		rc = sqlite3_exec(db, "BEGIN; SELECT count(*) FROM audit_rows;", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		audit_fail(err, err_size, AUDIT_ERROR,
			   "cannot read the audit database %s: %s (is it a madoguchi audit "
			   "database, and readable?)",
			   db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static void audit_verify_problem(struct audit_verify_report *rep, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a problem at seq unless one at a smaller seq is already recorded. */
static void audit_verify_problem(struct audit_verify_report *rep, int64_t seq, const char *fmt, ...)
{
	if (rep->first_bad_seq != 0 && rep->first_bad_seq <= seq)
		return;
	rep->first_bad_seq = seq;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rep->problem, sizeof rep->problem, fmt, ap);
	va_end(ap);
}

/* Walks the rows in seq order (audit_verify()).  Returns 0, or -1 on a read error. */
static int audit_verify_rows(sqlite3 *db, EVP_MD_CTX *md, struct audit_verify_report *rep)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT " AUDIT_ROW_COLUMNS " FROM audit_rows ORDER BY seq", -1,
			       &st, NULL) != SQLITE_OK)
		return -1;
	char prev[AUDIT_HASH_LEN + 1] = AUDIT_GENESIS_HASH, again[AUDIT_HASH_LEN + 1];
	int64_t expected = 1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, COL_SEQ);
		rep->rows_checked++;
		if (seq != expected) {
			if (seq > expected)
				audit_verify_problem(rep, expected,
						     "row %" PRId64 " is missing (seq jumps from "
						     "%" PRId64 " to %" PRId64 ")",
						     expected, expected - 1, seq);
			else
				audit_verify_problem(rep, expected,
						     "seq %" PRId64 " out of order (want %" PRId64
						     ")",
						     seq, expected);
		}
		size_t prev_len, hash_len;
		const char *stored_prev = audit_column(st, COL_PREV, &prev_len);
		const char *hash = audit_column(st, COL_HASH, &hash_len);
		if (stored_prev == NULL || prev_len != AUDIT_HASH_LEN ||
		    memcmp(stored_prev, prev, AUDIT_HASH_LEN) != 0)
			audit_verify_problem(rep, seq,
					     "row %" PRId64
					     ": prev_hash is not the hash of the row "
					     "before it",
					     seq);
		if (audit_rehash_row(md, st, again) != 0) {
			sqlite3_finalize(st);
			return -1;
		}
		if (hash == NULL || hash_len != AUDIT_HASH_LEN ||
		    memcmp(hash, again, AUDIT_HASH_LEN) != 0)
			audit_verify_problem(rep, seq,
					     "row %" PRId64
					     ": hash does not match the row's columns "
					     "(the row was changed)",
					     seq);
		/* Follow the stored chain, so one changed row is reported once. */
		snprintf(prev, sizeof prev, "%.*s", (int)hash_len, hash ? hash : "");
		rep->last_seq = seq;
		expected = seq + 1 > expected ? seq + 1 : expected;
	}
	sqlite3_finalize(st);
	snprintf(rep->last_hash, sizeof rep->last_hash, "%s", prev);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The keys audit_verify() checks signatures with, each with its id. */
struct audit_verify_keys {
	EVP_PKEY *key[AUDIT_VERIFY_KEYS_MAX];
	char id[AUDIT_VERIFY_KEYS_MAX][AUDIT_KEY_ID_LEN + 1];
	size_t count;
};

/* The key whose id is kid, or NULL. */
static EVP_PKEY *audit_verify_key(const struct audit_verify_keys *keys, const char *kid)
{
	for (size_t i = 0; kid != NULL && i < keys->count; i++)
		if (strcmp(keys->id[i], kid) == 0)
			return keys->key[i];
	return NULL;
}

/* Checks every checkpoint against its row and, with keys, its signature.  0 or -1. */
static int audit_verify_checkpoints(sqlite3 *db, const struct audit_verify_keys *keys,
				    struct audit_verify_report *rep)
{
	sqlite3_stmt *cp = NULL, *row = NULL;
	if (sqlite3_prepare_v2(db,
			       "SELECT seq, hash, time, key_id, signature FROM audit_checkpoints "
			       "ORDER BY seq",
			       -1, &cp, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT hash FROM audit_rows WHERE seq = ?1", -1, &row, NULL) !=
		SQLITE_OK) {
		sqlite3_finalize(cp);
		return -1;
	}
	int rc;
	while ((rc = sqlite3_step(cp)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(cp, 0);
		const char *hash = (const char *)sqlite3_column_text(cp, 1);
		const char *stamp = (const char *)sqlite3_column_text(cp, 2);
		const char *kid = (const char *)sqlite3_column_text(cp, 3);
		const char *sig = (const char *)sqlite3_column_text(cp, 4);
		rep->checkpoints_checked++;
		sqlite3_bind_int64(row, 1, seq);
		int found = sqlite3_step(row) == SQLITE_ROW;
		const char *row_hash = found ? (const char *)sqlite3_column_text(row, 0) : NULL;
		if (!found)
			audit_verify_problem(rep, seq,
					     "checkpoint at seq %" PRId64 " names a row that is "
					     "missing (rows were deleted)",
					     seq);
		else if (hash == NULL || row_hash == NULL || strcmp(hash, row_hash) != 0)
			audit_verify_problem(rep, seq,
					     "checkpoint at seq %" PRId64 ": its hash is not the "
					     "row's hash (the chain was rewritten)",
					     seq);
		sqlite3_reset(row);
		if (keys->count == 0)
			continue;
		char text[256];
		size_t len = audit_checkpoint_text(text, sizeof text, seq, hash ? hash : "",
						   stamp ? stamp : "");
		EVP_PKEY *key = audit_verify_key(keys, kid);
		if (key == NULL)
			audit_verify_problem(rep, seq,
					     "checkpoint at seq %" PRId64
					     " was made by key %s, which is not among the given "
					     "keys (%s%s); give that key's public key too if it "
					     "was this appliance's before a rotation",
					     seq, kid ? kid : "(none)", keys->id[0],
					     keys->count > 1 ? " and the retired ones" : "");
		else if (!audit_signature_ok(key, text, len, sig))
			audit_verify_problem(rep, seq,
					     "checkpoint at seq %" PRId64
					     ": the signature does not "
					     "verify",
					     seq);
	}
	sqlite3_finalize(cp);
	sqlite3_finalize(row);
	return rc == SQLITE_DONE ? 0 : -1;
}

int audit_verify(const char *db_path, const char *const *key_paths, size_t key_count,
		 struct audit_verify_report *rep, char *err, size_t err_size)
{
	memset(rep, 0, sizeof *rep);
	snprintf(rep->last_hash, sizeof rep->last_hash, "%s", AUDIT_GENESIS_HASH);
	struct audit_verify_keys keys = {.count = 0};
	if (key_count > AUDIT_VERIFY_KEYS_MAX)
		return audit_fail(err, err_size, AUDIT_ERROR, "at most %d keys can be given",
				  AUDIT_VERIFY_KEYS_MAX);
	int status = AUDIT_ERROR;
	EVP_MD_CTX *md = NULL;
	sqlite3 *db = NULL;
	for (; keys.count < key_count; keys.count++) {
		keys.key[keys.count] =
		    audit_load_key(key_paths[keys.count], 1, keys.id[keys.count], err, err_size);
		if (keys.key[keys.count] == NULL)
			goto out;
	}
	md = EVP_MD_CTX_new();
	db = md ? audit_open_snapshot(db_path, err, err_size) : NULL;
	if (md == NULL)
		audit_fail(err, err_size, AUDIT_ERROR, "out of memory");
	else if (db != NULL && (audit_verify_rows(db, md, rep) != 0 ||
				audit_verify_checkpoints(db, &keys, rep) != 0))
		audit_fail(err, err_size, AUDIT_ERROR, "cannot read %s: %s", db_path,
			   sqlite3_errmsg(db));
	else if (db != NULL)
		status = rep->first_bad_seq == 0 ? AUDIT_OK : AUDIT_CORRUPT;
out:
	sqlite3_close_v2(db); /* the read transaction ends with the connection */
	EVP_MD_CTX_free(md);
	for (size_t i = 0; i < keys.count; i++)
		EVP_PKEY_free(keys.key[i]);
	return status;
}

/* One row of st (AUDIT_ROW_COLUMNS) as a JSON object. */
static json_t *audit_row_json(sqlite3_stmt *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "seq", json_integer(sqlite3_column_int64(st, COL_SEQ)));
	for (int i = 0; i <= AF_COUNT + 1; i++) {
		const char *name = i < AF_COUNT	   ? audit_field_names[i]
				   : i == AF_COUNT ? "prev_hash"
						   : "hash";
		size_t len;
		const char *v = audit_column(st, 1 + i, &len);
		json_t *j = NULL;
		if (v == NULL)
			j = json_null();
		else if (i == AF_TERMINAL)
			j = json_loadb(v, len, 0, NULL); /* the stored canonical text, parsed */
		if (j == NULL)
			j = json_stringn(v, len);
		json_object_set_new(o, name, j ? j : json_null());
	}
	return o;
}

int audit_export(const char *db_path, FILE *out, uint64_t *rows, char *err, size_t err_size)
{
	if (rows != NULL)
		*rows = 0;
	sqlite3 *db = audit_open_snapshot(db_path, err, err_size);
	if (db == NULL)
		return AUDIT_ERROR;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT " AUDIT_ROW_COLUMNS " FROM audit_rows ORDER BY seq",
				    -1, &st, NULL);
	int status = AUDIT_OK;
	uint64_t count = 0;
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		json_t *o = audit_row_json(st);
		char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		json_decref(o);
		if (line == NULL || fputs(line, out) == EOF || fputc('\n', out) == EOF) {
			free(line);
			status = audit_fail(err, err_size, AUDIT_ERROR,
					    "cannot write the export: %s", strerror(errno));
			break;
		}
		free(line);
		count++;
	}
	if (status == AUDIT_OK && rc != SQLITE_DONE)
		status = audit_fail(err, err_size, AUDIT_ERROR, "cannot read %s: %s", db_path,
				    sqlite3_errmsg(db));
	if (status == AUDIT_OK && fflush(out) != 0)
		status = audit_fail(err, err_size, AUDIT_ERROR, "cannot write the export: %s",
				    strerror(errno));
	sqlite3_finalize(st);
	sqlite3_close_v2(db);
	if (rows != NULL)
		*rows = count;
	return status;
}

int audit_rows_json(const char *db_path, int64_t after_seq, unsigned limit, json_t **out, char *err,
		    size_t err_size)
{
	*out = NULL;
	sqlite3 *db = audit_open_snapshot(db_path, err, err_size);
	if (db == NULL)
		return AUDIT_ERROR;
	sqlite3_stmt *st = NULL;
	json_t *rows = json_array();
	int rc = sqlite3_prepare_v2(
	    db, "SELECT " AUDIT_ROW_COLUMNS " FROM audit_rows WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	    -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, after_seq);
		sqlite3_bind_int64(st, 2, limit);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		json_array_append_new(rows, audit_row_json(st));
	}
	int status = AUDIT_OK;
	if (rc != SQLITE_DONE || rows == NULL) {
		status = audit_fail(err, err_size, AUDIT_ERROR, "cannot read %s: %s", db_path,
				    sqlite3_errmsg(db));
		json_decref(rows);
		rows = NULL;
	}
	sqlite3_finalize(st);
	sqlite3_close_v2(db);
	*out = rows;
	return status;
}

int audit_subject_digest(const unsigned char *key, size_t keylen, const char *text,
			 char out[AUDIT_HASH_LEN + 1])
{
	unsigned char md[32];
	unsigned int len = 0;
	out[0] = '\0';
	if (key == NULL || keylen == 0 || keylen > INT32_MAX || text == NULL)
		return AUDIT_ERROR;
	if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)text, strlen(text), md,
		 &len) == NULL ||
	    len != sizeof md) {
		ERR_clear_error();
		return AUDIT_ERROR;
	}
	ossl_hex(md, sizeof md, out);
	return AUDIT_OK;
}
