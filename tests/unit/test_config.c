/*
 * test_config.c: unit tests of core/config.c.
 *
 * Each test writes its YAML into a fresh mkdtemp directory (with empty files standing in for
 * the TLS certificate, key and CA bundle under pki/) and loads it.  Error tests assert the
 * exact "file:line:column: " prefix (1-based) and the part of the message an operator acts on.
 * The shipped example is read from $MDG_SRCDIR/conf/madoguchi.yaml.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "tmp_dir.h"

struct fixture {
	char dir[PATH_MAX];	  /* the temporary directory, without symbolic links */
	char file[PATH_MAX + 32]; /* dir/madoguchi.yaml */
};

/* A config with only the required keys; 10 lines. */
#define MINIMAL_LISTENERS                                                                          \
	"listeners:\n"                                                                             \
	"  store:\n"                                                                               \
	"    address: 127.0.0.1\n"                                                                 \
	"    port: 8443\n"                                                                         \
	"    tls:\n"                                                                               \
	"      certificate: pki/server.pem\n"                                                      \
	"      key: pki/server.key\n"                                                              \
	"      client_ca: pki/store-ca.pem\n"                                                      \
	"  admin:\n"                                                                               \
	"    unix: admin.sock\n"

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static int setup(void **state)
{
	static const char *const files[] = {"server.pem", "server.key", "store-ca.pem",
					    "document.key", "card-ca.pem"};
	char templ[PATH_MAX], path[PATH_MAX + 32];
	struct fixture *fx = calloc(1, sizeof *fx);
	if (fx == NULL)
		return -1;
	*state = fx;
	if (tmp_dir_make("mdg-config", templ, sizeof templ) != 0 ||
	    realpath(templ, fx->dir) == NULL)
		return -1;
	snprintf(fx->file, sizeof fx->file, "%s/madoguchi.yaml", fx->dir);
	snprintf(path, sizeof path, "%s/pki", fx->dir);
	if (mkdir(path, 0700) != 0)
		return -1;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/pki/%s", fx->dir, files[i]);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0)
			return -1;
		close(fd);
	}
	return 0;
}

/* Removes the fixture; copes with a partial one, as setup stores it before it can fail. */
static int teardown(void **state)
{
	struct fixture *fx = *state;
	int rc = 0;
	if (fx == NULL)
		return 0;
	if (fx->dir[0] != '\0')
		rc = tmp_dir_remove(fx->dir);
	free(fx);
	return rc;
}

/* Writes yaml to the fixture's file and loads it with flags. */
static int load_text(struct fixture *fx, const char *yaml, unsigned flags, struct config **out,
		     struct config_error *err)
{
	write_file(fx->file, yaml);
	return config_load_opts(fx->file, flags, out, err);
}

/* Loads yaml, which must succeed; returns the config. */
static struct config *load_ok(struct fixture *fx, const char *yaml)
{
	struct config *cfg = NULL;
	struct config_error err;
	if (load_text(fx, yaml, 0, &cfg, &err) != 0)
		fail_msg("expected the config to load, got: %s", err.msg);
	assert_non_null(cfg);
	return cfg;
}

/* Checks that msg is "<file>:<line>:<column>: ..." and contains needle. */
static void check_message(const char *msg, const char *file, int line, int column,
			  const char *needle)
{
	char prefix[PATH_MAX + 64];
	snprintf(prefix, sizeof prefix, "%s:%d:%d: ", file, line, column);
	if (strncmp(msg, prefix, strlen(prefix)) != 0)
		fail_msg("expected prefix \"%s\", got \"%s\"", prefix, msg);
	if (strstr(msg, needle) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", needle, msg);
}

/* Loads yaml, which must fail at line:column with a message containing needle. */
static void expect_error(struct fixture *fx, const char *yaml, int line, int column,
			 const char *needle)
{
	struct config *cfg = (struct config *)&cfg; /* must be reset to NULL */
	struct config_error err;
	int rc = load_text(fx, yaml, 0, &cfg, &err);
	if (rc == 0) {
		config_unref(cfg);
		fail_msg("expected an error containing \"%s\", but the config loaded", needle);
	}
	assert_int_equal(rc, -1);
	assert_null(cfg);
	check_message(err.msg, fx->file, line, column, needle);
}

/* --- success ------------------------------------------------------------------------------ */

static void minimal_config_gets_documented_defaults(void **state)
{
	struct fixture *fx = *state;
	char want[PATH_MAX + 64];
	struct config *cfg = load_ok(fx, MINIMAL_LISTENERS);

	assert_string_equal(cfg->path, fx->file);
	assert_string_equal(cfg->data_dir, "/var/lib/madoguchi");
	assert_string_equal(cfg->store.address, "127.0.0.1");
	assert_int_equal(cfg->store.port, 8443);
	assert_int_equal(cfg->store.tls.min_version, 12);
	assert_int_equal(cfg->store.tls.mark.line, 5);
	assert_int_equal(cfg->store.tls.mark.column, 5);
	snprintf(want, sizeof want, "%s/pki/server.pem", fx->dir);
	assert_string_equal(cfg->store.tls.certificate, want);

	assert_int_equal(cfg->store.limits.max_connections, 1024);
	assert_int_equal(cfg->store.limits.max_header_bytes, 16 * 1024);
	assert_int_equal(cfg->store.limits.max_body_bytes, 64 * 1024);
	assert_int_equal(cfg->store.limits.header_timeout_ms, 10000);
	assert_int_equal(cfg->store.limits.body_timeout_ms, 10000);
	assert_int_equal(cfg->store.limits.idle_timeout_ms, 60000);
	assert_int_equal(cfg->store.limits.max_requests_per_connection, 10000);

	assert_int_equal(cfg->admin.mode, 0660);
	assert_null(cfg->admin.group);
	assert_int_equal(cfg->admin.limits.max_connections, 64);
	assert_int_equal(cfg->admin.limits.max_header_bytes, 16 * 1024);
	assert_int_equal(cfg->admin.limits.max_body_bytes, 16 * 1024 * 1024);
	assert_int_equal(cfg->admin.limits.header_timeout_ms, 10000);
	assert_int_equal(cfg->admin.limits.body_timeout_ms, 60000);
	assert_int_equal(cfg->admin.limits.idle_timeout_ms, 300000);
	assert_int_equal(cfg->admin.limits.max_requests_per_connection, 10000);

	assert_false(cfg->metrics.enabled);
	assert_null(cfg->metrics.address);
	assert_int_equal(cfg->metrics.limits.max_connections, 64);
	assert_int_equal(cfg->metrics.limits.max_header_bytes, 8 * 1024);
	assert_int_equal(cfg->metrics.limits.max_body_bytes, 4 * 1024);
	assert_int_equal(cfg->metrics.limits.header_timeout_ms, 5000);
	assert_int_equal(cfg->metrics.limits.body_timeout_ms, 5000);
	assert_int_equal(cfg->metrics.limits.idle_timeout_ms, 60000);
	assert_int_equal(cfg->metrics.limits.max_requests_per_connection, 10000);

	assert_int_equal(cfg->log.level, CONFIG_LOG_INFO);
	assert_true(cfg->log.access);
	assert_int_equal(cfg->drain_timeout_ms, 30000);
	assert_int_equal(cfg->worker_threads, 6);
	assert_int_equal(cfg->refs, 1);
	config_unref(cfg);
}

static void every_key_overrides_its_default(void **state)
{
	struct fixture *fx = *state;
	char want[PATH_MAX + 64];
	struct config *cfg = load_ok(fx, "data_dir: /srv/madoguchi\n"
					 "listeners:\n"
					 "  store:\n"
					 "    address: '::1'\n"
					 "    port: 0\n"
					 "    tls:\n"
					 "      certificate: pki/server.pem\n"
					 "      key: pki/server.key\n"
					 "      client_ca: pki/store-ca.pem\n"
					 "      min_version: 1.3\n"
					 "    limits:\n"
					 "      max_connections: 7\n"
					 "      max_header_bytes: 1KiB\n"
					 "      max_body_bytes: 1GiB\n"
					 "      header_timeout: 250ms\n"
					 "      body_timeout: 5m\n"
					 "      idle_timeout: 1h\n"
					 "      max_requests_per_connection: 1\n"
					 "  admin:\n"
					 "    unix: /run/test/admin.sock\n"
					 "    mode: 0600\n"
					 "    limits:\n"
					 "      max_body_bytes: 2MiB\n"
					 "  metrics:\n"
					 "    address: 0.0.0.0\n"
					 "    port: 65535\n"
					 "    limits:\n"
					 "      idle_timeout: 2\n"
					 "log:\n"
					 "  level: WARN\n"
					 "  access: off\n"
					 "shutdown:\n"
					 "  drain_timeout: 0\n"
					 "worker_threads: 12\n");

	assert_string_equal(cfg->data_dir, "/srv/madoguchi");
	assert_string_equal(cfg->store.address, "::1");
	assert_int_equal(cfg->store.port, 0);
	assert_int_equal(cfg->store.tls.min_version, 13);
	snprintf(want, sizeof want, "%s/pki/store-ca.pem", fx->dir);
	assert_string_equal(cfg->store.tls.client_ca, want);
	assert_int_equal(cfg->store.limits.max_connections, 7);
	assert_int_equal(cfg->store.limits.max_header_bytes, 1024);
	assert_int_equal(cfg->store.limits.max_body_bytes, 1024 * 1024 * 1024);
	assert_int_equal(cfg->store.limits.header_timeout_ms, 250);
	assert_int_equal(cfg->store.limits.body_timeout_ms, 300000);
	assert_int_equal(cfg->store.limits.idle_timeout_ms, 3600000);
	assert_int_equal(cfg->store.limits.max_requests_per_connection, 1);
	assert_string_equal(cfg->admin.unix_path, "/run/test/admin.sock");
	assert_int_equal(cfg->admin.mode, 0600);
	assert_int_equal(cfg->admin.limits.max_body_bytes, 2 * 1024 * 1024);
	assert_int_equal(cfg->admin.limits.max_connections, 64); /* untouched keys keep defaults */
	assert_true(cfg->metrics.enabled);
	assert_string_equal(cfg->metrics.address, "0.0.0.0");
	assert_int_equal(cfg->metrics.port, 65535);
	assert_int_equal(cfg->metrics.limits.idle_timeout_ms, 2000);
	assert_int_equal(cfg->metrics.limits.max_header_bytes, 8 * 1024);
	assert_int_equal(cfg->log.level, CONFIG_LOG_WARN);
	assert_false(cfg->log.access);
	assert_int_equal(cfg->drain_timeout_ms, 0);
	assert_int_equal(cfg->worker_threads, 12);
	config_unref(cfg);
}

static void quoted_and_plain_spellings_are_equivalent(void **state)
{
	struct fixture *fx = *state;
	struct config *cfg = load_ok(fx, MINIMAL_LISTENERS "    mode: \"0640\"\n"
							   "log:\n"
							   "  access: \"no\"\n"
							   "  level: debug\n");
	assert_int_equal(cfg->admin.mode, 0640);
	assert_false(cfg->log.access);
	assert_int_equal(cfg->log.level, CONFIG_LOG_DEBUG);
	assert_int_equal(cfg->store.tls.min_version, 12);
	config_unref(cfg);

	cfg = load_ok(fx, "listeners:\n"
			  "  store:\n"
			  "    address: 127.0.0.1\n"
			  "    port: \"8443\"\n"
			  "    tls: {certificate: pki/server.pem, key: pki/server.key, "
			  "client_ca: pki/store-ca.pem, min_version: \"1.3\"}\n"
			  "  admin: {unix: admin.sock, mode: 600}\n"
			  "log: {access: yes}\n");
	assert_int_equal(cfg->store.port, 8443);
	assert_int_equal(cfg->store.tls.min_version, 13);
	assert_int_equal(cfg->admin.mode, 0600);
	assert_true(cfg->log.access);
	config_unref(cfg);
}

static void empty_optional_sections_keep_defaults(void **state)
{
	struct fixture *fx = *state;
	struct config *cfg = load_ok(fx, MINIMAL_LISTENERS "    limits:\n"
							   "log:\n"
							   "shutdown: ~\n");
	assert_int_equal(cfg->admin.limits.max_connections, 64);
	assert_int_equal(cfg->log.level, CONFIG_LOG_INFO);
	assert_int_equal(cfg->drain_timeout_ms, 30000);
	config_unref(cfg);
}

static void relative_paths_resolve_against_config_directory(void **state)
{
	struct fixture *fx = *state;
	char cwd[PATH_MAX], sub[PATH_MAX + 16], want[PATH_MAX + 64];
	struct config *cfg = NULL;
	struct config_error err;

	/* The config sits in dir/etc and is named relative to the current directory (dir). */
	snprintf(sub, sizeof sub, "%s/etc", fx->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(want, sizeof want, "%s/etc/madoguchi.yaml", fx->dir);
	write_file(want, "data_dir: state\n"
			 "listeners:\n"
			 "  store:\n"
			 "    address: 127.0.0.1\n"
			 "    port: 8443\n"
			 "    tls:\n"
			 "      certificate: ./../pki/server.pem\n"
			 "      key: /"
			 "/tmp/./x/../server.key\n"
			 "      client_ca: ..//pki/store-ca.pem\n"
			 "  admin:\n"
			 "    unix: run/admin.sock\n");
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(fx->dir), 0);
	int rc = config_load_opts("./etc//madoguchi.yaml", CONFIG_SKIP_FILE_CHECKS, &cfg, &err);
	assert_int_equal(chdir(cwd), 0);
	if (rc != 0)
		fail_msg("expected the config to load, got: %s", err.msg);

	assert_string_equal(cfg->path, want);
	snprintf(want, sizeof want, "%s/etc/state", fx->dir);
	assert_string_equal(cfg->data_dir, want);
	snprintf(want, sizeof want, "%s/etc/run/admin.sock", fx->dir);
	assert_string_equal(cfg->admin.unix_path, want);
	/* "." and doubled slashes go; ".." stays, as it may follow a symbolic link. */
	snprintf(want, sizeof want, "%s/etc/../pki/server.pem", fx->dir);
	assert_string_equal(cfg->store.tls.certificate, want);
	snprintf(want, sizeof want, "%s/etc/../pki/store-ca.pem", fx->dir);
	assert_string_equal(cfg->store.tls.client_ca, want);
	assert_string_equal(cfg->store.tls.key, "/tmp/x/../server.key");
	config_unref(cfg);
}

static void shipped_example_loads_with_file_checks_skipped(void **state)
{
	(void)state;
	const char *srcdir = getenv("MDG_SRCDIR");
	char path[PATH_MAX];
	struct config *cfg = NULL;
	struct config_error err;

	snprintf(path, sizeof path, "%s/conf/madoguchi.yaml", srcdir ? srcdir : ".");
	if (config_load_opts(path, CONFIG_SKIP_FILE_CHECKS, &cfg, &err) != 0)
		fail_msg("the shipped example must load: %s", err.msg);
	assert_string_equal(cfg->data_dir, "/var/lib/madoguchi");
	assert_int_equal(cfg->store.port, 8443);
	assert_string_equal(cfg->store.tls.certificate, "/etc/madoguchi/tls/server.pem");
	assert_string_equal(cfg->store.tls.key, "/etc/madoguchi/tls/server.key");
	assert_string_equal(cfg->store.tls.client_ca, "/etc/madoguchi/tls/store-ca.pem");
	assert_int_equal(cfg->store.tls.min_version, 12);
	assert_string_equal(cfg->admin.unix_path, "/run/madoguchi/admin.sock");
	assert_int_equal(cfg->admin.mode, 0660);
	assert_true(cfg->metrics.enabled);
	assert_int_equal(cfg->metrics.port, 9464);
	assert_int_equal(cfg->drain_timeout_ms, 30000);
	assert_true(cfg->issuance.enabled);
	assert_string_equal(cfg->issuance.certificates[2].plugin, "registry");
	assert_int_equal(cfg->issuance.certificates[2].max_age_ms, 60000);
	assert_int_equal(hours_fee(&cfg->issuance.hours, 4), 350);
	config_unref(cfg);
}

/* The listeners, two plugin instances and an issuance section; ISSUANCE_TAIL follows. */
#define ISSUANCE_HEAD                                                                              \
	MINIMAL_LISTENERS "plugins:\n"                                                             \
			  "  registry: {file: sqlite-registry.so}\n"                               \
			  "  vendor: {file: fujitsu-like.so}\n"                                    \
			  "issuance:\n"                                                            \
			  "  municipalities: [\"141003\", \"141011\"]\n"                           \
			  "  municipality_name: 横浜市中区\n"                                 \
			  "  document_key: pki/document.key\n"                                     \
			  "  card_proof: {ca: pki/card-ca.pem}\n"

/* Loads yaml, which must fail with a message containing needle (checks without a position). */
static void expect_failure(struct fixture *fx, const char *yaml, const char *needle)
{
	struct config *cfg = NULL;
	struct config_error err;
	assert_int_equal(load_text(fx, yaml, 0, &cfg, &err), -1);
	assert_null(cfg);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", needle, err.msg);
}

static void issuance_section_sets_routes_hours_and_fees(void **state)
{
	struct config *cfg = load_ok(
	    *state, ISSUANCE_HEAD "  certificates:\n"
				  "    residence: {plugin: registry, opening: \"08:30\", "
				  "closing: \"20:00\", closed: [\"05-03\"], fee: 300}\n"
				  "    seal: {plugin: vendor, always_open: true, max_age: 60s}\n");
	const struct config_issuance *is = &cfg->issuance;
	assert_true(is->enabled);
	assert_int_equal(is->municipalities.count, 2);
	assert_string_equal(is->municipalities.items[1], "141011");
	assert_int_equal(is->card_proof.mode, CONFIG_CARD_PROOF_REQUIRED);
	assert_int_equal(is->card_proof.max_skew_ms, 300000);
	assert_int_equal(is->deadline_ms, 10000);
	assert_int_equal(is->max_pending, 2048);
	assert_int_equal(is->render_queue, 512);
	assert_string_equal(is->certificates[0].plugin, "registry");
	assert_string_equal(is->certificates[2].plugin, "vendor");
	assert_null(is->certificates[1].plugin); /* residence-record is not offered */
	assert_int_equal(is->certificates[2].max_age_ms, 60000);
	assert_int_equal(is->certificates[0].max_age_ms, 300000);
	assert_int_equal(hours_fee(&is->hours, 0), 300);
	/* 2026-05-03 is closed for residence (its own list replaces the default), 2026-12-30
	 * is open; 08:29 Tokyo closed, 08:30 open.  Seal: always open. */
	assert_false(hours_is_open(&is->hours, 0, 1777777800)); /* 2026-05-03 12:10 JST */
	assert_true(hours_is_open(&is->hours, 0, 1798598400));	/* 2026-12-30 11:40 JST */
	assert_false(hours_is_open(&is->hours, 0, 1795735740)); /* 2026-11-27 08:29 JST */
	assert_true(hours_is_open(&is->hours, 0, 1795735800));	/* 2026-11-27 08:30 JST */
	assert_true(hours_is_open(&is->hours, 2, 1798729200));	/* 2027-01-01 00:00 JST */
	config_unref(cfg);
}

static void issuance_section_errors_name_the_place(void **state)
{
	/* ISSUANCE_HEAD is 18 lines; the certificates key is line 19. */
	expect_error(*state, ISSUANCE_HEAD "  certificates:\n    residence: {plugin: nobody}\n", 20,
		     5, "no plugin instance 'nobody'");
	expect_error(*state,
		     ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry, "
				   "opening: \"25:00\"}\n",
		     20, 5, "issuance.certificates.residence: opening");
	expect_error(*state, ISSUANCE_HEAD "  certificates:\n    passport: {plugin: registry}\n",
		     20, 5, "unknown key 'passport' in issuance.certificates");
	expect_error(*state,
		     ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry}\n"
				   "  deadline: 1h\n",
		     21, 13, "issuance.deadline");
	expect_error(*state,
		     ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry}\n"
				   "  max_pending: 0\n",
		     21, 16, "issuance.max_pending");
	struct config *cfg =
	    load_ok(*state, ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry}\n"
					  "  max_pending: 300\n  render_queue: 40\n");
	assert_int_equal(cfg->issuance.max_pending, 300);
	assert_int_equal(cfg->issuance.render_queue, 40);
	assert_null(cfg->issuance.node);
	config_unref(cfg);
	cfg = load_ok(*state, ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry}\n"
					    "  node: b2\n");
	assert_string_equal(cfg->issuance.node, "b2");
	config_unref(cfg);
	expect_failure(*state,
		       ISSUANCE_HEAD "  certificates:\n    residence: {plugin: registry}\n"
				     "  node: Hall-B\n",
		       "issuance.node: 'Hall-B' must be 1 to 8 of a-z and 0-9");
}

static void ministry_section_reads_keys_threshold_and_feed(void **state)
{
	struct fixture *fx = *state;
	char want[PATH_MAX + 64];
	struct config *cfg = load_ok(fx, MINIMAL_LISTENERS);
	assert_false(cfg->ministry.enabled);
	config_unref(cfg);

	cfg = load_ok(fx, MINIMAL_LISTENERS "ministry:\n"
					    "  keys: [pki/server.pem, pki/store-ca.pem]\n"
					    "  threshold: 2\n"
					    "  feed_url: https://127.0.0.1:9/list\n"
					    "  poll_interval: 5s\n");
	assert_true(cfg->ministry.enabled);
	assert_int_equal(cfg->ministry.keys.count, 2);
	snprintf(want, sizeof want, "%s/pki/store-ca.pem", fx->dir);
	assert_string_equal(cfg->ministry.keys.items[1], want);
	assert_int_equal(cfg->ministry.threshold, 2);
	assert_string_equal(cfg->ministry.feed_url, "https://127.0.0.1:9/list");
	assert_null(cfg->ministry.feed_ca);
	assert_int_equal(cfg->ministry.poll_interval_ms, 5000);
	assert_int_equal(cfg->ministry.feed_timeout_ms, 10000);
	config_unref(cfg);
}

static void ministry_section_errors_are_refused(void **state)
{
	struct fixture *fx = *state;
	expect_failure(fx,
		       MINIMAL_LISTENERS "ministry:\n  keys: [pki/server.pem]\n  threshold: 2\n",
		       "ministry.threshold: 2 signatures required but only 1 keys");
	expect_failure(fx,
		       MINIMAL_LISTENERS "ministry:\n  keys: [pki/server.pem]\n"
					 "  feed_url: http://127.0.0.1/list\n",
		       "ministry.feed_url: must be an https:// URL");
	expect_failure(fx, MINIMAL_LISTENERS "ministry:\n  keys: []\n",
		       "at least one ministry public key");
	expect_error(fx, MINIMAL_LISTENERS "ministry:\n  keys: [pki/missing.pub]\n", 12, 10,
		     "ministry.keys");
	expect_error(fx, MINIMAL_LISTENERS "ministry:\n  threshold: 1\n", 12, 3,
		     "missing required key 'keys' in ministry");
}

static void existing_group_is_accepted(void **state)
{
	struct fixture *fx = *state;
	char yaml[1024];
	struct group *gr = getgrgid(getgid());
	if (gr == NULL) {
		skip(); /* the test's own group has no name: nothing to check against */
		return;
	}
	snprintf(yaml, sizeof yaml, MINIMAL_LISTENERS "    group: '%s'\n", gr->gr_name);
	struct config *cfg = load_ok(fx, yaml);
	assert_string_equal(cfg->admin.group, gr->gr_name);
	config_unref(cfg);
}

static void references_keep_config_alive_until_last_unref(void **state)
{
	struct fixture *fx = *state;
	struct config *cfg = load_ok(fx, MINIMAL_LISTENERS);
	assert_int_equal(cfg->refs, 1);
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(cfg->refs, 2);
	config_unref(cfg);
	assert_int_equal(cfg->refs, 1);
	assert_string_equal(cfg->store.address, "127.0.0.1"); /* still alive (ASan checks) */
	config_unref(cfg);				      /* frees (ASan checks for leaks) */
	config_unref(NULL);
	assert_null(config_ref(NULL));
}

/* --- parsers ------------------------------------------------------------------------------ */

static void duration_parser_reads_units_and_bare_seconds(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t ms;
	} ok[] = {{"250ms", 250}, {"10s", 10000}, {"5m", 300000}, {"1h", 3600000},
		  {"30", 30000},  {"0", 0},	  {"0ms", 0},	  {"007s", 7000}};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t ms = 12345;
		if (config_parse_duration(ok[i].text, &ms) != 0)
			fail_msg("'%s' must parse", ok[i].text);
		assert_int_equal(ms, ok[i].ms);
	}
}

static void duration_parser_rejects_other_forms(void **state)
{
	(void)state;
	static const char *const bad[] = {"",
					  "-1s",
					  "+1s",
					  "1.5s",
					  "10 s",
					  " 10s",
					  "10S",
					  "1d",
					  "ms",
					  "1sm",
					  "s",
					  "1hh",
					  "0x10",
					  "18446744073709551615s",
					  "99999999999999999999"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t ms = 777;
		if (config_parse_duration(bad[i], &ms) != -1)
			fail_msg("'%s' must be rejected", bad[i]);
		assert_int_equal(ms, 777);
	}
	uint64_t ms;
	assert_int_equal(config_parse_duration(NULL, &ms), -1);
}

static void size_parser_reads_bytes_and_binary_suffixes(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = {{"65536", 65536},  {"64KiB", 65536},
		  {"1MiB", 1048576}, {"2GiB", UINT64_C(2147483648)},
		  {"0", 0},	     {"18446744073709551615", UINT64_MAX}};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t bytes = 1;
		if (config_parse_size(ok[i].text, &bytes) != 0)
			fail_msg("'%s' must parse", ok[i].text);
		assert_int_equal(bytes, ok[i].bytes);
	}
}

static void size_parser_rejects_decimal_suffixes_and_junk(void **state)
{
	(void)state;
	static const char *const bad[] = {"",
					  "64KB",
					  "64kb",
					  "64K",
					  "1MB",
					  "1GB",
					  "64 KiB",
					  "-1",
					  "1.5MiB",
					  "KiB",
					  "1TiB",
					  "64kib",
					  "18446744073709551616",
					  "17179869184GiB"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t bytes = 777;
		if (config_parse_size(bad[i], &bytes) != -1)
			fail_msg("'%s' must be rejected", bad[i]);
		assert_int_equal(bytes, 777);
	}
	uint64_t bytes;
	assert_int_equal(config_parse_size(NULL, &bytes), -1);
}

/* --- errors: the file itself -------------------------------------------------------------- */

static void missing_file_is_reported_with_strerror(void **state)
{
	struct fixture *fx = *state;
	char path[PATH_MAX + 32], want[PATH_MAX + 128];
	struct config *cfg = (struct config *)&cfg;
	struct config_error err;

	snprintf(path, sizeof path, "%s/absent.yaml", fx->dir);
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_null(cfg);
	snprintf(want, sizeof want, "%s: cannot open: %s", path, strerror(ENOENT));
	assert_string_equal(err.msg, want);
}

static void directory_instead_of_file_is_rejected(void **state)
{
	struct fixture *fx = *state;
	char want[PATH_MAX + 128];
	struct config *cfg = NULL;
	struct config_error err;

	assert_int_equal(config_load(fx->dir, &cfg, &err), -1);
	assert_null(cfg);
	snprintf(want, sizeof want, "%s: cannot open: %s", fx->dir, strerror(EISDIR));
	assert_string_equal(err.msg, want);
}

static void empty_file_is_rejected(void **state)
{
	expect_error(*state, "", 1, 1, "the file is empty");
	expect_error(*state, "# only a comment\n", 1, 1, "the file is empty");
}

static void top_level_that_is_not_a_mapping_is_rejected(void **state)
{
	expect_error(*state, "just text\n", 1, 1, "the top level must be a mapping");
	expect_error(*state, "\n- a\n- b\n", 2, 1, "the top level must be a mapping");
	expect_error(*state, "\n- a\n- b\n", 2, 1, "got a list");
}

static void yaml_syntax_error_is_reported_at_problem_mark(void **state)
{
	/* A tab may not indent YAML; a key without ':'; an unterminated quote. */
	expect_error(*state, "listeners:\n  store:\n\taddress: 1\n", 3, 1, "YAML syntax error");
	expect_error(*state, "log:\n  level: info\n  access\nshutdown: {}\n", 4, 1,
		     "could not find expected ':'");
	expect_error(*state, "log:\n  level: 'info\n", 3, 1, "found unexpected end of stream");
	expect_error(*state, "log: [a\n", 2, 1, "YAML syntax error");
}

static void invalid_utf8_is_rejected(void **state)
{
	struct fixture *fx = *state;
	struct config *cfg = NULL;
	struct config_error err;
	assert_int_equal(load_text(fx, "log:\n  level: \xff\n", 0, &cfg, &err), -1);
	assert_null(cfg);
	assert_non_null(strstr(err.msg, "UTF-8"));
	assert_int_equal(strncmp(err.msg, fx->file, strlen(fx->file)), 0);
}

static void second_yaml_document_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "---\nlog: {}\n", 12, 1,
		     "only one YAML document is allowed");
}

static void yaml_aliases_are_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: &addr 127.0.0.1\n"
		     "    port: 8443\n"
		     "    tls: {certificate: pki/server.pem, key: pki/server.key, "
		     "client_ca: pki/store-ca.pem}\n"
		     "  admin:\n"
		     "    unix: admin.sock\n"
		     "  metrics:\n"
		     "    address: *addr\n"
		     "    port: 9464\n",
		     3, 14, "aliases are not supported");
}

/* --- errors: keys ------------------------------------------------------------------------- */

static void unknown_top_level_key_is_reported_at_the_key(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "loglevel: debug\n", 11, 1,
		     "unknown key 'loglevel' at the top level");
}

static void unknown_nested_key_is_reported_with_dotted_path(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    adress: 127.0.0.1\n",
		     4, 5, "unknown key 'adress' in listeners.store");
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      max_conections: 5\n", 12, 7,
		     "unknown key 'max_conections' in listeners.admin.limits");
}

static void non_scalar_key_is_rejected(void **state)
{
	expect_error(*state, "? [a, b]\n: 1\n", 1, 3, "expected a key name at the top level");
}

static void duplicate_key_is_reported_at_the_second_key(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 8443\n"
		     "    port: 8444\n",
		     5, 5, "duplicate key 'port' in listeners.store (first given at line 4)");
	expect_error(*state, MINIMAL_LISTENERS "log: {}\nlog: {}\n", 12, 1,
		     "duplicate key 'log' at the top level");
}

static void missing_required_key_is_reported_at_the_mapping(void **state)
{
	expect_error(*state,
		     "log:\n"
		     "  level: info\n"
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    tls:\n"
		     "      certificate: pki/server.pem\n"
		     "      key: pki/server.key\n"
		     "      client_ca: pki/store-ca.pem\n"
		     "  admin:\n"
		     "    unix: admin.sock\n",
		     5, 5, "missing required key 'port' in listeners.store");
	expect_error(*state, "\nlog: {level: info}\n", 2, 1,
		     "missing required key 'listeners' at the top level");
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 1\n"
		     "    tls: {certificate: pki/server.pem, client_ca: pki/store-ca.pem}\n"
		     "  admin:\n"
		     "    unix: admin.sock\n",
		     5, 10, "missing required key 'key' in listeners.store.tls");
	expect_error(*state, MINIMAL_LISTENERS "  metrics:\n    address: 127.0.0.1\n", 12, 5,
		     "missing required key 'port' in listeners.metrics");
}

static void empty_required_section_is_reported_at_its_key(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "  metrics:\n", 11, 3,
		     "missing required key 'address' in listeners.metrics");
}

/* --- errors: node types ------------------------------------------------------------------- */

static void scalar_where_mapping_expected_is_rejected(void **state)
{
	expect_error(*state, "listeners: store\n", 1, 12,
		     "listeners: expected a mapping of settings");
	expect_error(*state, MINIMAL_LISTENERS "    limits: 5\n", 11, 13,
		     "listeners.admin.limits: expected a mapping of settings (key: value lines), "
		     "got a single value");
	expect_error(*state, MINIMAL_LISTENERS "log:\n  - level: info\n", 12, 3,
		     "log: expected a mapping of settings (key: value lines), got a list");
}

static void mapping_where_scalar_expected_is_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address:\n"
		     "      ip: 127.0.0.1\n",
		     4, 7, "listeners.store.address: expected a single value, got a mapping");
	expect_error(*state, MINIMAL_LISTENERS "log:\n  level: [info, debug]\n", 12, 10,
		     "log.level: expected a single value, got a list");
}

/* --- errors: values ----------------------------------------------------------------------- */

static void non_integer_port_is_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: https\n",
		     4, 11, "listeners.store.port: expected an integer, got 'https'");
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: -1\n",
		     4, 11, "listeners.store.port: expected an integer, got '-1'");
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port:\n",
		     4, 10, "listeners.store.port: expected an integer, got ''");
}

static void out_of_range_port_is_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 65536\n",
		     4, 11, "listeners.store.port: '65536' is out of range (0 to 65535)");
	expect_error(*state,
		     MINIMAL_LISTENERS
		     "  metrics: {address: 127.0.0.1, port: 99999999999999999999999}\n",
		     11, 39, "listeners.metrics.port: '99999999999999999999999' is out of range");
}

static void out_of_range_limit_integers_are_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "    limits: {max_connections: 0}\n", 11, 31,
		     "listeners.admin.limits.max_connections: '0' is out of range (1 to 1000000)");
	expect_error(*state,
		     MINIMAL_LISTENERS "    limits: {max_requests_per_connection: 10000001}\n", 11,
		     43, "'10000001' is out of range (1 to 10000000)");
	expect_error(*state, MINIMAL_LISTENERS "worker_threads: 0\n", 11, 17,
		     "worker_threads: '0' is out of range (1 to 1024)");
}

static void non_numeric_address_is_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: localhost\n",
		     3, 14,
		     "listeners.store.address: expected a numeric IPv4 or IPv6 address such as "
		     "127.0.0.1 or ::1 (host names are not looked up), got 'localhost'");
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 256.1.1.1\n",
		     3, 14, "got '256.1.1.1'");
}

static void bad_duration_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "shutdown:\n  drain_timeout: 30 seconds\n", 12, 18,
		     "shutdown.drain_timeout: expected a duration such as 250ms, 10s, 5m or 1h");
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      idle_timeout: 2h\n", 12, 21,
		     "listeners.admin.limits.idle_timeout: '2h' is out of range (1ms to 1h)");
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      body_timeout: 0ms\n", 12, 21,
		     "'0ms' is out of range (1ms to 1h)");
}

static void bad_size_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      max_body_bytes: 16MB\n", 12, 23,
		     "listeners.admin.limits.max_body_bytes: expected a size in bytes, optionally "
		     "with a KiB, MiB or GiB suffix (KB, MB and GB are not accepted), got '16MB'");
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      max_header_bytes: 512\n", 12, 25,
		     "listeners.admin.limits.max_header_bytes: '512' is out of range "
		     "(1KiB to 1MiB)");
	expect_error(*state, MINIMAL_LISTENERS "    limits:\n      max_body_bytes: 2GiB\n", 12, 23,
		     "'2GiB' is out of range (1 to 1GiB)");
}

static void bad_mode_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "    mode: rw-rw----\n", 11, 11,
		     "listeners.admin.mode: expected an octal file mode such as 0660, got "
		     "'rw-rw----'");
	expect_error(*state, MINIMAL_LISTENERS "    mode: 0680\n", 11, 11,
		     "expected an octal file mode");
	expect_error(*state, MINIMAL_LISTENERS "    mode: 01777\n", 11, 11,
		     "listeners.admin.mode: '01777' is out of range (00 to 0777)");
}

static void unknown_log_level_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "log:\n  level: verbose\n", 12, 10,
		     "log.level: expected one of debug, info, warn, error, got 'verbose'");
}

static void bad_bool_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "log:\n  access: 1\n", 12, 11,
		     "log.access: expected true or false (or yes/no, on/off), got '1'");
}

static void bad_tls_min_version_is_rejected(void **state)
{
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 8443\n"
		     "    tls:\n"
		     "      min_version: 1.1\n",
		     6, 20,
		     "listeners.store.tls.min_version: expected \"1.2\" or \"1.3\", got '1.1'");
	expect_error(*state,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 8443\n"
		     "    tls:\n"
		     "      min_version: TLSv1.3\n",
		     6, 20, "got 'TLSv1.3'");
}

static void empty_path_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "data_dir: ''\n", 11, 11,
		     "data_dir: expected a path, got nothing");
}

static void unreadable_tls_file_is_reported_at_the_value(void **state)
{
	struct fixture *fx = *state;
	char needle[PATH_MAX + 128];
	snprintf(needle, sizeof needle,
		 "listeners.store.tls.key: cannot read '%s/pki/missing.key': %s", fx->dir,
		 strerror(ENOENT));
	expect_error(fx,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 8443\n"
		     "    tls:\n"
		     "      certificate: pki/server.pem\n"
		     "      key: pki/missing.key\n"
		     "      client_ca: pki/store-ca.pem\n",
		     7, 12, needle);
}

static void tls_file_that_is_a_directory_is_rejected(void **state)
{
	struct fixture *fx = *state;
	char needle[PATH_MAX + 128];
	snprintf(needle, sizeof needle,
		 "listeners.store.tls.client_ca: '%s/pki' is not a regular file", fx->dir);
	expect_error(fx,
		     "listeners:\n"
		     "  store:\n"
		     "    address: 127.0.0.1\n"
		     "    port: 8443\n"
		     "    tls:\n"
		     "      certificate: pki/server.pem\n"
		     "      key: pki/server.key\n"
		     "      client_ca: pki/\n",
		     8, 18, needle);
}

static void skipping_file_checks_accepts_missing_tls_files(void **state)
{
	struct fixture *fx = *state;
	struct config *cfg = NULL;
	struct config_error err;
	const char *yaml = "listeners:\n"
			   "  store:\n"
			   "    address: 127.0.0.1\n"
			   "    port: 8443\n"
			   "    tls: {certificate: a.pem, key: a.key, client_ca: ca.pem}\n"
			   "  admin: {unix: admin.sock}\n";
	assert_int_equal(load_text(fx, yaml, 0, &cfg, &err), -1);
	check_message(err.msg, fx->file, 5, 24, "listeners.store.tls.certificate: cannot read");
	if (load_text(fx, yaml, CONFIG_SKIP_FILE_CHECKS, &cfg, &err) != 0)
		fail_msg("expected the config to load, got: %s", err.msg);
	config_unref(cfg);
}

static void nonexistent_group_is_rejected(void **state)
{
	expect_error(*state, MINIMAL_LISTENERS "    group: mdg-no-such-group-4711\n", 11, 12,
		     "listeners.admin.group: group 'mdg-no-such-group-4711' does not exist");
}

static void long_values_are_truncated_in_messages(void **state)
{
	struct fixture *fx = *state;
	char yaml[4096], needle[128];
	struct config *cfg = NULL;
	struct config_error err;
	char big[2001];
	memset(big, 'x', 2000);
	big[2000] = '\0';
	snprintf(yaml, sizeof yaml, MINIMAL_LISTENERS "log:\n  level: %s\n", big);
	assert_int_equal(load_text(fx, yaml, 0, &cfg, &err), -1);
	snprintf(needle, sizeof needle, "got '%.80s'", big);
	check_message(err.msg, fx->file, 12, 10, needle);
	assert_true(strlen(err.msg) < 400);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST(minimal_config_gets_documented_defaults),
	    TEST(every_key_overrides_its_default),
	    TEST(quoted_and_plain_spellings_are_equivalent),
	    TEST(empty_optional_sections_keep_defaults),
	    TEST(relative_paths_resolve_against_config_directory),
	    TEST(shipped_example_loads_with_file_checks_skipped),
	    TEST(issuance_section_sets_routes_hours_and_fees),
	    TEST(issuance_section_errors_name_the_place),
	    TEST(ministry_section_reads_keys_threshold_and_feed),
	    TEST(ministry_section_errors_are_refused),
	    TEST(existing_group_is_accepted),
	    TEST(references_keep_config_alive_until_last_unref),
	    TEST(duration_parser_reads_units_and_bare_seconds),
	    TEST(duration_parser_rejects_other_forms),
	    TEST(size_parser_reads_bytes_and_binary_suffixes),
	    TEST(size_parser_rejects_decimal_suffixes_and_junk),
	    TEST(missing_file_is_reported_with_strerror),
	    TEST(directory_instead_of_file_is_rejected),
	    TEST(empty_file_is_rejected),
	    TEST(top_level_that_is_not_a_mapping_is_rejected),
	    TEST(yaml_syntax_error_is_reported_at_problem_mark),
	    TEST(invalid_utf8_is_rejected),
	    TEST(second_yaml_document_is_rejected),
	    TEST(yaml_aliases_are_rejected),
	    TEST(unknown_top_level_key_is_reported_at_the_key),
	    TEST(unknown_nested_key_is_reported_with_dotted_path),
	    TEST(non_scalar_key_is_rejected),
	    TEST(duplicate_key_is_reported_at_the_second_key),
	    TEST(missing_required_key_is_reported_at_the_mapping),
	    TEST(empty_required_section_is_reported_at_its_key),
	    TEST(scalar_where_mapping_expected_is_rejected),
	    TEST(mapping_where_scalar_expected_is_rejected),
	    TEST(non_integer_port_is_rejected),
	    TEST(out_of_range_port_is_rejected),
	    TEST(out_of_range_limit_integers_are_rejected),
	    TEST(non_numeric_address_is_rejected),
	    TEST(bad_duration_is_rejected),
	    TEST(bad_size_is_rejected),
	    TEST(bad_mode_is_rejected),
	    TEST(unknown_log_level_is_rejected),
	    TEST(bad_bool_is_rejected),
	    TEST(bad_tls_min_version_is_rejected),
	    TEST(empty_path_is_rejected),
	    TEST(unreadable_tls_file_is_reported_at_the_value),
	    TEST(tls_file_that_is_a_directory_is_rejected),
	    TEST(skipping_file_checks_accepts_missing_tls_files),
	    TEST(nonexistent_group_is_rejected),
	    TEST(long_values_are_truncated_in_messages),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
