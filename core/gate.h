/*
 * gate.h: the kill switch's question, asked at steps 7 and 13 of every issuance (DESIGN §3, §6).
 *
 * "Is this plugin instance, for this certificate type, version and municipality, suspended by
 * anyone?"  gate_check() answers from memory on the loop thread.  A suspension has a source
 * (ministry, auto, local), a scope (the plugin; optionally certificate types) and a mode:
 * immediate suspensions also stop in-flight issuances at step 13, drain suspensions only new
 * ones at step 7.  Where several match, the answer names the strongest source: ministry, then
 * auto, then local.
 *
 * This first version holds the automatic suspensions the core sets on an integrity fault
 * (gate_suspend_auto()), which only an explicit local acknowledgement lifts
 * (gate_acknowledge_auto()).  They persist in SQLite (data_dir/gate.sqlite): gate_open() loads
 * them, so they are in force before the first request after a restart; gate_persist_auto()
 * writes one (blocking: the caller runs it on the thread pool).  The ministry's signed lists
 * and local suspensions arrive with the kill switch (issue 6) behind this same interface.
 *
 * Loop thread only, except gate_persist_auto() (any thread).
 */
#ifndef MDG_GATE_H
#define MDG_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum gate_source { GATE_MINISTRY = 0, GATE_AUTO = 1, GATE_LOCAL = 2 };

#define GATE_REASON_MAX 256

/* Why a request may not be served; filled by gate_check(). */
struct gate_verdict {
	enum gate_source source;
	char reason[GATE_REASON_MAX];
	time_t since;
	bool immediate;
};

struct gate;

/* A gate with no suspension; NULL when out of memory. */
struct gate *gate_new(void);

/*
 * A gate with the suspensions stored at db_path (created when missing).  0 with *out, or -1
 * with err filled for an operator.  Blocking: at start.
 */
int gate_open(const char *db_path, struct gate **out, char *err, size_t err_size);

/* Stores plugin's automatic suspension at db_path, durably.  0 or -1 (err filled).  Any thread. */
int gate_persist_auto(const char *db_path, const char *plugin, const char *reason, time_t since,
		      char *err, size_t err_size);
void gate_free(struct gate *gate);

/*
 * True when a suspension matches (the verdict then says which, strongest source first).
 * in_flight: the request is past step 7 (step 13), where only immediate suspensions count.
 */
bool gate_check(const struct gate *gate, const char *plugin, const char *version,
		const char *certificate, const char *municipality, bool in_flight,
		struct gate_verdict *out);

/*
 * Suspends every type of plugin at once (mode immediate, source auto): an integrity fault.
 * reason must hold no personal data.  1 when this is a new suspension (the caller persists it
 * with gate_persist_auto()), 0 when plugin was already suspended so, -1 when out of memory (the
 * caller logs an alert).
 */
int gate_suspend_auto(struct gate *gate, const char *plugin, const char *reason, time_t now);

/* Lifts plugin's automatic suspension (a local, explicit acknowledgement).  True if one was. */
bool gate_acknowledge_auto(struct gate *gate, const char *plugin);

/* The source's name as the API spells it: "ministry", "auto", "local". */
const char *gate_source_name(enum gate_source source);

#endif
