/*
 * tmp_db.h: a temporary directory holding one SQLite file, for the unit tests of modules that
 * keep a store (linkage, gate).  Not thread-safe; one per test at a time.
 */
#ifndef MDG_TEST_TMP_DB_H
#define MDG_TEST_TMP_DB_H

/* Makes /tmp/<prefix>-XXXXXX and returns the path of NAME inside it (static storage), or
 * NULL on failure. */
const char *tmp_db_make(const char *prefix, const char *name);

/* Removes the file, its -wal and -shm companions and the directory. */
void tmp_db_remove(void);

#endif
