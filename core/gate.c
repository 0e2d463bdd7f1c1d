/*
 * gate.c: suspensions held in memory and the gate's check (contract in gate.h).
 *
 * The set is small (a handful of plugin instances), so a linked list searched per check is
 * both the simplest and the fastest structure; the loop thread owns it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "gate.h"

struct gate_suspension {
	struct gate_suspension *next;
	enum gate_source source;
	char plugin[64];
	char reason[GATE_REASON_MAX];
	time_t since;
	bool immediate;
};

struct gate {
	struct gate_suspension *list;
};

struct gate *gate_new(void)
{
	return calloc(1, sizeof(struct gate));
}

void gate_free(struct gate *gate)
{
	if (gate == NULL)
		return;
	while (gate->list != NULL) {
		struct gate_suspension *s = gate->list;
		gate->list = s->next;
		free(s);
	}
	free(gate);
}

bool gate_check(const struct gate *gate, const char *plugin, const char *version,
		const char *certificate, const char *municipality, bool in_flight,
		struct gate_verdict *out)
{
	const struct gate_suspension *best = NULL;
	(void)version;	    /* version ranges come with the ministry's lists */
	(void)certificate;  /* so do per-type scopes: an auto suspension covers every type */
	(void)municipality; /* and municipality scopes */
	for (const struct gate_suspension *s = gate->list; s != NULL; s = s->next) {
		if (strcmp(s->plugin, plugin) != 0 || (in_flight && !s->immediate))
			continue;
		if (best == NULL || s->source < best->source)
			best = s;
	}
	if (best == NULL)
		return false;
	if (out != NULL) {
		out->source = best->source;
		snprintf(out->reason, sizeof out->reason, "%s", best->reason);
		out->since = best->since;
		out->immediate = best->immediate;
	}
	return true;
}

/* Adds an automatic suspension to the list; 1 new, 0 already there, -1 out of memory. */
static int gate_add_auto(struct gate *gate, const char *plugin, const char *reason, time_t since)
{
	for (struct gate_suspension *s = gate->list; s != NULL; s = s->next)
		if (s->source == GATE_AUTO && strcmp(s->plugin, plugin) == 0)
			return 0; /* already suspended: keep the first fault's time and reason */
	struct gate_suspension *s = calloc(1, sizeof *s);
	if (s == NULL)
		return -1;
	s->source = GATE_AUTO;
	snprintf(s->plugin, sizeof s->plugin, "%s", plugin);
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	s->since = since;
	s->immediate = true;
	s->next = gate->list;
	gate->list = s;
	return 1;
}

int gate_suspend_auto(struct gate *gate, const char *plugin, const char *reason, time_t now)
{
	return gate_add_auto(gate, plugin, reason, now);
}

static const char gate_schema[] = "CREATE TABLE IF NOT EXISTS suspensions ("
				  " source TEXT NOT NULL,"
				  " plugin TEXT NOT NULL,"
				  " reason TEXT NOT NULL,"
				  " since INTEGER NOT NULL,"
				  " PRIMARY KEY (source, plugin))";

/* Opens the store (WAL, full sync: a suspension must survive a crash) with its table. */
static sqlite3 *gate_db_open(const char *path, char *err, size_t err_size)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
		SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_exec(db, gate_schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, err_size, "suspension store %s: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

int gate_open(const char *db_path, struct gate **out, char *err, size_t err_size)
{
	*out = NULL;
	sqlite3 *db = gate_db_open(db_path, err, err_size);
	if (db == NULL)
		return -1;
	struct gate *gate = gate_new();
	sqlite3_stmt *st = NULL;
	int rc = -1;
	if (gate == NULL ||
	    sqlite3_prepare_v2(
		db, "SELECT plugin, reason, since FROM suspensions WHERE source = 'auto'", -1, &st,
		NULL) != SQLITE_OK) {
		snprintf(err, err_size, "suspension store %s: %s", db_path,
			 gate ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (gate_add_auto(gate, (const char *)sqlite3_column_text(st, 0),
				  (const char *)sqlite3_column_text(st, 1),
				  (time_t)sqlite3_column_int64(st, 2)) < 0) {
			snprintf(err, err_size, "out of memory");
			goto out;
		}
	}
	if (step != SQLITE_DONE) {
		snprintf(err, err_size, "suspension store %s: %s", db_path, sqlite3_errmsg(db));
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rc != 0) {
		gate_free(gate);
		return -1;
	}
	*out = gate;
	return 0;
}

int gate_persist_auto(const char *db_path, const char *plugin, const char *reason, time_t since,
		      char *err, size_t err_size)
{
	sqlite3 *db = gate_db_open(db_path, err, err_size);
	sqlite3_stmt *st = NULL;
	if (db == NULL)
		return -1;
	int ok =
	    sqlite3_prepare_v2(db,
			       "INSERT OR IGNORE INTO suspensions (source, plugin, reason, since)"
			       " VALUES ('auto', ?1, ?2, ?3)",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(st, 1, plugin, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)since) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		snprintf(err, err_size, "suspension store %s: %s", db_path, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok ? 0 : -1;
}

bool gate_acknowledge_auto(struct gate *gate, const char *plugin)
{
	for (struct gate_suspension **p = &gate->list; *p != NULL; p = &(*p)->next) {
		struct gate_suspension *s = *p;
		if (s->source == GATE_AUTO && strcmp(s->plugin, plugin) == 0) {
			*p = s->next;
			free(s);
			return true;
		}
	}
	return false;
}

const char *gate_source_name(enum gate_source source)
{
	static const char *const names[] = {"ministry", "auto", "local"};
	return source <= GATE_LOCAL ? names[source] : "unknown";
}
