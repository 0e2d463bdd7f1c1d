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

/* A temporary directory with an empty plugin_dir, a config path and a loop: one test's world. */
struct hf_fixture {
	char dir[64];	     /* the temporary directory */
	char plugin_dir[96]; /* dir/plugins, mode 0755 */
	char config_path[128];
	uv_loop_t loop;
	struct config *cfg;
	struct plugin_host *host;
	char msg[CONFIG_ERROR_MAX];
};

/* Makes a fixture under /tmp/<prefix>.XXXXXX; NULL on failure. */
struct hf_fixture *hf_fixture_new(const char *prefix);

/* Unloads the host, runs the loop dry, removes the directory, frees fx.  0 or -1. */
int hf_fixture_free(struct hf_fixture *fx);

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
