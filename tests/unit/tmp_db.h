/*
 * tmp_db.h: a temporary directory (tmp_dir.h) holding one SQLite file, for the unit tests of
 * modules that keep a store (linkage, gate).  Not thread-safe; one per test at a time.
 */
#ifndef MDG_TEST_TMP_DB_H
#define MDG_TEST_TMP_DB_H

/* Makes <$TMPDIR or /tmp>/<prefix>-XXXXXX and returns the path of NAME inside it (static
 * storage), or NULL on failure. */
const char *tmp_db_make(const char *prefix, const char *name);

/* Removes the directory with the file and its -wal and -shm companions. */
void tmp_db_remove(void);

#endif
