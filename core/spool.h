/*
 * spool.h: the bytes of the stored responses (the 201 answers kept for replays), in segment
 * files beside the audit database rather than inside it.
 *
 * Why not in SQLite: a stored answer is a whole certificate (~55 KB), and in the database each
 * one was written twice (to the WAL, then to the file at checkpoint) together with the B-tree
 * pages around it; at 800 issuances/s that was ~230 MB/s of writes and a tenth of the CPU
 * spent copying them (tests/bench/issuance.sh).  Appended to a segment it is written once.
 * The audit database keeps, in the same transaction as the audit row, where the bytes are
 * (segment, offset, length) and their CRC-32; the writer makes the segment durable
 * (fdatasync) before that transaction commits, so a committed reference always points at
 * durable bytes.  Bytes without a committed reference (a failed batch, a crash) are never
 * read and go with their segment.
 *
 * A directory holds segments named NNNNNNNNNN.spool (decimal id, ten digits, mode 0600).  One
 * segment is open for appending at a time; it is closed after SPOOL_SEGMENT_BYTES or
 * SPOOL_SEGMENT_SECONDS, so that expiry (the audit store's purge) frees space a whole file at
 * a time.
 *
 * Threads: struct spool belongs to one thread (the audit writer).  spool_read() and
 * spool_name() need no struct spool and may be called from any thread.
 */
#ifndef MDG_SPOOL_H
#define MDG_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SPOOL_SEGMENT_BYTES   (64u * 1024u * 1024u) /* a segment is closed past this size */
#define SPOOL_SEGMENT_SECONDS 600		    /* ... or this long after it was opened */
#define SPOOL_NAME_LEN	      16		    /* "NNNNNNNNNN.spool" */

struct spool;

/*
 * Opens the directory dir (created mode 0700 when missing) and lists its segments.  No
 * segment is opened yet: the first spool_append() opens one numbered above every segment
 * listed and every id given to spool_note_id().  Returns 0, or -1 with err.
 */
int spool_open(const char *dir, struct spool **out, char *err, size_t err_size);

/* The ids of the segment files found by spool_open(), ascending; *count of them. */
const uint32_t *spool_found(const struct spool *s, size_t *count);

/* An id in use elsewhere (a reference in the database): new segments are numbered above it. */
void spool_note_id(struct spool *s, uint32_t id);

/* Closes the open segment if it is full or old (call before a batch's first append). */
void spool_rotate_if_due(struct spool *s, time_t now);

/*
 * Appends len bytes to the open segment (opening a new one first when none is) and says where
 * they went.  Not durable until spool_sync().  Returns 0, or -1 with err (errno-style reason).
 */
int spool_append(struct spool *s, const void *data, size_t len, time_t now, uint32_t *segment,
		 uint64_t *offset, char *err, size_t err_size);

/*
 * Makes every appended byte durable (fdatasync); from then on they are kept, whatever becomes
 * of the transaction that refers to them.  Returns 0, or -1 with err.
 */
int spool_sync(struct spool *s, char *err, size_t err_size);

/*
 * The batch failed: the bytes appended since the last spool_sync() are cut off again.  After
 * a failed fdatasync (whose pages the kernel may have dropped) or a failed cut the segment is
 * closed instead and the next append opens a new one.
 */
void spool_abandon(struct spool *s);

/* The id of the open segment, 0 when none is open. */
uint32_t spool_current(const struct spool *s);

/* Closes the open segment (full, old, or after a failed sync); one that no committed batch
 * refers to is removed. */
void spool_retire(struct spool *s);

/* Removes segment id (closing it first if it is the open one).  0, or -1 with err. */
int spool_remove(struct spool *s, uint32_t id, char *err, size_t err_size);

/* Test hook: while on, appends fail as on a full disk (ENOSPC). */
void spool_test_full(struct spool *s, int on);

void spool_close(struct spool *s);

/* The file name of segment id ("NNNNNNNNNN.spool"). */
void spool_name(uint32_t id, char out[SPOOL_NAME_LEN + 1]);

/*
 * Reads len bytes at offset of segment id of dir into *out (malloc'ed, the caller frees).
 * Returns 0; -2 when the segment file does not exist; -1 with err on any other failure (a
 * short file included).  Any thread.
 */
int spool_read(const char *dir, uint32_t id, uint64_t offset, size_t len, unsigned char **out,
	       char *err, size_t err_size);

#endif
