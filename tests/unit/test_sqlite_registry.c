/*
 * test_sqlite_registry.c: the registry reader (plugins/common/registry.c) against the demo
 * city's truth, and the sqlite-registry plugin loaded through the real plugin host.
 *
 * The group setup generates one demo city (scripts/demo-city, 3,000 residents) into a temp
 * dir and reads its truth (demo/residents.jsonl).  Each plugin test loads the built plugin
 * from a private plugin_dir with its own config.  Environment: MDG_SRCDIR (the source tree,
 * for scripts/demo-city) and MDG_PLUGINS (the directory of the built sqlite-registry.so).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "host_fixture.h"
#include "metrics.h"
#include "plugin_host.h"
#include "record.h"
#include "registry.h"

#define CITY_RESIDENTS "3000"
#define TYPE_COUNT     7

static const char *const types[TYPE_COUNT] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment",
};

/* The demo city shared by every test (group setup). */
static struct city {
	char dir[64];
	char db[128];
	json_t **truth; /* one object per resident, in file order */
	size_t count;
	struct registry *reg; /* a direct connection */
	int64_t meta_as_of;
} city;

/* --- reg_record helpers ------------------------------------------------------------------- */

static const char *field_of(const struct reg_field *fields, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(fields[i].name, name) == 0)
			return fields[i].value;
	}
	return NULL;
}

static const char *rec_field(const struct reg_record *r, const char *name)
{
	return field_of(r->fields, r->field_count, name);
}

static const struct reg_list *rec_list(const struct reg_record *r, const char *name)
{
	for (size_t i = 0; i < r->list_count; i++) {
		if (strcmp(r->lists[i].name, name) == 0)
			return &r->lists[i];
	}
	return NULL;
}

static const char *item_field(const struct reg_item *it, const char *name)
{
	return field_of(it->fields, it->field_count, name);
}

/* The record as the host's builder would hold it (core/record.c's JSON shape). */
static json_t *reg_json(const struct reg_record *r)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:I}", "certificate", r->certificate,
			      "resident_code", r->resident_code, "version", (json_int_t)r->version,
			      "status", r->status, "as_of", (json_int_t)r->as_of);
	for (size_t i = 0; i < r->field_count; i++)
		json_object_set_new(o, r->fields[i].name, json_string(r->fields[i].value));
	for (size_t l = 0; l < r->list_count; l++) {
		json_t *arr = json_array();
		for (size_t i = 0; i < r->lists[l].item_count; i++) {
			const struct reg_item *it = &r->lists[l].items[i];
			json_t *item = json_object();
			for (size_t f = 0; f < it->field_count; f++)
				json_object_set_new(item, it->fields[f].name,
						    json_string(it->fields[f].value));
			json_array_append_new(arr, item);
		}
		json_object_set_new(o, r->lists[l].name, arr);
	}
	return o;
}

static int fetch_direct(const char *type, const char *code, uint32_t options,
			enum reg_variant variant, struct reg_record **out)
{
	char err[256] = "";
	int rc = registry_fetch(city.reg, type, code, options, variant, out, err, sizeof err);
	if (rc == REG_ERROR)
		fail_msg("registry_fetch(%s) failed: %s", type, err);
	return rc;
}

/* The name of the record's subject, where docs/records.md puts it. */
static const char *subject_name(const struct reg_record *r)
{
	const char *t = r->certificate;
	if (strcmp(t, "seal") == 0)
		return rec_field(r, "registered_name");
	if (strcmp(t, "tax-income") == 0)
		return rec_field(r, "name");
	const struct reg_list *l =
	    rec_list(r, strncmp(t, "residence", 9) == 0 ? "members" : "persons");
	if (l == NULL || l->item_count == 0)
		return NULL;
	if (strcmp(t, "koseki-full") == 0) {
		const char *no = rec_field(r, "subject_person_no");
		for (size_t i = 0; no != NULL && i < l->item_count; i++) {
			const char *p = item_field(&l->items[i], "person_no");
			if (p != NULL && strcmp(p, no) == 0)
				return item_field(&l->items[i], "name");
		}
		return NULL;
	}
	return item_field(&l->items[0], "name");
}

static const char *truth_str(const json_t *t, const char *key)
{
	return json_string_value(json_object_get(t, key));
}

/* --- group setup: the demo city ------------------------------------------------------------ */

static int city_setup(void **state)
{
	(void)state;
	const char *src = getenv("MDG_SRCDIR");
	if (src == NULL) {
		fprintf(stderr, "# MDG_SRCDIR is not set\n");
		return -1;
	}
	snprintf(city.dir, sizeof city.dir, "/tmp/mdg-sqlreg-test.XXXXXX");
	if (mkdtemp(city.dir) == NULL)
		return -1;
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "python3 '%s/scripts/demo-city' --out '%s' --residents " CITY_RESIDENTS
		 " >/dev/null",
		 src, city.dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "# demo-city failed\n");
		return -1;
	}
	snprintf(city.db, sizeof city.db, "%s/registry.sqlite", city.dir);
	char path[128];
	snprintf(path, sizeof path, "%s/demo/residents.jsonl", city.dir);
	FILE *fp = fopen(path, "r");
	if (fp == NULL)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, fp) > 0) {
		json_error_t jerr;
		json_t *t = json_loads(line, 0, &jerr);
		if (t == NULL)
			break;
		json_t **nt = realloc(city.truth, (city.count + 1) * sizeof *nt);
		if (nt == NULL) {
			json_decref(t);
			break;
		}
		city.truth = nt;
		city.truth[city.count++] = t;
	}
	free(line);
	fclose(fp);
	char err[256];
	if (registry_open(city.db, &city.reg, err, sizeof err) != REG_OK) {
		fprintf(stderr, "# registry_open: %s\n", err);
		return -1;
	}
	/* meta.as_of of the generator's default. */
	struct tm tm = {.tm_year = 2026 - 1900, .tm_mon = 10, .tm_mday = 27};
	city.meta_as_of = (int64_t)timegm(&tm);
	return city.count == (size_t)atoi(CITY_RESIDENTS) ? 0 : -1;
}

static int city_teardown(void **state)
{
	(void)state;
	registry_close(city.reg);
	for (size_t i = 0; i < city.count; i++)
		json_decref(city.truth[i]);
	free(city.truth);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", city.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* --- per-test fixture: the plugin through the host ----------------------------------------- */

static void install_plugin(struct hf_fixture *fx)
{
	const char *src_dir = getenv("MDG_PLUGINS");
	assert_non_null(src_dir);
	assert_int_equal(hf_install_plugin(src_dir, "sqlite-registry.so", fx->plugin_dir,
					   "sqlite-registry.so", 0755),
			 0);
}

/* Writes the config with one instance "reg" whose config: mapping is config_yaml. */
static void write_config(struct hf_fixture *fx, const char *config_yaml)
{
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "  reg:\n"
		 "    file: sqlite-registry.so\n"
		 "    timeout: 30s\n"
		 "    max_in_flight: 2000\n"
		 "    config:\n%s",
		 config_yaml);
	assert_int_equal(hf_write_config(fx->config_path, fx->plugin_dir, yaml), 0);
}

static int load(struct hf_fixture *fx)
{
	return hf_load(fx->config_path, &fx->loop, &fx->cfg, &fx->host, fx->msg, sizeof fx->msg);
}

/* Loads the plugin on the demo city's registry; returns the instance. */
static struct plugin_instance *load_registry(struct hf_fixture *fx)
{
	char yaml[256];
	snprintf(yaml, sizeof yaml, "      database: %s\n", city.db);
	write_config(fx, yaml);
	if (load(fx) != 0)
		fail_msg("load failed: %s", fx->msg);
	struct plugin_instance *inst = plugin_host_find(fx->host, "reg");
	assert_non_null(inst);
	return inst;
}

static int setup(void **state)
{
	struct hf_fixture *fx = hf_fixture_new("mdg-sqlreg-host");
	if (fx == NULL)
		return -1;
	install_plugin(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	return hf_fixture_free(*state);
}

/* One fetch's outcome as its callback saw it. */
struct outcome {
	int calls;
	int status;
	json_t *record; /* a copy of record_json() */
	char reason[200];
};

static void keep_outcome(void *arg, int status, mdg_record *record, const char *reason)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = status;
	if (record != NULL) {
		o->record = json_deep_copy(record_json(record));
		record_free(record);
	}
	if (reason != NULL)
		snprintf(o->reason, sizeof o->reason, "%s", reason);
}

/* --- (a) the reader against the truth ------------------------------------------------------- */

static void every_resident_and_type_agrees_with_the_truth(void **state)
{
	(void)state;
	size_t ok = 0, not_found = 0;
	for (size_t i = 0; i < city.count; i++) {
		const json_t *t = city.truth[i];
		const char *code = truth_str(t, "resident_code");
		for (int k = 0; k < TYPE_COUNT; k++) {
			const char *refusal =
			    truth_str(json_object_get(t, "refusal"), types[k]); /* NULL: issued */
			struct reg_record *r = NULL;
			int rc = fetch_direct(types[k], code, 0, REG_CURRENT, &r);
			int no_record = refusal != NULL && strcmp(refusal, "NO_RECORD") == 0;
			if (no_record != (rc == REG_NOT_FOUND))
				fail_msg("resident #%zu %s: registry says %d, truth says %s", i,
					 types[k], rc, refusal ? refusal : "issued");
			if (rc == REG_NOT_FOUND) {
				not_found++;
				continue;
			}
			assert_string_equal(r->certificate, types[k]);
			assert_string_equal(r->resident_code, code);
			assert_string_equal(r->status, truth_str(t, "status"));
			assert_int_equal(r->version,
					 json_integer_value(json_object_get(t, "version")));
			const char *name = subject_name(r);
			if (name == NULL || strcmp(name, truth_str(t, "name")) != 0)
				fail_msg("resident #%zu %s: wrong subject name", i, types[k]);
			const char *address = rec_field(r, "address");
			if (address != NULL)
				assert_string_equal(address, truth_str(t, "address"));
			if (strcmp(types[k], "seal") == 0)
				assert_string_equal(rec_field(r, "seal_status"),
						    truth_str(t, "seal_status"));
			reg_record_free(r);
			ok++;
		}
	}
	assert_true(ok > city.count * 3);
	assert_true(not_found > 0);
}

static void an_unknown_resident_is_not_found_for_every_type(void **state)
{
	(void)state;
	for (int k = 0; k < TYPE_COUNT; k++) {
		struct reg_record *r = NULL;
		assert_int_equal(fetch_direct(types[k], "00000000000", 0, REG_CURRENT, &r),
				 REG_NOT_FOUND);
		assert_null(r);
		assert_int_equal(fetch_direct(types[k], "", 0, REG_CURRENT, &r), REG_NOT_FOUND);
	}
	char err[128] = "";
	struct reg_record *r = NULL;
	assert_int_equal(registry_fetch(city.reg, "passport",
					truth_str(city.truth[0], "resident_code"), 0, REG_CURRENT,
					&r, err, sizeof err),
			 REG_ERROR);
	assert_non_null(strstr(err, "unknown certificate type"));
}

static void two_readers_build_identical_records(void **state)
{
	(void)state;
	struct registry *other = NULL;
	char err[256];
	assert_int_equal(registry_open(city.db, &other, err, sizeof err), REG_OK);
	assert_string_equal(registry_municipality(other), "141003");
	for (size_t i = 0; i < city.count; i += 37) {
		const char *code = truth_str(city.truth[i], "resident_code");
		for (int k = 0; k < TYPE_COUNT; k++) {
			struct reg_record *a = NULL, *b = NULL;
			int ra = fetch_direct(types[k], code, 7, REG_CURRENT, &a);
			int rb = registry_fetch(other, types[k], code, 7, REG_CURRENT, &b, err,
						sizeof err);
			assert_int_equal(ra, rb);
			if (ra != REG_OK)
				continue;
			b->as_of = a->as_of;
			json_t *ja = reg_json(a), *jb = reg_json(b);
			/* Same fields in the same order. */
			char *sa = json_dumps(ja, JSON_PRESERVE_ORDER);
			char *sb = json_dumps(jb, JSON_PRESERVE_ORDER);
			assert_string_equal(sa, sb);
			free(sa);
			free(sb);
			json_decref(ja);
			json_decref(jb);
			reg_record_free(a);
			reg_record_free(b);
		}
	}
	registry_close(other);
}

/* --- (c) options ---------------------------------------------------------------------------- */

/* The first active resident whose household has another active member and who has a
 * register here; -1 if none. */
static long find_family_resident(void)
{
	for (size_t i = 0; i < city.count; i++) {
		const json_t *t = city.truth[i];
		if (strcmp(truth_str(t, "status"), "active") != 0 ||
		    json_is_null(json_object_get(t, "register_id")))
			continue;
		const char *hh = truth_str(t, "household_id");
		for (size_t j = 0; j < city.count; j++) {
			const json_t *u = city.truth[j];
			if (j != i && strcmp(truth_str(u, "household_id"), hh) == 0 &&
			    strcmp(truth_str(u, "status"), "active") == 0)
				return (long)i;
		}
	}
	return -1;
}

static size_t count_items(const struct reg_record *r, const char *list)
{
	const struct reg_list *l = rec_list(r, list);
	return l ? l->item_count : 0;
}

static int any_item_has(const struct reg_record *r, const char *list, const char *field)
{
	const struct reg_list *l = rec_list(r, list);
	for (size_t i = 0; l != NULL && i < l->item_count; i++) {
		if (item_field(&l->items[i], field) != NULL)
			return 1;
	}
	return 0;
}

static void household_adds_the_other_active_members(void **state)
{
	(void)state;
	long i = find_family_resident();
	assert_true(i >= 0);
	const char *code = truth_str(city.truth[i], "resident_code");
	const char *hh = truth_str(city.truth[i], "household_id");
	size_t active = 0;
	for (size_t j = 0; j < city.count; j++) {
		const json_t *u = city.truth[j];
		active += strcmp(truth_str(u, "household_id"), hh) == 0 &&
			  strcmp(truth_str(u, "status"), "active") == 0;
	}
	struct reg_record *alone = NULL, *all = NULL;
	assert_int_equal(fetch_direct("residence", code, 0, REG_CURRENT, &alone), REG_OK);
	assert_int_equal(fetch_direct("residence", code, REG_HOUSEHOLD, REG_CURRENT, &all), REG_OK);
	assert_int_equal(count_items(alone, "members"), 1);
	assert_int_equal(count_items(all, "members"), active);
	const struct reg_list *m = rec_list(all, "members");
	assert_string_equal(item_field(&m->items[0], "subject"), "true");
	assert_string_equal(item_field(&m->items[0], "name"), truth_str(city.truth[i], "name"));
	for (size_t k = 1; k < m->item_count; k++)
		assert_string_equal(item_field(&m->items[k], "subject"), "false");
	reg_record_free(alone);
	reg_record_free(all);

	/* The attachment lists the register's other present persons only with household. */
	struct reg_record *a1 = NULL, *a2 = NULL;
	assert_int_equal(fetch_direct("koseki-attachment", code, 0, REG_CURRENT, &a1), REG_OK);
	assert_int_equal(fetch_direct("koseki-attachment", code, REG_HOUSEHOLD, REG_CURRENT, &a2),
			 REG_OK);
	assert_int_equal(count_items(a1, "persons"), 1);
	assert_true(count_items(a2, "persons") >= 1);
	assert_string_equal(item_field(&rec_list(a1, "persons")->items[0], "person_no"),
			    rec_field(a1, "subject_person_no"));
	reg_record_free(a1);
	reg_record_free(a2);
}

static void my_number_and_domicile_appear_only_when_asked(void **state)
{
	(void)state;
	long i = find_family_resident();
	assert_true(i >= 0);
	const char *code = truth_str(city.truth[i], "resident_code");
	static const char *const res[] = {"residence", "residence-record"};
	for (int k = 0; k < 2; k++) {
		struct reg_record *plain = NULL, *num = NULL, *dom = NULL;
		assert_int_equal(fetch_direct(res[k], code, REG_HOUSEHOLD, REG_CURRENT, &plain),
				 REG_OK);
		assert_int_equal(fetch_direct(res[k], code, REG_HOUSEHOLD | REG_SHOW_MY_NUMBER,
					      REG_CURRENT, &num),
				 REG_OK);
		assert_int_equal(fetch_direct(res[k], code, REG_HOUSEHOLD | REG_SHOW_DOMICILE,
					      REG_CURRENT, &dom),
				 REG_OK);
		assert_false(any_item_has(plain, "members", "my_number"));
		assert_false(any_item_has(plain, "members", "domicile"));
		assert_false(any_item_has(plain, "members", "domicile_head"));
		/* my_number: residence only, on every member; never on residence-record. */
		const struct reg_list *m = rec_list(num, "members");
		for (size_t j = 0; j < m->item_count; j++) {
			const char *n = item_field(&m->items[j], "my_number");
			if (k == 0) {
				assert_non_null(n);
				assert_int_equal(strlen(n), 12);
				assert_int_equal(strspn(n, "0123456789"), 12);
			} else {
				assert_null(n);
			}
		}
		assert_false(any_item_has(num, "members", "domicile"));
		m = rec_list(dom, "members");
		for (size_t j = 0; j < m->item_count; j++) {
			assert_non_null(item_field(&m->items[j], "domicile"));
			assert_non_null(item_field(&m->items[j], "domicile_head"));
		}
		assert_false(any_item_has(dom, "members", "my_number"));
		reg_record_free(plain);
		reg_record_free(num);
		reg_record_free(dom);
	}
	/* No option changes a seal, tax or koseki record. */
	for (int k = 2; k < TYPE_COUNT; k++) {
		struct reg_record *a = NULL, *b = NULL;
		int ra = fetch_direct(types[k], code, 0, REG_CURRENT, &a);
		int rb = fetch_direct(types[k], code, REG_SHOW_MY_NUMBER | REG_SHOW_DOMICILE,
				      REG_CURRENT, &b);
		assert_int_equal(ra, rb);
		if (ra == REG_OK) {
			b->as_of = a->as_of;
			json_t *ja = reg_json(a), *jb = reg_json(b);
			assert_true(json_equal(ja, jb));
			json_decref(ja);
			json_decref(jb);
		}
		reg_record_free(a);
		reg_record_free(b);
	}
}

/* --- (d) the previous state ----------------------------------------------------------------- */

static int64_t parse_utc(const char *s)
{
	struct tm tm = {0};
	assert_non_null(strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm));
	return (int64_t)timegm(&tm);
}

static void the_previous_state_has_a_lower_version_and_an_older_as_of(void **state)
{
	(void)state;
	size_t with = 0, without = 0;
	for (size_t i = 0; i < city.count; i++) {
		const json_t *t = city.truth[i];
		const char *code = truth_str(t, "resident_code");
		const json_t *stale = json_object_get(t, "stale");
		struct reg_record *cur = NULL, *prev = NULL;
		int64_t before = (int64_t)time(NULL);
		int rc = fetch_direct("residence", code, REG_HOUSEHOLD, REG_PREVIOUS, &prev);
		if (json_is_null(stale)) {
			assert_int_equal(rc, REG_NOT_FOUND);
			without++;
			continue;
		}
		with++;
		assert_int_equal(rc, REG_OK);
		assert_int_equal(fetch_direct("residence", code, REG_HOUSEHOLD, REG_CURRENT, &cur),
				 REG_OK);
		assert_string_equal(prev->resident_code, code);
		assert_int_equal(prev->version,
				 json_integer_value(json_object_get(stale, "version")));
		assert_true(prev->version < cur->version);
		assert_true(prev->as_of < cur->as_of);
		/* now - (meta.as_of - history.as_of), within the second the test took. */
		int64_t lag = city.meta_as_of - parse_utc(truth_str(stale, "as_of"));
		assert_true(lag > 0);
		assert_true(prev->as_of >= before - lag &&
			    prev->as_of <= (int64_t)time(NULL) - lag);
		const char *kind = truth_str(stale, "kind");
		if (strcmp(kind, "address") == 0) {
			assert_string_not_equal(rec_field(prev, "address"),
						rec_field(cur, "address"));
			/* After the move, the old address became the 前住所. */
			const char *cur_prev =
			    item_field(&rec_list(cur, "members")->items[0], "previous_address");
			const char *old_prev =
			    item_field(&rec_list(prev, "members")->items[0], "previous_address");
			assert_non_null(cur_prev);
			assert_string_equal(cur_prev, rec_field(prev, "address"));
			assert_true(old_prev == NULL || strcmp(old_prev, cur_prev) != 0);
		} else if (strcmp(kind, "status") == 0) {
			assert_string_equal(prev->status, "active");
			assert_string_not_equal(cur->status, "active");
		} else {
			struct reg_record *seal = NULL;
			assert_int_equal(fetch_direct("seal", code, 0, REG_PREVIOUS, &seal),
					 REG_OK);
			assert_string_equal(rec_field(seal, "seal_status"), "registered");
			assert_null(rec_field(seal, "abolished_date"));
			reg_record_free(seal);
		}
		reg_record_free(cur);
		reg_record_free(prev);
	}
	assert_true(with > 0);
	assert_true(without > 0);
}

/* --- through the plugin and the host ------------------------------------------------------- */

static void concurrent_fetches_each_get_their_own_residents_record(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *inst = load_registry(fx);
	enum { N = 1000 };
	struct outcome *o = calloc(N, sizeof *o);
	assert_non_null(o);
	for (int k = 0; k < N; k++) {
		const char *code =
		    truth_str(city.truth[(size_t)k * 7 % city.count], "resident_code");
		assert_int_equal(plugin_fetch(inst, types[k % TYPE_COUNT], "141003", code,
					      (uint32_t)(k / TYPE_COUNT) % 8u, 30000, keep_outcome,
					      &o[k], NULL),
				 MDG_OK);
	}
	assert_int_equal(plugin_instance_in_flight(inst), N);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	int64_t now = (int64_t)time(NULL);
	size_t records = 0;
	for (int k = 0; k < N; k++) {
		const char *code =
		    truth_str(city.truth[(size_t)k * 7 % city.count], "resident_code");
		uint32_t options = (uint32_t)(k / TYPE_COUNT) % 8u;
		assert_int_equal(o[k].calls, 1);
		struct reg_record *r = NULL;
		int rc = fetch_direct(types[k % TYPE_COUNT], code, options, REG_CURRENT, &r);
		if (rc == REG_NOT_FOUND) {
			assert_int_equal(o[k].status, MDG_ERR_NOT_FOUND);
			assert_null(o[k].record);
			continue;
		}
		if (o[k].status != MDG_OK)
			fail_msg("fetch %d: status %d (%s)", k, o[k].status, o[k].reason);
		json_t *got = o[k].record;
		assert_string_equal(json_string_value(json_object_get(got, "resident_code")), code);
		json_int_t as_of = json_integer_value(json_object_get(got, "as_of"));
		assert_true(as_of >= now - 10 && as_of <= now + 1);
		json_t *want = reg_json(r);
		json_object_del(got, "as_of");
		json_object_del(want, "as_of");
		if (!json_equal(got, want))
			fail_msg("fetch %d (%s): the plugin's record differs from the reader's", k,
				 types[k % TYPE_COUNT]);
		json_decref(want);
		reg_record_free(r);
		records++;
	}
	assert_true(records > N / 2);
	assert_int_equal(plugin_instance_in_flight(inst), 0);
	for (int k = 0; k < N; k++)
		json_decref(o[k].record);
	free(o);
}

static void an_unknown_resident_or_municipality_is_not_found(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *inst = load_registry(fx);
	struct outcome o[3] = {{0}};
	const char *known = truth_str(city.truth[0], "resident_code");
	assert_int_equal(plugin_fetch(inst, "residence", "141003", "00000000000", 0, 5000,
				      keep_outcome, &o[0], NULL),
			 MDG_OK);
	assert_int_equal(
	    plugin_fetch(inst, "residence", "131016", known, 0, 5000, keep_outcome, &o[1], NULL),
	    MDG_OK);
	assert_int_equal(
	    plugin_fetch(inst, "residence", "141003", known, 0, 5000, keep_outcome, &o[2], NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o[0].calls, 1);
	assert_int_equal(o[0].status, MDG_ERR_NOT_FOUND);
	assert_null(o[0].record);
	assert_int_equal(o[1].calls, 1);
	assert_int_equal(o[1].status, MDG_ERR_NOT_FOUND);
	assert_null(o[1].record);
	/* Reasons carry no personal data. */
	assert_null(strstr(o[0].reason, "00000000000"));
	assert_null(strstr(o[1].reason, known));
	assert_int_equal(o[2].status, MDG_OK);
	json_decref(o[2].record);
}

static void the_plugin_describes_itself(void **state)
{
	struct hf_fixture *fx = *state;
	struct plugin_instance *inst = load_registry(fx);
	const struct mdg_plugin_descriptor *d = plugin_instance_descriptor(inst);
	assert_string_equal(d->name, "sqlite-registry");
	assert_string_equal(d->version, "1.0.0");
	assert_string_equal(d->vendor, "madoguchi project");
	assert_true(d->flags & MDG_PLUGIN_BLOCKING);
	for (int k = 0; k < TYPE_COUNT; k++)
		assert_true(plugin_instance_serves(inst, types[k]));
	assert_non_null(d->health);
}

/* --- (e) configuration ---------------------------------------------------------------------- */

static void a_missing_database_is_refused_at_its_key(void **state)
{
	struct hf_fixture *fx = *state;
	write_config(fx, "      database: nothere.sqlite\n");
	assert_int_equal(load(fx), -1);
	assert_null(fx->host);
	/* config: is line 14; database: is line 15, its value at column 17. */
	char want[256];
	snprintf(want, sizeof want, "%s:15:17: plugins.reg.config.database: ", fx->config_path);
	if (strstr(fx->msg, want) == NULL)
		fail_msg("message '%s' lacks '%s'", fx->msg, want);
	assert_non_null(strstr(fx->msg, "cannot open the registry file"));
}

static void a_file_that_is_not_a_registry_is_refused(void **state)
{
	struct hf_fixture *fx = *state;
	char path[192];
	snprintf(path, sizeof path, "%s/empty.sqlite", fx->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("not a database, just text\n", fp);
	fclose(fp);
	write_config(fx, "      database: empty.sqlite\n");
	assert_int_equal(load(fx), -1);
	assert_non_null(strstr(fx->msg, "plugins.reg.config.database: "));
	/* The YAML config itself is no registry either. */
	write_config(fx, "      database: madoguchi.yaml\n");
	assert_int_equal(load(fx), -1);
	assert_non_null(strstr(fx->msg, "plugins.reg.config.database: "));
}

static void a_missing_database_key_and_a_bad_municipality_are_refused(void **state)
{
	struct hf_fixture *fx = *state;
	write_config(fx, "      municipality: \"141003\"\n");
	assert_int_equal(load(fx), -1);
	assert_non_null(strstr(fx->msg, "plugins.reg.config.database: missing required key"));
	char yaml[256];
	snprintf(yaml, sizeof yaml, "      database: %s\n      municipality: yokohama\n", city.db);
	write_config(fx, yaml);
	assert_int_equal(load(fx), -1);
	assert_non_null(strstr(fx->msg, "plugins.reg.config.municipality: expected a six-digit"));
}

static void a_municipality_override_is_served_instead(void **state)
{
	struct hf_fixture *fx = *state;
	char yaml[256];
	snprintf(yaml, sizeof yaml, "      database: %s\n      municipality: \"131016\"\n",
		 city.db);
	write_config(fx, yaml);
	if (load(fx) != 0)
		fail_msg("load failed: %s", fx->msg);
	struct plugin_instance *inst = plugin_host_find(fx->host, "reg");
	const char *known = truth_str(city.truth[0], "resident_code");
	struct outcome o[2] = {{0}};
	assert_int_equal(
	    plugin_fetch(inst, "residence", "131016", known, 0, 5000, keep_outcome, &o[0], NULL),
	    MDG_OK);
	assert_int_equal(
	    plugin_fetch(inst, "residence", "141003", known, 0, 5000, keep_outcome, &o[1], NULL),
	    MDG_OK);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(o[0].status, MDG_OK);
	assert_int_equal(o[1].status, MDG_ERR_NOT_FOUND);
	json_decref(o[0].record);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_resident_and_type_agrees_with_the_truth),
	    cmocka_unit_test(an_unknown_resident_is_not_found_for_every_type),
	    cmocka_unit_test(two_readers_build_identical_records),
	    cmocka_unit_test(household_adds_the_other_active_members),
	    cmocka_unit_test(my_number_and_domicile_appear_only_when_asked),
	    cmocka_unit_test(the_previous_state_has_a_lower_version_and_an_older_as_of),
	    cmocka_unit_test_setup_teardown(concurrent_fetches_each_get_their_own_residents_record,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(an_unknown_resident_or_municipality_is_not_found, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(the_plugin_describes_itself, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_missing_database_is_refused_at_its_key, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_file_that_is_not_a_registry_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		a_missing_database_key_and_a_bad_municipality_are_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_municipality_override_is_served_instead, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, city_setup, city_teardown);
}
