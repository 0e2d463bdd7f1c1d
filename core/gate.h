/*
 * gate.h: the kill switch's question, asked at steps 7 and 13 of every issuance (DESIGN §3, §6).
 *
 * "May this plugin instance, at this version, serve this certificate type for this
 * municipality now?"  Suspensions come from three sources:
 *
 *   ministry  the entries of the newest valid signed list (suslist.h); only a newer list lifts
 *   auto      set by the core on an integrity fault, for every type of the plugin, immediate;
 *             lifted only by an explicit local acknowledgement
 *   local     set and lifted by municipal IT, kept per certificate type
 *
 * A suspension's scope is its plugin and, optionally, certificate types, a version range and
 * municipality codes (the last two only in ministry lists).  Its mode is immediate (it also
 * stops delivery of issuances already past step 7, at step 13) or drain (only new ones).  Where
 * several match, the verdict names the strongest source: ministry, then auto, then local.
 *
 * The plugin instances (name, version) and the municipalities served are bound when the gate is
 * made.  After every change the gate recomputes one verdict per (instance, type, municipality,
 * step), so gate_check_at() on the hot path is an array lookup whatever the number of
 * suspensions; gate_check() (by names) finds the indexes first and evaluates the suspensions
 * directly for a name that is not bound.
 *
 * Persistence (data_dir/gate.sqlite, WAL, synchronous=FULL): every local and auto suspension
 * and the applied ministry list with its sequence.  A change is made durable by gate_persist()
 * (blocking: the caller runs it on the thread pool) and then applied in memory by gate_apply()
 * on the loop thread, so an API that answers after gate_apply() answers for a suspension that
 * survives a crash.  gate_open() loads everything before the first request.
 *
 * Threads: the gate itself is the loop thread's; gate_persist() runs on any thread and touches
 * only the change and the file.
 */
#ifndef MDG_GATE_H
#define MDG_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "suslist.h"

enum gate_source { GATE_MINISTRY = 0, GATE_AUTO = 1, GATE_LOCAL = 2 };
#define GATE_SOURCE_COUNT 3

enum gate_mode { GATE_IMMEDIATE = 0, GATE_DRAIN = 1 };

#define GATE_REASON_MAX 256
#define GATE_PLUGIN_MAX 64
#define GATE_ID_MAX	64

/* Why a request may not be served; filled by the checks. */
struct gate_verdict {
	enum gate_source source;
	char reason[GATE_REASON_MAX];
	time_t since;
	bool immediate;
	char id[GATE_ID_MAX + 1]; /* the ministry list entry's id; "" for other sources */
};

/*
 * A plugin instance as the gate knows it.  Local and auto suspensions name the instance
 * (`name`, the key under `plugins:` in the city's config); ministry entries name the plugin as
 * its vendor ships it (`plugin`, the descriptor's name: NULL means the same as name), since the
 * ministry cannot know what each city called its instances.
 */
struct gate_plugin {
	const char *name;
	const char *plugin;
	const char *version;
};

struct gate;

/*
 * A gate bound to these plugin instances and municipalities (copied), with the suspensions
 * stored at db_path (created when missing; NULL: nothing stored, for tests).  0 with *out, or
 * -1 with err filled for an operator.  Blocking: at start.
 */
int gate_open(const char *db_path, const struct gate_plugin *plugins, size_t plugin_count,
	      const char *const *municipalities, size_t municipality_count, struct gate **out,
	      char *err, size_t err_size);
void gate_free(struct gate *gate);

/*
 * The hot path: plugin is an index into the bound plugins, type into record_certificate_types,
 * municipality into the bound municipalities.  in_flight: the request is past step 7 (step 13),
 * where only immediate suspensions count.  True when suspended (*out, out may be NULL).
 */
bool gate_check_at(const struct gate *gate, size_t plugin, size_t type, size_t municipality,
		   bool in_flight, struct gate_verdict *out);

/*
 * The same question by names: plugin is the instance's name (for an instance that is not bound,
 * also the vendor's plugin name).  certificate NULL: any type (true when some type is
 * suspended); municipality NULL: any municipality.  version NULL: the bound instance's version.
 */
bool gate_check(const struct gate *gate, const char *plugin, const char *version,
		const char *certificate, const char *municipality, bool in_flight,
		struct gate_verdict *out);

/* Index of a bound plugin or municipality, or -1. */
long gate_plugin_index(const struct gate *gate, const char *name);
long gate_municipality_index(const struct gate *gate, const char *code);

/* --- changes: made durable by gate_persist() (any thread), then gate_apply() (loop) ---------- */

enum gate_change_kind {
	GATE_LOCAL_SUSPEND,  /* plugin, types, mode, reason */
	GATE_LOCAL_RESUME,   /* plugin, types */
	GATE_AUTO_SUSPEND,   /* plugin, reason */
	GATE_AUTO_ACK,	     /* plugin */
	GATE_MINISTRY_APPLY, /* list (owned by the change until gate_apply() takes it) */
};

enum gate_status {
	GATE_OK = 0,
	GATE_NOT_NEWER = 1, /* GATE_MINISTRY_APPLY: sequence not above the stored one */
	GATE_FAILED = -1,   /* the store could not be written: nothing changed */
};

struct gate_change {
	enum gate_change_kind kind;
	char plugin[GATE_PLUGIN_MAX + 1];
	uint32_t types; /* bit i: record_certificate_types[i] */
	enum gate_mode mode;
	char reason[GATE_REASON_MAX];
	time_t at; /* when the change was asked for: a new suspension's `since` */
	struct suslist *list;
	/* Filled by gate_persist(). */
	int status;
	uint64_t stored_sequence; /* GATE_NOT_NEWER: the sequence already in force */
	char err[256];
};

/* Writes the change to db_path in one transaction (blocking); sets c->status. */
void gate_persist(const char *db_path, struct gate_change *c);

/*
 * Applies a change gate_persist() made durable (c->status GATE_OK) to memory: in force for the
 * next check.  Returns the number of suspensions that changed (0: it was already so; for a
 * ministry list, the entries added or removed by id).  Always takes c->list (a list not newer
 * than the one in force is freed).  Loop thread.
 */
int gate_apply(struct gate *gate, struct gate_change *c);

/*
 * An auto suspension in memory at once, before gate_persist(): an integrity fault must stop the
 * plugin for the very next request.  1 new, 0 already suspended so, -1 out of memory.
 */
int gate_suspend_auto(struct gate *gate, const char *plugin, const char *reason, time_t now);

/* --- what is in force ------------------------------------------------------------------------ */

/* The ministry list in force (NULL: none), its sequence (0 without), whether it expired. */
const struct suslist *gate_ministry_list(const struct gate *gate);
uint64_t gate_ministry_sequence(const struct gate *gate);
bool gate_ministry_expired(const struct gate *gate, time_t now);

/* One suspension as listed by GET /v1/suspensions. */
struct gate_entry_view {
	enum gate_source source;
	const char *plugin;
	const char *id;		    /* ministry entry id, else "" */
	uint32_t types;		    /* bit per type; all bits: every type */
	const char *versions;	    /* NULL: every version */
	const char *municipalities; /* comma-separated codes, NULL: every municipality */
	enum gate_mode mode;
	const char *reason;
	time_t since;
};

/* Number of suspensions in force, and suspension i (< count): ministry, auto, local. */
size_t gate_entry_count(const struct gate *gate);
void gate_entry_at(const struct gate *gate, size_t i, struct gate_entry_view *out);

/*
 * Whether suspension i (< count) applies to the bound instance plugin, at its version, for some
 * type and municipality: the entries GET /v1/plugins shows for it.
 */
bool gate_entry_applies(const struct gate *gate, size_t i, const char *plugin);

/*
 * Whether source holds a suspension of plugin for any of types (0: any type), at the bound
 * instance's version, in some municipality.
 */
bool gate_held_by(const struct gate *gate, enum gate_source source, const char *plugin,
		  uint32_t types, struct gate_verdict *out);

/* The source's name as the API spells it: "ministry", "auto", "local". */
const char *gate_source_name(enum gate_source source);
const char *gate_mode_name(enum gate_mode mode);
/* Every certificate type's bit. */
uint32_t gate_all_types(void);

#endif
