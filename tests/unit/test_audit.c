/*
 * test_audit.c: the hash-chained audit store and the idempotency store (core/audit.c).
 *
 * Each test makes its own database in a fresh temporary directory ($TMPDIR or /tmp) with two
 * Ed25519 keys generated through OpenSSL (checkpoint key A, stranger key B); tampering is done
 * with plain SQLite on the closed database, as an attacker with the file would.  Callbacks are
 * collected on the loop thread; uv_run() returns once no callback is owed.  The killed-writer
 * test forks a child that writes until it is sent SIGKILL.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* usleep */
#endif
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>
#include <uv.h>

#include "audit.h"
#include "tmp_dir.h"

static char dir[256];
static char key_a[300], pub_a[300], key_b[300], pub_b[300];
static int db_counter;
static char subject[AUDIT_HASH_LEN + 1];

static const char *const terminal =
    "{\"store\":\"012345\",\"operator\":\"chain-a\",\"kiosk\":\"01\"}";
static const char *const doc_hash =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
static const char *const body_hash =
    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/* --- fixture ------------------------------------------------------------------------------- */

static int write_key(EVP_PKEY *key, const char *path, int private)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int ok = private ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
			 : PEM_write_PUBKEY(f, key);
	fclose(f);
	return ok == 1 ? 0 : -1;
}

static int group_setup(void **state)
{
	(void)state;
	if (tmp_dir_make("mdg-audit", dir, sizeof dir) != 0)
		return -1;
	snprintf(key_a, sizeof key_a, "%s/checkpoint.key", dir);
	snprintf(pub_a, sizeof pub_a, "%s/checkpoint.pub", dir);
	snprintf(key_b, sizeof key_b, "%s/stranger.key", dir);
	snprintf(pub_b, sizeof pub_b, "%s/stranger.pub", dir);
	EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *b = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	int rc = a && b && write_key(a, key_a, 1) == 0 && write_key(a, pub_a, 0) == 0 &&
			 write_key(b, key_b, 1) == 0 && write_key(b, pub_b, 0) == 0
		     ? 0
		     : -1;
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	const unsigned char local_key[] = "a local subject key, 32 bytes!!";
	if (audit_subject_digest(local_key, sizeof local_key - 1, "01AB23CD", subject) != AUDIT_OK)
		return -1;
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	return tmp_dir_remove(dir);
}

/* A fresh database path for one test. */
static void new_db(char *path, size_t size)
{
	snprintf(path, size, "%s/audit-%d.sqlite", dir, ++db_counter);
}

struct result {
	int calls;
	int status;
	int64_t seq;
	char hash[AUDIT_HASH_LEN + 1];
};

static void on_done(void *arg, int status, int64_t seq, const char *hash)
{
	struct result *r = arg;
	r->calls++;
	r->status = status;
	r->seq = seq;
	snprintf(r->hash, sizeof r->hash, "%s", hash ? hash : "");
}

static struct audit *open_store(uv_loop_t *loop, const char *path, const char *key,
				uint32_t every_rows)
{
	struct audit_options opt = {
	    .db_path = path, .checkpoint_key_path = key, .checkpoint_every_rows = every_rows};
	struct audit *a = NULL;
	char err[512];
	int rc = audit_open(loop, &opt, &a, err, sizeof err);
	if (rc != AUDIT_OK)
		fail_msg("audit_open: %s", err);
	return a;
}

/* Row i of a test: ISSUED with a document, or every seventh a refusal without one. */
static void fill_row(struct audit_row *row, char *request_id, size_t size, int i)
{
	snprintf(request_id, size, "4b0e7a52-8f5e-4d1c-9a51-%012d", i);
	memset(row, 0, sizeof *row);
	row->request_id = request_id;
	row->municipality = "141003";
	row->certificate = "residence";
	row->plugin = "fujitsu-like";
	row->plugin_version = "1.0.0";
	row->terminal = terminal;
	row->subject_digest = subject;
	if (i % 7 == 6) {
		row->outcome = "RECORD_NOT_ISSUABLE";
	} else {
		row->outcome = "ISSUED";
		row->issuance_id = "141003-20261127-000123";
		row->document_sha256 = doc_hash;
	}
}

static int submit(struct audit *a, int i, const struct audit_stored_response *resp,
		  struct result *r)
{
	struct audit_row row;
	char id[64], err[256];
	fill_row(&row, id, sizeof id, i);
	return audit_submit(a, &row, resp, on_done, r, err, sizeof err);
}

/* Writes rows 0..n-1, waits for them, checks each was committed in order after first_seq. */
static void write_rows(uv_loop_t *loop, struct audit *a, int n, int64_t first_seq)
{
	struct result *r = calloc((size_t)n, sizeof *r);
	for (int i = 0; i < n; i++)
		assert_int_equal(submit(a, i, NULL, &r[i]), AUDIT_OK);
	uv_run(loop, UV_RUN_DEFAULT);
	for (int i = 0; i < n; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].status, AUDIT_OK);
		assert_int_equal(r[i].seq, first_seq + i);
	}
	free(r);
}

static void close_store(uv_loop_t *loop, struct audit *a)
{
	audit_close(a);
	uv_run(loop, UV_RUN_DEFAULT); /* the wakeup handle's close callback */
}

/* A database of n rows with checkpoints every `every` rows, closed. */
static void make_db(char *path, size_t size, int n, uint32_t every)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	new_db(path, size);
	struct audit *a = open_store(&loop, path, key_a, every);
	write_rows(&loop, a, n, 1);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
}

__attribute__((format(printf, 2, 3))) static void sql(const char *path, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, text, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", text, msg);
	assert_true(sqlite3_changes(db) > 0 || strncmp(text, "SELECT", 6) == 0);
	sqlite3_close(db);
}

static int64_t sql_int(const char *path, const char *query)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, query, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static int verify(const char *path, const char *pub, struct audit_verify_report *rep)
{
	char err[512] = "";
	int rc = audit_verify(path, &pub, 1, rep, err, sizeof err);
	if (rc == AUDIT_ERROR)
		fail_msg("audit_verify: %s", err);
	return rc;
}

/* --- chain and verify --------------------------------------------------------------------- */

static void a_chain_of_many_rows_verifies_with_its_checkpoints(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 1000, 100);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 1000);
	assert_int_equal(rep.last_seq, 1000);
	assert_int_equal(rep.first_bad_seq, 0);
	assert_string_equal(rep.problem, "");
	/* At least one per 100 rows while writing, and the head covered at close. */
	assert_true(rep.checkpoints_checked >= 10);
	assert_int_equal(sql_int(path, "SELECT max(seq) FROM audit_checkpoints"), 1000);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM audit_rows WHERE subject_digest = '"
				       "01AB23CD'"),
			 0);
	/* The private key works as the verification key too. */
	assert_int_equal(verify(path, key_a, &rep), AUDIT_OK);
}

static void a_changed_column_is_found_by_verify(void **state)
{
	(void)state;
	static const struct {
		const char *column;
		const char *value;
	} changes[] = {
	    {"time", "'2026-11-27T09:00:00.000Z'"},
	    {"request_id", "'another-request'"},
	    {"issuance_id", "NULL"},
	    {"municipality", "'131016'"},
	    {"certificate", "'seal'"},
	    {"plugin", "'example'"},
	    {"plugin_version", "'1.0.1'"},
	    {"terminal", "'{\"kiosk\":\"02\",\"operator\":\"chain-a\",\"store\":\"012345\"}'"},
	    {"subject_digest", "'" AUDIT_GENESIS_HASH "'"},
	    {"outcome", "'BACKEND_ERROR'"},
	    {"document_sha256", "NULL"},
	    {"prev_hash", "'" AUDIT_GENESIS_HASH "'"},
	    {"hash", "'" AUDIT_GENESIS_HASH "'"},
	};
	struct audit_verify_report rep;
	for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
		char path[300];
		make_db(path, sizeof path, 20, 1000);
		sql(path, "UPDATE audit_rows SET %s = %s WHERE seq = 13", changes[i].column,
		    changes[i].value);
		assert_int_equal(verify(path, pub_a, &rep), AUDIT_CORRUPT);
		if (rep.first_bad_seq != 13)
			fail_msg("changing %s: first bad seq %lld (%s)", changes[i].column,
				 (long long)rep.first_bad_seq, rep.problem);
		assert_non_null(strstr(rep.problem, "row 13"));
		assert_int_equal(rep.rows_checked, 20);
	}
}

static void a_deleted_row_is_found_by_verify(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 30, 1000);
	sql(path, "DELETE FROM audit_rows WHERE seq = 12");
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 12);
	assert_non_null(strstr(rep.problem, "missing"));
	assert_int_equal(rep.rows_checked, 29);
}

static void deleting_rows_a_checkpoint_covers_is_found(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 30, 10);
	/* Cutting off the tail keeps the rest of the chain consistent: only checkpoints tell. */
	sql(path, "DELETE FROM audit_rows WHERE seq > 25");
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 30);
	assert_non_null(strstr(rep.problem, "missing"));
}

static void a_forged_checkpoint_signature_is_found(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 50, 10);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	/* Another key's checkpoints do not verify with this one. */
	assert_int_equal(verify(path, pub_b, &rep), AUDIT_CORRUPT);
	assert_non_null(strstr(rep.problem, "not among the given keys"));
	/* One changed character of one signature. */
	sql(path,
	    "UPDATE audit_checkpoints SET signature = "
	    "CASE substr(signature, 5, 1) WHEN 'A' THEN substr(signature, 1, 4) || 'B' || "
	    "substr(signature, 6) ELSE substr(signature, 1, 4) || 'A' || substr(signature, 6) "
	    "END WHERE seq = 20");
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 20);
	assert_non_null(strstr(rep.problem, "signature does not verify"));
	/* A checkpoint moved to another row's hash. */
	char other[300];
	make_db(other, sizeof other, 50, 10);
	sql(other,
	    "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_rows WHERE seq = 29)"
	    " WHERE seq = 30");
	assert_int_equal(verify(other, pub_a, &rep), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 30);
	assert_non_null(strstr(rep.problem, "not the row's hash"));
}

static void a_database_that_lived_through_a_key_rotation_verifies_with_both_keys(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 10);
	write_rows(&loop, a, 20, 1);
	close_store(&loop, a);
	a = open_store(&loop, path, key_b, 10); /* the rotation: a new document key */
	write_rows(&loop, a, 20, 21);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);

	struct audit_verify_report rep;
	char err[512] = "";
	const char *both[] = {pub_b, pub_a};
	assert_int_equal(audit_verify(path, both, 2, &rep, err, sizeof err), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 40);
	assert_true(rep.checkpoints_checked >= 4);
	/* The new key alone stops at the first checkpoint of the old one, and says what to do. */
	assert_int_equal(verify(path, pub_b, &rep), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 10);
	assert_non_null(strstr(rep.problem, "give that key's public key too"));
	/* The old key alone does not vouch for the new key's checkpoints. */
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_CORRUPT);
	assert_true(rep.first_bad_seq > 20);
	/* A forged signature is still found with both keys given. */
	sql(path,
	    "UPDATE audit_checkpoints SET signature = "
	    "CASE substr(signature, 5, 1) WHEN 'A' THEN substr(signature, 1, 4) || 'B' || "
	    "substr(signature, 6) ELSE substr(signature, 1, 4) || 'A' || substr(signature, 6) "
	    "END WHERE seq = 30");
	assert_int_equal(audit_verify(path, both, 2, &rep, err, sizeof err), AUDIT_CORRUPT);
	assert_int_equal(rep.first_bad_seq, 30);
	assert_non_null(strstr(rep.problem, "signature does not verify"));
}

/* --- the writer ----------------------------------------------------------------------------- */

struct request {
	uv_timer_t timer;
	struct audit *audit;
	int index;
	struct result result;
};

static void request_arrives(uv_timer_t *t)
{
	struct request *r = t->data;
	assert_int_equal(submit(r->audit, r->index, NULL, &r->result), AUDIT_OK);
	uv_close((uv_handle_t *)t, NULL);
}

static void concurrent_requests_are_grouped_and_every_callback_runs_once_with_ok(void **state)
{
	(void)state;
	enum { N = 600 };
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 0);
	struct request *req = calloc(N, sizeof *req);
	srand(7);
	for (int i = 0; i < N; i++) {
		req[i].audit = a;
		req[i].index = i;
		uv_timer_init(&loop, &req[i].timer);
		req[i].timer.data = &req[i];
		/* Arrivals spread over 30 ms, several in the same millisecond. */
		uv_timer_start(&req[i].timer, request_arrives, (uint64_t)(rand() % 30), 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	unsigned char *seen = calloc(N + 1, 1);
	for (int i = 0; i < N; i++) {
		assert_int_equal(req[i].result.calls, 1);
		assert_int_equal(req[i].result.status, AUDIT_OK);
		assert_in_range(req[i].result.seq, 1, N);
		assert_int_equal(seen[req[i].result.seq]++, 0);
		assert_int_equal(strlen(req[i].result.hash), AUDIT_HASH_LEN);
	}
	struct audit_metrics m;
	audit_metrics_snapshot(a, &m);
	assert_int_equal(m.rows_committed, N);
	assert_true(m.batches < N);
	assert_true(m.batches >= 1);
	assert_int_equal(m.head_seq, N);
	assert_int_equal(m.queue_depth, 0);
	print_message("# %d rows in %llu batches (%.1f rows per commit, %.0f us per commit)\n", N,
		      (unsigned long long)m.batches, m.avg_batch_rows, m.avg_commit_us);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, N);
	free(seen);
	free(req);
}

static void the_chain_continues_across_close_and_reopen(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 0);
	write_rows(&loop, a, 10, 1);
	close_store(&loop, a);
	a = open_store(&loop, path, key_a, 0);
	struct audit_metrics m;
	audit_metrics_snapshot(a, &m);
	assert_int_equal(m.head_seq, 10);
	write_rows(&loop, a, 10, 11);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 20);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM audit_rows a JOIN audit_rows b ON "
				       "b.seq = a.seq + 1 WHERE b.prev_hash = a.hash"),
			 19);
}

static void close_commits_everything_submitted_and_runs_every_callback(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 0);
	struct result r[200];
	memset(r, 0, sizeof r);
	for (int i = 0; i < 200; i++)
		assert_int_equal(submit(a, i, NULL, &r[i]), AUDIT_OK);
	audit_close(a); /* without running the loop first */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].status, AUDIT_OK);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 200);
	/* The last checkpoint, written at close, covers the head. */
	assert_int_equal(sql_int(path, "SELECT max(seq) FROM audit_checkpoints"), 200);
}

static void a_full_queue_refuses_at_once(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit_options opt = {.db_path = path, .queue_limit = 4};
	struct audit *a;
	char err[256];
	assert_int_equal(audit_open(&loop, &opt, &a, err, sizeof err), AUDIT_OK);
	audit_test_hook(a, AUDIT_TEST_HOLD_WRITER, 1);
	struct result r[5];
	memset(r, 0, sizeof r);
	for (int i = 0; i < 4; i++)
		assert_int_equal(submit(a, i, NULL, &r[i]), AUDIT_OK);
	assert_int_equal(submit(a, 4, NULL, &r[4]), AUDIT_QUEUE_FULL);
	audit_test_hook(a, AUDIT_TEST_HOLD_WRITER, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r[i].status, AUDIT_OK);
	assert_int_equal(r[4].calls, 0);
	struct audit_metrics m;
	audit_metrics_snapshot(a, &m);
	assert_int_equal(m.rows_refused, 1);
	assert_int_equal(m.rows_committed, 4);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static unsigned char *big_response(size_t n, int seed)
{
	unsigned char *b = malloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31u + (unsigned)seed);
	return b;
}

static void a_failed_commit_fails_every_row_of_its_batch_and_later_batches_succeed(void **state)
{
	(void)state;
	enum { BIG = 200 * 1024 };
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 0);
	write_rows(&loop, a, 3, 1);

	/* The disk is full: nothing that needs a new page can commit.  The six rows go in one
	 * batch (the writer is held while they are queued); the small ones alone would fit. */
	audit_test_hook(a, AUDIT_TEST_DISK_FULL, 1);
	audit_test_hook(a, AUDIT_TEST_HOLD_WRITER, 1);
	unsigned char *bytes = big_response(BIG, 1);
	struct result r[6];
	memset(r, 0, sizeof r);
	char ids[6][64];
	for (int i = 0; i < 6; i++) {
		struct audit_row row;
		fill_row(&row, ids[i], sizeof ids[i], 100 + i);
		struct audit_stored_response resp = {
		    .request_id = ids[i],
		    .body_sha256 = body_hash,
		    .card_serial_digest = subject,
		    .response = bytes,
		    .response_len = BIG,
		    .expires_at = (int64_t)time(NULL) + 3600,
		};
		assert_int_equal(
		    audit_submit(a, &row, i % 2 ? &resp : NULL, on_done, &r[i], NULL, 0), AUDIT_OK);
	}
	audit_test_hook(a, AUDIT_TEST_HOLD_WRITER, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].status, AUDIT_UNAVAILABLE);
		assert_int_equal(r[i].seq, 0);
	}
	struct audit_metrics m;
	audit_metrics_snapshot(a, &m);
	assert_int_equal(m.rows_failed, 6);
	assert_int_equal(m.batches_failed, 1);
	assert_int_equal(m.head_seq, 3);
	struct audit_response found;
	assert_int_equal(audit_lookup_response(a, ids[1], &found, NULL, 0), AUDIT_NOT_FOUND);

	/* The disk recovers: the chain goes on from the last committed row. */
	audit_test_hook(a, AUDIT_TEST_DISK_FULL, 0);
	struct result after;
	memset(&after, 0, sizeof after);
	struct audit_row row;
	char id[64];
	fill_row(&row, id, sizeof id, 200);
	struct audit_stored_response resp = {.request_id = id,
					     .body_sha256 = body_hash,
					     .card_serial_digest = subject,
					     .response = bytes,
					     .response_len = BIG,
					     .expires_at = (int64_t)time(NULL) + 3600};
	assert_int_equal(audit_submit(a, &row, &resp, on_done, &after, NULL, 0), AUDIT_OK);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(after.status, AUDIT_OK);
	assert_int_equal(after.seq, 4);
	assert_int_equal(audit_lookup_response(a, id, &found, NULL, 0), AUDIT_OK);
	audit_response_free(&found);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(bytes);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 4);
}

/* --- stored responses ------------------------------------------------------------------------ */

struct lookup_job {
	struct audit *audit;
	const char *request_id;
	int status;
	struct audit_response resp;
};

static void *lookup_thread(void *arg)
{
	struct lookup_job *j = arg;
	char err[256];
	j->status = audit_lookup_response(j->audit, j->request_id, &j->resp, err, sizeof err);
	return NULL;
}

static void store(struct audit *a, uv_loop_t *loop, const char *id, const unsigned char *bytes,
		  size_t n, int64_t expires_at, int want)
{
	struct audit_row row;
	char rid[64];
	fill_row(&row, rid, sizeof rid, 1);
	row.request_id = id;
	struct audit_stored_response resp = {.request_id = id,
					     .body_sha256 = body_hash,
					     .card_serial_digest = subject,
					     .response = bytes,
					     .response_len = n,
					     .expires_at = expires_at};
	struct result r;
	memset(&r, 0, sizeof r);
	char err[256];
	assert_int_equal(audit_submit(a, &row, &resp, on_done, &r, err, sizeof err), AUDIT_OK);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, want);
}

static void a_stored_response_is_returned_for_its_request_id_and_not_after_expiry(void **state)
{
	(void)state;
	enum { SIZE = 100 * 1024 };
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, NULL, 0);
	unsigned char *bytes = big_response(SIZE, 9);
	int64_t now = (int64_t)time(NULL);
	store(a, &loop, "live-request", bytes, SIZE, now + 3600, AUDIT_OK);
	store(a, &loop, "expired-request", bytes, 10, now - 1, AUDIT_OK);

	struct lookup_job jobs[3] = {
	    {a, "live-request", 0, {0}}, {a, "expired-request", 0, {0}}, {a, "never-seen", 0, {0}}};
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, lookup_thread, &jobs[i]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(jobs[0].status, AUDIT_OK);
	assert_int_equal(jobs[0].resp.response_len, SIZE);
	assert_memory_equal(jobs[0].resp.response, bytes, SIZE);
	assert_string_equal(jobs[0].resp.body_sha256, body_hash);
	assert_string_equal(jobs[0].resp.card_serial_digest, subject);
	assert_int_equal(jobs[0].resp.expires_at, now + 3600);
	assert_int_equal(jobs[0].resp.seq, 1);
	assert_int_equal(jobs[1].status, AUDIT_NOT_FOUND);
	assert_null(jobs[1].resp.response);
	assert_int_equal(jobs[2].status, AUDIT_NOT_FOUND);
	audit_response_free(&jobs[0].resp);

	/* The row and its response are one: the row is in the chain. */
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM stored_responses s JOIN audit_rows r "
				       "ON r.seq = s.seq AND r.request_id = s.request_id"),
			 2);
	free(bytes);
}

static void a_second_response_for_the_same_request_id_is_a_duplicate(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, NULL, 0);
	const unsigned char first[] = "first", second[] = "second";
	int64_t later = (int64_t)time(NULL) + 3600;
	store(a, &loop, "same-id", first, sizeof first, later, AUDIT_OK);
	store(a, &loop, "same-id", second, sizeof second, later, AUDIT_DUPLICATE);
	struct audit_response resp;
	assert_int_equal(audit_lookup_response(a, "same-id", &resp, NULL, 0), AUDIT_OK);
	assert_memory_equal(resp.response, first, sizeof first);
	audit_response_free(&resp);
	struct audit_metrics m;
	audit_metrics_snapshot(a, &m);
	assert_int_equal(m.rows_duplicate, 1);
	assert_int_equal(m.head_seq, 1);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void expired_responses_are_purged_by_the_writer(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit_options opt = {.db_path = path, .purge_interval_ms = 50};
	struct audit *a;
	char err[256];
	assert_int_equal(audit_open(&loop, &opt, &a, err, sizeof err), AUDIT_OK);
	const unsigned char body[] = "{}";
	int64_t now = (int64_t)time(NULL);
	store(a, &loop, "keep", body, sizeof body, now + 3600, AUDIT_OK);
	store(a, &loop, "drop", body, sizeof body, now - 1, AUDIT_OK);
	struct audit_metrics m;
	for (int i = 0; i < 100; i++) {
		audit_metrics_snapshot(a, &m);
		if (m.responses_purged > 0)
			break;
		usleep(20000);
	}
	assert_int_equal(m.responses_purged, 1);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM stored_responses"), 1);
	/* The audit rows stay. */
	assert_int_equal(sql_int(path, "SELECT count(*) FROM audit_rows"), 2);
}

/* --- the response spool ---------------------------------------------------------------------- */

/* The segment files (*.spool) in the spool directory of the database at path. */
static int spool_files(const char *path)
{
	char spool[320];
	snprintf(spool, sizeof spool, "%s.responses", path);
	DIR *d = opendir(spool);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strlen(e->d_name) > 6 &&
		     strcmp(e->d_name + strlen(e->d_name) - 6, ".spool") == 0;
	closedir(d);
	return n;
}

static void lookup_is(struct audit *a, const char *id, int want, const unsigned char *bytes,
		      size_t n)
{
	struct audit_response found;
	char err[256] = "";
	assert_int_equal(audit_lookup_response(a, id, &found, err, sizeof err), want);
	if (want == AUDIT_OK) {
		assert_int_equal(found.response_len, n);
		assert_memory_equal(found.response, bytes, n);
	} else {
		assert_null(found.response);
	}
	audit_response_free(&found);
}

static void a_stored_response_lives_in_the_spool_and_survives_a_restart(void **state)
{
	(void)state;
	enum { SIZE = 100 * 1024 };
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, NULL, 0);
	unsigned char *bytes = big_response(SIZE, 3);
	store(a, &loop, "spooled", bytes, SIZE, (int64_t)time(NULL) + 3600, AUDIT_OK);
	close_store(&loop, a);

	/* The database says where the bytes are; it does not hold them. */
	assert_int_equal(sql_int(path, "SELECT length(response) FROM stored_responses"), 0);
	assert_int_equal(sql_int(path, "SELECT length FROM stored_responses"), SIZE);
	int64_t segment = sql_int(path, "SELECT segment FROM stored_responses");
	assert_true(segment > 0);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM response_segments"), 1);
	char file[400];
	snprintf(file, sizeof file, "%s.responses/%010lld.spool", path, (long long)segment);
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, SIZE);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* A restart reads them back, byte for byte. */
	a = open_store(&loop, path, NULL, 0);
	lookup_is(a, "spooled", AUDIT_OK, bytes, SIZE);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(bytes);
}

static void a_damaged_or_missing_segment_is_an_error_never_other_bytes(void **state)
{
	(void)state;
	enum { SIZE = 4096 };
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, NULL, 0);
	unsigned char *bytes = big_response(SIZE, 5);
	store(a, &loop, "to-damage", bytes, SIZE, (int64_t)time(NULL) + 3600, AUDIT_OK);
	close_store(&loop, a);
	char file[400];
	snprintf(file, sizeof file, "%s.responses/%010lld.spool", path,
		 (long long)sql_int(path, "SELECT segment FROM stored_responses"));

	/* One byte changed: the checksum catches it. */
	FILE *f = fopen(file, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 100, SEEK_SET), 0);
	assert_int_equal(fputc(bytes[100] ^ 0x20, f), bytes[100] ^ 0x20);
	fclose(f);
	a = open_store(&loop, path, NULL, 0);
	lookup_is(a, "to-damage", AUDIT_ERROR, NULL, 0);
	close_store(&loop, a);

	/* The segment gone while its response is live: an error too, not "never seen". */
	assert_int_equal(unlink(file), 0);
	a = open_store(&loop, path, NULL, 0);
	lookup_is(a, "to-damage", AUDIT_ERROR, NULL, 0);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(bytes);
}

static void a_segment_is_removed_once_all_its_responses_expired(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit_options opt = {.db_path = path, .purge_interval_ms = 50};
	struct audit *a;
	char err[256];
	assert_int_equal(audit_open(&loop, &opt, &a, err, sizeof err), AUDIT_OK);
	const unsigned char body[] = "{\"certificate\":\"...\"}";
	store(a, &loop, "old-1", body, sizeof body, (int64_t)time(NULL) - 2, AUDIT_OK);
	store(a, &loop, "old-2", body, sizeof body, (int64_t)time(NULL) - 1, AUDIT_OK);
	assert_int_equal(spool_files(path), 1);
	struct audit_metrics m;
	for (int i = 0; i < 100; i++) {
		audit_metrics_snapshot(a, &m);
		if (m.responses_purged >= 2 && spool_files(path) == 0)
			break;
		usleep(20000);
	}
	assert_int_equal(m.responses_purged, 2);
	assert_int_equal(spool_files(path), 0);

	/* The writer goes on in a new segment. */
	const unsigned char next[] = "next";
	store(a, &loop, "new", next, sizeof next, (int64_t)time(NULL) + 3600, AUDIT_OK);
	lookup_is(a, "new", AUDIT_OK, next, sizeof next);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(spool_files(path), 1);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM response_segments"), 1);
}

static void an_orphan_segment_is_removed_on_open_and_other_files_are_kept(void **state)
{
	(void)state;
	char path[300], spool[320], file[400];
	new_db(path, sizeof path);
	snprintf(spool, sizeof spool, "%s.responses", path);
	assert_int_equal(mkdir(spool, 0700), 0);
	/* Bytes of a batch that never committed (a crash), and an operator's note. */
	snprintf(file, sizeof file, "%s/0000000099.spool", spool);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs("uncommitted bytes", f);
	fclose(f);
	char note[400];
	snprintf(note, sizeof note, "%s/README", spool);
	f = fopen(note, "w");
	assert_non_null(f);
	fclose(f);

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct audit *a = open_store(&loop, path, NULL, 0);
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(access(note, F_OK), 0);
	/* New segments are numbered past every name seen. */
	const unsigned char body[] = "answer";
	store(a, &loop, "after-orphan", body, sizeof body, (int64_t)time(NULL) + 3600, AUDIT_OK);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(sql_int(path, "SELECT segment FROM stored_responses"), 100);
}

static void a_schema_1_database_is_upgraded_and_its_inline_responses_replay(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, key_a, 0);
	const unsigned char body[] = "inline";
	store(a, &loop, "from-v1", body, sizeof body, (int64_t)time(NULL) + 3600, AUDIT_OK);
	close_store(&loop, a);
	/* Make it what schema 1 wrote: the bytes in the row, no spool columns, version 1. */
	sql(path, "UPDATE stored_responses SET response = X'696E6C696E6500'");
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "ALTER TABLE stored_responses DROP COLUMN segment;"
				      "ALTER TABLE stored_responses DROP COLUMN offset;"
				      "ALTER TABLE stored_responses DROP COLUMN length;"
				      "ALTER TABLE stored_responses DROP COLUMN response_crc32;"
				      "DROP TABLE response_segments; PRAGMA user_version=1;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(sql_int(path, "PRAGMA user_version"), 1);

	a = open_store(&loop, path, key_a, 0);
	assert_int_equal(sql_int(path, "PRAGMA user_version"), 2);
	lookup_is(a, "from-v1", AUDIT_OK, body, sizeof body);
	const unsigned char later[] = "spooled";
	store(a, &loop, "from-v2", later, sizeof later, (int64_t)time(NULL) + 3600, AUDIT_OK);
	lookup_is(a, "from-v2", AUDIT_OK, later, sizeof later);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.rows_checked, 2);
}

/* --- crash, export, checks ------------------------------------------------------------------- */

struct child {
	struct audit *audit;
	int fd;
	int next;
};

static void child_done(void *arg, int status, int64_t seq, const char *hash);

enum { CHILD_RESPONSE = 24 * 1024 };

/* Row i of the killed writer, with a stored response of its own bytes (seed i). */
static void child_submit(struct child *c)
{
	struct audit_row row;
	char id[64];
	int i = c->next++;
	fill_row(&row, id, sizeof id, i);
	unsigned char *bytes = big_response(CHILD_RESPONSE, i);
	struct audit_stored_response resp = {.request_id = id,
					     .body_sha256 = body_hash,
					     .card_serial_digest = subject,
					     .response = bytes,
					     .response_len = CHILD_RESPONSE,
					     .expires_at = (int64_t)time(NULL) + 3600};
	int rc = audit_submit(c->audit, &row, &resp, child_done, c, NULL, 0);
	free(bytes);
	if (rc != AUDIT_OK)
		_exit(3);
}

static void child_done(void *arg, int status, int64_t seq, const char *hash)
{
	(void)hash;
	struct child *c = arg;
	if (status != AUDIT_OK || write(c->fd, &seq, sizeof seq) != (ssize_t)sizeof seq)
		_exit(4);
	child_submit(c);
}

static void a_killed_writer_loses_no_row_it_reported_committed(void **state)
{
	(void)state;
	char path[300];
	new_db(path, sizeof path);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		uv_loop_t loop;
		uv_loop_init(&loop);
		struct audit_options opt = {
		    .db_path = path, .checkpoint_key_path = key_a, .checkpoint_every_rows = 50};
		struct child c = {.fd = fds[1]};
		if (audit_open(&loop, &opt, &c.audit, NULL, 0) != AUDIT_OK)
			_exit(2);
		for (int i = 0; i < 64; i++)
			child_submit(&c);
		uv_run(&loop, UV_RUN_DEFAULT); /* until killed */
		_exit(5);
	}
	close(fds[1]);
	int64_t seq, max_told = 0;
	int told = 0;
	while (told < 400 && read(fds[0], &seq, sizeof seq) == (ssize_t)sizeof seq) {
		told++;
		max_told = seq > max_told ? seq : max_told;
	}
	kill(pid, SIGKILL);
	int wstatus;
	waitpid(pid, &wstatus, 0);
	assert_true(WIFSIGNALED(wstatus));
	while (read(fds[0], &seq, sizeof seq) == (ssize_t)sizeof seq) {
		told++;
		max_told = seq > max_told ? seq : max_told;
	}
	close(fds[0]);
	assert_true(told >= 400);

	/* Every row a caller was told about is there, and the chain is whole. */
	struct audit_verify_report rep;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_true(rep.last_seq >= max_told);
	print_message("# killed after %d OK callbacks; %lld rows durable\n", told,
		      (long long)rep.last_seq);

	/* Each of them has its stored response, byte for byte: the row k-th committed is row
	 * k - 1 of the child (its callbacks run in submit order), and a committed row never
	 * refers to spool bytes that were not written. */
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct audit *a = open_store(&loop, path, key_a, 0);
	for (int64_t k = 1; k <= max_told; k++) {
		char id[64];
		struct audit_row row;
		fill_row(&row, id, sizeof id, (int)(k - 1));
		struct audit_response found;
		char err[256] = "";
		if (audit_lookup_response(a, id, &found, err, sizeof err) != AUDIT_OK)
			fail_msg("row %lld: no stored response: %s", (long long)k, err);
		unsigned char *want = big_response(CHILD_RESPONSE, (int)(k - 1));
		assert_int_equal(found.response_len, CHILD_RESPONSE);
		assert_memory_equal(found.response, want, CHILD_RESPONSE);
		free(want);
		audit_response_free(&found);
	}

	/* And it goes on from there. */
	write_rows(&loop, a, 1, rep.last_seq + 1);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	int64_t before = rep.last_seq;
	assert_int_equal(verify(path, pub_a, &rep), AUDIT_OK);
	assert_int_equal(rep.last_seq, before + 1);
}

static void export_writes_one_json_line_per_row(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 25, 1000);
	FILE *out = tmpfile();
	assert_non_null(out);
	uint64_t rows = 0;
	char err[256];
	if (audit_export(path, out, &rows, err, sizeof err) != AUDIT_OK)
		fail_msg("audit_export: %s", err);
	assert_int_equal(rows, 25);
	rewind(out);
	char line[8192];
	int n = 0;
	while (fgets(line, sizeof line, out) != NULL) {
		n++;
		assert_int_equal(line[strlen(line) - 1], '\n');
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);
		assert_non_null(o);
		assert_int_equal(json_integer_value(json_object_get(o, "seq")), n);
		assert_true(json_is_object(json_object_get(o, "terminal")));
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(o, "terminal"), "kiosk")),
		    "01");
		assert_string_equal(json_string_value(json_object_get(o, "subject_digest")),
				    subject);
		assert_int_equal(strlen(json_string_value(json_object_get(o, "hash"))),
				 AUDIT_HASH_LEN);
		assert_int_equal(json_object_size(o), 14);
		if (n % 7 == 0)
			assert_true(json_is_null(json_object_get(o, "document_sha256")));
		json_decref(o);
	}
	assert_int_equal(n, 25);
	fclose(out);
	assert_int_equal(audit_export("/nonexistent/audit.sqlite", stdout, NULL, err, sizeof err),
			 AUDIT_ERROR);
}

static void a_row_with_clear_personal_data_is_refused_without_echoing_it(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	char path[300];
	new_db(path, sizeof path);
	struct audit *a = open_store(&loop, path, NULL, 0);
	struct audit_row row;
	char id[64], err[256];
	struct result r = {0};
	fill_row(&row, id, sizeof id, 0);
	row.subject_digest = "01AB23CD"; /* a card serial in clear */
	assert_int_equal(audit_submit(a, &row, NULL, on_done, &r, err, sizeof err), AUDIT_INVALID);
	assert_non_null(strstr(err, "subject_digest"));
	assert_null(strstr(err, "01AB23CD"));
	fill_row(&row, id, sizeof id, 0);
	row.terminal = "[\"not\", \"an object\"]";
	assert_int_equal(audit_submit(a, &row, NULL, on_done, &r, err, sizeof err), AUDIT_INVALID);
	fill_row(&row, id, sizeof id, 0);
	row.outcome = "issued to 山田 太郎";
	assert_int_equal(audit_submit(a, &row, NULL, on_done, &r, err, sizeof err), AUDIT_INVALID);
	assert_null(strstr(err, "山田"));
	fill_row(&row, id, sizeof id, 0);
	row.time = "2026-11-27T09:00:01Z";
	assert_int_equal(audit_submit(a, &row, NULL, on_done, &r, err, sizeof err), AUDIT_INVALID);
	/* A good row with the caller's time keeps it; the terminal is stored canonical. */
	fill_row(&row, id, sizeof id, 0);
	row.time = "2026-11-27T09:00:01.123Z";
	assert_int_equal(audit_submit(a, &row, NULL, on_done, &r, err, sizeof err), AUDIT_OK);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 1);
	close_store(&loop, a);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM audit_rows WHERE time = "
				       "'2026-11-27T09:00:01.123Z' AND terminal = "
				       "'{\"kiosk\":\"01\",\"operator\":\"chain-a\",\"store\":"
				       "\"012345\"}'"),
			 1);
}

static void a_database_changed_at_its_head_is_refused_on_open(void **state)
{
	(void)state;
	char path[300];
	make_db(path, sizeof path, 5, 1000);
	sql(path, "UPDATE audit_rows SET outcome = 'BACKEND_ERROR' WHERE seq = 5");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct audit_options opt = {.db_path = path};
	struct audit *a = NULL;
	char err[512];
	assert_int_equal(audit_open(&loop, &opt, &a, err, sizeof err), AUDIT_ERROR);
	assert_null(a);
	assert_non_null(strstr(err, "does not match its hash"));
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void the_subject_digest_is_hmac_sha256(void **state)
{
	(void)state;
	char out[AUDIT_HASH_LEN + 1];
	/* RFC 4231 test case 2. */
	assert_int_equal(audit_subject_digest((const unsigned char *)"Jefe", 4,
					      "what do ya want for nothing?", out),
			 AUDIT_OK);
	assert_string_equal(out,
			    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	assert_int_equal(audit_subject_digest(NULL, 0, "x", out), AUDIT_ERROR);
	char t[AUDIT_TIME_LEN + 1];
	audit_format_time(1795741201123, t);
	assert_string_equal(t, "2026-11-27T01:00:01.123Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_chain_of_many_rows_verifies_with_its_checkpoints),
	    cmocka_unit_test(a_changed_column_is_found_by_verify),
	    cmocka_unit_test(a_deleted_row_is_found_by_verify),
	    cmocka_unit_test(deleting_rows_a_checkpoint_covers_is_found),
	    cmocka_unit_test(a_forged_checkpoint_signature_is_found),
	    cmocka_unit_test(a_database_that_lived_through_a_key_rotation_verifies_with_both_keys),
	    cmocka_unit_test(concurrent_requests_are_grouped_and_every_callback_runs_once_with_ok),
	    cmocka_unit_test(the_chain_continues_across_close_and_reopen),
	    cmocka_unit_test(close_commits_everything_submitted_and_runs_every_callback),
	    cmocka_unit_test(a_full_queue_refuses_at_once),
	    cmocka_unit_test(
		a_failed_commit_fails_every_row_of_its_batch_and_later_batches_succeed),
	    cmocka_unit_test(a_stored_response_is_returned_for_its_request_id_and_not_after_expiry),
	    cmocka_unit_test(a_second_response_for_the_same_request_id_is_a_duplicate),
	    cmocka_unit_test(expired_responses_are_purged_by_the_writer),
	    cmocka_unit_test(a_stored_response_lives_in_the_spool_and_survives_a_restart),
	    cmocka_unit_test(a_damaged_or_missing_segment_is_an_error_never_other_bytes),
	    cmocka_unit_test(a_segment_is_removed_once_all_its_responses_expired),
	    cmocka_unit_test(an_orphan_segment_is_removed_on_open_and_other_files_are_kept),
	    cmocka_unit_test(a_schema_1_database_is_upgraded_and_its_inline_responses_replay),
	    cmocka_unit_test(a_killed_writer_loses_no_row_it_reported_committed),
	    cmocka_unit_test(export_writes_one_json_line_per_row),
	    cmocka_unit_test(a_row_with_clear_personal_data_is_refused_without_echoing_it),
	    cmocka_unit_test(a_database_changed_at_its_head_is_refused_on_open),
	    cmocka_unit_test(the_subject_digest_is_hmac_sha256),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
