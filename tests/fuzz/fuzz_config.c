/*
 * fuzz_config.c: libFuzzer target for the YAML configuration (core/config.c).
 *
 * The input is a configuration file.  config_load_opts() reads only from a path, so the input
 * is written to an anonymous memory file (memfd_create) and loaded through /proc/self/fd/N:
 * nothing touches the disk and nothing is left behind.  CONFIG_SKIP_FILE_CHECKS keeps the
 * result independent of which files exist on this machine (relative paths resolve against
 * /proc/self/fd and are never opened).  A success is released again; a failure must say why.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char fuzz_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_fd = memfd_create("fuzz_config.yaml", MFD_CLOEXEC);
	if (fuzz_fd < 0) {
		perror("fuzz_config: memfd_create");
		abort();
	}
	snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fuzz_fd, 0) != 0 || pwrite(fuzz_fd, data, size, 0) != (ssize_t)size)
		abort();

	struct config *cfg = NULL;
	struct config_error err;
	if (config_load_opts(fuzz_path, CONFIG_SKIP_FILE_CHECKS, &cfg, &err) == 0) {
		if (cfg == NULL || cfg->path == NULL || cfg->data_dir == NULL)
			abort();
		config_unref(cfg);
	} else if (cfg != NULL || err.msg[0] == '\0' ||
		   strnlen(err.msg, sizeof err.msg) == sizeof err.msg) {
		abort();
	}

	/* The scalar parsers on their own, for short inputs. */
	if (size < 64) {
		char text[64];
		uint64_t v;
		memcpy(text, data, size);
		text[size] = '\0';
		(void)config_parse_duration(text, &v);
		(void)config_parse_size(text, &v);
	}
	return 0;
}
