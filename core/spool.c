/*
 * spool.c: segment files for the bytes of stored responses (contract and the reason in
 * spool.h).
 *
 * State of the open segment: `end` is where the next append goes, `kept` the end of what has
 * been made durable.  Between them lie the bytes of the batch under way; spool_abandon() cuts
 * them off.  Durable bytes are never cut, even when the COMMIT that should refer to them
 * failed: SQLite cannot always say whether a failed COMMIT reached the disk.  `referenced`
 * says whether any durable bytes are in the open segment: one without any is removed when it
 * is closed, so batches that failed before their sync leave no files behind.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* openat, fdatasync, pwrite, pread */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errbuf.h"
#include "spool.h"

struct spool {
	char *dir;
	int dir_fd;
	uint32_t *found; /* segment ids listed by spool_open(), ascending */
	size_t found_count;
	uint32_t next_id; /* the next segment opened gets this id */

	/* The open segment (fd -1: none). */
	int fd;
	uint32_t id;
	time_t opened;
	uint64_t end, kept;
	int referenced; /* a committed batch refers to it */
	int sync_failed;
	int test_full;
};

void spool_name(uint32_t id, char out[SPOOL_NAME_LEN + 1])
{
	snprintf(out, SPOOL_NAME_LEN + 1, "%010" PRIu32 ".spool", id);
}

/* The id of a segment file name, 0 for any other name. */
static uint32_t spool_parse_name(const char *name)
{
	if (strlen(name) != SPOOL_NAME_LEN || strcmp(name + 10, ".spool") != 0)
		return 0;
	uint64_t id = 0;
	for (int i = 0; i < 10; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		id = id * 10 + (uint64_t)(name[i] - '0');
	}
	return id <= UINT32_MAX ? (uint32_t)id : 0;
}

static int spool_cmp_id(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int spool_list(struct spool *s, char *err, size_t err_size)
{
	int fd = dup(s->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return errbuf_set(err, err_size, "cannot list %s: %s", s->dir, strerror(errno));
	}
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint32_t id = spool_parse_name(e->d_name);
		if (id == 0)
			continue;
		if (s->found_count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint32_t *n = realloc(s->found, ncap * sizeof *n);
			if (n == NULL) {
				closedir(d);
				return errbuf_set(err, err_size, "out of memory");
			}
			s->found = n;
			cap = ncap;
		}
		s->found[s->found_count++] = id;
		spool_note_id(s, id);
	}
	closedir(d);
	if (s->found_count > 1)
		qsort(s->found, s->found_count, sizeof *s->found, spool_cmp_id);
	return 0;
}

int spool_open(const char *dir, struct spool **out, char *err, size_t err_size)
{
	*out = NULL;
	struct spool *s = calloc(1, sizeof *s);
	if (s == NULL || (s->dir = strdup(dir)) == NULL) {
		free(s);
		return errbuf_set(err, err_size, "out of memory");
	}
	s->fd = -1;
	s->dir_fd = -1;
	s->next_id = 1;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		errbuf_set(err, err_size, "cannot create the response spool %s: %s", dir,
			   strerror(errno));
		spool_close(s);
		return -1;
	}
	s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dir_fd < 0) {
		errbuf_set(err, err_size, "cannot open the response spool %s: %s", dir,
			   strerror(errno));
		spool_close(s);
		return -1;
	}
	if (spool_list(s, err, err_size) != 0) {
		spool_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

const uint32_t *spool_found(const struct spool *s, size_t *count)
{
	*count = s->found_count;
	return s->found;
}

void spool_note_id(struct spool *s, uint32_t id)
{
	if (id >= s->next_id && id < UINT32_MAX)
		s->next_id = id + 1;
}

uint32_t spool_current(const struct spool *s)
{
	return s->fd >= 0 ? s->id : 0;
}

void spool_retire(struct spool *s)
{
	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	if (!s->referenced) {
		char name[SPOOL_NAME_LEN + 1];
		spool_name(s->id, name);
		unlinkat(s->dir_fd, name, 0); /* nothing refers to it; an error leaves an orphan */
	}
}

void spool_rotate_if_due(struct spool *s, time_t now)
{
	if (s->fd >= 0 &&
	    (s->end >= SPOOL_SEGMENT_BYTES || now - s->opened >= SPOOL_SEGMENT_SECONDS))
		spool_retire(s);
}

/* Opens a new segment; its name is made durable (directory fsync) before any reference to it
 * can commit. */
static int spool_new_segment(struct spool *s, time_t now, char *err, size_t err_size)
{
	char name[SPOOL_NAME_LEN + 1];
	for (int tries = 0; tries < 16; tries++) {
		if (s->next_id == UINT32_MAX)
			return errbuf_set(err, err_size, "response spool %s: segment ids exhausted",
					  s->dir);
		uint32_t id = s->next_id++;
		spool_name(id, name);
		int fd = openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		/* A name taken since the listing: never append to a file not started here. */
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return errbuf_set(err, err_size, "cannot create %s/%s: %s", s->dir, name,
					  strerror(errno));
		if (fsync(s->dir_fd) != 0) {
			int e = errno;
			close(fd);
			unlinkat(s->dir_fd, name, 0);
			return errbuf_set(err, err_size, "cannot sync the directory %s: %s", s->dir,
					  strerror(e));
		}
		s->fd = fd;
		s->id = id;
		s->opened = now;
		s->end = s->kept = 0;
		s->referenced = 0;
		s->sync_failed = 0;
		return 0;
	}
	return errbuf_set(err, err_size, "response spool %s: no free segment name", s->dir);
}

int spool_append(struct spool *s, const void *data, size_t len, time_t now, uint32_t *segment,
		 uint64_t *offset, char *err, size_t err_size)
{
	if (s->test_full)
		return errbuf_set(err, err_size, "cannot write the response spool %s: %s", s->dir,
				  strerror(ENOSPC));
	if (s->fd < 0 && spool_new_segment(s, now, err, err_size) != 0)
		return -1;
	const unsigned char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(s->fd, p + done, len - done, (off_t)(s->end + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			char name[SPOOL_NAME_LEN + 1];
			spool_name(s->id, name);
			return errbuf_set(err, err_size, "cannot write %s/%s: %s", s->dir, name,
					  n < 0 ? strerror(errno) : "no progress");
		}
		done += (size_t)n;
	}
	*segment = s->id;
	*offset = s->end;
	s->end += len;
	return 0;
}

int spool_sync(struct spool *s, char *err, size_t err_size)
{
	if (s->fd < 0 || s->end == s->kept)
		return 0;
	if (fdatasync(s->fd) == 0) {
		s->kept = s->end;
		s->referenced = 1;
		return 0;
	}
	s->sync_failed = 1;
	char name[SPOOL_NAME_LEN + 1];
	spool_name(s->id, name);
	return errbuf_set(err, err_size, "cannot sync %s/%s: %s", s->dir, name, strerror(errno));
}

void spool_abandon(struct spool *s)
{
	if (s->fd < 0 || (s->end == s->kept && !s->sync_failed))
		return;
	if (s->sync_failed || ftruncate(s->fd, (off_t)s->kept) != 0) {
		spool_retire(s);
		return;
	}
	s->end = s->kept;
}

int spool_remove(struct spool *s, uint32_t id, char *err, size_t err_size)
{
	if (s->fd >= 0 && s->id == id) {
		s->referenced = 1; /* the caller removes it below, whatever it held */
		spool_retire(s);
	}
	char name[SPOOL_NAME_LEN + 1];
	spool_name(id, name);
	if (unlinkat(s->dir_fd, name, 0) != 0 && errno != ENOENT)
		return errbuf_set(err, err_size, "cannot remove %s/%s: %s", s->dir, name,
				  strerror(errno));
	return 0;
}

void spool_test_full(struct spool *s, int on)
{
	s->test_full = on != 0;
}

void spool_close(struct spool *s)
{
	if (s == NULL)
		return;
	spool_retire(s);
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	free(s->found);
	free(s->dir);
	free(s);
}

int spool_read(const char *dir, uint32_t id, uint64_t offset, size_t len, unsigned char **out,
	       char *err, size_t err_size)
{
	*out = NULL;
	char path[4096], name[SPOOL_NAME_LEN + 1];
	spool_name(id, name);
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
		return errbuf_set(err, err_size, "response spool path too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return -2;
	if (fd < 0)
		return errbuf_set(err, err_size, "cannot open %s: %s", path, strerror(errno));
	unsigned char *buf = malloc(len ? len : 1);
	if (buf == NULL) {
		close(fd);
		return errbuf_set(err, err_size, "out of memory");
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = errno;
			close(fd);
			free(buf);
			return errbuf_set(err, err_size, "cannot read %s at %" PRIu64 ": %s", path,
					  offset, n < 0 ? strerror(e) : "the file is shorter");
		}
		done += (size_t)n;
	}
	close(fd);
	*out = buf;
	return 0;
}
