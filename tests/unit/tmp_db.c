/*
 * tmp_db.c: a temporary directory with one SQLite file (contract in tmp_db.h).
 */
#include <stdio.h>

#include "tmp_db.h"
#include "tmp_dir.h"

static char tmp_dir[96], tmp_path[160];

const char *tmp_db_make(const char *prefix, const char *name)
{
	if (tmp_dir_make(prefix, tmp_dir, sizeof tmp_dir) != 0)
		return NULL;
	snprintf(tmp_path, sizeof tmp_path, "%s/%s", tmp_dir, name);
	return tmp_path;
}

void tmp_db_remove(void)
{
	(void)tmp_dir_remove(tmp_dir);
}
