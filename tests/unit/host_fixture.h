/*
 * host_fixture.h: what the unit tests that load real plugins through core/plugin_host share:
 * installing a built plugin into a temporary plugin_dir, writing a minimal daemon config
 * around a `plugins:` section, and loading it.  Test code: errors are returned, the caller
 * asserts.
 */
#ifndef MDG_TEST_HOST_FIXTURE_H
#define MDG_TEST_HOST_FIXTURE_H

#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

#include "config.h"
#include "plugin_host.h"

/* Copies src_dir/name into dst_dir/as with mode (plugins are refused if group-writable). */
int hf_install_plugin(const char *src_dir, const char *name, const char *dst_dir, const char *as,
		      mode_t mode);

/*
 * Writes path: plugin_dir, listeners whose TLS files are not checked (load with
 * CONFIG_SKIP_FILE_CHECKS), and "plugins:\n" followed by plugins_yaml (indented by two).
 * The plugins section starts at line 9, so tests can predict error positions.
 */
int hf_write_config(const char *path, const char *plugin_dir, const char *plugins_yaml);

/* Loads path (releasing *cfg first) and its plugins on loop.  0, or -1 with msg filled. */
int hf_load(const char *path, uv_loop_t *loop, struct config **cfg, struct plugin_host **host,
	    char *msg, size_t msg_size);

#endif
