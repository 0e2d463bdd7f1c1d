/*
 * test_gate.c: the kill switch's gate (core/gate.c, contract in gate.h, DESIGN §6).
 *
 * What must hold:
 *   - A gate bound to plugin instances and municipalities suspends nothing until told; the hot
 *     path (gate_check_at, by index) and the check by names (gate_check) always agree.
 *   - A local suspension holds per certificate type, for its plugin only; a resume lifts the
 *     types it names and no other; drain stops step 7 only, immediate steps 7 and 13.
 *   - An auto suspension stops every type of its plugin at once, at both steps; a second fault
 *     keeps the first one's reason and time; only an acknowledgement lifts it.
 *   - A ministry list's entries are scoped by certificates, version range and municipality; a
 *     newer list replaces the one in force and lifts what it no longer has; a list whose
 *     sequence is not above the stored one is refused (GATE_NOT_NEWER) and changes nothing;
 *     sequences compare as unsigned 64-bit numbers; an expired list stays in force.
 *   - Where several suspensions match, the verdict names the strongest: ministry, auto, local.
 *   - Every persisted suspension is in force right after gate_open() on the same store (a
 *     restart), lifted ones stay lifted; a store of the previous schema keeps its auto
 *     suspensions; an unusable store or an unreadable stored list fails the open (fail-closed).
 *   - The listing gives ministry entries (in list order), then auto, then local; gate_held_by
 *     finds a source's suspension for given types.
 *
 * Every change goes through gate_persist() to a temporary store, then gate_apply(), as the
 * kill switch does.  The ministry key is generated here with OpenSSL and lists are signed
 * here, so the test depends on nothing but the modules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "gate.h"
#include "record.h"
#include "suslist.h"
#include "tmp_db.h"

#define NOW ((time_t)1795741200) /* 2026-11-27T01:00:00Z, while the test lists are valid */

/* The bound instances and municipalities, and their indexes. */
static const struct gate_plugin plugins[] = {{"registry", NULL, "1.0.0"},
					     {"vendor", NULL, "2.3.0"}};
static const char *const munis[] = {"141003", "141011"};
enum { REGISTRY = 0, VENDOR = 1 };
enum { M141003 = 0, M141011 = 1 };
#define STEP_7	false /* not in flight: a new request */
#define STEP_13 true  /* in flight: delivery of an issuance past step 7 */

/* The store of the current test (setup_db), and the ministry's key (group setup). */
static const char *db;
static EVP_PKEY *ministry_key;
static char key_dir[64], pub_path[96], key_id[SUSLIST_KEY_ID_LEN + 1];
static struct suslist_keyring *ring;

/* --- helpers --------------------------------------------------------------------------------- */

static int setup_db(void **state)
{
	(void)state;
	db = tmp_db_make("mdg-gate", "gate.sqlite");
	return db != NULL ? 0 : -1;
}

static int teardown_db(void **state)
{
	(void)state;
	tmp_db_remove();
	db = NULL;
	return 0;
}

/* The key id by the rule of DESIGN §6, computed here independently of the module. */
static void key_id_of(EVP_PKEY *key, char out[SUSLIST_KEY_ID_LEN + 1])
{
	unsigned char raw[32], md[32];
	size_t n = sizeof raw;
	assert_int_equal(EVP_PKEY_get_raw_public_key(key, raw, &n), 1);
	assert_int_equal(EVP_Digest(raw, n, md, NULL, EVP_sha256(), NULL), 1);
	for (int i = 0; i < SUSLIST_KEY_ID_LEN / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* One Ed25519 key; its public half as PEM in a temporary directory, loaded as the keyring. */
static int setup_ministry(void **state)
{
	(void)state;
	struct suslist_error err;
	strcpy(key_dir, "/tmp/mdg-gate-keys-XXXXXX");
	if (mkdtemp(key_dir) == NULL)
		return -1;
	snprintf(pub_path, sizeof pub_path, "%s/ministry.pub", key_dir);
	ministry_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fopen(pub_path, "w");
	if (ministry_key == NULL || f == NULL)
		return -1;
	int ok = PEM_write_PUBKEY(f, ministry_key);
	fclose(f);
	key_id_of(ministry_key, key_id);
	const char *paths[] = {pub_path};
	return ok == 1 && suslist_keyring_load(paths, 1, &ring, &err) == SUSLIST_OK ? 0 : -1;
}

static int teardown_ministry(void **state)
{
	(void)state;
	suslist_keyring_free(ring);
	EVP_PKEY_free(ministry_key);
	unlink(pub_path);
	rmdir(key_dir);
	return 0;
}

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/*
 * A list with this sequence and these suspension objects (JSON, comma-separated), signed by the
 * ministry key and verified as the kill switch does.  Valid from 2026-11-27 to 2026-12-04.
 */
static struct suslist *signed_list(uint64_t sequence, const char *suspensions)
{
	char payload[4096];
	int n = snprintf(payload, sizeof payload,
			 "{\"type\": \"madoguchi-suspension-list\", \"sequence\": %llu, "
			 "\"issued_at\": \"2026-11-27T00:00:00Z\", "
			 "\"expires_at\": \"2026-12-04T00:00:00Z\", \"suspensions\": [%s]}",
			 (unsigned long long)sequence, suspensions);
	assert_true(n > 0 && (size_t)n < sizeof payload);

	unsigned char sig[64];
	size_t sig_len = sizeof sig;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, ministry_key), 1);
	assert_int_equal(
	    EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)payload, strlen(payload)), 1);
	EVP_MD_CTX_free(ctx);
	char *sig64 = b64(sig, sig_len);
	char *p64 = b64((const unsigned char *)payload, strlen(payload));
	json_t *env = json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "payload", p64, "signatures",
				"key_id", key_id, "alg", "ed25519", "sig", sig64);
	free(sig64);
	free(p64);
	assert_non_null(env);
	char *text = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	assert_non_null(text);

	struct suslist *list = NULL;
	struct suslist_error err;
	int rc = suslist_parse_verify(ring, 1, text, strlen(text), NOW, &list, &err);
	if (rc != SUSLIST_OK)
		print_error("list refused: %s: %s\n", err.field, err.message);
	assert_int_equal(rc, SUSLIST_OK);
	free(text);
	return list;
}

/* Index and bit of a certificate type (DESIGN §4). */
static size_t type_index(const char *certificate)
{
	int t = record_certificate_index(certificate);
	assert_true(t >= 0);
	return (size_t)t;
}

static uint32_t bit(const char *certificate)
{
	return 1u << type_index(certificate);
}

/* The gate bound to registry 1.0.0 and vendor 2.3.0 for 141003 and 141011, on store path. */
static struct gate *open_gate(const char *path)
{
	struct gate *g = NULL;
	char err[512] = "";
	int rc = gate_open(path, plugins, 2, munis, 2, &g, err, sizeof err);
	if (rc != 0)
		print_error("gate_open: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(g);
	return g;
}

/* gate_check_at by type name. */
static bool at(const struct gate *g, size_t plugin, const char *certificate, size_t muni,
	       bool in_flight, struct gate_verdict *v)
{
	return gate_check_at(g, plugin, type_index(certificate), muni, in_flight, v);
}

/* How many (type, municipality) slots of a plugin are suspended at a step. */
static size_t suspended_slots(const struct gate *g, size_t plugin, bool in_flight)
{
	size_t n = 0;
	for (size_t t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
		for (size_t m = 0; m < 2; m++)
			n += gate_check_at(g, plugin, t, m, in_flight, NULL);
	return n;
}

/* Makes the change durable in the current test's store (it must succeed), then applies it. */
static int persist_apply(struct gate *g, struct gate_change *c)
{
	gate_persist(db, c);
	if (c->status != GATE_OK)
		print_error("gate_persist: %s\n", c->err);
	assert_int_equal(c->status, GATE_OK);
	return gate_apply(g, c);
}

static int suspend_local(struct gate *g, const char *plugin, uint32_t types, enum gate_mode mode,
			 const char *reason, time_t at_time)
{
	struct gate_change c = {
	    .kind = GATE_LOCAL_SUSPEND, .types = types, .mode = mode, .at = at_time};
	snprintf(c.plugin, sizeof c.plugin, "%s", plugin);
	snprintf(c.reason, sizeof c.reason, "%s", reason);
	return persist_apply(g, &c);
}

static int resume_local(struct gate *g, const char *plugin, uint32_t types)
{
	struct gate_change c = {.kind = GATE_LOCAL_RESUME, .types = types, .at = NOW};
	snprintf(c.plugin, sizeof c.plugin, "%s", plugin);
	return persist_apply(g, &c);
}

/* An integrity fault as the kill switch handles it: in memory at once, then persisted. */
static int suspend_auto(struct gate *g, const char *plugin, const char *reason, time_t at_time)
{
	int added = gate_suspend_auto(g, plugin, reason, at_time);
	struct gate_change c = {
	    .kind = GATE_AUTO_SUSPEND, .types = gate_all_types(), .at = at_time};
	snprintf(c.plugin, sizeof c.plugin, "%s", plugin);
	snprintf(c.reason, sizeof c.reason, "%s", reason);
	assert_int_equal(persist_apply(g, &c), 0); /* already in memory */
	return added;
}

static int ack_auto(struct gate *g, const char *plugin)
{
	struct gate_change c = {.kind = GATE_AUTO_ACK, .at = NOW};
	snprintf(c.plugin, sizeof c.plugin, "%s", plugin);
	return persist_apply(g, &c);
}

/* Persists and applies a ministry list (taken); returns gate_apply's count. */
static int apply_list(struct gate *g, struct suslist *list, time_t at_time)
{
	struct gate_change c = {.kind = GATE_MINISTRY_APPLY, .list = list, .at = at_time};
	int changed = persist_apply(g, &c);
	assert_null(c.list); /* the gate took it */
	return changed;
}

/* Runs one SQL script on the store with sqlite3 directly (for stores made by hand). */
static void sql(const char *path, const char *script)
{
	sqlite3 *s = NULL;
	char *msg = NULL;
	assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
	int rc = sqlite3_exec(s, script, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		print_error("sqlite: %s\n", msg ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(s);
	assert_int_equal(rc, SQLITE_OK);
}

/* Ministry list entries used below. */
#define ENTRY_VENDOR_SEAL                                                                          \
	"{\"id\": \"M-SEAL\", \"plugin\": \"vendor\", \"certificates\": [\"seal\"], "              \
	"\"reason\": \"wrong seal imprint\"}"
#define ENTRY_VENDOR_BELOW_231                                                                     \
	"{\"id\": \"M-OLD\", \"plugin\": \"vendor\", \"versions\": \"<2.3.1\", "                   \
	"\"reason\": \"fixed in 2.3.1\"}"
#define ENTRY_VENDOR_FROM_3                                                                        \
	"{\"id\": \"M-NEW\", \"plugin\": \"vendor\", \"versions\": \">=3\", "                      \
	"\"reason\": \"3.x prints the wrong name\"}"
#define ENTRY_VENDOR_141003                                                                        \
	"{\"id\": \"M-CITY\", \"plugin\": \"vendor\", \"municipalities\": [\"141003\"], "          \
	"\"mode\": \"drain\", \"reason\": \"wrong ward names in 141003\"}"
#define ENTRY_REGISTRY_ALL                                                                         \
	"{\"id\": \"M-REG\", \"plugin\": \"registry\", \"reason\": \"registry recalled\"}"
#define ENTRY_REGISTRY_TWO_TYPES                                                                   \
	"{\"id\": \"M-KOSEKI\", \"plugin\": \"registry\", "                                        \
	"\"certificates\": [\"koseki-full\", \"koseki-individual\"]}"
#define ENTRY_VENDOR_BOTH_CITIES                                                                   \
	"{\"id\": \"M-TWO\", \"plugin\": \"vendor\", \"certificates\": [\"tax-income\"], "         \
	"\"municipalities\": [\"141003\", \"141011\"]}"

/* --- 1. binding and the hot path ------------------------------------------------------------- */

static void a_fresh_gate_binds_its_instances_and_suspends_nothing(void **state)
{
	(void)state;
	struct gate *g = open_gate(NULL);
	assert_int_equal(gate_plugin_index(g, "registry"), REGISTRY);
	assert_int_equal(gate_plugin_index(g, "vendor"), VENDOR);
	assert_int_equal(gate_plugin_index(g, "other"), -1);
	assert_int_equal(gate_municipality_index(g, "141003"), M141003);
	assert_int_equal(gate_municipality_index(g, "141011"), M141011);
	assert_int_equal(gate_municipality_index(g, "999999"), -1);
	assert_int_equal(gate_entry_count(g), 0);
	assert_null(gate_ministry_list(g));
	assert_true(gate_ministry_sequence(g) == 0);
	assert_false(gate_ministry_expired(g, NOW));

	for (size_t p = 0; p < 2; p++)
		for (size_t t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
			for (size_t m = 0; m < 2; m++)
				for (int f = 0; f < 2; f++) {
					assert_false(gate_check_at(g, p, t, m, f == 1, NULL));
					assert_false(gate_check(g, plugins[p].name, NULL,
								record_certificate_types[t],
								munis[m], f == 1, NULL));
				}
	assert_false(gate_check(g, "vendor", NULL, NULL, NULL, STEP_7, NULL));
	/* Out of range indexes are not suspended and do not crash. */
	assert_false(gate_check_at(g, 2, 0, 0, STEP_7, NULL));
	assert_false(gate_check_at(g, 0, RECORD_CERTIFICATE_TYPE_COUNT, 0, STEP_7, NULL));
	assert_false(gate_check_at(g, 0, 0, 2, STEP_7, NULL));
	gate_free(g);
}

static void the_hot_path_and_the_check_by_names_agree(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	/* A mix: every source, both modes, scoped by type, version and municipality. */
	assert_int_equal(
	    apply_list(g, signed_list(7, ENTRY_VENDOR_141003 "," ENTRY_VENDOR_SEAL), NOW - 50), 2);
	assert_int_equal(suspend_local(g, "vendor", bit("residence") | bit("tax-income"),
				       GATE_IMMEDIATE, "printer jam", NOW - 40),
			 2);
	assert_int_equal(
	    suspend_local(g, "registry", bit("koseki-full"), GATE_DRAIN, "maintenance", NOW - 30),
	    1);
	assert_int_equal(suspend_auto(g, "registry", "checksum mismatch", NOW - 20), 1);

	size_t suspended = 0;
	for (size_t p = 0; p < 2; p++)
		for (size_t t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++)
			for (size_t m = 0; m < 2; m++)
				for (int f = 0; f < 2; f++) {
					struct gate_verdict a, b, c;
					memset(&a, 0, sizeof a);
					memset(&b, 0xa5, sizeof b);
					memset(&c, 0x5a, sizeof c);
					const char *type = record_certificate_types[t];
					bool hot = gate_check_at(g, p, t, m, f == 1, &a);
					bool named = gate_check(g, plugins[p].name, NULL, type,
								munis[m], f == 1, &b);
					bool versioned =
					    gate_check(g, plugins[p].name, plugins[p].version, type,
						       munis[m], f == 1, &c);
					assert_int_equal(hot, named);
					assert_int_equal(hot, versioned);
					if (!hot)
						continue;
					suspended++;
					assert_int_equal(a.source, b.source);
					assert_int_equal(a.source, c.source);
					assert_string_equal(a.reason, b.reason);
					assert_string_equal(a.id, c.id);
					assert_int_equal(a.since, b.since);
					assert_int_equal(a.immediate, c.immediate);
				}
	/* registry: auto, every slot (7 types x 2 municipalities x 2 steps = 28).  vendor: at
	 * step 7 in 141003 every type (M-CITY, drain), elsewhere seal (M-SEAL), residence and
	 * tax-income (local): 7 + 3 * 3 = 16. */
	assert_int_equal(suspended, 28 + 16);
	gate_free(g);
}

/* --- 2. local suspensions -------------------------------------------------------------------- */

static void a_local_suspension_stops_only_its_types_of_its_plugin(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(suspend_local(g, "vendor", bit("seal"), GATE_IMMEDIATE, "ink low", NOW),
			 1);

	for (size_t m = 0; m < 2; m++) {
		assert_true(at(g, VENDOR, "seal", m, STEP_7, &v));
		assert_int_equal(v.source, GATE_LOCAL);
		assert_string_equal(v.reason, "ink low");
		assert_int_equal(v.since, NOW);
		assert_true(v.immediate);
		assert_string_equal(v.id, "");
		assert_true(at(g, VENDOR, "seal", m, STEP_13, &v));
	}
	/* Only seal of vendor: 2 municipalities; no other type, not the other plugin. */
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 2);
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_13), 0);
	assert_false(at(g, VENDOR, "residence", M141003, STEP_7, NULL));
	assert_false(gate_check(g, "registry", NULL, "seal", "141003", STEP_7, NULL));
	/* By names: any type of vendor is suspended (seal), any municipality. */
	assert_true(gate_check(g, "vendor", NULL, NULL, NULL, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	assert_false(gate_check(g, "registry", NULL, NULL, NULL, STEP_7, NULL));

	/* The same suspension again changes nothing. */
	assert_int_equal(suspend_local(g, "vendor", bit("seal"), GATE_IMMEDIATE, "ink low", NOW),
			 0);
	assert_int_equal(gate_entry_count(g), 1);
	gate_free(g);
}

static void a_local_resume_lifts_only_the_types_it_names(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(suspend_local(g, "vendor", bit("seal") | bit("residence"), GATE_IMMEDIATE,
				       "audit", NOW),
			 2);
	assert_int_equal(suspend_local(g, "registry", bit("seal"), GATE_IMMEDIATE, "audit", NOW),
			 1);

	/* Resuming a type that is not suspended lifts nothing. */
	assert_int_equal(resume_local(g, "vendor", bit("tax-income")), 0);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, NULL));

	assert_int_equal(resume_local(g, "vendor", bit("seal")), 1);
	assert_false(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	assert_false(at(g, VENDOR, "seal", M141011, STEP_13, NULL));
	assert_true(at(g, VENDOR, "residence", M141003, STEP_7, NULL));
	/* The other plugin's seal suspension is its own. */
	assert_true(at(g, REGISTRY, "seal", M141003, STEP_7, NULL));
	gate_free(g);
}

static void resuming_every_type_lifts_every_local_suspension(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(
	    suspend_local(g, "vendor", bit("seal") | bit("residence"), GATE_DRAIN, "audit", NOW),
	    2);
	assert_int_equal(
	    suspend_local(g, "vendor", bit("koseki-full"), GATE_IMMEDIATE, "audit", NOW), 1);
	assert_int_equal(suspend_local(g, "registry", bit("seal"), GATE_IMMEDIATE, "audit", NOW),
			 1);
	assert_int_equal(resume_local(g, "vendor", gate_all_types()), 3);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), 0);
	assert_false(gate_check(g, "vendor", NULL, NULL, NULL, STEP_7, NULL));
	/* Only the named plugin's. */
	assert_true(at(g, REGISTRY, "seal", M141011, STEP_7, NULL));
	assert_int_equal(gate_entry_count(g), 1);
	gate_free(g);
}

static void drain_stops_new_requests_and_immediate_also_deliveries(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(suspend_local(g, "vendor", bit("seal"), GATE_DRAIN, "winding down", NOW),
			 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_false(v.immediate);
	assert_false(at(g, VENDOR, "seal", M141003, STEP_13, NULL));
	assert_false(gate_check(g, "vendor", NULL, "seal", "141003", STEP_13, NULL));
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), 0);

	/* The same type suspended again, immediate: one change, both steps now. */
	assert_int_equal(
	    suspend_local(g, "vendor", bit("seal"), GATE_IMMEDIATE, "stop now", NOW + 5), 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_true(v.immediate);
	assert_string_equal(v.reason, "stop now");
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, &v));
	assert_true(gate_check(g, "vendor", NULL, "seal", "141011", STEP_13, NULL));
	assert_int_equal(gate_entry_count(g), 1);
	gate_free(g);
}

/* --- 3. auto suspensions --------------------------------------------------------------------- */

static void an_auto_suspension_stops_every_type_at_once_and_keeps_the_first_fault(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	/* In force from gate_suspend_auto() alone, before anything is persisted. */
	assert_int_equal(gate_suspend_auto(g, "vendor", "integrity fault", NOW), 1);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	assert_true(at(g, VENDOR, "koseki-full", M141011, STEP_13, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(gate_source_name(v.source), "auto");
	assert_true(v.immediate);
	assert_int_equal(v.since, NOW);
	assert_string_equal(v.reason, "integrity fault");
	assert_string_equal(v.id, "");
	/* An unbound municipality, an unbound version: still suspended (every scope). */
	assert_true(gate_check(g, "vendor", "9.9.9", "residence", "999999", STEP_13, NULL));

	/* A second fault keeps the first one's reason and time, in memory and in the store. */
	assert_int_equal(gate_suspend_auto(g, "vendor", "another fault", NOW + 60), 0);
	struct gate_change c = {.kind = GATE_AUTO_SUSPEND, .types = gate_all_types(), .at = NOW};
	snprintf(c.plugin, sizeof c.plugin, "vendor");
	snprintf(c.reason, sizeof c.reason, "integrity fault");
	assert_int_equal(persist_apply(g, &c), 0);
	snprintf(c.reason, sizeof c.reason, "another fault");
	c.at = NOW + 60;
	assert_int_equal(persist_apply(g, &c), 0);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.since, NOW);
	assert_string_equal(v.reason, "integrity fault");
	assert_int_equal(gate_entry_count(g), 1);
	gate_free(g);

	g = open_gate(db);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.since, NOW);
	assert_string_equal(v.reason, "integrity fault");
	gate_free(g);
}

static void only_an_acknowledgement_lifts_an_auto_suspension(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(suspend_auto(g, "vendor", "integrity fault", NOW), 1);

	/* A local resume of every type does not lift it. */
	assert_int_equal(resume_local(g, "vendor", gate_all_types()), 0);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_AUTO);
	/* Nor does acknowledging another plugin. */
	assert_int_equal(ack_auto(g, "registry"), 0);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), RECORD_CERTIFICATE_TYPE_COUNT * 2);

	assert_int_equal(ack_auto(g, "vendor"), 1);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), 0);
	assert_int_equal(gate_entry_count(g), 0);
	/* Lifted, a new fault suspends again with its own reason and time. */
	assert_int_equal(gate_suspend_auto(g, "vendor", "second fault", NOW + 100), 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_string_equal(v.reason, "second fault");
	assert_int_equal(v.since, NOW + 100);
	gate_free(g);
}

/* --- 4. ministry lists ----------------------------------------------------------------------- */

/*
 * The ministry names a plugin as its vendor ships it; the city names its instances.  An instance
 * "koseki" running "fujitsu-like" is suspended by a ministry entry for "fujitsu-like", not by
 * one for "koseki"; a local suspension names the instance.
 */
static void ministry_entries_name_the_vendor_plugin_and_local_ones_the_instance(void **state)
{
	(void)state;
	static const struct gate_plugin bound[] = {{"koseki", "fujitsu-like", "2.3.0"},
						   {"registry", "sqlite-registry", "1.0.0"}};
	struct gate *g = NULL;
	char err[256];
	struct gate_verdict v;
	assert_int_equal(gate_open(db, bound, 2, munis, 2, &g, err, sizeof err), 0);
	assert_int_equal(apply_list(g,
				    signed_list(1, "{\"id\": \"M-BY-INSTANCE\", \"plugin\": "
						   "\"koseki\", \"reason\": \"x\"}"),
				    NOW),
			 1);
	assert_false(gate_check_at(g, 0, 4, M141003, STEP_7, NULL));
	assert_int_equal(apply_list(g,
				    signed_list(2, "{\"id\": \"M-BY-VENDOR\", \"plugin\": "
						   "\"fujitsu-like\", \"reason\": \"y\"}"),
				    NOW),
			 2);
	assert_true(gate_check_at(g, 0, 4, M141003, STEP_7, &v));
	assert_string_equal(v.id, "M-BY-VENDOR");
	assert_true(gate_check(g, "koseki", NULL, "koseki-full", "141003", false, NULL));
	assert_true(gate_held_by(g, GATE_MINISTRY, "koseki", 0, NULL));
	/* Listed for the instance that runs the vendor's plugin, not for the other one. */
	assert_int_equal(gate_entry_count(g), 1);
	assert_true(gate_entry_applies(g, 0, "koseki"));
	assert_false(gate_entry_applies(g, 0, "registry"));
	assert_false(gate_entry_applies(g, 0, "fujitsu-like"));	     /* not an instance name */
	assert_false(gate_check_at(g, 1, 0, M141003, STEP_7, NULL)); /* the other plugin */

	struct gate_change c = {
	    .kind = GATE_LOCAL_SUSPEND, .types = 1u << 0, .mode = GATE_IMMEDIATE, .at = NOW};
	snprintf(c.plugin, sizeof c.plugin, "registry");
	snprintf(c.reason, sizeof c.reason, "local");
	assert_int_equal(persist_apply(g, &c), 1);
	assert_true(gate_check_at(g, 1, 0, M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	gate_free(g);
}

static void a_ministry_entry_covers_only_its_certificates(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(apply_list(g, signed_list(1, ENTRY_VENDOR_SEAL), NOW), 1);
	assert_true(gate_ministry_sequence(g) == 1);
	assert_non_null(gate_ministry_list(g));

	for (size_t m = 0; m < 2; m++) {
		assert_true(at(g, VENDOR, "seal", m, STEP_7, &v));
		assert_int_equal(v.source, GATE_MINISTRY);
		assert_string_equal(v.id, "M-SEAL");
		assert_string_equal(v.reason, "wrong seal imprint");
		assert_true(v.immediate); /* the default mode */
		assert_int_equal(v.since, NOW);
		assert_true(at(g, VENDOR, "seal", m, STEP_13, NULL));
	}
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 2);
	assert_false(at(g, VENDOR, "residence", M141003, STEP_7, NULL));
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);

	/* Two named types: those two, nothing else. */
	assert_int_equal(apply_list(g, signed_list(2, ENTRY_REGISTRY_TWO_TYPES), NOW), 2);
	assert_true(at(g, REGISTRY, "koseki-full", M141011, STEP_13, &v));
	assert_string_equal(v.id, "M-KOSEKI");
	assert_true(at(g, REGISTRY, "koseki-individual", M141003, STEP_7, NULL));
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 2 * 2);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	gate_free(g);
}

static void a_ministry_entry_covers_only_versions_in_its_range(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	/* ">=3" does not cover the bound vendor 2.3.0. */
	assert_int_equal(apply_list(g, signed_list(1, ENTRY_VENDOR_FROM_3), NOW), 1);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	assert_false(gate_check(g, "vendor", NULL, "seal", "141003", STEP_7, NULL));
	assert_false(gate_check(g, "vendor", "2.3.0", NULL, NULL, STEP_7, NULL));
	assert_false(gate_entry_applies(g, 0, "vendor")); /* not listed for the loaded 2.3.0 */
	/* By names with another version, it is evaluated directly: 3.1.0 is covered. */
	assert_true(gate_check(g, "vendor", "3.1.0", "seal", "141003", STEP_7, &v));
	assert_string_equal(v.id, "M-NEW");
	assert_false(gate_check(g, "vendor", "2.9.9", "seal", "141003", STEP_7, NULL));

	/* "<2.3.1" covers 2.3.0: every type, every municipality. */
	assert_int_equal(apply_list(g, signed_list(2, ENTRY_VENDOR_BELOW_231), NOW + 1), 2);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_true(at(g, VENDOR, "residence", M141011, STEP_13, &v));
	assert_string_equal(v.id, "M-OLD");
	assert_true(gate_entry_applies(g, 0, "vendor"));
	assert_false(gate_check(g, "vendor", "2.3.1", "seal", "141003", STEP_7, NULL));
	assert_true(gate_check(g, "vendor", "2.3.0", "seal", "141003", STEP_7, NULL));
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	gate_free(g);
}

static void a_ministry_entry_covers_only_its_municipalities(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(apply_list(g, signed_list(1, ENTRY_VENDOR_141003), NOW), 1);
	for (size_t t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++) {
		assert_true(gate_check_at(g, VENDOR, t, M141003, STEP_7, &v));
		assert_string_equal(v.id, "M-CITY");
		assert_false(v.immediate); /* drain, as listed */
		assert_false(gate_check_at(g, VENDOR, t, M141003, STEP_13, NULL));
		assert_false(gate_check_at(g, VENDOR, t, M141011, STEP_7, NULL));
	}
	assert_false(gate_check(g, "vendor", NULL, "seal", "141011", STEP_7, NULL));
	assert_false(gate_check(g, "vendor", NULL, "seal", "999999", STEP_7, NULL));
	/* Any municipality (NULL): suspended, because 141003 is. */
	assert_true(gate_check(g, "vendor", NULL, "seal", NULL, STEP_7, &v));
	assert_string_equal(v.id, "M-CITY");
	gate_free(g);
}

static void a_newer_list_replaces_the_one_in_force(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(
	    apply_list(g, signed_list(10, ENTRY_VENDOR_SEAL "," ENTRY_REGISTRY_ALL), NOW), 2);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	assert_true(at(g, REGISTRY, "residence", M141003, STEP_7, NULL));
	assert_false(gate_ministry_expired(g, NOW));
	assert_true(gate_ministry_expired(g, suslist_expires_at(gate_ministry_list(g))));

	/* 11 keeps M-REG, drops M-SEAL, adds M-CITY: two suspensions changed. */
	assert_int_equal(
	    apply_list(g, signed_list(11, ENTRY_REGISTRY_ALL "," ENTRY_VENDOR_141003), NOW + 10),
	    2);
	assert_true(gate_ministry_sequence(g) == 11);
	assert_false(at(g, VENDOR, "seal", M141011, STEP_7, NULL));
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_string_equal(v.id, "M-CITY");
	assert_true(at(g, REGISTRY, "residence", M141003, STEP_7, &v));
	assert_string_equal(v.id, "M-REG");
	assert_int_equal(gate_entry_count(g), 2);

	/* An empty newer list lifts every ministry suspension. */
	assert_int_equal(apply_list(g, signed_list(12, ""), NOW + 20), 2);
	assert_true(gate_ministry_sequence(g) == 12);
	assert_int_equal(gate_entry_count(g), 0);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	gate_free(g);
}

static void a_list_not_newer_than_the_stored_one_changes_nothing(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(apply_list(g, signed_list(20, ENTRY_VENDOR_SEAL), NOW), 1);

	/* The same sequence (a replay) and an older one: refused by the store. */
	const uint64_t older[] = {20, 19, 0};
	for (size_t i = 0; i < sizeof older / sizeof older[0]; i++) {
		struct gate_change c = {.kind = GATE_MINISTRY_APPLY,
					.list = signed_list(older[i], ENTRY_REGISTRY_ALL),
					.at = NOW + 5};
		gate_persist(db, &c);
		assert_int_equal(c.status, GATE_NOT_NEWER);
		assert_true(c.stored_sequence == 20);
		suslist_free(c.list);
	}
	/* In memory nothing changed... */
	assert_true(gate_ministry_sequence(g) == 20);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	gate_free(g);
	/* ...nor in the store. */
	g = open_gate(db);
	assert_true(gate_ministry_sequence(g) == 20);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_string_equal(v.id, "M-SEAL");
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	gate_free(g);
}

static void gate_apply_ignores_a_list_not_newer_than_the_one_in_force(void **state)
{
	(void)state;
	struct gate *g = open_gate(NULL);
	struct gate_change c = {.kind = GATE_MINISTRY_APPLY,
				.list = signed_list(30, ENTRY_VENDOR_SEAL),
				.at = NOW,
				.status = GATE_OK};
	assert_int_equal(gate_apply(g, &c), 1);
	assert_null(c.list);
	/* Applied in memory out of order (a newer one was applied meanwhile): no change. */
	c.list = signed_list(29, ENTRY_REGISTRY_ALL);
	assert_int_equal(gate_apply(g, &c), 0);
	suslist_free(c.list); /* freed whether or not the gate took it */
	assert_true(gate_ministry_sequence(g) == 30);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);
	gate_free(g);
}

static void an_expired_list_stays_in_force(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(apply_list(g, signed_list(8, ENTRY_VENDOR_SEAL), NOW), 1);
	time_t expired = suslist_expires_at(gate_ministry_list(g)) + 86400;
	assert_true(gate_ministry_expired(g, expired));
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, NULL));
	gate_free(g);
	/* Nor does a restart after expiry lift it (never fail-open). */
	g = open_gate(db);
	assert_true(gate_ministry_expired(g, expired));
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, NULL));
	gate_free(g);
}

static void sequences_compare_as_unsigned_64_bit_numbers(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	const uint64_t above = (UINT64_C(1) << 63) + 1; /* does not fit a signed 64-bit integer */
	/* A first list may be empty; it still sets the sequence. */
	assert_int_equal(apply_list(g, signed_list(above, ""), NOW), 0);
	assert_true(gate_ministry_sequence(g) == above);
	assert_int_equal(gate_entry_count(g), 0);

	const uint64_t lower[] = {above - 1, 1};
	for (size_t i = 0; i < sizeof lower / sizeof lower[0]; i++) {
		struct gate_change c = {.kind = GATE_MINISTRY_APPLY,
					.list = signed_list(lower[i], ENTRY_VENDOR_SEAL),
					.at = NOW};
		gate_persist(db, &c);
		assert_int_equal(c.status, GATE_NOT_NEWER);
		assert_true(c.stored_sequence == above);
		suslist_free(c.list);
	}
	assert_int_equal(apply_list(g, signed_list(UINT64_MAX, ENTRY_VENDOR_SEAL), NOW), 1);
	gate_free(g);
	g = open_gate(db);
	assert_true(gate_ministry_sequence(g) == UINT64_MAX);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	gate_free(g);
}

static void the_strongest_source_names_the_verdict(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	/* Local first, then auto, then ministry: the order of arrival must not matter. */
	assert_int_equal(
	    suspend_local(g, "vendor", bit("seal"), GATE_IMMEDIATE, "local reason", NOW - 300), 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);

	assert_int_equal(suspend_auto(g, "vendor", "auto reason", NOW - 200), 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(v.reason, "auto reason");
	assert_string_equal(v.id, "");

	assert_int_equal(apply_list(g, signed_list(1, ENTRY_VENDOR_SEAL), NOW - 100), 1);
	for (size_t m = 0; m < 2; m++)
		for (int f = 0; f < 2; f++) {
			assert_true(at(g, VENDOR, "seal", m, f == 1, &v));
			assert_int_equal(v.source, GATE_MINISTRY);
			assert_string_equal(v.id, "M-SEAL");
			assert_string_equal(v.reason, "wrong seal imprint");
			assert_true(gate_check(g, "vendor", NULL, "seal", munis[m], f == 1, &v));
			assert_int_equal(v.source, GATE_MINISTRY);
			assert_string_equal(v.id, "M-SEAL");
		}
	/* Types the ministry does not name: auto. */
	assert_true(at(g, VENDOR, "residence", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_AUTO);

	/* A drain ministry entry does not count at step 13: there the auto one answers. */
	assert_int_equal(apply_list(g, signed_list(2, ENTRY_VENDOR_141003), NOW - 50), 1 + 1);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	assert_string_equal(v.id, "M-CITY");
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(v.id, "");
	/* In 141011 the ministry entry does not apply: auto. */
	assert_true(at(g, VENDOR, "seal", M141011, STEP_7, &v));
	assert_int_equal(v.source, GATE_AUTO);

	/* Acknowledged, the local one answers where the ministry does not. */
	assert_int_equal(ack_auto(g, "vendor"), 1);
	assert_true(at(g, VENDOR, "seal", M141011, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	assert_string_equal(v.reason, "local reason");
	assert_string_equal(v.id, "");
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	gate_free(g);
}

/* --- 5. persistence -------------------------------------------------------------------------- */

static void every_persisted_suspension_is_in_force_after_a_restart(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(suspend_local(g, "vendor", bit("seal") | bit("residence"), GATE_DRAIN,
				       "city audit", NOW - 30),
			 2);
	assert_int_equal(suspend_auto(g, "registry", "checksum mismatch", NOW - 20), 1);
	assert_int_equal(apply_list(g, signed_list(42, ENTRY_VENDOR_141003), NOW - 10), 1);
	size_t entries = gate_entry_count(g);
	assert_int_equal(entries, 4);
	gate_free(g);

	/* A restart: nothing but gate_open() before the first check. */
	g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(gate_entry_count(g), entries);
	assert_true(gate_ministry_sequence(g) == 42);
	assert_non_null(gate_ministry_list(g));

	assert_true(at(g, VENDOR, "seal", M141011, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	assert_string_equal(v.reason, "city audit");
	assert_int_equal(v.since, NOW - 30);
	assert_false(v.immediate);
	assert_false(at(g, VENDOR, "seal", M141011, STEP_13, NULL)); /* still drain */
	assert_true(at(g, VENDOR, "residence", M141011, STEP_7, NULL));
	assert_false(at(g, VENDOR, "tax-income", M141011, STEP_7, NULL));

	assert_int_equal(suspended_slots(g, REGISTRY, STEP_13), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_true(at(g, REGISTRY, "seal", M141003, STEP_13, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(v.reason, "checksum mismatch");
	assert_int_equal(v.since, NOW - 20);

	assert_true(at(g, VENDOR, "tax-income", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	assert_string_equal(v.id, "M-CITY");
	assert_string_equal(v.reason, "wrong ward names in 141003");
	assert_int_equal(v.since, NOW - 10);
	assert_false(v.immediate);
	/* The ministry entry is stronger than the local one where both match. */
	assert_true(at(g, VENDOR, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	gate_free(g);
}

static void persisted_resume_and_acknowledgement_stay_lifted_after_a_restart(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(suspend_local(g, "vendor", bit("seal") | bit("residence"), GATE_IMMEDIATE,
				       "audit", NOW),
			 2);
	assert_int_equal(suspend_auto(g, "registry", "checksum mismatch", NOW), 1);
	assert_int_equal(apply_list(g, signed_list(5, ENTRY_REGISTRY_ALL), NOW), 1);
	assert_int_equal(resume_local(g, "vendor", bit("seal")), 1);
	assert_int_equal(ack_auto(g, "registry"), 1);
	gate_free(g);

	g = open_gate(db);
	struct gate_verdict v;
	assert_false(at(g, VENDOR, "seal", M141003, STEP_7, NULL));
	assert_true(at(g, VENDOR, "residence", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_LOCAL);
	/* registry: only the ministry's suspension is left. */
	assert_false(gate_held_by(g, GATE_AUTO, "registry", 0, NULL));
	assert_true(at(g, REGISTRY, "seal", M141003, STEP_7, &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	assert_int_equal(gate_entry_count(g), 2);

	assert_int_equal(resume_local(g, "vendor", gate_all_types()), 1);
	gate_free(g);
	g = open_gate(db);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	assert_int_equal(gate_entry_count(g), 1);
	gate_free(g);
}

/* --- 6. a store of the previous schema ------------------------------------------------------- */

static void a_store_of_the_previous_schema_keeps_its_auto_suspensions(void **state)
{
	(void)state;
	sql(db, "CREATE TABLE suspensions (source TEXT NOT NULL, plugin TEXT NOT NULL,"
		" reason TEXT NOT NULL, since INTEGER NOT NULL, PRIMARY KEY (source, plugin));"
		"INSERT INTO suspensions VALUES ('auto', 'vendor', 'old integrity fault', "
		"1700000000);"
		"PRAGMA user_version = 1;");
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_13), RECORD_CERTIFICATE_TYPE_COUNT * 2);
	assert_true(at(g, VENDOR, "seal", M141003, STEP_13, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(v.reason, "old integrity fault");
	assert_int_equal(v.since, 1700000000);
	assert_true(v.immediate);
	assert_int_equal(suspended_slots(g, REGISTRY, STEP_7), 0);

	/* The migrated store takes every kind of change and keeps them. */
	assert_int_equal(suspend_local(g, "registry", bit("seal"), GATE_DRAIN, "audit", NOW), 1);
	assert_int_equal(apply_list(g, signed_list(3, ENTRY_REGISTRY_ALL), NOW), 1);
	gate_free(g);
	g = open_gate(db);
	assert_true(at(g, VENDOR, "seal", M141011, STEP_13, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_true(gate_held_by(g, GATE_LOCAL, "registry", bit("seal"), NULL));
	assert_true(gate_ministry_sequence(g) == 3);
	assert_int_equal(ack_auto(g, "vendor"), 1);
	gate_free(g);
	g = open_gate(db);
	assert_int_equal(suspended_slots(g, VENDOR, STEP_7), 0);
	gate_free(g);
}

/* --- 7. errors ------------------------------------------------------------------------------- */

static void an_unusable_store_fails_the_open_and_the_persist(void **state)
{
	(void)state;
	char err[512] = "";
	struct gate *g = (struct gate *)&err; /* must be reset */
	const char *path = "/nonexistent-mdg-dir/gate.sqlite";
	assert_int_equal(gate_open(path, plugins, 2, munis, 2, &g, err, sizeof err), -1);
	assert_null(g);
	assert_non_null(strstr(err, "suspension store"));
	assert_non_null(strstr(err, path));

	struct gate_change c = {.kind = GATE_LOCAL_SUSPEND, .types = bit("seal"), .at = NOW};
	snprintf(c.plugin, sizeof c.plugin, "vendor");
	snprintf(c.reason, sizeof c.reason, "audit");
	gate_persist(path, &c);
	assert_int_equal(c.status, GATE_FAILED);
	assert_non_null(strstr(c.err, "suspension store"));
}

static void an_unreadable_stored_list_fails_the_open(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	assert_int_equal(apply_list(g, signed_list(9, ENTRY_VENDOR_SEAL), NOW), 1);
	gate_free(g);
	sql(db, "UPDATE ministry_list SET list = X'7B226E6F74206120'"); /* '{"not a ' */

	char err[512] = "";
	g = (struct gate *)&err;
	assert_int_equal(gate_open(db, plugins, 2, munis, 2, &g, err, sizeof err), -1);
	assert_null(g);
	assert_non_null(strstr(err, "ministry list"));
	assert_non_null(strstr(err, db));
}

static void a_store_from_a_newer_version_is_refused(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	gate_free(g);
	sql(db, "PRAGMA user_version = 99;");
	char err[512] = "";
	g = (struct gate *)&err;
	assert_int_equal(gate_open(db, plugins, 2, munis, 2, &g, err, sizeof err), -1);
	assert_null(g);
	assert_non_null(strstr(err, "newer"));
}

/* --- 8. listing ------------------------------------------------------------------------------ */

static void the_listing_gives_ministry_then_auto_then_local(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	/* Arrive in the opposite order of the listing. */
	assert_int_equal(suspend_local(g, "vendor", bit("seal"), GATE_DRAIN, "local seal", NOW + 1),
			 1);
	assert_int_equal(suspend_local(g, "registry", bit("residence"), GATE_IMMEDIATE,
				       "local residence", NOW + 2),
			 1);
	assert_int_equal(suspend_auto(g, "vendor", "auto fault", NOW + 3), 1);
	assert_int_equal(apply_list(g,
				    signed_list(4, ENTRY_VENDOR_141003
						"," ENTRY_REGISTRY_ALL "," ENTRY_VENDOR_BELOW_231
						"," ENTRY_VENDOR_BOTH_CITIES),
				    NOW + 4),
			 4);
	assert_int_equal(gate_entry_count(g), 7);

	struct gate_entry_view e[7];
	for (size_t i = 0; i < 7; i++)
		gate_entry_at(g, i, &e[i]);
	/* Ministry entries in the list's order. */
	assert_int_equal(e[0].source, GATE_MINISTRY);
	assert_string_equal(e[0].id, "M-CITY");
	assert_string_equal(e[0].plugin, "vendor");
	assert_true(e[0].types == gate_all_types());
	assert_null(e[0].versions);
	assert_string_equal(e[0].municipalities, "141003");
	assert_int_equal(e[0].mode, GATE_DRAIN);
	assert_string_equal(e[0].reason, "wrong ward names in 141003");
	assert_int_equal(e[0].since, NOW + 4);
	assert_int_equal(e[1].source, GATE_MINISTRY);
	assert_string_equal(e[1].id, "M-REG");
	assert_null(e[1].municipalities);
	assert_int_equal(e[1].mode, GATE_IMMEDIATE);
	assert_int_equal(e[2].source, GATE_MINISTRY);
	assert_string_equal(e[2].id, "M-OLD");
	assert_string_equal(e[2].versions, "<2.3.1");
	assert_int_equal(e[3].source, GATE_MINISTRY);
	assert_string_equal(e[3].id, "M-TWO");
	assert_true(e[3].types == bit("tax-income"));
	assert_string_equal(e[3].municipalities, "141003,141011");
	assert_string_equal(e[3].reason, "");
	/* Then auto. */
	assert_int_equal(e[4].source, GATE_AUTO);
	assert_string_equal(e[4].plugin, "vendor");
	assert_string_equal(e[4].id, "");
	assert_true(e[4].types == gate_all_types());
	assert_int_equal(e[4].mode, GATE_IMMEDIATE);
	assert_string_equal(e[4].reason, "auto fault");
	assert_int_equal(e[4].since, NOW + 3);
	/* Then local, one per type. */
	for (size_t i = 5; i < 7; i++) {
		assert_int_equal(e[i].source, GATE_LOCAL);
		assert_string_equal(e[i].id, "");
		assert_null(e[i].versions);
		assert_null(e[i].municipalities);
	}
	bool vendor_first = strcmp(e[5].plugin, "vendor") == 0;
	const struct gate_entry_view *vs = vendor_first ? &e[5] : &e[6];
	const struct gate_entry_view *rs = vendor_first ? &e[6] : &e[5];
	assert_string_equal(vs->plugin, "vendor");
	assert_true(vs->types == bit("seal"));
	assert_int_equal(vs->mode, GATE_DRAIN);
	assert_string_equal(vs->reason, "local seal");
	assert_int_equal(vs->since, NOW + 1);
	assert_string_equal(rs->plugin, "registry");
	assert_true(rs->types == bit("residence"));
	assert_int_equal(rs->mode, GATE_IMMEDIATE);

	/* The order survives a restart. */
	gate_free(g);
	g = open_gate(db);
	assert_int_equal(gate_entry_count(g), 7);
	const enum gate_source order[] = {GATE_MINISTRY, GATE_MINISTRY, GATE_MINISTRY,
					  GATE_MINISTRY, GATE_AUTO,	GATE_LOCAL,
					  GATE_LOCAL};
	const char *const ids[] = {"M-CITY", "M-REG", "M-OLD", "M-TWO", "", "", ""};
	for (size_t i = 0; i < 7; i++) {
		struct gate_entry_view x;
		gate_entry_at(g, i, &x);
		assert_int_equal(x.source, order[i]);
		assert_string_equal(x.id, ids[i]);
	}
	assert_string_equal(gate_source_name(GATE_MINISTRY), "ministry");
	assert_string_equal(gate_source_name(GATE_LOCAL), "local");
	assert_string_equal(gate_mode_name(GATE_DRAIN), "drain");
	assert_string_equal(gate_mode_name(GATE_IMMEDIATE), "immediate");
	gate_free(g);
}

static void held_by_finds_a_source_s_suspension_for_given_types(void **state)
{
	(void)state;
	struct gate *g = open_gate(db);
	struct gate_verdict v;
	assert_int_equal(suspend_local(g, "vendor", bit("seal"), GATE_DRAIN, "local seal", NOW), 1);
	assert_int_equal(suspend_auto(g, "registry", "auto fault", NOW + 1), 1);
	assert_int_equal(apply_list(g, signed_list(1, ENTRY_VENDOR_SEAL), NOW + 2), 1);

	assert_true(gate_held_by(g, GATE_LOCAL, "vendor", bit("seal"), &v));
	assert_int_equal(v.source, GATE_LOCAL);
	assert_string_equal(v.reason, "local seal");
	assert_false(v.immediate);
	assert_true(gate_held_by(g, GATE_LOCAL, "vendor", bit("seal") | bit("residence"), NULL));
	assert_true(gate_held_by(g, GATE_LOCAL, "vendor", 0, NULL)); /* any type */
	assert_false(gate_held_by(g, GATE_LOCAL, "vendor", bit("residence"), NULL));
	assert_false(gate_held_by(g, GATE_LOCAL, "registry", 0, NULL));

	assert_true(gate_held_by(g, GATE_AUTO, "registry", bit("koseki-individual"), &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(v.reason, "auto fault");
	assert_false(gate_held_by(g, GATE_AUTO, "vendor", 0, NULL));

	assert_true(gate_held_by(g, GATE_MINISTRY, "vendor", bit("seal"), &v));
	assert_int_equal(v.source, GATE_MINISTRY);
	assert_string_equal(v.id, "M-SEAL");
	assert_false(gate_held_by(g, GATE_MINISTRY, "vendor", bit("residence"), NULL));
	assert_false(gate_held_by(g, GATE_MINISTRY, "registry", 0, NULL));
	gate_free(g);
}

int main(void)
{
#define DB_TEST(f) cmocka_unit_test_setup_teardown(f, setup_db, teardown_db)
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_fresh_gate_binds_its_instances_and_suspends_nothing),
	    DB_TEST(the_hot_path_and_the_check_by_names_agree),
	    DB_TEST(a_local_suspension_stops_only_its_types_of_its_plugin),
	    DB_TEST(a_local_resume_lifts_only_the_types_it_names),
	    DB_TEST(resuming_every_type_lifts_every_local_suspension),
	    DB_TEST(drain_stops_new_requests_and_immediate_also_deliveries),
	    DB_TEST(an_auto_suspension_stops_every_type_at_once_and_keeps_the_first_fault),
	    DB_TEST(only_an_acknowledgement_lifts_an_auto_suspension),
	    DB_TEST(ministry_entries_name_the_vendor_plugin_and_local_ones_the_instance),
	    DB_TEST(a_ministry_entry_covers_only_its_certificates),
	    DB_TEST(a_ministry_entry_covers_only_versions_in_its_range),
	    DB_TEST(a_ministry_entry_covers_only_its_municipalities),
	    DB_TEST(a_newer_list_replaces_the_one_in_force),
	    DB_TEST(a_list_not_newer_than_the_stored_one_changes_nothing),
	    cmocka_unit_test(gate_apply_ignores_a_list_not_newer_than_the_one_in_force),
	    DB_TEST(an_expired_list_stays_in_force),
	    DB_TEST(sequences_compare_as_unsigned_64_bit_numbers),
	    DB_TEST(the_strongest_source_names_the_verdict),
	    DB_TEST(every_persisted_suspension_is_in_force_after_a_restart),
	    DB_TEST(persisted_resume_and_acknowledgement_stay_lifted_after_a_restart),
	    DB_TEST(a_store_of_the_previous_schema_keeps_its_auto_suspensions),
	    cmocka_unit_test(an_unusable_store_fails_the_open_and_the_persist),
	    DB_TEST(an_unreadable_stored_list_fails_the_open),
	    DB_TEST(a_store_from_a_newer_version_is_refused),
	    DB_TEST(the_listing_gives_ministry_then_auto_then_local),
	    DB_TEST(held_by_finds_a_source_s_suspension_for_given_types),
	};
#undef DB_TEST
	return cmocka_run_group_tests(tests, setup_ministry, teardown_ministry);
}
