/*
 * tmp_dir.c: temporary directories for the unit tests (contract in tmp_dir.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, nftw */
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tmp_dir.h"

int tmp_dir_make(const char *prefix, char *out, size_t size)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(out, size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (n < 0 || (size_t)n >= size)
		return -1;
	return mkdtemp(out) == NULL ? -1 : 0;
}

static int tmp_dir_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int tmp_dir_remove(const char *dir)
{
	return nftw(dir, tmp_dir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
