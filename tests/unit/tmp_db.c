/*
 * tmp_db.c: a temporary directory with one SQLite file (contract in tmp_db.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tmp_db.h"

static char tmp_dir[96], tmp_path[160];

const char *tmp_db_make(const char *prefix, const char *name)
{
	snprintf(tmp_dir, sizeof tmp_dir, "/tmp/%s-XXXXXX", prefix);
	if (mkdtemp(tmp_dir) == NULL)
		return NULL;
	snprintf(tmp_path, sizeof tmp_path, "%s/%s", tmp_dir, name);
	return tmp_path;
}

void tmp_db_remove(void)
{
	char path[192];
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		snprintf(path, sizeof path, "%s%s", tmp_path, suffixes[i]);
		unlink(path);
	}
	rmdir(tmp_dir);
}
