/*
 * vendor_sim.c: madoguchi-vendor-sim, a simulated legacy vendor backend for the fujitsu-like
 * plugin (tools/vendor-sim/README.md, docs/vendor-protocol.md).
 *
 * Serves a demo registry file (plugins/common/registry.h) over the fixed-width CP932 protocol,
 * with fault modes that reproduce the incidents of DESIGN §1: swap (I1, I2), stale (I3-I5),
 * slow, drop, garbage and partial (I6).  The mode is chosen with --mode and switched at run
 * time through the control socket.
 *
 * One thread, one libuv loop, the registry opened once.  Every request is a struct sim_req
 * owned by the server until answered; a request whose connection went away is answered into
 * the void (dropped).  Randomness comes from one seeded generator, so a run with the same
 * seed and the same request order makes the same faults.  stderr gets one line per start,
 * stop and mode change, never personal data.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "registry.h"
#include "wire.h"

enum sim_mode { M_NORMAL, M_SWAP, M_STALE, M_SLOW, M_DROP, M_GARBAGE, M_PARTIAL };

static const char *const mode_names[] = {"normal", "swap",    "stale",	 "slow",
					 "drop",   "garbage", "partial", NULL};

struct sim_conn;

/* One request received and not yet answered. */
struct sim_req {
	struct sim_req *next, *prev; /* in the connection's list */
	struct sim_req *held_next;   /* in the swap hold list */
	struct sim_conn *conn;	     /* NULL when the connection is gone */
	uint64_t correlation_id;
	struct wire_request wire;
	uv_timer_t *timer; /* slow mode */
};

struct sim_conn {
	uv_tcp_t tcp;
	struct wire_reader reader;
	struct sim_req *reqs;
	int closing;
};

struct sim {
	uv_loop_t *loop;
	struct registry *reg;
	enum sim_mode mode;
	uint64_t rng;
	uint64_t latency_min, latency_max;
	uint64_t hold_ms;
	uint32_t fault_permille;
	uv_tcp_t server;
	uv_pipe_t control;
	int control_open;
	const char *control_path;
	uv_signal_t sigterm, sigint;
	uv_timer_t hold_timer;
	struct sim_req *held;
	size_t held_count;
	uint64_t served, faults;
};

static struct sim S;

__attribute__((format(printf, 1, 2))) static void logf_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("madoguchi-vendor-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* xorshift64*: deterministic per seed. */
static uint64_t rnd(void)
{
	S.rng ^= S.rng >> 12;
	S.rng ^= S.rng << 25;
	S.rng ^= S.rng >> 27;
	return S.rng * 2685821657736338717ull;
}

static int fault_now(void)
{
	return rnd() % 1000u < S.fault_permille;
}

static int mode_parse(const char *s, enum sim_mode *out)
{
	for (int i = 0; mode_names[i] != NULL; i++) {
		if (strcmp(s, mode_names[i]) == 0) {
			*out = (enum sim_mode)i;
			return 0;
		}
	}
	return -1;
}

/* "N" or "A..B" milliseconds. */
static int latency_parse(const char *s, uint64_t *lo, uint64_t *hi)
{
	char *end;
	unsigned long long a = strtoull(s, &end, 10);
	if (end == s)
		return -1;
	unsigned long long b = a;
	if (strncmp(end, "..", 2) == 0) {
		const char *p = end + 2;
		b = strtoull(p, &end, 10);
		if (end == p)
			return -1;
	}
	if (*end != '\0' || b < a || b > 600000)
		return -1;
	*lo = a;
	*hi = b;
	return 0;
}

/* --- answering ---------------------------------------------------------------------- */

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void conn_closed(uv_handle_t *h)
{
	struct sim_conn *c = h->data;
	wire_reader_free(&c->reader);
	free(c);
}

static void conn_close(struct sim_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	for (struct sim_req *r = c->reqs; r != NULL; r = r->next)
		r->conn = NULL;
	c->reqs = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_send(struct sim_conn *c, const char *data, size_t len)
{
	uv_write_t *w = malloc(sizeof *w + len);
	if (w == NULL) {
		conn_close(c);
		return;
	}
	memcpy(w + 1, data, len);
	uv_buf_t buf = uv_buf_init((char *)(w + 1), (unsigned)len);
	if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, write_done) != 0) {
		free(w);
		conn_close(c);
	}
}

/* Serialises a registry record (or a not-found/error head) into a response frame. */
static int encode_record(uint64_t corr, const struct wire_request *q, int rc,
			 const struct reg_record *rec, int partial, char **out, size_t *len)
{
	struct wire_writer w;
	if (wire_writer_init(&w) != WIRE_OK)
		return -1;
	if (rc != REG_OK) {
		wire_writer_head(&w,
				 rc == REG_NOT_FOUND ? WIRE_RESULT_NOT_FOUND : WIRE_RESULT_ERROR,
				 q->certificate, "", 0, "", 0);
		return wire_writer_finish(&w, corr, out, len) == WIRE_OK ? 0 : -1;
	}
	wire_writer_head(&w, WIRE_RESULT_OK, rec->certificate, rec->resident_code, rec->version,
			 rec->status, rec->as_of < 0 ? 0 : rec->as_of);
	for (size_t i = 0; i < rec->field_count; i++)
		wire_writer_field(&w, rec->fields[i].name, rec->fields[i].value);
	for (size_t i = 0; i < rec->list_count; i++) {
		const struct reg_list *ls = &rec->lists[i];
		for (size_t j = 0; j < ls->item_count; j++) {
			wire_writer_item(&w, ls->name);
			for (size_t k = 0; k < ls->items[j].field_count; k++)
				wire_writer_item_field(&w, ls->items[j].fields[k].name,
						       ls->items[j].fields[k].value);
		}
	}
	if (partial && w.items > 1 && wire_writer_drop_last_item(&w))
		S.faults++;
	return wire_writer_finish(&w, corr, out, len) == WIRE_OK ? 0 : -1;
}

/* A malformed frame of one of several kinds, chosen by the generator. */
static void send_garbage(struct sim_conn *c, uint64_t corr, const char *good, size_t len)
{
	char *bad = malloc(len);
	if (bad == NULL)
		return;
	memcpy(bad, good, len);
	size_t lines = (len - WIRE_HEADER_SIZE) / WIRE_LINE_SIZE;
	switch (rnd() % 5u) {
	case 0: /* a line code nobody knows */
		memcpy(bad + WIRE_HEADER_SIZE + (lines > 1 ? WIRE_LINE_SIZE : 0), "ZZ", 2);
		break;
	case 1: /* bytes that are not CP932 in a value, or a bad head line */
		if (lines > 2) {
			bad[WIRE_HEADER_SIZE + WIRE_LINE_SIZE + 36] = (char)0x81;
			bad[WIRE_HEADER_SIZE + WIRE_LINE_SIZE + 37] = (char)0x0a;
		} else {
			bad[WIRE_HEADER_SIZE + 50] = 'x';
		}
		break;
	case 2: /* the trailer counts one line too few */
		memcpy(bad + len - WIRE_LINE_SIZE + 2, "000000", 6);
		break;
	case 3: /* padding that is not spaces */
		bad[WIRE_HEADER_SIZE + WIRE_LINE_SIZE - 2] = '#';
		break;
	default: /* a header with a broken magic: the stream is lost */
		memcpy(bad, "XXXX", 4);
		break;
	}
	(void)corr;
	conn_send(c, bad, len);
	free(bad);
	S.faults++;
}

/* Answers r with the record of (certificate, code); removes and frees r. */
static void answer_with(struct sim_req *r, const char *code, enum sim_mode mode)
{
	struct sim_conn *c = r->conn;
	if (c != NULL) {
		if (r->prev != NULL)
			r->prev->next = r->next;
		else
			c->reqs = r->next;
		if (r->next != NULL)
			r->next->prev = r->prev;
	}
	if (c != NULL && !c->closing) {
		struct reg_record *rec = NULL;
		char err[160];
		int rc = REG_NOT_FOUND;
		if (mode == M_STALE)
			rc = registry_fetch(S.reg, r->wire.certificate, code, r->wire.options,
					    REG_PREVIOUS, &rec, err, sizeof err);
		if (rc == REG_NOT_FOUND)
			rc = registry_fetch(S.reg, r->wire.certificate, code, r->wire.options,
					    REG_CURRENT, &rec, err, sizeof err);
		if (rc == REG_ERROR)
			logf_("registry error: %s", err);
		char *frame = NULL;
		size_t len = 0;
		if (encode_record(r->correlation_id, &r->wire, rc, rec, mode == M_PARTIAL, &frame,
				  &len) == 0) {
			if (mode == M_GARBAGE && fault_now())
				send_garbage(c, r->correlation_id, frame, len);
			else
				conn_send(c, frame, len);
		} else {
			logf_("a record could not be encoded (value without a CP932 form?)");
			struct wire_writer w;
			if (wire_writer_init(&w) == WIRE_OK) {
				wire_writer_head(&w, WIRE_RESULT_ERROR, r->wire.certificate, "", 0,
						 "", 0);
				if (wire_writer_finish(&w, r->correlation_id, &frame, &len) ==
				    WIRE_OK)
					conn_send(c, frame, len);
			}
		}
		free(frame);
		reg_record_free(rec);
		S.served++;
	}
	free(r);
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static void slow_fired(uv_timer_t *t)
{
	struct sim_req *r = t->data;
	uv_close((uv_handle_t *)t, timer_closed);
	r->timer = NULL;
	answer_with(r, r->wire.resident_code, M_SLOW);
}

/* Swap: answers every held request with the record of the next one (a rotation), so that
 * each gets another resident's data under its own correlation id. */
static void hold_fired(uv_timer_t *t)
{
	(void)t;
	struct sim_req *held = S.held;
	size_t n = S.held_count;
	S.held = NULL;
	S.held_count = 0;
	if (n == 0)
		return;
	struct sim_req **v = calloc(n, sizeof *v);
	char(*codes)[24] = calloc(n, sizeof *codes);
	if (v == NULL || codes == NULL) {
		free(v);
		free(codes);
		return;
	}
	size_t i = 0;
	for (struct sim_req *r = held; r != NULL && i < n; r = r->held_next)
		v[i++] = r;
	n = i;
	for (i = 0; i < n; i++)
		snprintf(codes[i], sizeof codes[i], "%s", v[(i + 1) % n]->wire.resident_code);
	for (i = 0; i < n; i++) {
		if (n > 1)
			S.faults++;
		answer_with(v[i], codes[i], M_SWAP);
	}
	free(v);
	free(codes);
}

static void handle_request(struct sim_conn *c, uint64_t corr, const struct wire_request *q)
{
	enum sim_mode mode = S.mode;
	if (mode == M_DROP && fault_now()) {
		S.faults++;
		conn_close(c); /* mid-request: this and every other request on it are lost */
		return;
	}
	struct sim_req *r = calloc(1, sizeof *r);
	if (r == NULL) {
		conn_close(c);
		return;
	}
	r->conn = c;
	r->correlation_id = corr;
	r->wire = *q;
	r->next = c->reqs;
	if (c->reqs != NULL)
		c->reqs->prev = r;
	c->reqs = r;
	if (mode == M_SLOW) {
		uint64_t ms = S.latency_min;
		if (S.latency_max > S.latency_min)
			ms += rnd() % (S.latency_max - S.latency_min + 1u);
		r->timer = malloc(sizeof *r->timer);
		if (r->timer != NULL) {
			uv_timer_init(S.loop, r->timer);
			r->timer->data = r;
			uv_timer_start(r->timer, slow_fired, ms, 0);
			return;
		}
	} else if (mode == M_SWAP) {
		r->held_next = S.held;
		S.held = r;
		if (S.held_count++ == 0)
			uv_timer_start(&S.hold_timer, hold_fired, S.hold_ms, 0);
		return;
	}
	answer_with(r, q->resident_code, mode);
}

/* --- connections -------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = malloc(65536);
	buf->len = buf->base != NULL ? 65536 : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct sim_conn *c = s->data;
	if (nread < 0 || c->closing) {
		free(buf->base);
		conn_close(c);
		return;
	}
	if (nread == 0) {
		free(buf->base);
		return;
	}
	int rc = wire_reader_feed(&c->reader, buf->base, (size_t)nread);
	free(buf->base);
	if (rc != WIRE_OK) {
		conn_close(c);
		return;
	}
	while (!c->closing) {
		struct wire_header h;
		const char *payload;
		char err[160];
		rc = wire_reader_next(&c->reader, &h, &payload, err, sizeof err);
		if (rc == 0)
			break;
		struct wire_request q;
		if (rc < 0 || h.type != WIRE_REQUEST ||
		    wire_request_decode(payload, h.payload_len, &q, err, sizeof err) != WIRE_OK) {
			logf_("closing a connection: bad request frame");
			conn_close(c);
			return;
		}
		handle_request(c, h.correlation_id, &q);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	if (status != 0)
		return;
	struct sim_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return;
	uv_tcp_init(S.loop, &c->tcp);
	c->tcp.data = c;
	wire_reader_init(&c->reader);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
}

/* --- control socket ----------------------------------------------------------------- */

struct ctl_conn {
	uv_pipe_t pipe;
	char line[256];
	size_t len;
};

static void ctl_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ctl_reply(struct ctl_conn *cc, const char *text)
{
	size_t n = strlen(text);
	uv_write_t *w = malloc(sizeof *w + n);
	if (w == NULL)
		return;
	memcpy(w + 1, text, n);
	uv_buf_t buf = uv_buf_init((char *)(w + 1), (unsigned)n);
	if (uv_write(w, (uv_stream_t *)&cc->pipe, &buf, 1, write_done) != 0)
		free(w);
}

static void ctl_command(struct ctl_conn *cc, char *line)
{
	enum sim_mode m;
	if (strncmp(line, "mode ", 5) == 0 && mode_parse(line + 5, &m) == 0) {
		S.mode = m;
		logf_("mode %s", mode_names[m]);
		ctl_reply(cc, "ok\n");
	} else if (strncmp(line, "latency ", 8) == 0 &&
		   latency_parse(line + 8, &S.latency_min, &S.latency_max) == 0) {
		ctl_reply(cc, "ok\n");
	} else if (strcmp(line, "status") == 0) {
		char buf[160];
		snprintf(buf, sizeof buf, "ok mode=%s served=%llu faults=%llu\n",
			 mode_names[S.mode], (unsigned long long)S.served,
			 (unsigned long long)S.faults);
		ctl_reply(cc, buf);
	} else {
		ctl_reply(cc, "error unknown command\n");
	}
}

static void ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *cc = s->data;
	if (nread < 0) {
		free(buf->base);
		uv_close((uv_handle_t *)&cc->pipe, ctl_closed);
		return;
	}
	for (ssize_t i = 0; i < nread; i++) {
		char ch = buf->base[i];
		if (ch == '\n') {
			cc->line[cc->len] = '\0';
			if (cc->len > 0 && cc->line[cc->len - 1] == '\r')
				cc->line[cc->len - 1] = '\0';
			ctl_command(cc, cc->line);
			cc->len = 0;
		} else if (cc->len + 1 < sizeof cc->line) {
			cc->line[cc->len++] = ch;
		}
	}
	free(buf->base);
}

static void on_control(uv_stream_t *server, int status)
{
	if (status != 0)
		return;
	struct ctl_conn *cc = calloc(1, sizeof *cc);
	if (cc == NULL)
		return;
	uv_pipe_init(S.loop, &cc->pipe, 0);
	cc->pipe.data = cc;
	if (uv_accept(server, (uv_stream_t *)&cc->pipe) != 0 ||
	    uv_read_start((uv_stream_t *)&cc->pipe, on_alloc, ctl_read) != 0)
		uv_close((uv_handle_t *)&cc->pipe, ctl_closed);
}

/* --- start and stop ----------------------------------------------------------------- */

/* uv_walk pass 1: client connections (their requests lose their connection). */
static void close_conns(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (h->type == UV_TCP && h != (uv_handle_t *)&S.server && !uv_is_closing(h))
		conn_close(h->data);
}

/* uv_walk pass 2: everything else; a slow-mode timer frees its request. */
static void close_rest(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (uv_is_closing(h))
		return;
	if (h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&S.control) {
		uv_close(h, ctl_closed);
	} else if (h->type == UV_TIMER && h != (uv_handle_t *)&S.hold_timer) {
		free(h->data);
		uv_close(h, timer_closed);
	} else {
		uv_close(h, NULL);
	}
}

static void on_signal(uv_signal_t *sig, int signum)
{
	(void)sig;
	(void)signum;
	uv_walk(S.loop, close_conns, NULL);
	while (S.held != NULL) {
		struct sim_req *r = S.held;
		S.held = r->held_next;
		free(r);
	}
	S.held_count = 0;
	uv_walk(S.loop, close_rest, NULL);
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: madoguchi-vendor-sim --registry FILE --listen 127.0.0.1:PORT\n"
	    "         [--mode normal|swap|stale|slow|drop|garbage|partial] [--control PATH]\n"
	    "         [--latency-ms N|A..B] [--hold-ms N] [--fault-rate PERMILLE] [--seed N]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"registry", required_argument, NULL, 'r'},
					     {"listen", required_argument, NULL, 'l'},
					     {"mode", required_argument, NULL, 'm'},
					     {"control", required_argument, NULL, 'c'},
					     {"latency-ms", required_argument, NULL, 't'},
					     {"hold-ms", required_argument, NULL, 'h'},
					     {"fault-rate", required_argument, NULL, 'f'},
					     {"seed", required_argument, NULL, 's'},
					     {NULL, 0, NULL, 0}};
	const char *registry = NULL, *listen = NULL;
	S.mode = M_NORMAL;
	S.latency_min = 50;
	S.latency_max = 2000;
	S.hold_ms = 30;
	S.fault_permille = 250;
	S.rng = 0x9e3779b97f4a7c15ull;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			registry = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 'm':
			if (mode_parse(optarg, &S.mode) != 0) {
				usage();
				return 2;
			}
			break;
		case 'c':
			S.control_path = optarg;
			break;
		case 't':
			if (latency_parse(optarg, &S.latency_min, &S.latency_max) != 0) {
				usage();
				return 2;
			}
			break;
		case 'h':
			S.hold_ms = strtoull(optarg, NULL, 10);
			break;
		case 'f':
			S.fault_permille = (uint32_t)strtoul(optarg, NULL, 10);
			if (S.fault_permille > 1000)
				S.fault_permille = 1000;
			break;
		case 's':
			S.rng = strtoull(optarg, NULL, 10) * 2654435761u + 1u;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (registry == NULL || listen == NULL) {
		usage();
		return 2;
	}
	char err[256];
	if (registry_open(registry, &S.reg, err, sizeof err) != REG_OK) {
		logf_("cannot open the registry: %s", err);
		return 1;
	}
	const char *colon = strrchr(listen, ':');
	char host[64];
	if (colon == NULL || (size_t)(colon - listen) >= sizeof host) {
		usage();
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	struct sockaddr_in addr;
	if (uv_ip4_addr(host, atoi(colon + 1), &addr) != 0) {
		logf_("--listen: expected a numeric IPv4 address and port");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	S.loop = uv_default_loop();
	uv_timer_init(S.loop, &S.hold_timer);
	uv_tcp_init(S.loop, &S.server);
	int rc = uv_tcp_bind(&S.server, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&S.server, 256, on_connection);
	if (rc != 0) {
		logf_("cannot listen on %s: %s", listen, uv_strerror(rc));
		return 1;
	}
	if (S.control_path != NULL) {
		unlink(S.control_path);
		uv_pipe_init(S.loop, &S.control, 0);
		rc = uv_pipe_bind(&S.control, S.control_path);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&S.control, 16, on_control);
		if (rc != 0) {
			logf_("cannot listen on the control socket: %s", uv_strerror(rc));
			return 1;
		}
	}
	uv_signal_init(S.loop, &S.sigterm);
	uv_signal_start(&S.sigterm, on_signal, SIGTERM);
	uv_signal_init(S.loop, &S.sigint);
	uv_signal_start(&S.sigint, on_signal, SIGINT);
	struct sockaddr_storage bound;
	int blen = sizeof bound;
	uv_tcp_getsockname(&S.server, (struct sockaddr *)&bound, &blen);
	printf("listening %s:%d\n", host, ntohs(((struct sockaddr_in *)&bound)->sin_port));
	fflush(stdout);
	logf_("serving, mode %s", mode_names[S.mode]);
	uv_run(S.loop, UV_RUN_DEFAULT);
	uv_loop_close(S.loop);
	if (S.control_path != NULL)
		unlink(S.control_path);
	registry_close(S.reg);
	logf_("stopped after %llu answers, %llu faults", (unsigned long long)S.served,
	      (unsigned long long)S.faults);
	return 0;
}
