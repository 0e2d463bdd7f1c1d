/*
 * audit_bench.c: audit rows per second through core/audit.c's group commit
 * (tests/bench/audit.sh compiles and runs it).
 *
 * Usage: audit_bench DIR N IN_FLIGHT RESPONSE_BYTES
 * Makes DIR/audit.sqlite with an Ed25519 checkpoint key (a checkpoint every 1000 rows), then
 * submits N rows from the loop thread keeping IN_FLIGHT rows submitted and not yet answered
 * (each answer submits the next), each ISSUED row with a stored response of RESPONSE_BYTES
 * (0: none).  Prints rows/s, commits (fsyncs) and rows per commit, the writer's time per
 * commit, and p50/p99/max of the latency a caller sees (audit_submit() to its callback), then
 * the time audit_verify() takes over the result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <uv.h>

#include "audit.h"
#include "log.h"

struct bench {
	struct audit *audit;
	int total, submitted, answered, failed;
	uint64_t *started, *latency_ns;
	unsigned char *response;
	size_t response_len;
	char subject[AUDIT_HASH_LEN + 1];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void done(void *arg, int status, int64_t seq, const char *hash);

static void submit_next(struct bench *b)
{
	int i = b->submitted++;
	char id[64];
	snprintf(id, sizeof id, "4b0e7a52-8f5e-4d1c-9a51-%012d", i);
	struct audit_row row = {
	    .request_id = id,
	    .issuance_id = "141003-20261127-000123",
	    .municipality = "141003",
	    .certificate = "residence",
	    .plugin = "fujitsu-like",
	    .plugin_version = "1.0.0",
	    .terminal = "{\"operator\":\"chain-a\",\"store\":\"012345\",\"kiosk\":\"01\"}",
	    .subject_digest = b->subject,
	    .outcome = "ISSUED",
	    .document_sha256 = b->subject};
	struct audit_stored_response resp = {.request_id = id,
					     .body_sha256 = b->subject,
					     .card_serial_digest = b->subject,
					     .response = b->response,
					     .response_len = b->response_len,
					     .expires_at = (int64_t)time(NULL) + 86400};
	char err[256];
	b->started[i] = now_ns();
	int rc = audit_submit(b->audit, &row, b->response_len ? &resp : NULL, done,
			      (void *)(intptr_t)i, err, sizeof err);
	if (rc != AUDIT_OK) {
		fprintf(stderr, "audit_submit: %s\n", err);
		exit(1);
	}
}

static struct bench bench;

static void done(void *arg, int status, int64_t seq, const char *hash)
{
	(void)seq;
	(void)hash;
	int i = (int)(intptr_t)arg;
	bench.latency_ns[i] = now_ns() - bench.started[i];
	bench.answered++;
	if (status != AUDIT_OK)
		bench.failed++;
	if (bench.submitted < bench.total)
		submit_next(&bench);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: audit_bench DIR N IN_FLIGHT RESPONSE_BYTES\n");
		return 2;
	}
	log_set_level(LOG_WARN);
	const char *dir = argv[1];
	int n = atoi(argv[2]), in_flight = atoi(argv[3]);
	bench.total = n;
	bench.response_len = (size_t)atol(argv[4]);
	if (n <= 0 || in_flight <= 0)
		return 2;
	char db[512], key[512];
	snprintf(db, sizeof db, "%s/audit.sqlite", dir);
	snprintf(key, sizeof key, "%s/checkpoint.key", dir);
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fopen(key, "w");
	if (pk == NULL || f == NULL || PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) != 1)
		return 1;
	fclose(f);
	EVP_PKEY_free(pk);
	const unsigned char local_key[] = "bench local key";
	audit_subject_digest(local_key, sizeof local_key - 1, "01AB23CD", bench.subject);
	bench.started = calloc((size_t)n, sizeof *bench.started);
	bench.latency_ns = calloc((size_t)n, sizeof *bench.latency_ns);
	bench.response = malloc(bench.response_len + 1);
	memset(bench.response, 'x', bench.response_len + 1);

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct audit_options opt = {.db_path = db, .checkpoint_key_path = key};
	char err[512];
	if (audit_open(&loop, &opt, &bench.audit, err, sizeof err) != AUDIT_OK) {
		fprintf(stderr, "audit_open: %s\n", err);
		return 1;
	}
	uint64_t t0 = now_ns();
	for (int i = 0; i < in_flight && bench.submitted < n; i++)
		submit_next(&bench);
	uv_run(&loop, UV_RUN_DEFAULT);
	double secs = (double)(now_ns() - t0) / 1e9;
	struct audit_metrics m;
	audit_metrics_snapshot(bench.audit, &m);
	audit_close(bench.audit);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);

	qsort(bench.latency_ns, (size_t)n, sizeof *bench.latency_ns, cmp_u64);
	printf("rows %d (failed %d), %d in flight, stored response %zu bytes per row\n", n,
	       bench.failed, in_flight, bench.response_len);
	printf("  %.0f rows/s over %.2f s\n", n / secs, secs);
	printf("  %llu commits: %.1f rows per commit, %.0f us per commit (max %llu us), "
	       "%llu checkpoints\n",
	       (unsigned long long)m.batches, m.avg_batch_rows, m.avg_commit_us,
	       (unsigned long long)m.max_commit_us, (unsigned long long)m.checkpoints);
	printf("  latency submit -> callback: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       (double)bench.latency_ns[n / 2] / 1e6, (double)bench.latency_ns[n * 99 / 100] / 1e6,
	       (double)bench.latency_ns[n - 1] / 1e6);

	struct audit_verify_report rep;
	uint64_t v0 = now_ns();
	const char *keys[] = {key};
	int rc = audit_verify(db, keys, 1, &rep, err, sizeof err);
	double vsecs = (double)(now_ns() - v0) / 1e9;
	printf("  verify: %s, %llu rows and %llu checkpoints in %.2f s (%.0f rows/s)\n",
	       rc == AUDIT_OK	     ? "ok"
	       : rc == AUDIT_CORRUPT ? rep.problem
				     : err,
	       (unsigned long long)rep.rows_checked, (unsigned long long)rep.checkpoints_checked,
	       vsecs, (double)rep.rows_checked / vsecs);
	free(bench.started);
	free(bench.latency_ns);
	free(bench.response);
	return rc == AUDIT_OK && bench.failed == 0 ? 0 : 1;
}
