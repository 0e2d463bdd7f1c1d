/*
 * test_fujitsu_like.c: the fujitsu-like wire codec, and the plugin against the vendor
 * simulator next to the sqlite-registry plugin serving the same demo city.
 *
 * Environment: MDG_SRCDIR (for scripts/demo-city), MDG_PLUGINS (the built fujitsu-like.so and
 * sqlite-registry.so), MDG_VENDOR_SIM (the simulator binary).  The integration group makes a
 * 3,000-resident city, starts one simulator with a control socket, loads both plugins in one
 * host and switches the simulator's fault modes between tests.  Loopback only.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
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
#include "wire.h"

/* --- codec ----------------------------------------------------------------------------- */

static const char *const long_address =
    "神奈川県横浜市中区日本大通三丁目十三番地七号 メゾン日本大通り第二ビルディング南棟 "
    "一二三四号室（管理事務所気付）ＡＢＣ－ｱｲｳ";

/* Builds a response frame with kanji, a long value and two lists. */
static void make_frame(char **frame, size_t *len, int drop_last_item)
{
	struct wire_writer w;
	assert_int_equal(wire_writer_init(&w), WIRE_OK);
	assert_int_equal(wire_writer_head(&w, WIRE_RESULT_OK, "residence", "10002739616", 5,
					  "active", 1790000000),
			 WIRE_OK);
	assert_int_equal(wire_writer_field(&w, "address", long_address), WIRE_OK);
	assert_int_equal(wire_writer_field(&w, "householder_name", "遠藤 裕介"), WIRE_OK);
	assert_int_equal(wire_writer_item(&w, "members"), WIRE_OK);
	assert_int_equal(wire_writer_item_field(&w, "name", "遠藤 裕介"), WIRE_OK);
	assert_int_equal(wire_writer_item_field(&w, "kana", "エンドウ ユウスケ"), WIRE_OK);
	assert_int_equal(wire_writer_item_field(&w, "previous_address", long_address), WIRE_OK);
	assert_int_equal(wire_writer_item(&w, "members"), WIRE_OK);
	assert_int_equal(wire_writer_item_field(&w, "name", "髙橋 﨑子"), WIRE_OK);
	assert_int_equal(wire_writer_item(&w, "events"), WIRE_OK);
	assert_int_equal(wire_writer_item_field(&w, "detail", "東京都大田区で出生  "), WIRE_OK);
	if (drop_last_item)
		assert_int_equal(wire_writer_drop_last_item(&w), 1);
	assert_int_equal(wire_writer_finish(&w, 4242, frame, len), WIRE_OK);
}

static void a_record_survives_the_round_trip_with_kanji_and_long_values(void **state)
{
	(void)state;
	char *frame;
	size_t len;
	make_frame(&frame, &len, 0);
	struct wire_header h;
	char err[160];
	assert_int_equal(wire_header_parse(frame, &h, err, sizeof err), WIRE_OK);
	assert_int_equal(h.type, WIRE_RESPONSE);
	assert_int_equal(h.correlation_id, 4242);
	assert_int_equal(h.payload_len, len - WIRE_HEADER_SIZE);
	struct wire_record *r = NULL;
	assert_int_equal(
	    wire_response_decode(frame + WIRE_HEADER_SIZE, h.payload_len, &r, err, sizeof err),
	    WIRE_OK);
	assert_int_equal(r->result, WIRE_RESULT_OK);
	assert_string_equal(r->certificate, "residence");
	assert_string_equal(r->resident_code, "10002739616");
	assert_int_equal(r->version, 5);
	assert_string_equal(r->status, "active");
	assert_int_equal(r->as_of, 1790000000);
	assert_int_equal(r->field_count, 2);
	assert_string_equal(r->fields[0].name, "address");
	assert_string_equal(r->fields[0].value, long_address); /* split over lines, rejoined */
	assert_string_equal(r->fields[1].value, "遠藤 裕介");
	assert_int_equal(r->list_count, 2);
	assert_string_equal(r->lists[0].name, "members");
	assert_int_equal(r->lists[0].item_count, 2);
	assert_string_equal(r->lists[0].items[0].fields[1].value, "エンドウ ユウスケ");
	assert_string_equal(r->lists[0].items[0].fields[2].value, long_address);
	assert_string_equal(r->lists[0].items[1].fields[0].value, "髙橋 﨑子");
	assert_string_equal(r->lists[1].items[0].fields[0].value, "東京都大田区で出生  ");
	wire_record_free(r);
	free(frame);
}

static void a_request_survives_the_round_trip(void **state)
{
	(void)state;
	struct wire_request q = {"koseki-attachment", "141003", "10131383004", 5}, back;
	char *frame, err[160];
	size_t len;
	assert_int_equal(wire_request_encode(9999999999ull, &q, &frame, &len), WIRE_OK);
	struct wire_header h;
	assert_int_equal(wire_header_parse(frame, &h, err, sizeof err), WIRE_OK);
	assert_int_equal(h.type, WIRE_REQUEST);
	assert_int_equal(h.correlation_id, 9999999999ull);
	assert_int_equal(
	    wire_request_decode(frame + WIRE_HEADER_SIZE, h.payload_len, &back, err, sizeof err),
	    WIRE_OK);
	assert_string_equal(back.certificate, q.certificate);
	assert_string_equal(back.municipality, q.municipality);
	assert_string_equal(back.resident_code, q.resident_code);
	assert_int_equal(back.options, 5);
	free(frame);
	/* What does not fit the fixed widths is refused, not truncated. */
	struct wire_request too_long = {"residence", "141003", "1234567890123456789012", 0};
	assert_int_equal(wire_request_encode(1, &too_long, &frame, &len), WIRE_ERR_MALFORMED);
}

/* Decodes a (possibly damaged) frame; returns the status. */
static int decode(const char *frame, size_t len)
{
	struct wire_header h;
	char err[160];
	if (len < WIRE_HEADER_SIZE)
		return WIRE_ERR_MALFORMED;
	int rc = wire_header_parse(frame, &h, err, sizeof err);
	if (rc != WIRE_OK)
		return rc;
	if (h.payload_len != len - WIRE_HEADER_SIZE)
		return WIRE_ERR_MALFORMED;
	struct wire_record *r = NULL;
	rc = wire_response_decode(frame + WIRE_HEADER_SIZE, h.payload_len, &r, err, sizeof err);
	if (rc == WIRE_OK)
		wire_record_free(r);
	else
		assert_true(err[0] != '\0');
	return rc;
}

static void every_kind_of_malformed_frame_is_rejected(void **state)
{
	(void)state;
	char *good;
	size_t len;
	make_frame(&good, &len, 0);
	assert_int_equal(decode(good, len), WIRE_OK);
	char *bad = malloc(len);
	size_t line2 = WIRE_HEADER_SIZE + WIRE_LINE_SIZE; /* the first field line */

#define DAMAGE(stmt, want)                                                                         \
	do {                                                                                       \
		memcpy(bad, good, len);                                                            \
		stmt;                                                                              \
		assert_int_equal(decode(bad, len), want);                                          \
	} while (0)

	DAMAGE(memcpy(bad, "MDGX", 4), WIRE_ERR_MALFORMED);		   /* bad magic */
	DAMAGE(memcpy(bad + 6, "XX", 2), WIRE_ERR_MALFORMED);		   /* bad type */
	DAMAGE(bad[20] = 'a', WIRE_ERR_MALFORMED);			   /* bad length digit */
	DAMAGE(memcpy(bad + 18, "00000100", 8), WIRE_ERR_MALFORMED);	   /* not whole lines */
	DAMAGE(memcpy(bad + 18, "00000000", 8), WIRE_ERR_MALFORMED);	   /* empty */
	DAMAGE(memcpy(bad + 18, "99999999", 8), WIRE_ERR_MALFORMED);	   /* too big */
	DAMAGE(bad[28] = 'x', WIRE_ERR_MALFORMED);			   /* header padding */
	DAMAGE(memcpy(bad + line2, "ZZ", 2), WIRE_ERR_MALFORMED);	   /* unknown line */
	DAMAGE(bad[line2 + WIRE_LINE_SIZE - 1] = ' ', WIRE_ERR_MALFORMED); /* no newline */
	DAMAGE(bad[line2 + WIRE_LINE_SIZE - 2] = '#', WIRE_ERR_MALFORMED); /* line padding */
	DAMAGE(memcpy(bad + line2 + 34, "99", 2), WIRE_ERR_MALFORMED);	   /* used > width */
	DAMAGE(bad[line2 + 2] = 'A', WIRE_ERR_MALFORMED);		   /* name not a name */
	DAMAGE(memcpy(bad + line2, "FC", 2), WIRE_ERR_MALFORMED);	   /* orphan continuation */
	DAMAGE(memcpy(bad + WIRE_HEADER_SIZE + 2, "77", 2), WIRE_ERR_MALFORMED); /* result */
	DAMAGE(bad[WIRE_HEADER_SIZE + 50] = 'v', WIRE_ERR_MALFORMED);		 /* version digit */
	/* Invalid CP932: a lead byte followed by a newline-range byte, an unassigned code. */
	DAMAGE((bad[line2 + 36] = (char)0x81, bad[line2 + 37] = (char)0x0a), WIRE_ERR_ENCODING);
	DAMAGE((bad[line2 + 36] = (char)0x85, bad[line2 + 37] = (char)0x40), WIRE_ERR_ENCODING);
	DAMAGE(bad[line2 + 36] = (char)0x01, WIRE_ERR_ENCODING); /* control byte */
	/* Trailer: counts that do not match, a missing trailer. */
	DAMAGE(memcpy(bad + len - WIRE_LINE_SIZE + 2, "000001", 6), WIRE_ERR_MALFORMED);
	DAMAGE(memcpy(bad + len - WIRE_LINE_SIZE + 8, "000009", 6), WIRE_ERR_INCOMPLETE);
	DAMAGE(memcpy(bad + len - WIRE_LINE_SIZE, "IF", 2), WIRE_ERR_INCOMPLETE);
#undef DAMAGE

	/* A short frame: the header promises more than arrives. */
	assert_int_equal(decode(good, len - WIRE_LINE_SIZE), WIRE_ERR_MALFORMED);
	struct wire_reader rd;
	wire_reader_init(&rd);
	assert_int_equal(wire_reader_feed(&rd, good, len - 1), WIRE_OK);
	struct wire_header h;
	const char *payload;
	char err[160];
	assert_int_equal(wire_reader_next(&rd, &h, &payload, err, sizeof err), 0);
	assert_int_equal(wire_reader_feed(&rd, good + len - 1, 1), WIRE_OK);
	assert_int_equal(wire_reader_next(&rd, &h, &payload, err, sizeof err), 1);
	assert_int_equal(wire_reader_feed(&rd, "garbage garbage garbage garbage!", 32), WIRE_OK);
	assert_int_equal(wire_reader_next(&rd, &h, &payload, err, sizeof err), WIRE_ERR_MALFORMED);
	wire_reader_free(&rd);

	/* A truncated multi-item record (lines lost, trailer intact) is incomplete. */
	char *partial;
	size_t plen;
	make_frame(&partial, &plen, 1);
	assert_int_equal(decode(partial, plen), WIRE_ERR_INCOMPLETE);
	free(partial);

	/* A value with no CP932 form is refused at encoding. */
	struct wire_writer w;
	assert_int_equal(wire_writer_init(&w), WIRE_OK);
	wire_writer_head(&w, WIRE_RESULT_OK, "seal", "1", 1, "active", 0);
	assert_int_equal(wire_writer_field(&w, "registered_name", "山田 😀"), WIRE_ERR_ENCODING);
	char *out;
	size_t olen;
	assert_int_equal(wire_writer_finish(&w, 1, &out, &olen), WIRE_ERR_ENCODING);
	free(bad);
	free(good);
}

/* The first value of a record empty: the decoder once did arithmetic on its still-NULL
 * buffer (undefined; found by tests/fuzz/fuzz_vendor_frames). */
static void an_empty_first_value_decodes_as_empty(void **state)
{
	(void)state;
	struct wire_writer w;
	char *frame, err[128];
	size_t len;
	struct wire_record *rec = NULL;
	assert_int_equal(wire_writer_init(&w), WIRE_OK);
	assert_int_equal(wire_writer_head(&w, WIRE_RESULT_OK, "seal", "1", 1, "active", 0),
			 WIRE_OK);
	assert_int_equal(wire_writer_field(&w, "seal_image", ""), WIRE_OK);
	assert_int_equal(wire_writer_field(&w, "registered_name", "山田 太郎"), WIRE_OK);
	assert_int_equal(wire_writer_finish(&w, 1, &frame, &len), WIRE_OK);
	assert_int_equal(wire_response_decode(frame + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE,
					      &rec, err, sizeof err),
			 WIRE_OK);
	assert_int_equal(rec->field_count, 2);
	assert_string_equal(rec->fields[0].value, "");
	assert_string_equal(rec->fields[1].value, "山田 太郎");
	wire_record_free(rec);
	free(frame);
}

static void random_damage_never_crashes_the_decoder(void **state)
{
	(void)state;
	char *good;
	size_t len;
	make_frame(&good, &len, 0);
	char *bad = malloc(len);
	uint64_t x = 88172645463325252ull;
	int rejected = 0;
	for (int i = 0; i < 3000; i++) {
		memcpy(bad, good, len);
		int flips = 1 + i % 4;
		for (int f = 0; f < flips; f++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			bad[WIRE_HEADER_SIZE + x % (len - WIRE_HEADER_SIZE)] = (char)(x >> 24);
		}
		/* Also cut the buffer: the decoder must read only what it was given. */
		size_t cut = (i % 7 == 0) ? len - (x % 200) : len;
		char *copy = malloc(cut);
		memcpy(copy, bad, cut);
		if (decode(copy, cut) != WIRE_OK)
			rejected++;
		free(copy);
	}
	assert_true(rejected > 2000);
	free(bad);
	free(good);
}

/* --- integration: fixture ----------------------------------------------------------- */

struct world {
	char dir[64];
	char control[100];
	char config_path[128];
	char registry[128];
	pid_t sim;
	int port;
	uv_loop_t loop;
	struct config *cfg;
	struct plugin_host *host;
	struct plugin_instance *fj, *sq;
	json_t *truth; /* array of residents.jsonl objects */
};

static struct world *W;

static int start_simulator(struct world *w)
{
	const char *sim = getenv("MDG_VENDOR_SIM");
	if (sim == NULL)
		return -1;
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	w->sim = fork();
	if (w->sim == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(sim, sim, "--registry", w->registry, "--listen", "127.0.0.1:0", "--control",
		      w->control, "--fault-rate", "300", "--latency-ms", "300", "--seed", "7",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char line[128];
	size_t n = 0;
	while (n + 1 < sizeof line) {
		ssize_t r = read(fds[0], line + n, 1);
		if (r <= 0)
			break;
		if (line[n++] == '\n')
			break;
	}
	line[n] = '\0';
	close(fds[0]);
	if (sscanf(line, "listening 127.0.0.1:%d", &w->port) != 1)
		return -1;
	return 0;
}

/* Sends one control command and returns 0 when the answer starts with "ok". */
static int control(const char *cmd)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", W->control);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	char buf[128];
	snprintf(buf, sizeof buf, "%s\n", cmd);
	if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf)) {
		close(fd);
		return -1;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n >= 2 && memcmp(buf, "ok", 2) == 0 ? 0 : -1;
}

static void wake(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until *count reaches target or ms pass. */
static void run_until(const int *count, int target, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(&W->loop, &t);
	uv_timer_start(&t, wake, 10, 10);
	uint64_t end = uv_now(&W->loop) + ms;
	while ((count == NULL || *count < target) && uv_now(&W->loop) < end)
		uv_run(&W->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&W->loop, UV_RUN_NOWAIT);
}

static int world_setup(void **state)
{
	(void)state;
	const char *src = getenv("MDG_SRCDIR");
	const char *plugins = getenv("MDG_PLUGINS");
	if (src == NULL || plugins == NULL || getenv("MDG_VENDOR_SIM") == NULL) {
		fprintf(stderr, "MDG_SRCDIR, MDG_PLUGINS and MDG_VENDOR_SIM must be set\n");
		return -1;
	}
	W = calloc(1, sizeof *W);
	snprintf(W->dir, sizeof W->dir, "/tmp/mdg-fujitsu-test.XXXXXX");
	if (mkdtemp(W->dir) == NULL)
		return -1;
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "python3 '%s/scripts/demo-city' --out '%s' --residents 3000 >/dev/null", src,
		 W->dir);
	if (system(cmd) != 0)
		return -1;
	snprintf(W->registry, sizeof W->registry, "%s/registry.sqlite", W->dir);
	snprintf(W->control, sizeof W->control, "%s/control.sock", W->dir);
	snprintf(W->config_path, sizeof W->config_path, "%s/madoguchi.yaml", W->dir);
	if (start_simulator(W) != 0)
		return -1;

	char path[256];
	snprintf(path, sizeof path, "%s/demo/residents.jsonl", W->dir);
	FILE *fp = fopen(path, "r");
	if (fp == NULL)
		return -1;
	W->truth = json_array();
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, fp) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		if (o != NULL)
			json_array_append_new(W->truth, o);
	}
	free(line);
	fclose(fp);

	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "  fj:\n"
		 "    file: fujitsu-like.so\n"
		 "    timeout: 2s\n"
		 "    max_in_flight: 512\n"
		 "    config:\n"
		 "      endpoint: 127.0.0.1:%d\n"
		 "      pool_size: 4\n"
		 "      max_in_flight_per_connection: 16\n"
		 "      connect_timeout: 1s\n"
		 "      reconnect_backoff: 50ms\n"
		 "  sq:\n"
		 "    file: sqlite-registry.so\n"
		 "    max_in_flight: 512\n"
		 "    config:\n"
		 "      database: %s\n",
		 W->port, W->registry);
	if (hf_write_config(W->config_path, plugins, yaml) != 0)
		return -1;
	uv_loop_init(&W->loop);
	char msg[CONFIG_ERROR_MAX];
	if (hf_load(W->config_path, &W->loop, &W->cfg, &W->host, msg, sizeof msg) != 0) {
		fprintf(stderr, "load: %s\n", msg);
		return -1;
	}
	W->fj = plugin_host_find(W->host, "fj");
	W->sq = plugin_host_find(W->host, "sq");
	run_until(NULL, 0, 100); /* let the pool connect */
	return 0;
}

static int world_teardown(void **state)
{
	(void)state;
	if (W == NULL)
		return 0;
	if (W->host != NULL)
		plugin_host_unload(W->host);
	config_unref(W->cfg);
	uv_run(&W->loop, UV_RUN_DEFAULT);
	uv_loop_close(&W->loop);
	metrics_reset();
	if (W->sim > 0) {
		kill(W->sim, SIGTERM);
		int st;
		waitpid(W->sim, &st, 0);
	}
	json_decref(W->truth);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", W->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", W->dir);
	free(W);
	W = NULL;
	return 0;
}

/* --- integration: fetching ---------------------------------------------------------- */

struct outcome {
	int *done;
	int status;
	mdg_record *record;
	char reason[160];
	char asked[32];
	const char *certificate;
	json_t *truth; /* the resident's line of residents.jsonl, when known */
};

static void on_outcome(void *arg, int status, mdg_record *record, const char *reason)
{
	struct outcome *o = arg;
	o->status = status;
	o->record = record;
	if (reason != NULL)
		snprintf(o->reason, sizeof o->reason, "%s", reason);
	(*o->done)++;
}

/* Starts a fetch into o (counted in *done). */
static void start(struct plugin_instance *inst, struct outcome *o, int *done, const char *cert,
		  const char *code, uint32_t options, uint64_t timeout_ms)
{
	memset(o, 0, sizeof *o);
	o->done = done;
	o->certificate = cert;
	snprintf(o->asked, sizeof o->asked, "%s", code);
	int rc = plugin_fetch(inst, cert, "141003", code, options, timeout_ms, on_outcome, o, NULL);
	if (rc != MDG_OK) {
		o->status = rc;
		(*done)++;
	}
}

static void outcome_clear(struct outcome *o)
{
	if (o->record != NULL)
		record_free(o->record);
	o->record = NULL;
}

static long long metric(const char *series)
{
	size_t len;
	char *text = metrics_render(&len);
	char *at = strstr(text, series);
	long long v = at ? strtoll(at + strlen(series), NULL, 10) : -1;
	free(text);
	return v;
}

static const char *truth_refusal(json_t *res, const char *cert)
{
	json_t *r = json_object_get(json_object_get(res, "refusal"), cert);
	return json_is_string(r) ? json_string_value(r) : NULL;
}

static void both_backends_return_identical_records(void **state)
{
	(void)state;
	assert_int_equal(control("mode normal"), 0);
	enum { BATCH = 100 };
	static struct outcome a[BATCH], b[BATCH];
	size_t residents = 0, compared = 0, not_found = 0;
	int64_t now = (int64_t)time(NULL);
	size_t total = json_array_size(W->truth);
	size_t idx = 0;
	int type = 0;
	while (residents < 1000 && idx < total) {
		int done = 0, n = 0;
		while (n < BATCH && idx < total) {
			json_t *res = json_array_get(W->truth, idx);
			const char *cert = record_certificate_types[type];
			const char *code = json_string_value(json_object_get(res, "resident_code"));
			uint32_t options = (idx % 3 == 0) ? MDG_FETCH_HOUSEHOLD
					   : (idx % 3 == 1)
					       ? MDG_FETCH_SHOW_DOMICILE | MDG_FETCH_SHOW_MY_NUMBER
					       : 0;
			start(W->fj, &a[n], &done, cert, code, options, 5000);
			start(W->sq, &b[n], &done, cert, code, options, 5000);
			a[n].truth = res;
			n++;
			if (++type == RECORD_CERTIFICATE_TYPE_COUNT) {
				type = 0;
				idx++;
				residents++;
			}
		}
		run_until(&done, 2 * n, 20000);
		assert_int_equal(done, 2 * n);
		for (int i = 0; i < n; i++) {
			json_t *res = a[i].truth;
			const char *refusal = truth_refusal(res, a[i].certificate);
			if (refusal != NULL && strcmp(refusal, "NO_RECORD") == 0) {
				assert_int_equal(a[i].status, MDG_ERR_NOT_FOUND);
				assert_int_equal(b[i].status, MDG_ERR_NOT_FOUND);
				not_found++;
			} else {
				if (a[i].status != MDG_OK || b[i].status != MDG_OK)
					fail_msg(
					    "%s: fujitsu-like %d (%s), sqlite-registry %d (%s)",
					    a[i].certificate, a[i].status, a[i].reason, b[i].status,
					    b[i].reason);
				json_t *ja = json_deep_copy(record_json(a[i].record));
				json_t *jb = json_deep_copy(record_json(b[i].record));
				int64_t as_a = record_as_of(a[i].record);
				int64_t as_b = record_as_of(b[i].record);
				assert_true(as_a > now - 60 && as_a < now + 60);
				assert_true(as_b > now - 60 && as_b < now + 60);
				json_object_del(ja, "as_of");
				json_object_del(jb, "as_of");
				if (!json_equal(ja, jb)) {
					char *sa = json_dumps(ja, JSON_SORT_KEYS | JSON_COMPACT);
					char *sb = json_dumps(jb, JSON_SORT_KEYS | JSON_COMPACT);
					fail_msg("records differ for %s:\n%s\n%s", a[i].certificate,
						 sa, sb);
				}
				json_decref(ja);
				json_decref(jb);
				compared++;
			}
			outcome_clear(&a[i]);
			outcome_clear(&b[i]);
		}
	}
	assert_true(residents >= 1000);
	assert_true(compared >= 1000);
	assert_true(not_found > 0);
	print_message("# %zu residents, %zu records identical, %zu NOT_FOUND agreed\n", residents,
		      compared, not_found);
}

/* Residents with a record of cert (refusal not NO_RECORD), from the truth. */
static size_t pick(const char *cert, const char **codes, size_t max, int with_history)
{
	size_t n = 0;
	for (size_t k = 0; k < json_array_size(W->truth) && n < max; k++) {
		json_t *res = json_array_get(W->truth, k);
		const char *r = truth_refusal(res, cert);
		if (r != NULL && strcmp(r, "NO_RECORD") == 0)
			continue;
		if (with_history && json_is_null(json_object_get(res, "stale")))
			continue;
		codes[n++] = json_string_value(json_object_get(res, "resident_code"));
	}
	return n;
}

static void swap_mode_returns_records_of_other_residents(void **state)
{
	(void)state;
	assert_int_equal(control("mode swap"), 0);
	enum { N = 40 };
	const char *codes[N];
	size_t n = pick("residence", codes, N, 0);
	static struct outcome o[N];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "residence", codes[i], 0, 3000);
	run_until(&done, (int)n, 5000);
	assert_int_equal(done, (int)n);
	int foreign = 0;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(o[i].status, MDG_OK);
		if (strcmp(record_resident_code(o[i].record), o[i].asked) != 0)
			foreign++;
		outcome_clear(&o[i]);
	}
	print_message("# swap: %d of %zu records belong to another resident\n", foreign, n);
	assert_true(foreign > 0);
	assert_int_equal(control("mode normal"), 0);
}

static void stale_mode_reports_the_older_version_and_as_of(void **state)
{
	(void)state;
	assert_int_equal(control("mode stale"), 0);
	enum { N = 30 };
	const char *codes[N];
	size_t n = pick("residence", codes, N, 1);
	assert_true(n > 5);
	static struct outcome a[N], b[N];
	int done = 0;
	for (size_t i = 0; i < n; i++) {
		start(W->fj, &a[i], &done, "residence", codes[i], 0, 3000);
		start(W->sq, &b[i], &done, "residence", codes[i], 0, 3000);
	}
	run_until(&done, 2 * (int)n, 5000);
	assert_int_equal(done, 2 * (int)n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].status, MDG_OK);
		assert_int_equal(b[i].status, MDG_OK);
		assert_string_equal(record_resident_code(a[i].record), codes[i]);
		assert_true(record_version(a[i].record) < record_version(b[i].record));
		assert_true(record_as_of(a[i].record) < record_as_of(b[i].record));
		outcome_clear(&a[i]);
		outcome_clear(&b[i]);
	}
	assert_int_equal(control("mode normal"), 0);
}

static void slow_mode_times_out_and_the_late_answer_is_dropped(void **state)
{
	(void)state;
	long long late_before = metric("madoguchi_plugin_late_completions_total{plugin=\"fj\"} ");
	assert_int_equal(control("latency 300"), 0);
	assert_int_equal(control("mode slow"), 0);
	enum { N = 10 };
	const char *codes[N];
	size_t n = pick("seal", codes, N, 0);
	static struct outcome o[N];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "seal", codes[i], 0, 50);
	run_until(&done, (int)n, 2000);
	assert_int_equal(done, (int)n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(o[i].status, MDG_ERR_TIMEOUT);
		assert_null(o[i].record);
	}
	/* The simulator answers after 300 ms: those answers reach no request. */
	run_until(NULL, 0, 600);
	long long late = metric("madoguchi_plugin_late_completions_total{plugin=\"fj\"} ");
	assert_true(late - (late_before < 0 ? 0 : late_before) >= (long long)n);
	/* A deadline the backend can meet is met. */
	done = 0;
	start(W->fj, &o[0], &done, "seal", codes[0], 0, 2000);
	run_until(&done, 1, 3000);
	assert_int_equal(o[0].status, MDG_OK);
	outcome_clear(&o[0]);
	assert_int_equal(control("mode normal"), 0);
}

/* Fetches n residence records in normal mode and asserts all succeed. */
static void fetches_succeed_again(size_t n)
{
	const char *codes[20];
	n = pick("residence", codes, n, 0);
	static struct outcome o[20];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "residence", codes[i], 0, 3000);
	run_until(&done, (int)n, 4000);
	for (size_t i = 0; i < n; i++) {
		if (o[i].status != MDG_OK)
			fail_msg("fetch %zu after recovery: %d (%s)", i, o[i].status, o[i].reason);
		outcome_clear(&o[i]);
	}
}

static void drop_mode_fails_requests_and_the_plugin_reconnects(void **state)
{
	(void)state;
	assert_int_equal(control("mode drop"), 0);
	enum { N = 60 };
	const char *codes[N];
	size_t n = pick("residence", codes, N, 0);
	static struct outcome o[N];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "residence", codes[i], 0, 2000);
	run_until(&done, (int)n, 4000);
	assert_int_equal(done, (int)n);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (o[i].status == MDG_ERR_BACKEND)
			failed++;
		else
			assert_int_equal(o[i].status, MDG_OK);
		outcome_clear(&o[i]);
	}
	print_message("# drop: %d of %zu failed with MDG_ERR_BACKEND\n", failed, n);
	assert_true(failed > 0);
	assert_int_equal(control("mode normal"), 0);
	run_until(NULL, 0, 300); /* backoff 50 ms */
	fetches_succeed_again(20);
	assert_true(metric("madoguchi_plugin_fujitsu_like_reconnects_total{plugin=\"fj\"} ") > 0);
	assert_string_equal(plugin_instance_descriptor(W->fj)->name, "fujitsu-like");
}

static void garbage_mode_is_a_backend_error_never_a_crash(void **state)
{
	(void)state;
	long long before =
	    metric("madoguchi_plugin_fujitsu_like_frames_rejected_total{plugin=\"fj\"} ");
	assert_int_equal(control("mode garbage"), 0);
	enum { N = 80 };
	const char *codes[N];
	size_t n = pick("koseki-full", codes, N, 0);
	static struct outcome o[N];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "koseki-full", codes[i], 0, 2000);
	run_until(&done, (int)n, 4000);
	assert_int_equal(done, (int)n);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (o[i].status == MDG_ERR_BACKEND)
			failed++;
		else
			assert_int_equal(o[i].status, MDG_OK);
		outcome_clear(&o[i]);
	}
	print_message("# garbage: %d of %zu failed with MDG_ERR_BACKEND\n", failed, n);
	assert_true(failed > 0);
	assert_true(metric("madoguchi_plugin_fujitsu_like_frames_rejected_total{plugin=\"fj\"} ") >
		    before);
	assert_int_equal(control("mode normal"), 0);
	run_until(NULL, 0, 300);
	fetches_succeed_again(20);
}

static void partial_mode_is_an_incomplete_record(void **state)
{
	(void)state;
	assert_int_equal(control("mode partial"), 0);
	enum { N = 20 };
	const char *codes[N];
	size_t n = pick("koseki-full", codes, N, 0);
	static struct outcome o[N];
	int done = 0;
	for (size_t i = 0; i < n; i++)
		start(W->fj, &o[i], &done, "koseki-full", codes[i], 0, 2000);
	run_until(&done, (int)n, 4000);
	assert_int_equal(done, (int)n);
	for (size_t i = 0; i < n; i++) {
		/* Every koseki-full record has a person and at least one event. */
		assert_int_equal(o[i].status, MDG_ERR_BACKEND);
		assert_non_null(strstr(o[i].reason, "incomplete record"));
	}
	/* A record with a single item is whole, and served. */
	done = 0;
	start(W->fj, &o[0], &done, "residence", codes[0], 0, 2000);
	run_until(&done, 1, 3000);
	assert_int_equal(o[0].status, MDG_OK);
	outcome_clear(&o[0]);
	assert_int_equal(control("mode normal"), 0);
	assert_int_equal(control("mode sideways"), -1); /* unknown modes are refused */
	fetches_succeed_again(10);
}

int main(void)
{
	/* As madoguchid does: a write to a connection the simulator dropped must fail with
	 * EPIPE, not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_record_survives_the_round_trip_with_kanji_and_long_values),
	    cmocka_unit_test(a_request_survives_the_round_trip),
	    cmocka_unit_test(every_kind_of_malformed_frame_is_rejected),
	    cmocka_unit_test(an_empty_first_value_decodes_as_empty),
	    cmocka_unit_test(random_damage_never_crashes_the_decoder),
	    cmocka_unit_test(both_backends_return_identical_records),
	    cmocka_unit_test(swap_mode_returns_records_of_other_residents),
	    cmocka_unit_test(stale_mode_reports_the_older_version_and_as_of),
	    cmocka_unit_test(slow_mode_times_out_and_the_late_answer_is_dropped),
	    cmocka_unit_test(drop_mode_fails_requests_and_the_plugin_reconnects),
	    cmocka_unit_test(garbage_mode_is_a_backend_error_never_a_crash),
	    cmocka_unit_test(partial_mode_is_an_incomplete_record),
	};
	/* One group (one TAP plan): the codec tests do not use the world. */
	return cmocka_run_group_tests_name("fujitsu-like", tests, world_setup, world_teardown);
}
