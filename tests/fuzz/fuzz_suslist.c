/*
 * fuzz_suslist.c: libFuzzer target for the ministry's signed suspension list
 * (core/suslist.c, DESIGN §6).
 *
 * The input is a signed list (the envelope).  The keyring holds two fixed test keys,
 * tests/fuzz/keys/fuzz-a and fuzz-b (their private halves are there to sign new seeds; they
 * are trusted nowhere else); fuzz-c is a key the keyring does not know.  So seeds signed by a
 * or b get past the signature stage, and mutations of them explore the envelope and the
 * signature checks.  The same bytes then go through suslist_parse_stored(), which skips the
 * signatures, so the payload parser is explored directly too.  Every list that parses is
 * walked through all its accessors and matched, and its raw bytes must parse again to the
 * same list.  The time is fixed, so runs are reproducible.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "suslist.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW ((time_t)1795741200) /* 2026-11-27T01:00:00Z */

static const char *const fuzz_keys[] = {
    "-----BEGIN PUBLIC "
    "KEY-----\nMCowBQYDK2VwAyEAviMhVs9VUKiUS9kyuP4PdTqpi0YxZ235PQbxafjCrqQ=\n-----END PUBLIC "
    "KEY-----\n",
    "-----BEGIN PUBLIC "
    "KEY-----\nMCowBQYDK2VwAyEAu72hl9/SRE3GiafV9lN/6JZhEll2eyaJjCDx/Cce7oc=\n-----END PUBLIC "
    "KEY-----\n",
};
static struct suslist_keyring *fuzz_ring;

/* suslist_keyring_load() reads files: hand it memory files, closed once loaded. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char paths[2][64];
	const char *p[2] = {paths[0], paths[1]};
	int fds[2];
	struct suslist_error err;

	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(fuzz_keys[i]);
		fds[i] = memfd_create("fuzz_suslist.pub", MFD_CLOEXEC);
		if (fds[i] < 0 || write(fds[i], fuzz_keys[i], n) != (ssize_t)n)
			abort();
		snprintf(paths[i], sizeof paths[i], "/proc/self/fd/%d", fds[i]);
	}
	if (suslist_keyring_load(p, 2, &fuzz_ring, &err) != SUSLIST_OK) {
		fprintf(stderr, "fuzz_suslist: %s: %s\n", err.field, err.message);
		abort();
	}
	close(fds[0]);
	close(fds[1]);
	return 0;
}

static void check_error(int rc, const struct suslist *list, const struct suslist_error *err)
{
	if (list != NULL || (rc != SUSLIST_MALFORMED && rc != SUSLIST_SIGNATURE_INVALID))
		abort();
	if (strnlen(err->field, sizeof err->field) == sizeof err->field ||
	    strnlen(err->message, sizeof err->message) == sizeof err->message ||
	    err->message[0] == '\0')
		abort();
	if (suslist_status_code(rc) == NULL || suslist_status_http(rc) < 400)
		abort();
}

/* Reads everything a caller may read, and matches the list against a few requests. */
static void walk(const struct suslist *list)
{
	static const char *const versions[] = {NULL, "1.0.0", "2.3.1", "2.10", "1.0.0-rc1"};
	size_t n = suslist_count(list);
	if (n > SUSLIST_ENTRIES_MAX || suslist_expires_at(list) <= suslist_issued_at(list))
		abort();
	(void)suslist_sequence(list);
	(void)suslist_verified_at(list);
	(void)suslist_expired(list, FUZZ_NOW);
	for (size_t i = 0; i < n; i++) {
		const struct suslist_entry *e = suslist_entry_at(list, i);
		const char *plugin = suslist_entry_plugin(e);
		const char *range = suslist_entry_versions(e);
		if (strlen(suslist_entry_id(e)) == 0 || strlen(plugin) == 0)
			abort();
		(void)strlen(suslist_entry_reason(e));
		(void)suslist_entry_mode(e);
		size_t nc = suslist_entry_certificate_count(e);
		size_t nm = suslist_entry_municipality_count(e);
		if (nc == 0 || nm == 0)
			abort();
		const char *cert = suslist_entry_certificate(e, nc - 1);
		const char *muni = suslist_entry_municipality(e, nm - 1);
		for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
			const struct suslist_entry *hit = NULL;
			/* Every entry covers a request in its own scope: no version, no scope. */
			if (v == 0 && !suslist_match(list, plugin, NULL, NULL, NULL, false, &hit))
				abort();
			(void)suslist_match(list, plugin, versions[v], cert, muni, true, &hit);
			if (range != NULL)
				(void)suslist_version_matches(range, versions[v]);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct suslist *list = NULL;
	struct suslist_error err;

	for (unsigned threshold = 1; threshold <= 2; threshold++) {
		int rc =
		    suslist_parse_verify(fuzz_ring, threshold, text, size, FUZZ_NOW, &list, &err);
		if (rc != SUSLIST_OK) {
			check_error(rc, list, &err);
			continue;
		}
		walk(list);
		size_t raw_len;
		const char *raw = suslist_raw(list, &raw_len);
		if (raw_len != size || memcmp(raw, data, size) != 0 || raw[raw_len] != '\0')
			abort();
		suslist_free(list);
		list = NULL;
	}

	int rc = suslist_parse_stored(text, size, FUZZ_NOW, &list, &err);
	if (rc != SUSLIST_OK) {
		if (rc == SUSLIST_SIGNATURE_INVALID)
			abort(); /* stored lists are not checked for signatures */
		check_error(rc, list, &err);
		return 0;
	}
	walk(list);
	suslist_free(list);
	return 0;
}
