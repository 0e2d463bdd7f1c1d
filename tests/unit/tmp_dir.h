/*
 * tmp_dir.h: temporary directories for the unit tests, made under $TMPDIR (or /tmp) and removed
 * with everything in them.  Test code: errors are returned, the caller asserts.
 */
#ifndef MDG_TEST_TMP_DIR_H
#define MDG_TEST_TMP_DIR_H

#include <stddef.h>

/* Makes <$TMPDIR or /tmp>/<prefix>-XXXXXX and writes its path to out[size]; 0, or -1 (the
 * path does not fit, or mkdtemp failed). */
int tmp_dir_make(const char *prefix, char *out, size_t size);

/* Removes dir and everything under it, following no symbolic link; 0, or -1. */
int tmp_dir_remove(const char *dir);

#endif
