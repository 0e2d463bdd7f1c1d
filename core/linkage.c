/*
 * linkage.c: the linkage table, in SQLite and in a GLib hash table (contract in linkage.h).
 *
 * The in-memory table maps card serial → resident code, both strings owned by the table.  It
 * is built from the database at open and changed only by linkage_apply() on the loop thread,
 * after linkage_store() committed the same change to the file: the file is the truth after a
 * restart, the memory the truth for lookups, and they only differ while an import is between
 * its commit and its apply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <sqlite3.h>

#include "linkage.h"

struct linkage {
	GHashTable *map; /* char *serial -> char *resident code */
	char *path;
};

struct linkage_entry {
	char serial[LINKAGE_SERIAL_MAX + 1];
	char code[LINKAGE_CODE_MAX + 1];
};

struct linkage_batch {
	struct linkage_entry *entries;
	size_t count;
};

static const char linkage_schema[] = "CREATE TABLE IF NOT EXISTS linkage ("
				     " card_serial TEXT PRIMARY KEY NOT NULL,"
				     " resident_code TEXT NOT NULL,"
				     " updated_at INTEGER NOT NULL) WITHOUT ROWID";

static void linkage_err(char *err, size_t size, const char *what, sqlite3 *db)
{
	snprintf(err, size, "linkage table: %s: %s", what,
		 db ? sqlite3_errmsg(db) : "out of memory");
}

/* Opens the database (creating file and table), WAL with full sync: an import is durable. */
static sqlite3 *linkage_db_open(const char *path, char *err, size_t err_size)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
		SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_exec(db, linkage_schema, NULL, NULL, NULL) != SQLITE_OK) {
		linkage_err(err, err_size, "cannot open", db);
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

bool linkage_serial_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > LINKAGE_SERIAL_MAX || (n > 1 && s[0] == '0'))
		return false;
	return strspn(s, "0123456789ABCDEF") == n;
}

static bool linkage_code_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= LINKAGE_CODE_MAX &&
	       strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == n;
}

static GHashTable *linkage_map_new(void)
{
	return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

int linkage_open(const char *db_path, struct linkage **out, char *err, size_t err_size)
{
	*out = NULL;
	sqlite3 *db = linkage_db_open(db_path, err, err_size);
	if (db == NULL)
		return -1;
	struct linkage *lk = calloc(1, sizeof *lk);
	sqlite3_stmt *st = NULL;
	int rc = -1;
	if (lk == NULL || (lk->path = strdup(db_path)) == NULL) {
		linkage_err(err, err_size, "cannot load", NULL);
		goto out;
	}
	lk->map = linkage_map_new();
	if (sqlite3_prepare_v2(db, "SELECT card_serial, resident_code FROM linkage", -1, &st,
			       NULL) != SQLITE_OK) {
		linkage_err(err, err_size, "cannot read", db);
		goto out;
	}
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		g_hash_table_insert(lk->map, g_strdup((const char *)sqlite3_column_text(st, 0)),
				    g_strdup((const char *)sqlite3_column_text(st, 1)));
	if (step != SQLITE_DONE) {
		linkage_err(err, err_size, "cannot read", db);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rc != 0) {
		linkage_free(lk);
		return -1;
	}
	*out = lk;
	return 0;
}

void linkage_free(struct linkage *lk)
{
	if (lk == NULL)
		return;
	if (lk->map != NULL)
		g_hash_table_destroy(lk->map);
	free(lk->path);
	free(lk);
}

const char *linkage_lookup(const struct linkage *lk, const char *card_serial)
{
	return g_hash_table_lookup(lk->map, card_serial);
}

size_t linkage_count(const struct linkage *lk)
{
	return g_hash_table_size(lk->map);
}

const char *linkage_path(const struct linkage *lk)
{
	return lk->path;
}

/* ------------------------------------------------------------------------------ parsing */

/* Copies field [from, to) into dst (cap bytes); false when it does not fit. */
static bool linkage_field(const char *from, const char *to, char *dst, size_t cap)
{
	size_t n = (size_t)(to - from);
	if (n >= cap)
		return false;
	memcpy(dst, from, n);
	dst[n] = '\0';
	return true;
}

int linkage_parse(const char *csv, size_t len, struct linkage_batch **out, char *err,
		  size_t err_size)
{
	*out = NULL;
	struct linkage_batch *b = calloc(1, sizeof *b);
	GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal); /* serial -> line */
	size_t cap = 0, line = 0;
	const char *p = csv, *end = csv + len;
	int rc = -1;

	if (b == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	/* A UTF-8 byte-order mark, as spreadsheet programs write one. */
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *stop = eol ? eol : end;
		const char *l_end = stop > p && stop[-1] == '\r' ? stop - 1 : stop;
		line++;
		if (line == 1) {
			if ((size_t)(l_end - p) != strlen("card_serial,resident_code") ||
			    memcmp(p, "card_serial,resident_code", (size_t)(l_end - p)) != 0) {
				snprintf(err, err_size,
					 "line 1: expected the header 'card_serial,resident_code'");
				goto out;
			}
		} else if (l_end > p) {
			const char *comma = memchr(p, ',', (size_t)(l_end - p));
			if (b->count == cap) {
				cap = cap ? cap * 2 : 1024;
				struct linkage_entry *e = realloc(b->entries, cap * sizeof *e);
				if (e == NULL) {
					snprintf(err, err_size, "out of memory");
					goto out;
				}
				b->entries = e;
			}
			struct linkage_entry *e = &b->entries[b->count];
			if (comma == NULL || memchr(comma + 1, ',', (size_t)(l_end - comma - 1))) {
				snprintf(err, err_size,
					 "line %zu: expected two fields, "
					 "card_serial,resident_code",
					 line);
				goto out;
			}
			if (!linkage_field(p, comma, e->serial, sizeof e->serial) ||
			    !linkage_serial_ok(e->serial)) {
				snprintf(
				    err, err_size,
				    "line %zu: card_serial must be 1 to 40 upper-case hex digits "
				    "without leading zeros",
				    line);
				goto out;
			}
			if (!linkage_field(comma + 1, l_end, e->code, sizeof e->code) ||
			    !linkage_code_ok(e->code)) {
				snprintf(err, err_size,
					 "line %zu: resident_code must be 1 to 32 of 0-9 A-Z a-z",
					 line);
				goto out;
			}
			size_t first = GPOINTER_TO_SIZE(g_hash_table_lookup(seen, e->serial));
			if (first != 0) {
				snprintf(err, err_size, "line %zu: the card of line %zu again",
					 line, first);
				goto out;
			}
			g_hash_table_insert(seen, e->serial, GSIZE_TO_POINTER(line));
			b->count++;
		}
		p = eol ? eol + 1 : end;
	}
	if (line == 0) {
		snprintf(err, err_size, "the file is empty (expected the header line first)");
		goto out;
	}
	rc = 0;
out:
	/* The seen table points into b: destroy it before b may be freed. */
	g_hash_table_destroy(seen);
	if (rc != 0) {
		linkage_batch_free(b);
		return -1;
	}
	*out = b;
	return 0;
}

size_t linkage_batch_count(const struct linkage_batch *b)
{
	return b->count;
}

void linkage_batch_free(struct linkage_batch *b)
{
	if (b == NULL)
		return;
	free(b->entries);
	free(b);
}

/* ---------------------------------------------------------------------------- storing */

int linkage_store(const char *db_path, const struct linkage_batch *b, bool replace, char *err,
		  size_t err_size)
{
	sqlite3 *db = linkage_db_open(db_path, err, err_size);
	sqlite3_stmt *st = NULL;
	if (db == NULL)
		return -1;
	int ok =
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK &&
	    (!replace || sqlite3_exec(db, "DELETE FROM linkage", NULL, NULL, NULL) == SQLITE_OK) &&
	    sqlite3_prepare_v2(db,
			       "INSERT INTO linkage (card_serial, resident_code, updated_at)"
			       " VALUES (?1, ?2, unixepoch())"
			       " ON CONFLICT (card_serial) DO UPDATE SET"
			       " resident_code = excluded.resident_code,"
			       " updated_at = excluded.updated_at",
			       -1, &st, NULL) == SQLITE_OK;
	for (size_t i = 0; ok && i < b->count; i++) {
		sqlite3_bind_text(st, 1, b->entries[i].serial, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, b->entries[i].code, -1, SQLITE_STATIC);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_reset(st);
	}
	ok = ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok) {
		linkage_err(err, err_size, "cannot store the import", db);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok ? 0 : -1;
}

int linkage_apply(struct linkage *lk, const struct linkage_batch *b, bool replace)
{
	if (replace)
		g_hash_table_remove_all(lk->map);
	for (size_t i = 0; i < b->count; i++)
		g_hash_table_replace(lk->map, g_strdup(b->entries[i].serial),
				     g_strdup(b->entries[i].code));
	return 0;
}
