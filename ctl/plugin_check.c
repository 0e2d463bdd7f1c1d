/*
 * plugin_check.c: `madoguchictl plugin check PATH.so`, the vendor's conformance check
 * (contract in plugin_check.h; what each check means in docs/plugin-sdk.md, "Conformance
 * check").
 *
 * The check is a scratch appliance without listeners: a config written to a temporary
 * directory (plugin_dir is the plugin's own directory, the vendor's --config block goes under
 * plugins.check.config), the daemon's plugin host (core/plugin_host.c, not a copy) on a libuv
 * loop of its own, and fetches driven through plugin_fetch() as the issuance pipeline drives
 * them.  What the host hides from a requester (completions it dropped, how long cancel() and a
 * blocking fetch() took) the check sees through the host's tracer, plugin_host_set_trace().
 *
 * Six checks run in order, each one function that fills its struct pc_check (PASS or FAIL,
 * a one-line reason, figures) without stopping the others; only a failed abi check skips the
 * rest, since nothing is loaded then.  Every wait is bounded; a plugin that crashes or hangs
 * inside a call is caught by signal handlers that print a FAIL naming the check.
 *
 * Privacy: resident codes come from the command line and go only to the plugin.  The report
 * says "resident #N" (their order on the command line); reason texts from the plugin are
 * scrubbed of the given codes; records are checked and freed, never printed.
 *
 * Single-threaded: the caller's thread runs the scratch loop.  The only globals are what the
 * crash and hang handlers must reach (the check under way and the output mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "plugin_check.h"
#include "plugin_host.h"
#include "record.h"
#include "verify.h"

#define PC_PROG			"madoguchictl plugin check"
#define PC_INSTANCE		"check" /* the instance's name in the scratch config */
#define PC_DEFAULT_MUNICIPALITY "141003"
#define PC_DEFAULT_CONCURRENCY	64u
#define PC_MAX_CONCURRENCY	1024u
#define PC_MAX_RESIDENTS	256u
#define PC_RESIDENT_MAX_LEN	63u /* the host copies codes into 64 bytes for blocking plugins */
/* How late after its deadline a plugin may settle a fetch: timer and scheduling slack on a
 * loaded machine (and under sanitizers), far below any real backend's answer time. */
#define PC_TOLERANCE_MS 250u
/* The deadline check's fetches, with these deadlines in turn. */
#define PC_DEADLINE_FETCHES 8u
static const uint64_t pc_short_deadline_ms[] = {1, 100};
#define PC_SHORT_DEADLINE_COUNT (sizeof pc_short_deadline_ms / sizeof pc_short_deadline_ms[0])
/* The vendor's block is indented this far under plugins.check.config in the scratch file. */
#define PC_CONFIG_INDENT    6
#define PC_CONFIG_MAX_BYTES (1024 * 1024)
/* Seconds the watchdog adds to a check's own bound before calling the plugin hung. */
#define PC_WATCHDOG_SLACK_S 30u

/* The checks in the order they run and are reported.  concurrency runs before deadline and
 * cancel, which leave work behind in a faulty plugin (held capacity, answers still to come)
 * that would make it fail for a reason that is not its own. */
enum pc_check_id {
	PC_ABI,
	PC_FETCH,
	PC_CONCURRENCY,
	PC_DEADLINE,
	PC_CANCEL,
	PC_SHUTDOWN,
	PC_CHECK_COUNT,
};

static const char *const pc_check_names[PC_CHECK_COUNT] = {
    "abi", "fetch", "concurrency", "deadline", "cancel", "shutdown",
};

enum pc_result {
	PC_SKIP = 0, /* not run (nothing loaded) */
	PC_PASS,
	PC_FAIL,
};

static const char *const pc_result_names[] = {"SKIP", "PASS", "FAIL"};

struct pc_check {
	enum pc_result result;
	char reason[640];
	json_t *figures; /* object, owned */
	uint64_t duration_ms;
};

enum pc_fetch_state {
	PC_F_REFUSED,	/* plugin_fetch() refused to start it; status says why */
	PC_F_PENDING,	/* under way; handle valid */
	PC_F_ANSWERED,	/* the callback ran */
	PC_F_ABANDONED, /* the check gave up on it (cancel), or the host was unloaded */
};

struct pc_run;

/* One fetch the check started; kept until the end so late trace events still find it. */
struct pc_fetch {
	struct pc_run *run;
	size_t number; /* 1-based, in the order started */
	size_t resident;
	size_t certificate;
	uint64_t timeout_ms;
	uint64_t started_ms, deadline_ms, call_ms;
	enum pc_fetch_state state;
	struct plugin_fetch *handle;
	mdg_ticket ticket;
	int status; /* what the requester got, or plugin_fetch()'s refusal */
	uint64_t answered_ms;
	int answered_after_abandon; /* the host delivered after cancel or unload: a host bug */
	int identity_ok;	    /* OK record of the resident asked for */
	long got_resident; /* OK record: its resident's index, -1 when not among those given */
	enum verify_outcome verify;
	char reason[200]; /* scrubbed */
	/* what the tracer saw */
	unsigned completions, late;
	int first_status;
	uint64_t first_completion_ms;
	int cancelled;
	uint64_t cancel_call_ms;
	int ran;
	uint64_t ran_start_ms, ran_end_ms;
};

struct pc_run {
	/* options */
	const char *path;
	const char *config_path;
	const char *residents[PC_MAX_RESIDENTS];
	size_t resident_count;
	const char *certs_opt[RECORD_CERTIFICATE_TYPE_COUNT];
	size_t certs_opt_count;
	unsigned concurrency;
	const char *municipality;
	bool json;
	/* the plugin file */
	char real[PATH_MAX];
	const char *file_name; /* in real */
	char sha256[65];
	long long bytes;
	/* the scratch appliance */
	char config_abs[PATH_MAX];
	char scratch[PATH_MAX + 64]; /* the scratch config's path (gone once loaded), for errors */
	int config_first_line;	     /* line of the scratch file holding the block's first line */
	uv_loop_t loop;
	int loop_ready;
	uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from sleeping past a bound */
	struct config *cfg;
	struct plugin_host *host;
	struct plugin_instance *inst;
	/* What the descriptor declared, copied: the report outlives the unloaded library. */
	struct {
		int loaded;
		char name[64], version[32], vendor[128];
		unsigned abi_major, abi_minor, size;
		const char *certificates[RECORD_CERTIFICATE_TYPE_COUNT]; /* record.h's strings */
		size_t certificate_count;
	} decl;
	const char *certs[RECORD_CERTIFICATE_TYPE_COUNT]; /* the types checked (record.h's) */
	size_t cert_count;
	uint64_t timeout_ms;
	int blocking, has_cancel;
	int in_unload;
	/* fetches */
	struct pc_fetch **fetches;
	size_t fetch_count, fetch_cap;
	unsigned foreign_completions;
	uint32_t max_in_flight;
	struct pc_check checks[PC_CHECK_COUNT];
};

/* --- crash and hang handlers ------------------------------------------------------------ */

static volatile sig_atomic_t pc_current = -1; /* enum pc_check_id under way, -1 before */
static volatile sig_atomic_t pc_json_mode;

static void pc_write(const char *s)
{
	ssize_t rc = write(STDOUT_FILENO, s, strlen(s));
	(void)rc;
}

/* A plugin crashed or hung inside a call: the verdict is FAIL, printed without stdio. */
static void pc_fatal_signal(int sig)
{
	int cur = pc_current;
	const char *check = cur >= 0 && cur < PC_CHECK_COUNT ? pc_check_names[cur] : "setup";
	char num[16];
	int n = sig, i = (int)sizeof num - 1;
	num[i] = '\0';
	do {
		num[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0 && i > 0);
	const char *what = sig == SIGALRM ? "did not return from a call in time (hung)" : "crashed";
	if (pc_json_mode) {
		pc_write("{\"report\": \"madoguchi-plugin-check\", \"verdict\": \"FAIL\", "
			 "\"aborted\": {\"check\": \"");
		pc_write(check);
		pc_write("\", \"signal\": ");
		pc_write(num + i);
		pc_write(", \"reason\": \"the plugin ");
		pc_write(what);
		pc_write("\"}}\n");
	} else {
		static const char pad[] = "             ";
		size_t len = strlen(check);
		pc_write("  FAIL  ");
		pc_write(check);
		pc_write(len < sizeof pad - 1 ? pad + len : " ");
		pc_write("the plugin ");
		pc_write(what);
		pc_write(" (signal ");
		pc_write(num + i);
		pc_write(") during this check\n\n  verdict        FAIL (the check was aborted)\n");
	}
	_exit(PLUGIN_CHECK_FAIL);
}

/*
 * The handlers run on an alternate stack, so that a plugin that overflows the loop thread's
 * stack still gets its FAIL line.  A crash on a worker thread (a blocking plugin's fetch())
 * runs on that thread's own stack: a stack overflow there ends without a report.
 */
static void pc_install_handlers(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM};
	static char altstack[64 * 1024];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = pc_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND | (sigaltstack(&ss, NULL) == 0 ? SA_ONSTACK : 0);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	/* As in the daemon: a write to a closed peer is an error, not death. */
	signal(SIGPIPE, SIG_IGN);
}

/* Starts check id with a watchdog of bound_ms plus slack. */
static void pc_enter(enum pc_check_id id, uint64_t bound_ms)
{
	pc_current = id;
	alarm((unsigned)(bound_ms / 1000u) + PC_WATCHDOG_SLACK_S);
}

/* --- small helpers ------------------------------------------------------------------------ */

static uint64_t pc_now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static const char *pc_status_name(int status)
{
	switch (status) {
	case MDG_OK:
		return "OK";
	case MDG_ERR_INVALID:
		return "MDG_ERR_INVALID";
	case MDG_ERR_NOT_FOUND:
		return "MDG_ERR_NOT_FOUND";
	case MDG_ERR_NO_MEMORY:
		return "MDG_ERR_NO_MEMORY";
	case MDG_ERR_BACKEND:
		return "MDG_ERR_BACKEND";
	case MDG_ERR_TIMEOUT:
		return "MDG_ERR_TIMEOUT";
	case MDG_ERR_UNAVAILABLE:
		return "MDG_ERR_UNAVAILABLE";
	default:
		return "an unknown status";
	}
}

__attribute__((format(printf, 3, 4))) static void pc_set(struct pc_check *c, enum pc_result res,
							 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	c->result = res;
	vsnprintf(c->reason, sizeof c->reason, fmt, ap);
	va_end(ap);
}

static void pc_figure(struct pc_check *c, const char *key, json_int_t value)
{
	if (c->figures == NULL)
		c->figures = json_object();
	json_object_set_new(c->figures, key, json_integer(value));
}

/* A code cut off at the end of a text (the host cuts long reasons) is still scrubbed when at
 * least this much of it is there. */
#define PC_SCRUB_MIN_PREFIX 3

/*
 * Copies text into out, each occurrence of a given resident code replaced by "resident #N",
 * wherever it stands (also glued to other letters and digits), and so is the start of a code
 * that the end of the text cut off: a plugin's reason text cannot carry one into the report.
 */
static void pc_scrub(const struct pc_run *r, const char *text, char *out, size_t size)
{
	size_t o = 0;
	if (size == 0)
		return;
	for (const char *p = text; p != NULL && *p != '\0' && o + 1 < size;) {
		size_t best = 0, best_len = 0, rest = strlen(p);
		for (size_t i = 0; i < r->resident_count; i++) {
			size_t n = strlen(r->residents[i]);
			size_t m = n <= rest ? n : rest; /* rest < n: only a cut-off start */
			if (m > best_len && (m == n || m >= PC_SCRUB_MIN_PREFIX) &&
			    strncmp(p, r->residents[i], m) == 0) {
				best = i;
				best_len = m;
			}
		}
		if (best_len > 0) {
			int w = snprintf(out + o, size - o, "resident #%zu", best + 1);
			o = w < 0 ? o : (size_t)w >= size - o ? size - 1 : o + (size_t)w;
			p += best_len;
		} else {
			unsigned char ch = (unsigned char)*p++;
			out[o++] = ch < 0x20 ? ' ' : (char)ch;
		}
	}
	out[o] = '\0';
}

/* Index of code among the given residents, or -1. */
static long pc_resident_index(const struct pc_run *r, const char *code)
{
	for (size_t i = 0; code != NULL && i < r->resident_count; i++) {
		if (strcmp(r->residents[i], code) == 0)
			return (long)i;
	}
	return -1;
}

static int pc_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Min, median and max of how long the answered OK fetches of list took. */
static void pc_latency(struct pc_fetch *const *list, size_t n, uint64_t *min, uint64_t *med,
		       uint64_t *max)
{
	uint64_t *v = calloc(n + 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; v != NULL && i < n; i++) {
		if (list[i]->state == PC_F_ANSWERED && list[i]->status == MDG_OK)
			v[k++] = list[i]->answered_ms - list[i]->started_ms;
	}
	*min = *med = *max = 0;
	if (k > 0) {
		qsort(v, k, sizeof *v, pc_cmp_u64);
		*min = v[0];
		*med = v[k / 2];
		*max = v[k - 1];
	}
	free(v);
}

/* --- fetches through the host ----------------------------------------------------------- */

static struct pc_fetch *pc_find(struct pc_run *r, mdg_ticket t)
{
	for (size_t i = r->fetch_count; i > 0; i--) {
		struct pc_fetch *f = r->fetches[i - 1];
		if (f->state != PC_F_REFUSED &&
		    memcmp(f->ticket.bytes, t.bytes, sizeof t.bytes) == 0)
			return f;
	}
	return NULL;
}

/* The host's tracer: what the plugin did with each ticket (loop thread). */
static void pc_trace(void *arg, const struct plugin_trace_event *ev)
{
	struct pc_run *r = arg;
	struct pc_fetch *f = pc_find(r, ev->ticket);
	if (f == NULL) {
		if (ev->kind == PLUGIN_TRACE_COMPLETION)
			r->foreign_completions++; /* a ticket the check never had */
		return;
	}
	switch (ev->kind) {
	case PLUGIN_TRACE_COMPLETION:
		if (f->completions++ == 0) {
			f->first_completion_ms = ev->start_ms;
			f->first_status = ev->status;
		}
		if (!ev->live)
			f->late++;
		break;
	case PLUGIN_TRACE_CANCEL:
		f->cancelled = 1;
		f->cancel_call_ms = ev->end_ms - ev->start_ms;
		break;
	case PLUGIN_TRACE_BLOCKING_FETCH:
		f->ran = 1;
		f->ran_start_ms = ev->start_ms;
		f->ran_end_ms = ev->end_ms;
		break;
	}
}

/* The requester's callback: what the pipeline would get (loop thread). */
static void pc_answered(void *arg, int status, mdg_record *record, const char *reason)
{
	struct pc_fetch *f = arg;
	struct pc_run *r = f->run;
	if (f->state != PC_F_PENDING || r->in_unload)
		f->answered_after_abandon = 1;
	f->state = PC_F_ANSWERED;
	f->handle = NULL;
	f->status = status;
	f->answered_ms = pc_now_ms();
	if (reason != NULL)
		pc_scrub(r, reason, f->reason, sizeof f->reason);
	if (status != MDG_OK || record == NULL) {
		record_free(record);
		return;
	}
	const char *asked = r->residents[f->resident];
	const char *code = record_resident_code(record);
	f->got_resident = pc_resident_index(r, code);
	f->identity_ok = code != NULL && strcmp(code, asked) == 0;
	int cert = record_certificate_index(r->certs[f->certificate]);
	struct verify_expect exp = {
	    .resident_code = asked,
	    .certificate = r->certs[f->certificate],
	    .version_floor = plugin_host_version_floor(r->host, asked),
	    .max_age_ms = r->cfg->issuance.certificates[cert].max_age_ms,
	    .now = time(NULL),
	};
	char why[200];
	f->verify = verify_record(record, &exp, why, sizeof why);
	if (f->verify != VERIFY_OK)
		snprintf(f->reason, sizeof f->reason, "%s: %.150s", verify_outcome_code(f->verify),
			 why);
	record_free(record);
}

/* Starts one fetch (resident and certificate are indexes); never NULL but when out of memory. */
static struct pc_fetch *pc_start(struct pc_run *r, size_t resident, size_t certificate,
				 uint64_t timeout_ms)
{
	if (r->fetch_count == r->fetch_cap) {
		size_t cap = r->fetch_cap ? r->fetch_cap * 2 : 256;
		struct pc_fetch **n = realloc(r->fetches, cap * sizeof *n);
		if (n == NULL)
			return NULL;
		r->fetches = n;
		r->fetch_cap = cap;
	}
	struct pc_fetch *f = calloc(1, sizeof *f);
	if (f == NULL)
		return NULL;
	r->fetches[r->fetch_count++] = f;
	f->run = r;
	f->number = r->fetch_count;
	f->resident = resident % r->resident_count;
	f->certificate = certificate % r->cert_count;
	f->timeout_ms = timeout_ms;
	f->got_resident = -1;
	f->started_ms = pc_now_ms();
	f->deadline_ms = f->started_ms + timeout_ms;
	int rc = plugin_fetch(r->inst, r->certs[f->certificate], r->municipality,
			      r->residents[f->resident], 0, timeout_ms, pc_answered, f, &f->handle);
	f->call_ms = pc_now_ms() - f->started_ms;
	if (rc != MDG_OK) {
		f->state = PC_F_REFUSED;
		f->status = rc;
		f->handle = NULL;
		return f;
	}
	f->state = PC_F_PENDING;
	f->ticket = plugin_fetch_ticket(f->handle);
	uint32_t in = plugin_instance_in_flight(r->inst);
	if (in > r->max_in_flight)
		r->max_in_flight = in;
	return f;
}

/* The requester gives up on f (the host tells the plugin through cancel()). */
static void pc_abandon(struct pc_fetch *f)
{
	if (f->state != PC_F_PENDING)
		return;
	plugin_fetch_abandon(f->handle);
	f->handle = NULL;
	f->state = PC_F_ABANDONED;
}

static void pc_tick(uv_timer_t *t)
{
	(void)t;
}

typedef int (*pc_pred)(struct pc_run *r, void *arg);

/* Runs the loop until pred holds or limit_ms have passed; returns pred's last value. */
static int pc_wait(struct pc_run *r, pc_pred pred, void *arg, uint64_t limit_ms)
{
	uint64_t end = pc_now_ms() + limit_ms;
	uv_timer_start(&r->tick, pc_tick, 2, 2);
	while (!pred(r, arg) && pc_now_ms() < end)
		uv_run(&r->loop, UV_RUN_ONCE);
	uv_timer_stop(&r->tick);
	log_flush();
	return pred(r, arg);
}

struct pc_batch {
	struct pc_fetch **f;
	size_t n;
};

static int pc_all_answered(struct pc_run *r, void *arg)
{
	(void)r;
	const struct pc_batch *b = arg;
	for (size_t i = 0; i < b->n; i++) {
		if (b->f[i] != NULL && b->f[i]->state == PC_F_PENDING)
			return 0;
	}
	return 1;
}

/* No fetch in flight at the host and no blocking fetch() left on the thread pool. */
static int pc_idle(struct pc_run *r, void *arg)
{
	(void)arg;
	return plugin_instance_in_flight(r->inst) == 0 &&
	       plugin_instance_blocking_pending(r->inst) == 0;
}

static int pc_until(struct pc_run *r, void *arg)
{
	(void)r;
	return pc_now_ms() >= *(const uint64_t *)arg;
}

/* Starts n fetches at once for the residents in turn (then the types), each with timeout_ms;
 * NULL when out of memory. */
static struct pc_batch pc_start_batch(struct pc_run *r, size_t n, uint64_t timeout_ms,
				      int abandon_at_once)
{
	struct pc_batch b = {calloc(n + 1, sizeof(struct pc_fetch *)), 0};
	for (size_t i = 0; b.f != NULL && i < n; i++) {
		b.f[i] = pc_start(r, i, i / r->resident_count, timeout_ms);
		if (b.f[i] == NULL)
			break;
		b.n = i + 1;
		if (abandon_at_once)
			pc_abandon(b.f[i]);
	}
	return b;
}

/* "resident #2, seal" for messages. */
static const char *pc_what(const struct pc_run *r, const struct pc_fetch *f, char *buf, size_t size)
{
	snprintf(buf, size, "fetch #%zu (resident #%zu, %s)", f->number, f->resident + 1,
		 r->certs[f->certificate]);
	return buf;
}

/* Describes why f did not give a usable record; "" when it did. */
static const char *pc_problem(const struct pc_run *r, const struct pc_fetch *f, char *buf,
			      size_t size)
{
	char what[96];
	pc_what(r, f, what, sizeof what);
	if (f->state == PC_F_REFUSED)
		snprintf(buf, size, "%s: the fetch could not start: %s", what,
			 pc_status_name(f->status));
	else if (f->state != PC_F_ANSWERED)
		snprintf(buf, size, "%s: no answer", what);
	else if (f->status != MDG_OK)
		snprintf(buf, size, "%s: %s%s%s", what, pc_status_name(f->status),
			 f->reason[0] ? ": " : "", f->reason);
	else if (!f->identity_ok && f->got_resident >= 0)
		snprintf(buf, size, "%s: the record is of resident #%ld", what,
			 f->got_resident + 1);
	else if (!f->identity_ok)
		snprintf(buf, size, "%s: the record is of a resident not among those given", what);
	else if (f->verify == VERIFY_INTEGRITY_FAULT || f->verify == VERIFY_NOT_CURRENT)
		snprintf(buf, size, "%s: %s", what, f->reason);
	else
		buf[0] = '\0';
	return buf;
}

/* --- the scratch config ------------------------------------------------------------------ */

/* Writes s as a double-quoted YAML scalar. */
static void pc_yaml_quoted(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

/* Reads the vendor's config block (a file of at most PC_CONFIG_MAX_BYTES); NULL + msg. */
static char *pc_read_text(const char *path, char *msg, size_t size)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		snprintf(msg, size, "--config %s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(PC_CONFIG_MAX_BYTES + 1);
	size_t n = buf ? fread(buf, 1, PC_CONFIG_MAX_BYTES + 1, fp) : 0;
	int err = ferror(fp);
	fclose(fp);
	if (buf == NULL || err || n > PC_CONFIG_MAX_BYTES) {
		snprintf(msg, size, "--config %s: %s", path,
			 buf == NULL ? "out of memory"
			 : err	     ? "cannot read it"
				     : "larger than 1 MiB; it should hold one plugin's settings");
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(msg, size, "--config %s: not a text file", path);
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * Rewrites a config error "SCRATCH:LINE:COL: text" so that it points into the vendor's file
 * (or, for the generated part, says so).  In place.
 */
static void pc_map_error(const struct pc_run *r, const char *scratch, char *msg, size_t size)
{
	size_t n = strlen(scratch);
	int line = 0, col = 0, used = 0;
	if (strncmp(msg, scratch, n) != 0 ||
	    sscanf(msg + n, ":%d:%d: %n", &line, &col, &used) < 2 || used == 0)
		return;
	/* libyaml's own "at line N, column M" counts in the scratch file too. */
	char rest[CONFIG_ERROR_MAX];
	size_t o = 0;
	for (const char *p = msg + n + used; *p != '\0' && o + 1 < sizeof rest;) {
		int l = 0, k = 0;
		if (r->config_path != NULL && strncmp(p, "line ", 5) == 0 &&
		    sscanf(p + 5, "%d%n", &l, &k) == 1 && r->config_first_line > 0 &&
		    l >= r->config_first_line) {
			int col2 = 0, k2 = 0;
			int w;
			if (sscanf(p + 5 + k, ", column %d%n", &col2, &k2) == 1 && k2 > 0)
				w = snprintf(rest + o, sizeof rest - o, "line %d, column %d",
					     l - r->config_first_line + 1,
					     col2 > PC_CONFIG_INDENT ? col2 - PC_CONFIG_INDENT : 1);
			else
				w = snprintf(rest + o, sizeof rest - o, "line %d",
					     l - r->config_first_line + 1);
			o = w < 0 || (size_t)w >= sizeof rest - o ? sizeof rest - 1 : o + (size_t)w;
			p += 5 + k + k2;
		} else {
			rest[o++] = *p++;
		}
	}
	rest[o] = '\0';
	if (r->config_path != NULL && r->config_first_line > 0 && line >= r->config_first_line)
		snprintf(msg, size, "%.300s:%d:%d: %.600s", r->config_path,
			 line - r->config_first_line + 1,
			 col > PC_CONFIG_INDENT ? col - PC_CONFIG_INDENT : 1, rest);
	else
		snprintf(msg, size, "the check's own config: %.900s", rest);
}

/*
 * Writes the scratch appliance's config to a temporary directory, loads it and removes it
 * again (the config lives in memory from then on).  The vendor's block keeps its meaning:
 * relative paths in it resolve against its own directory and positions in errors are its
 * own.  Returns 0, or -1 with msg (a usage problem: the block or its file).
 */
static int pc_load_config(struct pc_run *r, char *msg, size_t size)
{
	char *text = NULL;
	if (r->config_path != NULL) {
		text = pc_read_text(r->config_path, msg, size);
		if (text == NULL)
			return -1;
		if (realpath(r->config_path, r->config_abs) == NULL) {
			snprintf(msg, size, "--config %s: %s", r->config_path, strerror(errno));
			free(text);
			return -1;
		}
	}
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];
	char *yaml = r->scratch;
	snprintf(dir, sizeof dir, "%s/mdg-plugin-check.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		snprintf(msg, size, "cannot make a temporary directory in %s: %s",
			 tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
		free(text);
		return -1;
	}
	snprintf(yaml, sizeof r->scratch, "%s/madoguchi.yaml", dir);
	FILE *fp = fopen(yaml, "w");
	if (fp == NULL) {
		snprintf(msg, size, "cannot write %.400s: %s", yaml, strerror(errno));
		rmdir(dir);
		free(text);
		return -1;
	}
	char plugin_dir[PATH_MAX];
	snprintf(plugin_dir, sizeof plugin_dir, "%.*s", (int)(r->file_name - r->real - 1), r->real);
	/* One line per fprintf below, so config_first_line stays right. */
	int line = 1;
	fprintf(fp, "plugin_dir: ");
	pc_yaml_quoted(fp, plugin_dir[0] ? plugin_dir : "/");
	fprintf(fp, "\n");
	line++;
	fprintf(fp, "data_dir: ");
	pc_yaml_quoted(fp, dir);
	fprintf(fp, "\nlisteners:\n  store:\n    address: 127.0.0.1\n    port: 0\n"
		    "    tls: {certificate: unused.pem, key: unused.key, client_ca: unused.pem}\n"
		    "  admin:\n    unix: admin.sock\n");
	line += 8;
	fprintf(fp, "plugins:\n  " PC_INSTANCE ":\n    file: ");
	pc_yaml_quoted(fp, r->file_name);
	fprintf(fp, "\n    max_in_flight: %u\n", 2 * r->concurrency + 16);
	line += 4;
	int has_content = 0;
	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *s = p + strspn(p, " \t\r");
		if (*s != '#' && *s != '\n' && *s != '\0')
			has_content = 1;
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (has_content) {
		fprintf(fp, "    config:\n");
		line++;
		r->config_first_line = line;
		for (const char *p = text; *p != '\0';) {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			fprintf(fp, "%*s%.*s\n", PC_CONFIG_INDENT, "", (int)len, p);
			p = e ? e + 1 : p + len;
		}
	}
	int werr = fclose(fp) != 0;
	free(text);
	struct config_error err;
	int rc = werr ? -1 : config_load_opts(yaml, CONFIG_SKIP_FILE_CHECKS, &r->cfg, &err);
	if (werr)
		snprintf(msg, size, "cannot write %.400s", yaml);
	else if (rc != 0) {
		snprintf(msg, size, "%s", err.msg);
		pc_map_error(r, yaml, msg, size);
	}
	unlink(yaml);
	rmdir(dir);
	if (rc != 0)
		return -1;
	/* The config is ours alone until the host takes a reference: point it at the vendor's
	 * file, so that relative paths resolve there and errors name its lines. */
	struct config_plugin *p = &r->cfg->plugins[0];
	if (r->config_path != NULL) {
		char *path = strdup(r->config_abs);
		if (path == NULL) {
			snprintf(msg, size, "out of memory");
			return -1;
		}
		free(r->cfg->path);
		r->cfg->path = path;
		for (size_t i = 0; i < p->setting_count; i++) {
			p->settings[i].mark.line -= r->config_first_line - 1;
			p->settings[i].mark.column -= PC_CONFIG_INDENT;
		}
		p->mark.line = 1;
		p->mark.column = 1;
	}
	r->timeout_ms = p->timeout_ms;
	return 0;
}

/* --- the plugin file ---------------------------------------------------------------------- */

/* Resolves, sizes and hashes the file; 0, or -1 with msg (a usage problem). */
static int pc_inspect_file(struct pc_run *r, char *msg, size_t size)
{
	struct stat st;
	if (realpath(r->path, r->real) == NULL || stat(r->real, &st) != 0) {
		snprintf(msg, size, "%s: %s", r->path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(msg, size, "%s: not a regular file (give the plugin's .so)", r->path);
		return -1;
	}
	r->bytes = (long long)st.st_size;
	const char *slash = strrchr(r->real, '/');
	r->file_name = slash ? slash + 1 : r->real;
	int fd = open(r->real, O_RDONLY);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = fd >= 0 && md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	unsigned char buf[65536], digest[32];
	ssize_t n;
	while (ok && (n = read(fd, buf, sizeof buf)) != 0) {
		if (n < 0 || EVP_DigestUpdate(md, buf, (size_t)n) != 1)
			ok = 0;
	}
	unsigned len = 0;
	ok = ok && EVP_DigestFinal_ex(md, digest, &len) == 1 && len == sizeof digest;
	EVP_MD_CTX_free(md);
	if (fd >= 0)
		close(fd);
	if (!ok) {
		snprintf(msg, size, "%s: cannot read it", r->path);
		return -1;
	}
	for (size_t i = 0; i < sizeof digest; i++)
		snprintf(r->sha256 + 2 * i, 3, "%02x", digest[i]);
	return 0;
}

/* --- the abi check --- */

/*
 * Loads the plugin with the host's own checks: file in plugin_dir, owner and mode, dlopen
 * with RTLD_NOW (no unresolved symbol), mdg_plugin_entry, ABI major equal and minor not
 * newer, descriptor size, name, vendor, dotted version, init/fini/fetch, known certificate
 * types; then init() with the config block, every key of which it must read.  PASS when it
 * loads; FAIL with the host's refusal otherwise (nothing else runs then).
 */
static void check_abi(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_ABI];
	char msg[CONFIG_ERROR_MAX];
	if (plugin_host_load(&r->host, r->cfg, &r->loop, msg, sizeof msg) != 0) {
		r->host = NULL;
		pc_map_error(r, r->scratch, msg, sizeof msg);
		/* A refusal names the scratch config's position of `file`: not the vendor's. */
		const char *refused = strstr(msg, ": refused ");
		char clean[CONFIG_ERROR_MAX];
		pc_scrub(r, refused ? refused + 2 : msg, clean, sizeof clean);
		pc_set(c, PC_FAIL, "the host does not load it: %s%s", clean,
		       r->config_path == NULL && refused == NULL
			   ? " (pass the plugin's settings with --config FILE.yaml)"
			   : "");
		return;
	}
	r->inst = plugin_host_find(r->host, PC_INSTANCE);
	const struct mdg_plugin_descriptor *d = plugin_instance_descriptor(r->inst);
	r->blocking = (d->flags & MDG_PLUGIN_BLOCKING) != 0;
	r->has_cancel = d->cancel != NULL;
	plugin_host_set_trace(r->host, pc_trace, r);
	r->decl.loaded = 1;
	snprintf(r->decl.name, sizeof r->decl.name, "%s", d->name);
	snprintf(r->decl.version, sizeof r->decl.version, "%s", d->version);
	snprintf(r->decl.vendor, sizeof r->decl.vendor, "%s", d->vendor);
	r->decl.abi_major = d->abi_major;
	r->decl.abi_minor = d->abi_minor;
	r->decl.size = d->size;
	size_t ncert = 0;
	for (; d->certificates[ncert] != NULL; ncert++) {
		/* The loader accepted only known types, each at most once in a sane descriptor. */
		int k = record_certificate_index(d->certificates[ncert]);
		if (k >= 0 && r->decl.certificate_count < RECORD_CERTIFICATE_TYPE_COUNT)
			r->decl.certificates[r->decl.certificate_count++] =
			    record_certificate_types[k];
	}
	pc_figure(c, "descriptor_bytes", d->size);
	pc_figure(c, "certificates_declared", (json_int_t)ncert);
	pc_set(c, PC_PASS,
	       "loaded by the host's loader: ABI %u.%u against the host's %u.%u, descriptor of "
	       "%u bytes, no unresolved symbol (RTLD_NOW), %zu certificate type%s, init() "
	       "accepted the config",
	       d->abi_major, d->abi_minor, MDG_PLUGIN_ABI_MAJOR, MDG_PLUGIN_ABI_MINOR, d->size,
	       ncert, ncert == 1 ? "" : "s");
}

/* --- the fetch check --- */

/*
 * One fetch at a time for every resident and type, with the instance's timeout: each must
 * answer MDG_OK with a record that passes the host's record validation and the identity and
 * currency rules of verify_record() (resident and type asked for, version not below an
 * announced change, as_of within the type's default freshness bound and not in the future).
 * A record that is not issuable (a moved-out resident, an abolished seal) is a valid answer.
 */
static void check_fetch(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_FETCH];
	size_t n = r->resident_count * r->cert_count;
	struct pc_batch all = {calloc(n + 1, sizeof(struct pc_fetch *)), 0};
	size_t ok = 0, not_issuable = 0, failed = 0;
	char first[400] = "";
	for (size_t i = 0; all.f != NULL && i < r->resident_count; i++) {
		for (size_t j = 0; j < r->cert_count; j++) {
			struct pc_fetch *f = pc_start(r, i, j, r->timeout_ms);
			if (f == NULL)
				break;
			all.f[all.n++] = f;
			struct pc_batch one = {&all.f[all.n - 1], 1};
			pc_wait(r, pc_all_answered, &one, r->timeout_ms + PC_TOLERANCE_MS);
			char problem[400];
			if (pc_problem(r, f, problem, sizeof problem)[0] != '\0') {
				if (failed++ == 0)
					snprintf(first, sizeof first, "%s", problem);
			} else {
				ok++;
				not_issuable += f->verify == VERIFY_NOT_ISSUABLE;
			}
		}
	}
	pc_wait(r, pc_idle, NULL, r->timeout_ms + PC_TOLERANCE_MS);
	uint64_t min, med, max;
	pc_latency(all.f, all.n, &min, &med, &max);
	pc_figure(c, "fetches", (json_int_t)all.n);
	pc_figure(c, "records", (json_int_t)ok);
	pc_figure(c, "not_issuable", (json_int_t)not_issuable);
	pc_figure(c, "failed", (json_int_t)failed);
	pc_figure(c, "slowest_ms", (json_int_t)max);
	if (all.n < n)
		pc_set(c, PC_FAIL, "out of memory after %zu of %zu fetches", all.n, n);
	else if (failed > 0)
		pc_set(c, PC_FAIL,
		       "%zu of %zu fetches gave no valid record of the resident asked "
		       "for; first: %s",
		       failed, n, first);
	else
		pc_set(c, PC_PASS,
		       "%zu of %zu fetches (%zu resident%s x %zu type%s, one at a time) returned a "
		       "valid record of the resident and type asked for%s; slowest %llu ms",
		       ok, n, r->resident_count, r->resident_count == 1 ? "" : "s", r->cert_count,
		       r->cert_count == 1 ? "" : "s",
		       not_issuable ? " (some not issuable: the residents' state, not a fault)"
				    : "",
		       (unsigned long long)max);
	free(all.f);
}

/* --- the deadline check --- */

/*
 * PC_DEADLINE_FETCHES fetches at once with deadlines of 1 and 100 ms.  The host answers the
 * requester at the deadline in any case and then calls cancel(); what the plugin must do:
 *   - a non-blocking plugin's fetch() returns at once (here: within the tolerance), ever;
 *   - a blocking plugin's fetch() returns by its deadline plus the tolerance (a worker
 *     thread held longer is taken from every other plugin and from rendering);
 *   - a plugin without cancel() completes each fetch by its deadline plus the tolerance
 *     (nothing else tells it to stop).  With cancel(), the host's call at the deadline is the
 *     stop signal, and a completion after it is harmless (dropped).
 */
static void check_deadline(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_DEADLINE];
	struct pc_batch b = {calloc(PC_DEADLINE_FETCHES + 1, sizeof(struct pc_fetch *)), 0};
	uint64_t latest = 0;
	for (size_t i = 0; b.f != NULL && i < PC_DEADLINE_FETCHES; i++) {
		uint64_t d = pc_short_deadline_ms[i % PC_SHORT_DEADLINE_COUNT];
		b.f[i] = pc_start(r, i, i / r->resident_count, d);
		if (b.f[i] == NULL)
			break;
		b.n = i + 1;
		if (b.f[i]->deadline_ms > latest)
			latest = b.f[i]->deadline_ms;
	}
	/* Judged by when the plugin acted (the tracer's times), a little after the last moment
	 * that counts, so that a completion made just in time has reached the loop. */
	uint64_t until = latest + PC_TOLERANCE_MS + 50;
	pc_wait(r, pc_until, &until, PC_TOLERANCE_MS + 300);
	int still_running = r->blocking && plugin_instance_blocking_pending(r->inst) > 0;

	char first[400] = "";
	size_t bad = 0, in_time = 0, timed_out = 0, plugin_timeouts = 0, cancelled = 0,
	       never_ran = 0;
	uint64_t max_call = 0;
	for (size_t i = 0; i < r->fetch_count; i++) {
		const struct pc_fetch *f = r->fetches[i];
		if (!r->blocking && f->call_ms > max_call)
			max_call = f->call_ms;
	}
	if (!r->blocking && max_call > PC_TOLERANCE_MS) {
		bad++;
		snprintf(first, sizeof first,
			 "fetch() held the loop thread for %llu ms: a non-blocking plugin must "
			 "return from fetch() at once (do I/O on the loop or with queue_work(), or "
			 "declare MDG_PLUGIN_BLOCKING)",
			 (unsigned long long)max_call);
	}
	for (size_t i = 0; i < b.n; i++) {
		const struct pc_fetch *f = b.f[i];
		char what[96], problem[400] = "";
		pc_what(r, f, what, sizeof what);
		uint64_t due = f->deadline_ms + PC_TOLERANCE_MS;
		if (f->state == PC_F_ANSWERED && f->status == MDG_ERR_TIMEOUT)
			timed_out++;
		else if (f->state == PC_F_ANSWERED)
			in_time++;
		plugin_timeouts += f->completions > 0 && f->first_status == MDG_ERR_TIMEOUT;
		cancelled += f->cancelled;
		if (f->state == PC_F_REFUSED)
			continue; /* never reached the plugin's hands */
		if (r->blocking && !f->ran) {
			never_ran++; /* its deadline passed while it waited for a worker */
			continue;
		}
		if (r->blocking && f->ran_end_ms > due)
			snprintf(problem, sizeof problem,
				 "%s: the blocking fetch() returned %llu ms after its %llu ms "
				 "deadline; bound every backend call by fetch->deadline_ms",
				 what, (unsigned long long)(f->ran_end_ms - f->deadline_ms),
				 (unsigned long long)f->timeout_ms);
		else if (!r->has_cancel && (f->completions == 0 || f->first_completion_ms > due))
			snprintf(
			    problem, sizeof problem,
			    "%s: the plugin has no cancel() and had not completed the fetch "
			    "%u ms after its %llu ms deadline; complete with MDG_ERR_TIMEOUT by "
			    "fetch->deadline_ms",
			    what, PC_TOLERANCE_MS, (unsigned long long)f->timeout_ms);
		if (problem[0] != '\0' && bad++ == 0)
			snprintf(first, sizeof first, "%s", problem);
	}
	if (still_running && bad++ == 0)
		snprintf(first, sizeof first,
			 "a blocking fetch() was still running %u ms after the latest deadline; "
			 "bound every backend call by fetch->deadline_ms",
			 PC_TOLERANCE_MS);
	/* Let what is still on the pool finish before the next check counts its own. */
	pc_wait(r, pc_idle, NULL, r->timeout_ms + PC_TOLERANCE_MS);
	pc_figure(c, "fetches", (json_int_t)b.n);
	pc_figure(c, "answered_in_time", (json_int_t)in_time);
	pc_figure(c, "timed_out", (json_int_t)timed_out);
	pc_figure(c, "plugin_reported_timeout", (json_int_t)plugin_timeouts);
	pc_figure(c, "cancelled_at_deadline", (json_int_t)cancelled);
	pc_figure(c, "never_ran", (json_int_t)never_ran);
	pc_figure(c, "max_fetch_call_ms", (json_int_t)max_call);
	pc_figure(c, "tolerance_ms", PC_TOLERANCE_MS);
	if (b.n < PC_DEADLINE_FETCHES)
		pc_set(c, PC_FAIL, "out of memory");
	else if (bad > 0)
		pc_set(c, PC_FAIL, "%s", first);
	else
		pc_set(c, PC_PASS,
		       "%zu fetches with 1 and 100 ms deadlines: %zu answered in time, %zu timed "
		       "out (%s%zu reported MDG_ERR_TIMEOUT by the plugin)%s; each was settled "
		       "within %u ms of its deadline%s",
		       b.n, in_time, timed_out,
		       r->has_cancel ? "cancel() called at the deadline, " : "", plugin_timeouts,
		       never_ran ? ", some never ran (deadline passed while waiting for a worker)"
				 : "",
		       PC_TOLERANCE_MS,
		       r->blocking ? " and no blocking fetch() outlived it"
				   : " and fetch() never held the loop thread");
	free(b.f);
}

/* --- the cancel check --- */

/*
 * --concurrency fetches, each abandoned by its requester as soon as it started (the host
 * forgets the ticket and calls cancel()), then as many new fetches at once.  PASS when no
 * answer of a cancelled fetch reached its requester, every cancel() returned within the
 * tolerance (it runs on the loop thread), and every new fetch returned a record: a cancelled
 * fetch must not keep what the plugin has only so much of (connections, slots, workers).
 * Completing a cancelled ticket later is allowed by the SDK and only counted.
 */
static void check_cancel(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_CANCEL];
	size_t n = r->concurrency;
	struct pc_batch gone = pc_start_batch(r, n, 3 * r->timeout_ms, 1);
	struct pc_batch probe = pc_start_batch(r, n, r->timeout_ms, 0);
	pc_wait(r, pc_all_answered, &probe, r->timeout_ms + PC_TOLERANCE_MS);
	pc_wait(r, pc_idle, NULL, r->timeout_ms + PC_TOLERANCE_MS);

	size_t refused_first = 0, delivered = 0, late = 0, abandoned = 0;
	for (size_t i = 0; i < gone.n; i++) {
		refused_first += gone.f[i]->state == PC_F_REFUSED;
		abandoned +=
		    gone.f[i]->state == PC_F_ABANDONED || gone.f[i]->answered_after_abandon;
		delivered += gone.f[i]->answered_after_abandon;
		late += gone.f[i]->late;
	}
	uint64_t max_cancel = 0;
	for (size_t i = 0; i < r->fetch_count; i++) {
		if (r->fetches[i]->cancelled && r->fetches[i]->cancel_call_ms > max_cancel)
			max_cancel = r->fetches[i]->cancel_call_ms;
	}
	size_t ok = 0, refused = 0, timed_out = 0, failed = 0;
	const struct pc_fetch *first_bad = NULL;
	for (size_t i = 0; i < probe.n; i++) {
		const struct pc_fetch *f = probe.f[i];
		if (f->state == PC_F_ANSWERED && f->status == MDG_OK) {
			ok++;
			continue;
		}
		if (first_bad == NULL)
			first_bad = f;
		if (f->state == PC_F_REFUSED)
			refused++;
		else if (f->status == MDG_ERR_TIMEOUT)
			timed_out++;
		else
			failed++;
	}
	pc_figure(c, "cancelled", (json_int_t)abandoned);
	pc_figure(c, "completed_after_cancel", (json_int_t)late);
	pc_figure(c, "delivered_after_cancel", (json_int_t)delivered);
	pc_figure(c, "max_cancel_call_ms", (json_int_t)max_cancel);
	pc_figure(c, "new_fetches", (json_int_t)probe.n);
	pc_figure(c, "new_fetches_ok", (json_int_t)ok);
	char problem[400] = "";
	if (first_bad != NULL)
		pc_problem(r, first_bad, problem, sizeof problem);
	if (gone.n < n || probe.n < n)
		pc_set(c, PC_FAIL, "out of memory");
	else if (refused_first > 0)
		pc_set(c, PC_FAIL,
		       "%zu of %zu fetches were refused before they could be cancelled; run the "
		       "check with --concurrency at most what the plugin accepts at once",
		       refused_first, n);
	else if (delivered > 0)
		pc_set(c, PC_FAIL,
		       "the answers of %zu cancelled fetches reached their requesters (a host "
		       "fault: report it to the madoguchi project)",
		       delivered);
	else if (max_cancel > PC_TOLERANCE_MS)
		pc_set(c, PC_FAIL,
		       "cancel() held the loop thread for %llu ms; it must only mark the fetch "
		       "and release it, never wait for the backend",
		       (unsigned long long)max_cancel);
	else if (ok < n && r->checks[PC_CONCURRENCY].result == PC_FAIL &&
		 json_integer_value(json_object_get(r->checks[PC_CONCURRENCY].figures, "failed")) >
		     0)
		pc_set(c, PC_FAIL,
		       "after %zu fetches were cancelled, %zu of %zu new fetches failed, but "
		       "fetches failed at this concurrency without any cancel too (see the "
		       "concurrency check): run with a --concurrency the plugin and its backend "
		       "can serve; first: %s",
		       n, n - ok, n, problem);
	else if (ok < n)
		pc_set(c, PC_FAIL,
		       "after %zu fetches were cancelled, %zu of %zu new fetches failed (%zu "
		       "refused, %zu timed out, %zu other errors): cancelled fetches still hold "
		       "the plugin's capacity; release everything of a fetch in cancel(); first: "
		       "%s",
		       n, n - ok, n, refused, timed_out, failed, problem);
	else
		pc_set(c, PC_PASS,
		       "%zu fetches cancelled as they started: no answer reached a requester, "
		       "%s, %zu completed afterwards (dropped by the host, as the SDK allows); "
		       "%zu new fetches right after all returned records",
		       n,
		       r->has_cancel ? "cancel() returned promptly" : "the plugin has no cancel()",
		       late, n);
	free(gone.f);
	free(probe.f);
}

/* --- the concurrency check --- */

/*
 * --concurrency fetches at once, the residents in turn (then the types), each with the
 * instance's timeout.  Every answer must be a record of the resident its own request named:
 * a record of another resident is the fault of incident I2 (the core would refuse it as an
 * INTEGRITY_FAULT and suspend the plugin).  Every fetch must succeed, too.
 */
static void check_concurrency(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_CONCURRENCY];
	size_t n = r->concurrency;
	struct pc_batch b = pc_start_batch(r, n, r->timeout_ms, 0);
	uint32_t at_once = plugin_instance_in_flight(r->inst);
	pc_wait(r, pc_all_answered, &b, r->timeout_ms + PC_TOLERANCE_MS);
	pc_wait(r, pc_idle, NULL, r->timeout_ms + PC_TOLERANCE_MS);
	size_t ok = 0, crossed = 0, failed = 0;
	const struct pc_fetch *first_cross = NULL, *first_fail = NULL;
	for (size_t i = 0; i < b.n; i++) {
		const struct pc_fetch *f = b.f[i];
		if (f->state == PC_F_ANSWERED && f->status == MDG_OK && !f->identity_ok) {
			crossed++;
			first_cross = first_cross ? first_cross : f;
		} else if (f->state == PC_F_ANSWERED && f->status == MDG_OK) {
			ok++;
		} else {
			failed++;
			first_fail = first_fail ? first_fail : f;
		}
	}
	uint64_t min, med, max;
	pc_latency(b.f, b.n, &min, &med, &max);
	pc_figure(c, "fetches", (json_int_t)b.n);
	pc_figure(c, "at_once", at_once);
	pc_figure(c, "records", (json_int_t)ok);
	pc_figure(c, "crossed", (json_int_t)crossed);
	pc_figure(c, "failed", (json_int_t)failed);
	pc_figure(c, "median_ms", (json_int_t)med);
	pc_figure(c, "slowest_ms", (json_int_t)max);
	char problem[400];
	if (b.n < n)
		pc_set(c, PC_FAIL, "out of memory");
	else if (crossed > 0)
		pc_set(c, PC_FAIL,
		       "%zu of %zu records answered at once were of another resident than their "
		       "request named (incident I2); first: %s",
		       crossed, n, pc_problem(r, first_cross, problem, sizeof problem));
	else if (failed > 0)
		pc_set(c, PC_FAIL, "%zu of %zu fetches at once failed%s; first: %s", failed, n,
		       first_fail->state == PC_F_REFUSED
			   ? " (if the plugin refuses beyond its capacity, run with --concurrency "
			     "at most that)"
			   : "",
		       pc_problem(r, first_fail, problem, sizeof problem));
	else
		pc_set(c, PC_PASS,
		       "%zu fetches at once (%u in flight together) over %zu residents: every "
		       "record was of the resident its request named; median %llu ms, slowest "
		       "%llu ms",
		       n, at_once, r->resident_count, (unsigned long long)med,
		       (unsigned long long)max);
	free(b.f);
}

/* --- the shutdown check --- */

struct pc_handle_count {
	const uv_handle_t *ignore;
	unsigned open;
};

static void pc_count_handle(uv_handle_t *h, void *arg)
{
	struct pc_handle_count *hc = arg;
	if (h != hc->ignore && !uv_is_closing(h))
		hc->open++;
}

/*
 * Handles still open on the loop once the host is unloaded, the check's own timer aside.
 * The loop is not run: such a handle's callbacks point into a library no longer loaded.
 */
static unsigned pc_open_handles(struct pc_run *r)
{
	struct pc_handle_count hc = {(const uv_handle_t *)&r->tick, 0};
	uv_walk(&r->loop, pc_count_handle, &hc);
	return hc.open;
}

/* Unloads the host (fini() included) and returns how long it took. */
static uint64_t pc_unload(struct pc_run *r)
{
	uint64_t t0 = pc_now_ms();
	r->in_unload = 1;
	plugin_host_unload(r->host);
	r->in_unload = 0;
	uint64_t took = pc_now_ms() - t0;
	for (size_t i = 0; i < r->fetch_count; i++) {
		if (r->fetches[i]->state == PC_F_PENDING) {
			r->fetches[i]->state = PC_F_ABANDONED;
			r->fetches[i]->handle = NULL;
		}
	}
	r->host = NULL;
	r->inst = NULL;
	/* The plugin's counter names went with it: the registry must not keep them. */
	metrics_reset();
	return took;
}

/*
 * Unloads the instance once idle (after the other checks), loads it again, starts
 * --concurrency fetches and unloads it with all of them in flight.  Each unload (the host
 * cancels what is in flight, waits for blocking fetches, calls fini()) must return within the
 * timeout plus the tolerance, deliver no answer once it began, and leave no libuv handle of
 * the plugin open (fini() must close what it opened).  Under AddressSanitizer the exit also
 * reports what fini() did not free.
 */
static void check_shutdown(struct pc_run *r)
{
	struct pc_check *c = &r->checks[PC_SHUTDOWN];
	uint64_t bound = r->timeout_ms + PC_TOLERANCE_MS;
	pc_wait(r, pc_idle, NULL, bound);
	uint64_t idle_ms = pc_unload(r);
	unsigned idle_left = pc_open_handles(r);
	pc_figure(c, "idle_unload_ms", (json_int_t)idle_ms);
	if (idle_left > 0) {
		pc_set(c, PC_FAIL,
		       "fini() left %u libuv handle%s open (timers, sockets) when unloaded idle: "
		       "close every handle the plugin opened",
		       idle_left, idle_left == 1 ? "" : "s");
		return;
	}
	char msg[CONFIG_ERROR_MAX];
	if (plugin_host_load(&r->host, r->cfg, &r->loop, msg, sizeof msg) != 0) {
		r->host = NULL;
		char clean[CONFIG_ERROR_MAX];
		pc_scrub(r, msg, clean, sizeof clean);
		pc_set(c, PC_FAIL, "the plugin did not load a second time in one process: %s",
		       clean);
		return;
	}
	r->inst = plugin_host_find(r->host, PC_INSTANCE);
	plugin_host_set_trace(r->host, pc_trace, r);
	size_t first = r->fetch_count;
	struct pc_batch b = pc_start_batch(r, r->concurrency, r->timeout_ms, 0);
	size_t in_flight = plugin_instance_in_flight(r->inst);
	uint64_t busy_ms = pc_unload(r);
	unsigned busy_left = pc_open_handles(r);
	size_t delivered = 0;
	for (size_t i = first; i < r->fetch_count; i++)
		delivered += r->fetches[i]->answered_after_abandon;
	pc_figure(c, "busy_unload_ms", (json_int_t)busy_ms);
	pc_figure(c, "in_flight_at_unload", (json_int_t)in_flight);
	pc_figure(c, "handles_left_open", (json_int_t)busy_left);
	pc_figure(c, "bound_ms", (json_int_t)bound);
	if (b.n < r->concurrency)
		pc_set(c, PC_FAIL, "out of memory");
	else if (idle_ms > bound || busy_ms > bound)
		pc_set(c, PC_FAIL,
		       "unloading took %llu ms idle and %llu ms with %zu fetches in flight; "
		       "fini() must return within %llu ms (stop, close, free; never wait for the "
		       "backend)",
		       (unsigned long long)idle_ms, (unsigned long long)busy_ms, in_flight,
		       (unsigned long long)bound);
	else if (delivered > 0)
		pc_set(c, PC_FAIL,
		       "%zu answers reached requesters after the unload began (a host fault: "
		       "report it to the madoguchi project)",
		       delivered);
	else if (busy_left > 0)
		pc_set(c, PC_FAIL,
		       "fini() left %u libuv handle%s open (timers, sockets) when unloaded with "
		       "fetches in flight: close every handle the plugin opened",
		       busy_left, busy_left == 1 ? "" : "s");
	else
		pc_set(c, PC_PASS,
		       "unloaded idle in %llu ms and with %zu fetches in flight in %llu ms (bound "
		       "%llu ms); no answer after shutdown began; fini() left no handle open",
		       (unsigned long long)idle_ms, in_flight, (unsigned long long)busy_ms,
		       (unsigned long long)bound);
	free(b.f);
}

/* --- the report --------------------------------------------------------------------------- */

static void pc_utc_now(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Totals over every fetch of the run. */
static json_t *pc_totals(const struct pc_run *r)
{
	json_int_t started = 0, refused = 0, records = 0, errors = 0, timeouts = 0, cancelled = 0,
		   late = 0;
	for (size_t i = 0; i < r->fetch_count; i++) {
		const struct pc_fetch *f = r->fetches[i];
		late += f->late;
		if (f->state == PC_F_REFUSED) {
			refused++;
			continue;
		}
		started++;
		if (f->state == PC_F_ABANDONED)
			cancelled++;
		else if (f->status == MDG_OK)
			records++;
		else if (f->status == MDG_ERR_TIMEOUT)
			timeouts++;
		else
			errors++;
	}
	uint64_t min, med, max;
	pc_latency(r->fetches, r->fetch_count, &min, &med, &max);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:{s:I, s:I, s:I}}",
			 "fetches", started + refused, "records", records, "errors", errors,
			 "timeouts", timeouts, "refused", refused, "cancelled", cancelled,
			 "late_completions", late, "foreign_completions",
			 (json_int_t)r->foreign_completions, "max_in_flight", (int)r->max_in_flight,
			 "latency_ms", "min", (json_int_t)min, "median", (json_int_t)med, "max",
			 (json_int_t)max);
}

static int pc_verdict(const struct pc_run *r, size_t *passed)
{
	*passed = 0;
	for (size_t i = 0; i < PC_CHECK_COUNT; i++)
		*passed += r->checks[i].result == PC_PASS;
	return *passed == PC_CHECK_COUNT ? PLUGIN_CHECK_PASS : PLUGIN_CHECK_FAIL;
}

static void pc_print_header(const struct pc_run *r, const char *date)
{
	printf("madoguchi plugin conformance report\n\n");
	printf("  plugin file    %s (%lld bytes, sha256 %s)\n", r->file_name, r->bytes, r->sha256);
	if (r->decl.loaded) {
		printf("  declared       %s %s by \"%s\", plugin ABI %u.%u, %s, %s\n", r->decl.name,
		       r->decl.version, r->decl.vendor, r->decl.abi_major, r->decl.abi_minor,
		       r->blocking ? "blocking" : "non-blocking",
		       r->has_cancel ? "with cancel()" : "without cancel()");
		printf("  certificates   ");
		for (size_t i = 0; i < r->decl.certificate_count; i++)
			printf("%s%s", i ? ", " : "", r->decl.certificates[i]);
		printf("\n");
	} else {
		printf("  declared       unknown (the host did not load the file)\n");
	}
	printf("  host           madoguchictl %s, plugin ABI %u.%u\n", PACKAGE_VERSION,
	       MDG_PLUGIN_ABI_MAJOR, MDG_PLUGIN_ABI_MINOR);
	printf("  date           %s\n", date);
	printf("  settings       %zu residents (named #1 to #%zu here), municipality %s, "
	       "concurrency %u,\n"
	       "                 fetch timeout %llu ms, short deadlines 1 and 100 ms, tolerance "
	       "%u ms, %s\n",
	       r->resident_count, r->resident_count, r->municipality, r->concurrency,
	       (unsigned long long)r->timeout_ms, PC_TOLERANCE_MS,
	       r->config_path ? "config block given" : "no config block");
	if (r->cert_count > 0) {
		printf("  checked types  ");
		for (size_t i = 0; i < r->cert_count; i++)
			printf("%s%s", i ? ", " : "", r->certs[i]);
		printf("\n");
	}
	printf("\n");
	fflush(stdout);
}

static void pc_print_check(const struct pc_run *r, enum pc_check_id id)
{
	const struct pc_check *c = &r->checks[id];
	printf("  %s  %-12s %s\n", pc_result_names[c->result], pc_check_names[id],
	       c->result == PC_SKIP ? "not run: the plugin did not load" : c->reason);
	fflush(stdout);
}

static void pc_print_footer(const struct pc_run *r)
{
	json_t *t = pc_totals(r);
	size_t passed;
	int v = pc_verdict(r, &passed);
	printf(
	    "\n  figures        %lld fetches: %lld records, %lld errors, %lld timeouts, %lld "
	    "refused, %lld cancelled;\n"
	    "                 %lld completions after the ticket was gone (dropped), %lld for "
	    "tickets never issued;\n"
	    "                 at most %lld in flight; records took %lld / %lld / %lld ms "
	    "(min / median / max)\n",
	    (long long)json_integer_value(json_object_get(t, "fetches")),
	    (long long)json_integer_value(json_object_get(t, "records")),
	    (long long)json_integer_value(json_object_get(t, "errors")),
	    (long long)json_integer_value(json_object_get(t, "timeouts")),
	    (long long)json_integer_value(json_object_get(t, "refused")),
	    (long long)json_integer_value(json_object_get(t, "cancelled")),
	    (long long)json_integer_value(json_object_get(t, "late_completions")),
	    (long long)json_integer_value(json_object_get(t, "foreign_completions")),
	    (long long)json_integer_value(json_object_get(t, "max_in_flight")),
	    (long long)json_integer_value(json_object_get(json_object_get(t, "latency_ms"), "min")),
	    (long long)json_integer_value(
		json_object_get(json_object_get(t, "latency_ms"), "median")),
	    (long long)json_integer_value(
		json_object_get(json_object_get(t, "latency_ms"), "max")));
	printf("\n  verdict        %s (%zu of %d checks passed)\n",
	       v == PLUGIN_CHECK_PASS ? "PASS" : "FAIL", passed, PC_CHECK_COUNT);
	json_decref(t);
}

static void pc_print_json(const struct pc_run *r, const char *date)
{
	json_t *plugin = json_pack("{s:s, s:s, s:I}", "file", r->file_name, "sha256", r->sha256,
				   "bytes", (json_int_t)r->bytes);
	if (r->decl.loaded) {
		char abi[32];
		snprintf(abi, sizeof abi, "%u.%u", r->decl.abi_major, r->decl.abi_minor);
		json_t *certs = json_array();
		for (size_t i = 0; i < r->decl.certificate_count; i++)
			json_array_append_new(certs, json_string(r->decl.certificates[i]));
		json_object_update_new(
		    plugin, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:o}", "name", r->decl.name,
				      "version", r->decl.version, "vendor", r->decl.vendor, "abi",
				      abi, "blocking", r->blocking, "cancel", r->has_cancel,
				      "certificates", certs));
	}
	char host_abi[32];
	snprintf(host_abi, sizeof host_abi, "%u.%u", MDG_PLUGIN_ABI_MAJOR, MDG_PLUGIN_ABI_MINOR);
	json_t *checked = json_array();
	for (size_t i = 0; i < r->cert_count; i++)
		json_array_append_new(checked, json_string(r->certs[i]));
	json_t *checks = json_array();
	for (size_t i = 0; i < PC_CHECK_COUNT; i++) {
		const struct pc_check *c = &r->checks[i];
		json_t *figures = c->figures ? json_incref(c->figures) : json_object();
		json_array_append_new(
		    checks,
		    json_pack("{s:s, s:s, s:s, s:I, s:o}", "name", pc_check_names[i], "result",
			      pc_result_names[c->result], "reason",
			      c->result == PC_SKIP ? "not run: the plugin did not load" : c->reason,
			      "duration_ms", (json_int_t)c->duration_ms, "figures", figures));
	}
	size_t passed;
	int v = pc_verdict(r, &passed);
	json_t *doc = json_pack(
	    "{s:s, s:i, s:o, s:{s:s, s:s, s:s}, s:s, s:{s:I, s:o, s:s, s:i, s:I, s:[I, I], s:i, "
	    "s:b}, s:o, s:o, s:s}",
	    "report", "madoguchi-plugin-check", "format", 1, "plugin", plugin, "host", "program",
	    "madoguchictl", "version", PACKAGE_VERSION, "abi", host_abi, "date", date, "settings",
	    "residents", (json_int_t)r->resident_count, "certificates", checked, "municipality",
	    r->municipality, "concurrency", (int)r->concurrency, "timeout_ms",
	    (json_int_t)r->timeout_ms, "short_deadlines_ms", (json_int_t)pc_short_deadline_ms[0],
	    (json_int_t)pc_short_deadline_ms[1], "tolerance_ms", PC_TOLERANCE_MS, "config_given",
	    r->config_path != NULL, "checks", checks, "figures", pc_totals(r), "verdict",
	    v == PLUGIN_CHECK_PASS ? "PASS" : "FAIL");
	if (doc != NULL) {
		json_dumpf(doc, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(doc);
}

/* --- the command line -------------------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static int pc_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PC_PROG ": ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: madoguchictl plugin check PATH.so [--config FILE.yaml] "
			"[--certificate TYPE]...\n"
			"           --resident CODE --resident CODE... [--concurrency N] "
			"[--municipality CODE] [--json]\n");
	return PLUGIN_CHECK_USAGE;
}

static int pc_parse(struct pc_run *r, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--json") == 0) {
			r->json = true;
		} else if (strcmp(a, "--config") == 0 || strcmp(a, "--certificate") == 0 ||
			   strcmp(a, "--resident") == 0 || strcmp(a, "--concurrency") == 0 ||
			   strcmp(a, "--municipality") == 0) {
			if (v == NULL || v[0] == '\0')
				return pc_usage("%s needs a value", a);
			i++;
			if (strcmp(a, "--config") == 0) {
				r->config_path = v;
			} else if (strcmp(a, "--certificate") == 0) {
				if (record_certificate_index(v) < 0)
					return pc_usage(
					    "--certificate: unknown type '%s' (one of "
					    "residence, residence-record, seal, "
					    "tax-income, koseki-full, koseki-individual, "
					    "koseki-attachment)",
					    v);
				int dup = 0;
				for (size_t k = 0; k < r->certs_opt_count; k++)
					dup |= strcmp(r->certs_opt[k], v) == 0;
				if (!dup)
					r->certs_opt[r->certs_opt_count++] = v;
			} else if (strcmp(a, "--resident") == 0) {
				size_t len = strlen(v);
				int bad = len > PC_RESIDENT_MAX_LEN;
				for (size_t k = 0; k < len; k++)
					bad |= (unsigned char)v[k] <= 0x20 || v[k] == 0x7f;
				if (bad)
					return pc_usage("--resident: a resident code is 1 to %u "
							"characters without spaces",
							PC_RESIDENT_MAX_LEN);
				if (pc_resident_index(r, v) >= 0)
					continue;
				if (r->resident_count == PC_MAX_RESIDENTS)
					return pc_usage("at most %u --resident codes",
							PC_MAX_RESIDENTS);
				r->residents[r->resident_count++] = v;
			} else if (strcmp(a, "--concurrency") == 0) {
				char *end = NULL;
				errno = 0;
				unsigned long n = strtoul(v, &end, 10);
				if (errno != 0 || *end != '\0' || v[0] == '-' || n < 1 ||
				    n > PC_MAX_CONCURRENCY)
					return pc_usage(
					    "--concurrency needs a number from 1 to %u, "
					    "not '%s'",
					    PC_MAX_CONCURRENCY, v);
				r->concurrency = (unsigned)n;
			} else {
				if (strlen(v) != 6 || strspn(v, "0123456789") != 6)
					return pc_usage(
					    "--municipality needs a six-digit code, not "
					    "'%s'",
					    v);
				r->municipality = v;
			}
		} else if (a[0] == '-' && a[1] != '\0') {
			return pc_usage("unknown option '%s'", a);
		} else if (r->path == NULL) {
			r->path = a;
		} else {
			return pc_usage("one plugin at a time (unexpected '%s')", a);
		}
	}
	if (r->path == NULL)
		return pc_usage("which plugin? give the path of its .so");
	if (r->resident_count == 0)
		return pc_usage(
		    "give the residents to fetch with --resident CODE (at least two codes the "
		    "plugin's backend holds; the SDK cannot list a backend's residents, so the "
		    "check cannot find them itself)");
	if (r->resident_count < 2)
		return pc_usage("give at least two different --resident codes: the concurrency "
				"check needs distinct residents to see an answer cross over");
	return PLUGIN_CHECK_PASS;
}

/* Chooses the types to fetch: --certificate, else every type the plugin declares.  0, or a
 * usage error (a type the plugin does not serve). */
static int pc_choose_certificates(struct pc_run *r)
{
	if (r->certs_opt_count == 0) {
		for (size_t i = 0; i < r->decl.certificate_count; i++)
			r->certs[r->cert_count++] = r->decl.certificates[i];
		return 0;
	}
	for (size_t i = 0; i < r->certs_opt_count; i++) {
		if (!plugin_instance_serves(r->inst, r->certs_opt[i]))
			return pc_usage("--certificate %s: the plugin does not serve it (see its "
					"descriptor's certificates)",
					r->certs_opt[i]);
		r->certs[r->cert_count++] =
		    record_certificate_types[record_certificate_index(r->certs_opt[i])];
	}
	return 0;
}

/* Frees what the run holds; the loop is closed only when nothing of the plugin is left on
 * it (a handle left open by fini() would point into an unloaded library). */
static void pc_cleanup(struct pc_run *r)
{
	if (r->host != NULL)
		pc_unload(r);
	if (r->loop_ready && pc_open_handles(r) == 0) {
		uv_close((uv_handle_t *)&r->tick, NULL);
		uv_run(&r->loop, UV_RUN_DEFAULT);
		uv_loop_close(&r->loop);
	}
	for (size_t i = 0; i < r->fetch_count; i++)
		free(r->fetches[i]);
	free(r->fetches);
	for (size_t i = 0; i < PC_CHECK_COUNT; i++)
		json_decref(r->checks[i].figures);
	config_unref(r->cfg);
	metrics_reset();
	log_flush();
}

typedef void (*pc_check_fn)(struct pc_run *r);

int plugin_check_main(int argc, char **argv, bool json)
{
	struct pc_run *r = calloc(1, sizeof *r);
	if (r == NULL) {
		fprintf(stderr, PC_PROG ": out of memory\n");
		return PLUGIN_CHECK_FAIL;
	}
	r->json = json;
	r->concurrency = PC_DEFAULT_CONCURRENCY;
	r->municipality = PC_DEFAULT_MUNICIPALITY;
	int rc = pc_parse(r, argc, argv);
	char msg[CONFIG_ERROR_MAX];
	if (rc == PLUGIN_CHECK_PASS && pc_inspect_file(r, msg, sizeof msg) != 0)
		rc = pc_usage("%s", msg);
	if (rc == PLUGIN_CHECK_PASS && pc_load_config(r, msg, sizeof msg) != 0)
		rc = pc_usage("%s", msg);
	if (rc != PLUGIN_CHECK_PASS) {
		pc_cleanup(r);
		free(r);
		return rc;
	}
	pc_json_mode = r->json;
	pc_install_handlers();
	/* The host's log lines go to stderr; below warnings they are noise next to a report. */
	log_set_level(LOG_WARN);
	char threads[16];
	snprintf(threads, sizeof threads, "%u", r->cfg->worker_threads);
	setenv("UV_THREADPOOL_SIZE", threads, 1); /* as madoguchid sizes its pool */
	if (uv_loop_init(&r->loop) != 0 || uv_timer_init(&r->loop, &r->tick) != 0) {
		fprintf(stderr, PC_PROG ": cannot start an event loop\n");
		pc_cleanup(r);
		free(r);
		return PLUGIN_CHECK_FAIL;
	}
	r->loop_ready = 1;

	char date[32];
	pc_utc_now(date, sizeof date);
	uint64_t t0 = pc_now_ms();
	pc_enter(PC_ABI, 0);
	check_abi(r);
	r->checks[PC_ABI].duration_ms = pc_now_ms() - t0;
	if (r->host != NULL && pc_choose_certificates(r) != 0) {
		alarm(0);
		pc_cleanup(r);
		free(r);
		return PLUGIN_CHECK_USAGE;
	}
	if (!r->json) {
		pc_print_header(r, date);
		pc_print_check(r, PC_ABI);
	}
	if (r->host != NULL) {
		static const pc_check_fn fns[PC_CHECK_COUNT] = {
		    NULL,	    check_fetch,  check_concurrency,
		    check_deadline, check_cancel, check_shutdown};
		uint64_t per = r->timeout_ms + PC_TOLERANCE_MS;
		const uint64_t bounds[PC_CHECK_COUNT] = {
		    0,	     per * (r->resident_count * r->cert_count + 1),
		    2 * per, 2 * per,
		    3 * per, 4 * per};
		for (int id = PC_FETCH; id < PC_CHECK_COUNT; id++) {
			pc_enter((enum pc_check_id)id, bounds[id]);
			t0 = pc_now_ms();
			fns[id](r);
			r->checks[id].duration_ms = pc_now_ms() - t0;
			if (!r->json)
				pc_print_check(r, (enum pc_check_id)id);
		}
	} else if (!r->json) {
		for (int id = PC_FETCH; id < PC_CHECK_COUNT; id++)
			pc_print_check(r, (enum pc_check_id)id);
	}
	alarm(0);
	pc_current = -1;
	size_t passed;
	rc = pc_verdict(r, &passed);
	if (r->json)
		pc_print_json(r, date);
	else
		pc_print_footer(r);
	pc_cleanup(r);
	free(r);
	return rc;
}
