/*
 * test_plugin_host.c: the loader's refusals, one deliberately bad plugin each, and the fetch
 * contract (tickets, deadlines, late and foreign completions, admission) with the mock plugin
 * built by the test suite (tests/plugins/mock.c).  MDG_TEST_PLUGINS names the directory of
 * the built test plugins.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <uv.h>

#include "config.h"
#include "host_fixture.h"
#include "metrics.h"
#include "plugin_host.h"
#include "record.h"

/* Copies the test plugin NAME.so into the fixture's plugin_dir as AS with mode. */
static void install_plugin(struct hf_fixture *fx, const char *name, const char *as, mode_t mode)
{
	const char *src_dir = getenv("MDG_TEST_PLUGINS");
	assert_non_null(src_dir);
	char so[64];
	snprintf(so, sizeof so, "%s.so", name);
	assert_int_equal(hf_install_plugin(src_dir, so, fx->plugin_dir, as, mode), 0);
}

static void write_config(struct hf_fixture *fx, const char *plugins_yaml)
{
	assert_int_equal(hf_write_config(fx->config_path, fx->plugin_dir, plugins_yaml), 0);
}

static int load(struct hf_fixture *fx)
{
	return hf_load(fx->config_path, &fx->loop, &fx->cfg, &fx->host, fx->msg, sizeof fx->msg);
}

static int setup(void **state)
{
	struct hf_fixture *fx = hf_fixture_new("mdg-plugin-test");
	if (fx == NULL)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	return hf_fixture_free(*state);
}

/* Asserts the load fails and the message contains want. */
static void expect_refusal(struct hf_fixture *fx, const char *want)
{
	assert_int_equal(load(fx), -1);
	assert_null(fx->host);
	if (strstr(fx->msg, want) == NULL)
		fail_msg("message '%s' lacks '%s'", fx->msg, want);
}

/* --- refusals ----------------------------------------------------------------------------- */

/* Installs the test plugin built with one defect as the only instance; the load must fail
 * naming it. */
static void expect_bad_plugin_refused(struct hf_fixture *fx, const char *plugin, const char *want)
{
	install_plugin(fx, plugin, "m.so", 0755);
	write_config(fx, "  m: {file: m.so}\n");
	expect_refusal(fx, want);
}

static void a_plugin_of_another_abi_major_is_refused(void **state)
{
	expect_bad_plugin_refused(*state, "bad_major", "major versions differ");
}

static void a_plugin_of_a_newer_abi_minor_is_refused(void **state)
{
	expect_bad_plugin_refused(*state, "bad_minor", "newer than this host's");
}

static void a_descriptor_too_small_is_refused(void **state)
{
	expect_bad_plugin_refused(*state, "bad_size", "descriptor is 16 bytes");
}

static void a_missing_entry_symbol_is_refused(void **state)
{
	expect_bad_plugin_refused(*state, "no_entry", "no mdg_plugin_entry symbol");
}

static void an_unresolved_symbol_is_refused_at_load(void **state)
{
	expect_bad_plugin_refused(*state, "unresolved", "mdg_symbol_that_does_not_exist");
}

static void a_group_or_world_writable_file_is_refused(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "mock", "m.so", 0775);
	write_config(fx, "  m: {file: m.so}\n");
	expect_refusal(fx, "writable by group or others");
	install_plugin(fx, "mock", "m.so", 0757);
	expect_refusal(fx, "writable by group or others");
}

static void a_file_owned_by_another_user_is_refused(void **state)
{
	struct hf_fixture *fx = *state;
	if (geteuid() != 0)
		skip(); /* only root can give a file away */
	install_plugin(fx, "mock", "m.so", 0755);
	char path[256];
	snprintf(path, sizeof path, "%s/m.so", fx->plugin_dir);
	assert_int_equal(chown(path, 65534, 65534), 0);
	write_config(fx, "  m: {file: m.so}\n");
	expect_refusal(fx, "owned by another user");
}

static void a_path_outside_plugin_dir_is_refused(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "mock", "m.so", 0755);
	char outside[256];
	snprintf(outside, sizeof outside, "%s/m.so", fx->dir);
	char inside[256];
	snprintf(inside, sizeof inside, "%s/m.so", fx->plugin_dir);
	assert_int_equal(rename(inside, outside), 0);
	write_config(fx, "  m: {file: ../m.so}\n");
	expect_refusal(fx, "outside plugin_dir");
	/* A symbolic link inside plugin_dir pointing out does not count either. */
	assert_int_equal(symlink(outside, inside), 0);
	write_config(fx, "  m: {file: m.so}\n");
	expect_refusal(fx, "outside plugin_dir");
}

static void a_missing_file_is_refused_with_its_position(void **state)
{
	struct hf_fixture *fx = *state;
	write_config(fx, "  m:\n    file: nothere.so\n");
	expect_refusal(fx, "No such file or directory");
	/* plugins: is at line 9 of the written config; file: is line 11, column 11. */
	assert_non_null(strstr(fx->msg, "madoguchi.yaml:11:11: plugins.m: refused nothere.so"));
}

static void a_setting_the_plugin_does_not_read_is_an_unknown_key(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "mock", "m.so", 0755);
	write_config(fx, "  m:\n    file: m.so\n    config:\n      mode: ok\n      colour: red\n");
	expect_refusal(fx, "madoguchi.yaml:14:15: unknown key 'colour' in plugins.m.config");
}

static void a_bad_setting_is_reported_at_its_value(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "mock", "m.so", 0755);
	write_config(fx, "  m:\n    file: m.so\n    config:\n      mode: sideways\n");
	expect_refusal(fx, "madoguchi.yaml:13:13: plugins.m.config.mode: expected ok, delay");
	write_config(fx, "  m:\n    file: m.so\n    config:\n      delay_ms: soon\n");
	expect_refusal(fx, "madoguchi.yaml:13:17: plugins.m.config.delay_ms: expected an integer");
}

static void one_file_loads_as_several_instances_with_their_own_configs(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "mock", "m.so", 0755);
	write_config(fx, "  fast: {file: m.so, config: {mode: ok}}\n"
			 "  slow: {file: m.so, config: {mode: never}}\n");
	assert_int_equal(load(fx), 0);
	assert_int_equal(plugin_host_count(fx->host), 2);
	assert_non_null(plugin_host_find(fx->host, "fast"));
	assert_non_null(plugin_host_find(fx->host, "slow"));
	assert_string_equal(plugin_instance_descriptor(plugin_host_find(fx->host, "slow"))->name,
			    "mock");
}

/* --- fetches ------------------------------------------------------------------------------ */

struct outcome {
	int calls;
	int status;
	char resident_code[64];
	char reason[200];
};

static void record_outcome(void *arg, int status, mdg_record *record, const char *reason)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = status;
	if (record != NULL) {
		snprintf(o->resident_code, sizeof o->resident_code, "%s",
			 record_resident_code(record));
		record_free(record);
	}
	if (reason != NULL)
		snprintf(o->reason, sizeof o->reason, "%s", reason);
}

/* Loads one mock instance "m" with the given mode and fetch timeout. */
static struct plugin_instance *load_mock(struct hf_fixture *fx, const char *mode, int timeout_ms,
					 int max_in_flight)
{
	install_plugin(fx, "mock", "m.so", 0755);
	char yaml[512];
	snprintf(yaml, sizeof yaml,
		 "  m:\n    file: m.so\n    timeout: %dms\n    max_in_flight: %d\n"
		 "    config: {mode: %s, delay_ms: 100}\n",
		 timeout_ms, max_in_flight, mode);
	write_config(fx, yaml);
	assert_int_equal(load(fx), 0);
	return plugin_host_find(fx->host, "m");
}

/* Value of a series in the rendered metrics, or -1. */
static long long metric(const char *series)
{
	size_t len;
	char *text = metrics_render(&len);
	char *at = strstr(text, series);
	long long v = at ? strtoll(at + strlen(series), NULL, 10) : -1;
	free(text);
	return v;
}

static void a_completed_fetch_reaches_its_requester_once(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "ok", 1000, 8);
	struct outcome o = {0};
	assert_int_equal(plugin_fetch(m, "residence", "141003", "12345678901", 0, 1000,
				      record_outcome, &o, NULL),
			 MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, MDG_OK);
	assert_string_equal(o.resident_code, "12345678901");
	assert_int_equal(metric("madoguchi_plugin_fetches_total{plugin=\"m\",result=\"ok\"} "), 1);
}

static void change_notifications_raise_the_version_floor_only(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "notify", 1000, 8);
	struct outcome o = {0};
	assert_int_equal(plugin_host_version_floor(fx->host, "12345678901"), 0);
	assert_int_equal(plugin_fetch(m, "residence", "141003", "12345678901", 0, 1000,
				      record_outcome, &o, NULL),
			 MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.status, MDG_OK);
	assert_int_equal(plugin_host_version_floor(fx->host, "12345678901"), 7);
	assert_int_equal(plugin_host_version_floor(fx->host, "10000000000"), 0);
}

static void concurrent_fetches_each_get_their_own_record(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "delay", 2000, 200);
	enum { N = 150 };
	static struct outcome o[N];
	memset(o, 0, sizeof o);
	for (int i = 0; i < N; i++) {
		char code[16];
		snprintf(code, sizeof code, "%011d", 10000000 + i);
		assert_int_equal(plugin_fetch(m, i % 2 ? "seal" : "residence", "141003", code, 0,
					      2000, record_outcome, &o[i], NULL),
				 MDG_OK);
	}
	assert_int_equal(plugin_instance_in_flight(m), N);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	for (int i = 0; i < N; i++) {
		char code[16];
		snprintf(code, sizeof code, "%011d", 10000000 + i);
		assert_int_equal(o[i].calls, 1);
		assert_int_equal(o[i].status, MDG_OK);
		assert_string_equal(o[i].resident_code, code);
	}
	assert_int_equal(plugin_instance_in_flight(m), 0);
}

static void a_fetch_past_its_deadline_times_out_and_is_cancelled(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "never", 50, 8);
	struct outcome o = {0};
	uint64_t t0 = uv_hrtime();
	assert_int_equal(
	    plugin_fetch(m, "residence", "141003", "12345678901", 0, 50, record_outcome, &o, NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	uint64_t ms = (uv_hrtime() - t0) / 1000000u;
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, MDG_ERR_TIMEOUT);
	assert_true(ms >= 45 && ms < 1000);
	assert_int_equal(metric("madoguchi_plugin_mock_cancels_total{plugin=\"m\"} "), 1);
	assert_int_equal(metric("madoguchi_plugin_fetches_total{plugin=\"m\",result=\"timeout\"} "),
			 1);
}

static void a_late_completion_is_dropped_and_counted(void **state)
{
	struct hf_fixture *fx = *state;
	/* The mock answers after 100 ms; the deadline is 20 ms. */
	struct plugin_instance *m = load_mock(fx, "late", 20, 8);
	struct outcome o = {0};
	assert_int_equal(
	    plugin_fetch(m, "residence", "141003", "12345678901", 0, 20, record_outcome, &o, NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, MDG_ERR_TIMEOUT);
	assert_int_equal(metric("madoguchi_plugin_late_completions_total{plugin=\"m\"} "), 1);
}

static void a_completion_with_a_foreign_ticket_reaches_no_request(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "foreign", 100, 8);
	struct outcome o = {0};
	assert_int_equal(
	    plugin_fetch(m, "residence", "141003", "12345678901", 0, 100, record_outcome, &o, NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* The forged completion was dropped; the real request timed out with no record. */
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, MDG_ERR_TIMEOUT);
	assert_string_equal(o.resident_code, "");
	assert_int_equal(metric("madoguchi_plugin_late_completions_total{plugin=\"m\"} "), 1);
}

static void a_fetch_the_plugin_cannot_start_fails_without_a_callback(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "error", 100, 8);
	struct outcome o = {0};
	assert_int_equal(
	    plugin_fetch(m, "residence", "141003", "12345678901", 0, 100, record_outcome, &o, NULL),
	    MDG_ERR_BACKEND);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 0);
	assert_int_equal(plugin_instance_in_flight(m), 0);
}

static void an_invalid_record_becomes_a_backend_error(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "invalid", 100, 8);
	struct outcome o = {0};
	assert_int_equal(
	    plugin_fetch(m, "residence", "141003", "12345678901", 0, 100, record_outcome, &o, NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, MDG_ERR_BACKEND);
	assert_string_equal(o.resident_code, "");
	assert_non_null(strstr(o.reason, "unknown status"));
}

static void fetches_beyond_max_in_flight_are_refused(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "never", 30, 2);
	struct outcome o[3] = {{0}};
	for (int i = 0; i < 2; i++)
		assert_int_equal(plugin_fetch(m, "seal", "141003", "12345678901", 0, 30,
					      record_outcome, &o[i], NULL),
				 MDG_OK);
	assert_int_equal(
	    plugin_fetch(m, "seal", "141003", "12345678901", 0, 30, record_outcome, &o[2], NULL),
	    MDG_ERR_UNAVAILABLE);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o[0].calls + o[1].calls, 2);
	assert_int_equal(o[2].calls, 0);
	/* Room again once the first two are done. */
	assert_int_equal(
	    plugin_fetch(m, "seal", "141003", "12345678901", 0, 30, record_outcome, &o[2], NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o[2].calls, 1);
}

static void an_abandoned_fetch_never_calls_back_and_is_cancelled(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "delay", 1000, 8);
	struct outcome o = {0};
	struct plugin_fetch *handle = NULL;
	assert_int_equal(plugin_fetch(m, "residence", "141003", "12345678901", 0, 1000,
				      record_outcome, &o, &handle),
			 MDG_OK);
	plugin_fetch_abandon(handle);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 0);
	assert_int_equal(metric("madoguchi_plugin_mock_cancels_total{plugin=\"m\"} "), 1);
	/* The mock still answered after 100 ms: that answer was dropped. */
	assert_int_equal(metric("madoguchi_plugin_late_completions_total{plugin=\"m\"} "), 1);
}

/* What the tracer of plugin_host_set_trace() saw, for the conformance check's hook. */
struct trace_log {
	int completions, dropped, cancels, blocking;
	mdg_ticket ticket;
	int same_ticket;
	uint64_t completed_ms, cancelled_ms, ran_ms;
};

static void trace_into(void *arg, const struct plugin_trace_event *ev)
{
	struct trace_log *t = arg;
	t->same_ticket += memcmp(ev->ticket.bytes, t->ticket.bytes, sizeof t->ticket.bytes) == 0;
	if (ev->kind == PLUGIN_TRACE_COMPLETION) {
		t->completions++;
		t->dropped += !ev->live;
		t->completed_ms = ev->start_ms;
	} else if (ev->kind == PLUGIN_TRACE_CANCEL) {
		t->cancels++;
		t->cancelled_ms = ev->start_ms;
	} else {
		t->blocking++;
		t->ran_ms = ev->end_ms - ev->start_ms;
	}
}

static void the_tracer_sees_cancels_and_dropped_completions(void **state)
{
	struct hf_fixture *fx = *state;
	/* "late" answers after 100 ms even when cancelled; the deadline is 20 ms. */
	struct plugin_instance *m = load_mock(fx, "late", 20, 8);
	struct trace_log t = {0};
	plugin_host_set_trace(fx->host, trace_into, &t);
	struct outcome o = {0};
	struct plugin_fetch *handle = NULL;
	uint64_t start = uv_hrtime() / 1000000u;
	assert_int_equal(plugin_fetch(m, "residence", "141003", "12345678901", 0, 20,
				      record_outcome, &o, &handle),
			 MDG_OK);
	t.ticket = plugin_fetch_ticket(handle);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.status, MDG_ERR_TIMEOUT);
	assert_int_equal(t.cancels, 1);
	assert_int_equal(t.completions, 1);
	assert_int_equal(t.dropped, 1);
	assert_int_equal(t.same_ticket, 2);
	assert_true(t.cancelled_ms >= start + 20);
	assert_true(t.completed_ms >= start + 100);
}

static void the_tracer_times_a_blocking_fetch(void **state)
{
	struct hf_fixture *fx = *state;
	install_plugin(fx, "blocking_mock", "b.so", 0755);
	write_config(fx, "  b:\n    file: b.so\n    config: {mode: delay, delay_ms: 60}\n");
	assert_int_equal(load(fx), 0);
	struct trace_log t = {0};
	plugin_host_set_trace(fx->host, trace_into, &t);
	struct outcome o = {0};
	struct plugin_fetch *handle = NULL;
	struct plugin_instance *b = plugin_host_find(fx->host, "b");
	assert_int_equal(plugin_fetch(b, "residence", "141003", "12345678901", 0, 2000,
				      record_outcome, &o, &handle),
			 MDG_OK);
	t.ticket = plugin_fetch_ticket(handle);
	assert_int_equal(plugin_instance_blocking_pending(b), 1);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.status, MDG_OK);
	assert_int_equal(plugin_instance_blocking_pending(b), 0);
	assert_int_equal(t.blocking, 1);
	assert_int_equal(t.completions, 1);
	assert_int_equal(t.dropped, 0);
	assert_int_equal(t.same_ticket, 2);
	assert_true(t.ran_ms >= 60);
}

static void a_type_the_plugin_does_not_serve_is_not_fetched(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *m = load_mock(fx, "ok", 100, 8);
	struct outcome o = {0};
	assert_int_equal(plugin_fetch(m, "koseki-full", "141003", "12345678901", 0, 100,
				      record_outcome, &o, NULL),
			 MDG_ERR_INVALID);
	assert_int_equal(
	    plugin_fetch(m, "passport", "141003", "12345678901", 0, 100, record_outcome, &o, NULL),
	    MDG_ERR_INVALID);
	assert_int_equal(o.calls, 0);
}

/* --- a blocking plugin on the thread pool ---------------------------------------------------- */

/* main() sets UV_THREADPOOL_SIZE to the config's default worker_threads (6): a blocking instance
 * may hold 3 of them. */
#define POOL_THREADS 6
#define SLOW_MS	     400

static struct plugin_instance *load_slow_blocking(struct hf_fixture *fx, int max_in_flight)
{
	install_plugin(fx, "blocking_mock", "b.so", 0755);
	char yaml[256];
	snprintf(yaml, sizeof yaml,
		 "  b:\n    file: b.so\n    timeout: 5s\n    max_in_flight: %d\n"
		 "    config: {mode: delay, delay_ms: %d}\n",
		 max_in_flight, SLOW_MS);
	write_config(fx, yaml);
	assert_int_equal(load(fx), 0);
	return plugin_host_find(fx->host, "b");
}

struct pool_probe {
	uv_work_t work;
	uint64_t queued_ns, started_ns;
};

static void probe_run(uv_work_t *w)
{
	struct pool_probe *p = w->data;
	p->started_ns = uv_hrtime();
}

static void probe_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
}

static void a_slow_blocking_plugin_holds_at_most_half_the_pool(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *b = load_slow_blocking(fx, 16);
	enum { N = POOL_THREADS };
	static struct outcome o[N];
	memset(o, 0, sizeof o);
	uint64_t t0 = uv_hrtime();
	for (int i = 0; i < N; i++) {
		char code[16];
		snprintf(code, sizeof code, "%011d", 20000000 + i);
		assert_int_equal(plugin_fetch(b, "residence", "141003", code, 0, 5000,
					      record_outcome, &o[i], NULL),
				 MDG_OK);
	}
	/* Work of every other type (card checks, rendering) still finds a thread at once; with
	 * all six threads sleeping in the backend it would wait SLOW_MS. */
	struct pool_probe probe = {.queued_ns = uv_hrtime()};
	probe.work.data = &probe;
	assert_int_equal(uv_queue_work(&fx->loop, &probe.work, probe_run, probe_done), 0);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	uint64_t waited_ms = (probe.started_ns - probe.queued_ns) / 1000000;
	uint64_t took_ms = (uv_hrtime() - t0) / 1000000;
	if (waited_ms >= SLOW_MS / 2)
		fail_msg("other work waited %llu ms for a thread", (unsigned long long)waited_ms);
	/* Six fetches of SLOW_MS, three at a time: two rounds. */
	if (took_ms < 2 * SLOW_MS)
		fail_msg("six fetches took %llu ms: more than three ran at once",
			 (unsigned long long)took_ms);
	for (int i = 0; i < N; i++) {
		char code[16];
		snprintf(code, sizeof code, "%011d", 20000000 + i);
		assert_int_equal(o[i].calls, 1);
		assert_int_equal(o[i].status, MDG_OK);
		assert_string_equal(o[i].resident_code, code);
	}
	assert_int_equal(plugin_instance_in_flight(b), 0);
}

static void a_fetch_whose_deadline_passes_while_waiting_never_runs(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *b = load_slow_blocking(fx, 16);
	static struct outcome o[4];
	memset(o, 0, sizeof o);
	for (int i = 0; i < 4; i++)
		assert_int_equal(plugin_fetch(b, "residence", "141003", "12345678901", 0,
					      i < 3 ? 5000 : 50, record_outcome, &o[i], NULL),
				 MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 3; i++)
		assert_int_equal(o[i].status, MDG_OK);
	assert_int_equal(o[3].calls, 1);
	assert_int_equal(o[3].status, MDG_ERR_TIMEOUT);
	/* The fourth waited behind the three and was dropped: the backend saw three. */
	assert_int_equal(metric("madoguchi_plugin_mock_fetches_total{plugin=\"b\"} "), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(a_plugin_of_another_abi_major_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_plugin_of_a_newer_abi_minor_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_descriptor_too_small_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_missing_entry_symbol_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(an_unresolved_symbol_is_refused_at_load, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_group_or_world_writable_file_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_file_owned_by_another_user_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_path_outside_plugin_dir_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_missing_file_is_refused_with_its_position, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_setting_the_plugin_does_not_read_is_an_unknown_key,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(a_bad_setting_is_reported_at_its_value, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		one_file_loads_as_several_instances_with_their_own_configs, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_completed_fetch_reaches_its_requester_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(change_notifications_raise_the_version_floor_only,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(concurrent_fetches_each_get_their_own_record, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_fetch_past_its_deadline_times_out_and_is_cancelled,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(a_late_completion_is_dropped_and_counted, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_completion_with_a_foreign_ticket_reaches_no_request,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		a_fetch_the_plugin_cannot_start_fails_without_a_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(an_invalid_record_becomes_a_backend_error, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(fetches_beyond_max_in_flight_are_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(an_abandoned_fetch_never_calls_back_and_is_cancelled,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(a_type_the_plugin_does_not_serve_is_not_fetched, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(the_tracer_sees_cancels_and_dropped_completions, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(the_tracer_times_a_blocking_fetch, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_slow_blocking_plugin_holds_at_most_half_the_pool,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(a_fetch_whose_deadline_passes_while_waiting_never_runs,
					    setup, teardown),
	};
	/* Before the pool starts (on the first uv_queue_work): the size madoguchid gives it. */
	setenv("UV_THREADPOOL_SIZE", "6", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
