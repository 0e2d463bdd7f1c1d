/*
 * host_fixture.c: see host_fixture.h.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_fixture.h"
#include "metrics.h"

int hf_install_plugin(const char *src_dir, const char *name, const char *dst_dir, const char *as,
		      mode_t mode)
{
	char src[512], dst[512];
	snprintf(src, sizeof src, "%s/%s", src_dir, name);
	snprintf(dst, sizeof dst, "%s/%s", dst_dir, as);
	int in = open(src, O_RDONLY);
	if (in < 0)
		return -1;
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	char buf[65536];
	ssize_t n;
	int rc = 0;
	while ((n = read(in, buf, sizeof buf)) > 0) {
		if (write(out, buf, (size_t)n) != n)
			rc = -1;
	}
	if (n < 0)
		rc = -1;
	close(in);
	close(out);
	return rc == 0 && chmod(dst, mode) == 0 ? 0 : -1;
}

int hf_write_config(const char *path, const char *plugin_dir, const char *plugins_yaml)
{
	FILE *fp = fopen(path, "w");
	if (fp == NULL)
		return -1;
	fprintf(fp,
		"plugin_dir: %s\n"
		"listeners:\n"
		"  store:\n"
		"    address: 127.0.0.1\n"
		"    port: 0\n"
		"    tls: {certificate: a.pem, key: a.key, client_ca: ca.pem}\n"
		"  admin:\n"
		"    unix: admin.sock\n"
		"plugins:\n%s",
		plugin_dir, plugins_yaml);
	return fclose(fp) == 0 ? 0 : -1;
}

int hf_load(const char *path, uv_loop_t *loop, struct config **cfg, struct plugin_host **host,
	    char *msg, size_t msg_size)
{
	struct config_error err;
	config_unref(*cfg);
	*cfg = NULL;
	if (config_load_opts(path, CONFIG_SKIP_FILE_CHECKS, cfg, &err) != 0) {
		snprintf(msg, msg_size, "%s", err.msg);
		return -1;
	}
	return plugin_host_load(host, *cfg, loop, msg, msg_size);
}

struct hf_fixture *hf_fixture_new(const char *prefix)
{
	struct hf_fixture *fx = calloc(1, sizeof *fx);
	if (fx == NULL)
		return NULL;
	snprintf(fx->dir, sizeof fx->dir, "/tmp/%s.XXXXXX", prefix);
	if (mkdtemp(fx->dir) == NULL) {
		free(fx);
		return NULL;
	}
	snprintf(fx->plugin_dir, sizeof fx->plugin_dir, "%s/plugins", fx->dir);
	snprintf(fx->config_path, sizeof fx->config_path, "%s/madoguchi.yaml", fx->dir);
	if (mkdir(fx->plugin_dir, 0755) != 0 || uv_loop_init(&fx->loop) != 0) {
		free(fx);
		return NULL;
	}
	return fx;
}

int hf_fixture_free(struct hf_fixture *fx)
{
	plugin_host_unload(fx->host);
	config_unref(fx->cfg);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	uv_loop_close(&fx->loop);
	metrics_reset();
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
	int rc = system(cmd);
	free(fx);
	return rc == 0 ? 0 : -1;
}
