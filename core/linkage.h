/*
 * linkage.h: the appliance's own linkage table, card serial → resident code (DESIGN §3 step 8).
 *
 * The table lives in SQLite (data_dir/linkage.sqlite) and, for lookups, in memory: the loop
 * thread asks linkage_lookup() once per issuance and must never wait on a disk.  An import
 * (`madoguchictl linkage import FILE`, POST /v1/linkage) is parsed and written to SQLite on a
 * worker thread, then applied to the in-memory table on the loop thread, so a lookup sees the
 * table either before or after an import, never half of one.
 *
 * The import format is CSV with the header line `card_serial,resident_code`, one card per
 * line.  A card serial is the card certificate's serial in upper-case hexadecimal without
 * leading zeros (DESIGN §4); a resident code is 1 to 32 characters of 0-9 A-Z a-z.  A line
 * naming a serial twice, or anything malformed, refuses the whole file, with the line number
 * (never the values: they are personal data).
 *
 * Threads: struct linkage is the loop thread's.  linkage_parse(), linkage_store() and
 * struct linkage_batch may be used on any one thread at a time.
 */
#ifndef MDG_LINKAGE_H
#define MDG_LINKAGE_H

#include <stdbool.h>
#include <stddef.h>

#define LINKAGE_SERIAL_MAX 40
#define LINKAGE_CODE_MAX   32

struct linkage;
struct linkage_batch; /* parsed import lines */

/*
 * Opens (creating when missing) the table at db_path and loads it into memory.  Returns 0
 * with *out, or -1 with err filled for an operator.  Blocking: call before serving.
 */
int linkage_open(const char *db_path, struct linkage **out, char *err, size_t err_size);
void linkage_free(struct linkage *lk);

/* The resident code linked to card_serial, or NULL.  Valid until the next linkage_apply(). */
const char *linkage_lookup(const struct linkage *lk, const char *card_serial);
size_t linkage_count(const struct linkage *lk);
/* The database file's path (for linkage_store() on a worker). */
const char *linkage_path(const struct linkage *lk);

/*
 * Parses CSV text.  Returns 0 with *out (linkage_batch_free()), or -1 with err naming the
 * first bad line and what is wrong with it.
 */
int linkage_parse(const char *csv, size_t len, struct linkage_batch **out, char *err,
		  size_t err_size);
size_t linkage_batch_count(const struct linkage_batch *b);
void linkage_batch_free(struct linkage_batch *b);

/*
 * Writes batch to the table at db_path in one transaction: with replace, the batch becomes the
 * whole table; otherwise its cards are added or updated.  Blocking (a worker thread).  Returns
 * 0, or -1 with err filled (nothing written).
 */
int linkage_store(const char *db_path, const struct linkage_batch *b, bool replace, char *err,
		  size_t err_size);

/* Applies a stored batch to the in-memory table, as linkage_store() did to the file. */
int linkage_apply(struct linkage *lk, const struct linkage_batch *b, bool replace);

/* True for a canonical card serial: 1..40 upper-case hex digits, no leading zero (but "0"). */
bool linkage_serial_ok(const char *serial);

#endif
