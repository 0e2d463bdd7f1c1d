/*
 * test_spool.c: the response spool's segment files (core/spool.c).
 *
 * Each test opens a spool in a fresh temporary directory ($TMPDIR or /tmp) and looks at the
 * files themselves: where bytes land, what a failed batch leaves, which segments are closed,
 * removed or kept.  The audit store's use of the spool is tested in test_audit.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "spool.h"
#include "tmp_dir.h"

static char dir[256];

static int setup(void **state)
{
	(void)state;
	return tmp_dir_make("mdg-spool", dir, sizeof dir);
}

static int teardown(void **state)
{
	(void)state;
	return tmp_dir_remove(dir);
}

/* The spool directory of a test (inside its temporary directory, made by spool_open). */
static const char *spool_dir(void)
{
	static char path[300];
	snprintf(path, sizeof path, "%s/responses", dir);
	return path;
}

static struct spool *open_spool(void)
{
	struct spool *s = NULL;
	char err[256] = "";
	if (spool_open(spool_dir(), &s, err, sizeof err) != 0)
		fail_msg("spool_open: %s", err);
	return s;
}

/* The size of segment id, or -1 when it does not exist. */
static long long segment_size(uint32_t id)
{
	char name[SPOOL_NAME_LEN + 1], path[400];
	spool_name(id, name);
	snprintf(path, sizeof path, "%s/%s", spool_dir(), name);
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void append(struct spool *s, const char *text, uint32_t want_segment, uint64_t want_offset)
{
	uint32_t segment = 0;
	uint64_t offset = 0;
	char err[256] = "";
	if (spool_append(s, text, strlen(text), time(NULL), &segment, &offset, err, sizeof err) !=
	    0)
		fail_msg("spool_append: %s", err);
	assert_int_equal(segment, want_segment);
	assert_int_equal(offset, want_offset);
}

static void sync_ok(struct spool *s)
{
	char err[256] = "";
	if (spool_sync(s, err, sizeof err) != 0)
		fail_msg("spool_sync: %s", err);
}

static void read_is(uint32_t id, uint64_t offset, const char *want)
{
	unsigned char *got = NULL;
	char err[256] = "";
	if (spool_read(spool_dir(), id, offset, strlen(want), &got, err, sizeof err) != 0)
		fail_msg("spool_read: %s", err);
	assert_memory_equal(got, want, strlen(want));
	free(got);
}

static void appends_land_one_after_another_in_a_private_segment(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	assert_int_equal(spool_current(s), 0); /* nothing is opened before the first append */
	append(s, "first answer", 1, 0);
	append(s, "second", 1, 12);
	sync_ok(s);
	assert_int_equal(spool_current(s), 1);
	read_is(1, 0, "first answer");
	read_is(1, 12, "second");

	struct stat st;
	char name[SPOOL_NAME_LEN + 1], path[400];
	spool_name(1, name);
	assert_string_equal(name, "0000000001.spool");
	snprintf(path, sizeof path, "%s/%s", spool_dir(), name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(spool_dir(), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	spool_close(s);
	assert_int_equal(segment_size(1), 18); /* closing keeps what was synced */
}

static void a_failed_batch_is_cut_off_and_the_next_append_takes_its_place(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	append(s, "committed", 1, 0);
	sync_ok(s);
	append(s, "of a batch that failed", 1, 9);
	spool_abandon(s);
	assert_int_equal(segment_size(1), 9);
	append(s, "next", 1, 9);
	sync_ok(s);
	read_is(1, 9, "next");

	/* Bytes once synced are never cut, whatever became of their transaction. */
	spool_abandon(s);
	assert_int_equal(segment_size(1), 13);
	spool_close(s);
}

static void a_segment_nothing_was_synced_to_goes_when_it_is_closed(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	append(s, "never synced", 1, 0);
	spool_abandon(s);
	spool_retire(s);
	assert_int_equal(segment_size(1), -1);
	append(s, "synced", 2, 0);
	sync_ok(s);
	spool_retire(s);
	assert_int_equal(segment_size(2), 6);
	spool_close(s);
}

static void a_segment_is_closed_when_old_or_full(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	append(s, "x", 1, 0);
	sync_ok(s);
	spool_rotate_if_due(s, time(NULL) + SPOOL_SEGMENT_SECONDS - 5);
	assert_int_equal(spool_current(s), 1);
	spool_rotate_if_due(s, time(NULL) + SPOOL_SEGMENT_SECONDS);
	assert_int_equal(spool_current(s), 0);
	assert_int_equal(segment_size(1), 1);

	/* Full: SPOOL_SEGMENT_BYTES appended (not synced: this is about the rule, not the disk). */
	enum { CHUNK = 1 << 20 };
	char *chunk = malloc(CHUNK);
	assert_non_null(chunk);
	memset(chunk, 'y', CHUNK);
	uint32_t segment = 0;
	uint64_t offset = 0;
	for (size_t done = 0; done < SPOOL_SEGMENT_BYTES; done += CHUNK) {
		assert_int_equal(
		    spool_append(s, chunk, CHUNK, time(NULL), &segment, &offset, NULL, 0), 0);
		assert_int_equal(segment, 2);
	}
	free(chunk);
	spool_rotate_if_due(s, time(NULL));
	assert_int_equal(spool_current(s), 0);
	append(s, "z", 3, 0);
	spool_close(s);
}

static void open_lists_segments_and_numbers_new_ones_past_every_id_seen(void **state)
{
	(void)state;
	assert_int_equal(mkdir(spool_dir(), 0700), 0);
	char path[400];
	const char *names[] = {"0000000007.spool", "0000000003.spool", "notes.txt", "7.spool"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", spool_dir(), names[i]);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fclose(f);
	}
	struct spool *s = open_spool();
	size_t n = 0;
	const uint32_t *ids = spool_found(s, &n);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 3);
	assert_int_equal(ids[1], 7);
	spool_note_id(s, 20); /* named by the database, its file gone */
	append(s, "after", 21, 0);

	/* Removing segments touches no other file. */
	assert_int_equal(spool_remove(s, 7, NULL, 0), 0);
	assert_int_equal(spool_remove(s, 21, NULL, 0), 0); /* the open one: closed first */
	assert_int_equal(spool_current(s), 0);
	assert_int_equal(segment_size(7), -1);
	assert_int_equal(segment_size(21), -1);
	assert_int_equal(segment_size(3), 0);
	snprintf(path, sizeof path, "%s/notes.txt", spool_dir());
	assert_int_equal(access(path, F_OK), 0);
	spool_close(s);
}

static void reading_a_missing_segment_or_past_its_end_fails(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	append(s, "short", 1, 0);
	sync_ok(s);
	unsigned char *got = NULL;
	char err[256] = "";
	assert_int_equal(spool_read(spool_dir(), 9, 0, 5, &got, err, sizeof err), -2);
	assert_null(got);
	assert_int_equal(spool_read(spool_dir(), 1, 2, 5, &got, err, sizeof err), -1);
	assert_null(got);
	assert_non_null(strstr(err, "shorter"));
	spool_close(s);
}

static void the_full_disk_hook_fails_appends_without_touching_the_file(void **state)
{
	(void)state;
	struct spool *s = open_spool();
	append(s, "kept", 1, 0);
	sync_ok(s);
	spool_test_full(s, 1);
	uint32_t segment;
	uint64_t offset;
	char err[256] = "";
	assert_int_equal(spool_append(s, "more", 4, time(NULL), &segment, &offset, err, sizeof err),
			 -1);
	assert_non_null(strstr(err, "No space left"));
	spool_abandon(s);
	assert_int_equal(segment_size(1), 4);
	spool_test_full(s, 0);
	append(s, "more", 1, 4);
	spool_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(appends_land_one_after_another_in_a_private_segment,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		a_failed_batch_is_cut_off_and_the_next_append_takes_its_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_segment_nothing_was_synced_to_goes_when_it_is_closed,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(a_segment_is_closed_when_old_or_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		open_lists_segments_and_numbers_new_ones_past_every_id_seen, setup, teardown),
	    cmocka_unit_test_setup_teardown(reading_a_missing_segment_or_past_its_end_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		the_full_disk_hook_fails_appends_without_touching_the_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
