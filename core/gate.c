/*
 * gate.c: suspensions in memory, their verdict table and their store (contract in gate.h).
 *
 * Every suspension in force is one struct gate_entry in one array, kept sorted by source
 * (ministry, auto, local) then plugin, so listings come out in the order of strength.  The
 * verdict table holds, for each bound (plugin, type, municipality) and each step (7, 13), a
 * pointer to the strongest matching entry or NULL; it is rebuilt after every change (changes
 * are rare: a list, an operator's command, an integrity fault) from the entries of each bound
 * plugin only, so even a list of thousands of entries for other vendors costs little.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "gate.h"
#include "record.h"

#define GATE_TYPES	     RECORD_CERTIFICATE_TYPE_COUNT
#define GATE_SCHEMA_VERSION  2
#define GATE_BUSY_TIMEOUT_MS 5000
#define GATE_VERSION_MAX     64

struct gate_entry {
	enum gate_source source;
	char plugin[GATE_PLUGIN_MAX + 1];
	char id[GATE_ID_MAX + 1];
	uint32_t types;
	char *versions;	   /* NULL: every version */
	char (*munis)[7];  /* NULL: every municipality */
	size_t muni_count; /* 0 with munis NULL */
	char *munis_text;  /* "141003,141011" for listings; NULL with munis */
	enum gate_mode mode;
	char reason[GATE_REASON_MAX];
	time_t since;
};

struct gate_bound {
	char name[GATE_PLUGIN_MAX + 1];	  /* the instance, as the city named it */
	char plugin[GATE_PLUGIN_MAX + 1]; /* the plugin it runs, as its vendor named it */
	char version[GATE_VERSION_MAX];
};

struct gate {
	struct gate_bound *plugins;
	size_t plugin_count;
	char (*munis)[7];
	size_t muni_count;
	struct gate_entry *entries;
	size_t count, cap;
	struct suslist *list; /* the ministry list in force */
	/* [plugin][type][municipality][step]: the strongest matching entry, or NULL. */
	const struct gate_entry **table;
};

static const char *const gate_source_names[] = {"ministry", "auto", "local"};

const char *gate_source_name(enum gate_source source)
{
	return (unsigned)source < GATE_SOURCE_COUNT ? gate_source_names[source] : "unknown";
}

const char *gate_mode_name(enum gate_mode mode)
{
	return mode == GATE_DRAIN ? "drain" : "immediate";
}

uint32_t gate_all_types(void)
{
	return (1u << GATE_TYPES) - 1u;
}

static void gate_entry_clear(struct gate_entry *e)
{
	free(e->versions);
	free(e->munis);
	free(e->munis_text);
}

/* --- matching ------------------------------------------------------------------------------ */

/*
 * Ministry entries name the plugin as its vendor ships it (the ministry cannot know what each
 * city called its instances); local and auto ones name the instance.
 */
static bool gate_entry_matches(const struct gate_entry *e, const char *instance, const char *plugin,
			       const char *version, uint32_t types, const char *municipality,
			       bool in_flight)
{
	const char *name = e->source == GATE_MINISTRY ? plugin : instance;
	if ((e->types & types) == 0 || (in_flight && e->mode != GATE_IMMEDIATE) ||
	    strcmp(e->plugin, name) != 0)
		return false;
	if (e->versions != NULL && !suslist_version_matches(e->versions, version))
		return false;
	if (e->munis == NULL || municipality == NULL)
		return true;
	for (size_t i = 0; i < e->muni_count; i++)
		if (strcmp(e->munis[i], municipality) == 0)
			return true;
	return false;
}

/* Stronger: the earlier source, then immediate before drain, then the older one. */
static bool gate_stronger(const struct gate_entry *a, const struct gate_entry *b)
{
	if (b == NULL)
		return true;
	if (a->source != b->source)
		return a->source < b->source;
	if (a->mode != b->mode)
		return a->mode == GATE_IMMEDIATE;
	return a->since < b->since;
}

static const struct gate_entry *gate_eval(const struct gate *gate, const char *instance,
					  const char *plugin, const char *version, uint32_t types,
					  const char *municipality, bool in_flight)
{
	const struct gate_entry *best = NULL;
	for (size_t i = 0; i < gate->count; i++) {
		const struct gate_entry *e = &gate->entries[i];
		if (gate_entry_matches(e, instance, plugin, version, types, municipality,
				       in_flight) &&
		    gate_stronger(e, best))
			best = e;
	}
	return best;
}

static size_t gate_slot(const struct gate *gate, size_t plugin, size_t type, size_t muni,
			bool in_flight)
{
	return ((plugin * GATE_TYPES + type) * gate->muni_count + muni) * 2 + (in_flight ? 1 : 0);
}

static int gate_entry_cmp(const void *pa, const void *pb)
{
	const struct gate_entry *a = pa, *b = pb;
	if (a->source != b->source)
		return a->source < b->source ? -1 : 1;
	int c = strcmp(a->plugin, b->plugin);
	if (c != 0)
		return c;
	return a->types < b->types ? -1 : a->types > b->types;
}

/* Sorts the entries and recomputes every verdict.  Loop thread, after every change. */
static void gate_rebuild(struct gate *gate)
{
	/* Ministry entries stay first, in the list's order; the others are sorted. */
	size_t ministry = 0;
	while (ministry < gate->count && gate->entries[ministry].source == GATE_MINISTRY)
		ministry++;
	qsort(gate->entries + ministry, gate->count - ministry, sizeof *gate->entries,
	      gate_entry_cmp);
	if (gate->table == NULL)
		return;
	for (size_t p = 0; p < gate->plugin_count; p++) {
		const struct gate_bound *b = &gate->plugins[p];
		for (size_t t = 0; t < GATE_TYPES; t++)
			for (size_t m = 0; m < gate->muni_count; m++)
				for (int f = 0; f < 2; f++)
					gate->table[gate_slot(gate, p, t, m, f)] =
					    gate_eval(gate, b->name, b->plugin, b->version, 1u << t,
						      gate->munis[m], f == 1);
	}
}

static void gate_verdict_fill(const struct gate_entry *e, struct gate_verdict *out)
{
	if (out == NULL)
		return;
	out->source = e->source;
	snprintf(out->reason, sizeof out->reason, "%s", e->reason);
	out->since = e->since;
	out->immediate = e->mode == GATE_IMMEDIATE;
	snprintf(out->id, sizeof out->id, "%s", e->id);
}

bool gate_check_at(const struct gate *gate, size_t plugin, size_t type, size_t municipality,
		   bool in_flight, struct gate_verdict *out)
{
	if (plugin >= gate->plugin_count || type >= GATE_TYPES || municipality >= gate->muni_count)
		return false;
	const struct gate_entry *e =
	    gate->table[gate_slot(gate, plugin, type, municipality, in_flight)];
	if (e == NULL)
		return false;
	gate_verdict_fill(e, out);
	return true;
}

long gate_plugin_index(const struct gate *gate, const char *name)
{
	for (size_t i = 0; name != NULL && i < gate->plugin_count; i++)
		if (strcmp(gate->plugins[i].name, name) == 0)
			return (long)i;
	return -1;
}

long gate_municipality_index(const struct gate *gate, const char *code)
{
	for (size_t i = 0; code != NULL && i < gate->muni_count; i++)
		if (strcmp(gate->munis[i], code) == 0)
			return (long)i;
	return -1;
}

bool gate_check(const struct gate *gate, const char *plugin, const char *version,
		const char *certificate, const char *municipality, bool in_flight,
		struct gate_verdict *out)
{
	long p = gate_plugin_index(gate, plugin);
	long t = certificate != NULL ? record_certificate_index(certificate) : -1;
	long m = gate_municipality_index(gate, municipality);
	if (p >= 0 && t >= 0 && m >= 0 &&
	    (version == NULL || strcmp(version, gate->plugins[p].version) == 0))
		return gate_check_at(gate, (size_t)p, (size_t)t, (size_t)m, in_flight, out);
	if (version == NULL && p >= 0)
		version = gate->plugins[p].version;
	uint32_t types = t >= 0 ? 1u << t : certificate == NULL ? gate_all_types() : 0;
	const struct gate_entry *e =
	    gate_eval(gate, plugin, p >= 0 ? gate->plugins[p].plugin : plugin, version, types,
		      municipality, in_flight);
	if (e == NULL)
		return false;
	gate_verdict_fill(e, out);
	return true;
}

/* --- entries ------------------------------------------------------------------------------- */

static struct gate_entry *gate_add(struct gate *gate)
{
	if (gate->count == gate->cap) {
		size_t cap = gate->cap ? 2 * gate->cap : 16;
		struct gate_entry *n = realloc(gate->entries, cap * sizeof *n);
		if (n == NULL)
			return NULL;
		gate->entries = n;
		gate->cap = cap;
	}
	struct gate_entry *e = &gate->entries[gate->count++];
	memset(e, 0, sizeof *e);
	return e;
}

static void gate_remove_at(struct gate *gate, size_t i)
{
	gate_entry_clear(&gate->entries[i]);
	memmove(&gate->entries[i], &gate->entries[i + 1],
		(gate->count - i - 1) * sizeof *gate->entries);
	gate->count--;
}

static struct gate_entry *gate_find(struct gate *gate, enum gate_source source, const char *plugin,
				    uint32_t types)
{
	for (size_t i = 0; i < gate->count; i++) {
		struct gate_entry *e = &gate->entries[i];
		if (e->source == source && e->types == types && strcmp(e->plugin, plugin) == 0)
			return e;
	}
	return NULL;
}

/* A local suspension of one type: new (1), updated reason or mode (1), unchanged (0), -1. */
static int gate_put_local(struct gate *gate, const char *plugin, uint32_t type, enum gate_mode mode,
			  const char *reason, time_t since)
{
	struct gate_entry *e = gate_find(gate, GATE_LOCAL, plugin, type);
	if (e != NULL) {
		if (e->mode == mode && strcmp(e->reason, reason) == 0)
			return 0;
		e->mode = mode;
		snprintf(e->reason, sizeof e->reason, "%s", reason);
		return 1;
	}
	if ((e = gate_add(gate)) == NULL)
		return -1;
	e->source = GATE_LOCAL;
	snprintf(e->plugin, sizeof e->plugin, "%s", plugin);
	e->types = type;
	e->mode = mode;
	snprintf(e->reason, sizeof e->reason, "%s", reason);
	e->since = since;
	return 1;
}

static int gate_put_auto(struct gate *gate, const char *plugin, const char *reason, time_t since)
{
	if (gate_find(gate, GATE_AUTO, plugin, gate_all_types()) != NULL)
		return 0; /* already suspended: keep the first fault's time and reason */
	struct gate_entry *e = gate_add(gate);
	if (e == NULL)
		return -1;
	e->source = GATE_AUTO;
	snprintf(e->plugin, sizeof e->plugin, "%s", plugin);
	e->types = gate_all_types();
	e->mode = GATE_IMMEDIATE;
	snprintf(e->reason, sizeof e->reason, "%s", reason);
	e->since = since;
	return 1;
}

static size_t gate_drop(struct gate *gate, enum gate_source source, const char *plugin,
			uint32_t types)
{
	size_t dropped = 0;
	for (size_t i = gate->count; i-- > 0;) {
		const struct gate_entry *e = &gate->entries[i];
		if (e->source == source && (plugin == NULL || strcmp(e->plugin, plugin) == 0) &&
		    (e->types & types) != 0 && (e->types & ~types) == 0) {
			gate_remove_at(gate, i);
			dropped++;
		}
	}
	return dropped;
}

/* The entries of a ministry list, placed first in list order.  0 or -1 (out of memory). */
static int gate_put_ministry(struct gate *gate, const struct suslist *list, time_t since)
{
	size_t n = suslist_count(list), old = gate->count;
	for (size_t i = 0; i < n; i++) {
		const struct suslist_entry *se = suslist_entry_at(list, i);
		struct gate_entry *e = gate_add(gate);
		if (e == NULL)
			return -1;
		e->source = GATE_MINISTRY;
		snprintf(e->plugin, sizeof e->plugin, "%s", suslist_entry_plugin(se));
		snprintf(e->id, sizeof e->id, "%s", suslist_entry_id(se));
		snprintf(e->reason, sizeof e->reason, "%s", suslist_entry_reason(se));
		e->mode = suslist_entry_mode(se) == SUSLIST_DRAIN ? GATE_DRAIN : GATE_IMMEDIATE;
		e->since = since;
		for (size_t c = 0; c < suslist_entry_certificate_count(se); c++) {
			const char *name = suslist_entry_certificate(se, c);
			int t = record_certificate_index(name);
			if (strcmp(name, "*") == 0)
				e->types = gate_all_types();
			else if (t >= 0)
				e->types |= 1u << t;
		}
		const char *versions = suslist_entry_versions(se);
		if (versions != NULL && (e->versions = strdup(versions)) == NULL)
			return -1;
		size_t mc = suslist_entry_municipality_count(se);
		if (!(mc == 1 && strcmp(suslist_entry_municipality(se, 0), "*") == 0)) {
			e->munis = calloc(mc, sizeof *e->munis);
			e->munis_text = calloc(mc, 7);
			if (e->munis == NULL || e->munis_text == NULL)
				return -1;
			e->muni_count = mc;
			for (size_t m = 0; m < mc; m++) {
				snprintf(e->munis[m], sizeof e->munis[m], "%s",
					 suslist_entry_municipality(se, m));
				if (m > 0)
					strcat(e->munis_text, ",");
				strcat(e->munis_text, e->munis[m]);
			}
		}
	}
	/* Move the new entries in front (they were appended). */
	size_t added = gate->count - old;
	struct gate_entry *tmp = malloc((added ? added : 1) * sizeof *tmp);
	if (tmp == NULL)
		return -1;
	memcpy(tmp, gate->entries + old, added * sizeof *tmp);
	memmove(gate->entries + added, gate->entries, old * sizeof *tmp);
	memcpy(gate->entries, tmp, added * sizeof *tmp);
	free(tmp);
	return 0;
}

/* Replaces the ministry list in force (taking list).  Returns entries added + removed by id. */
static int gate_replace_list(struct gate *gate, struct suslist *list, time_t since)
{
	int changed = 0;
	const struct suslist *old = gate->list;
	for (size_t i = 0; old != NULL && i < suslist_count(old); i++) {
		const char *id = suslist_entry_id(suslist_entry_at(old, i));
		bool kept = false;
		for (size_t j = 0; !kept && j < suslist_count(list); j++)
			kept = strcmp(id, suslist_entry_id(suslist_entry_at(list, j))) == 0;
		changed += !kept;
	}
	for (size_t j = 0; j < suslist_count(list); j++) {
		const char *id = suslist_entry_id(suslist_entry_at(list, j));
		bool was = false;
		for (size_t i = 0; !was && old != NULL && i < suslist_count(old); i++)
			was = strcmp(id, suslist_entry_id(suslist_entry_at(old, i))) == 0;
		changed += !was;
	}
	size_t ministry = 0;
	while (ministry < gate->count && gate->entries[ministry].source == GATE_MINISTRY)
		ministry++;
	for (size_t i = 0; i < ministry; i++)
		gate_entry_clear(&gate->entries[i]);
	memmove(gate->entries, gate->entries + ministry,
		(gate->count - ministry) * sizeof *gate->entries);
	gate->count -= ministry;
	suslist_free(gate->list);
	gate->list = list;
	if (gate_put_ministry(gate, list, since) != 0)
		return -1;
	return changed;
}

int gate_suspend_auto(struct gate *gate, const char *plugin, const char *reason, time_t now)
{
	int rc = gate_put_auto(gate, plugin, reason, now);
	if (rc > 0)
		gate_rebuild(gate);
	return rc;
}

int gate_apply(struct gate *gate, struct gate_change *c)
{
	int changed = 0;
	switch (c->kind) {
	case GATE_LOCAL_SUSPEND:
		for (size_t t = 0; t < GATE_TYPES; t++) {
			if ((c->types & 1u << t) == 0)
				continue;
			int rc =
			    gate_put_local(gate, c->plugin, 1u << t, c->mode, c->reason, c->at);
			if (rc < 0)
				return -1;
			changed += rc;
		}
		break;
	case GATE_LOCAL_RESUME:
		for (size_t t = 0; t < GATE_TYPES; t++)
			if (c->types & 1u << t)
				changed += (int)gate_drop(gate, GATE_LOCAL, c->plugin, 1u << t);
		break;
	case GATE_AUTO_SUSPEND:
		changed = gate_put_auto(gate, c->plugin, c->reason, c->at);
		break;
	case GATE_AUTO_ACK:
		changed = (int)gate_drop(gate, GATE_AUTO, c->plugin, gate_all_types());
		break;
	case GATE_MINISTRY_APPLY:
		if (c->list != NULL && (gate->list == NULL ||
					suslist_sequence(c->list) > suslist_sequence(gate->list)))
			changed = gate_replace_list(gate, c->list, c->at);
		else
			suslist_free(c->list); /* a newer one was applied meanwhile */
		c->list = NULL;
		break;
	}
	gate_rebuild(gate);
	return changed;
}

/* --- what is in force ------------------------------------------------------------------------ */

const struct suslist *gate_ministry_list(const struct gate *gate)
{
	return gate->list;
}

uint64_t gate_ministry_sequence(const struct gate *gate)
{
	return gate->list != NULL ? suslist_sequence(gate->list) : 0;
}

bool gate_ministry_expired(const struct gate *gate, time_t now)
{
	return gate->list != NULL && suslist_expired(gate->list, now);
}

size_t gate_entry_count(const struct gate *gate)
{
	return gate->count;
}

void gate_entry_at(const struct gate *gate, size_t i, struct gate_entry_view *out)
{
	const struct gate_entry *e = &gate->entries[i];
	*out = (struct gate_entry_view){.source = e->source,
					.plugin = e->plugin,
					.id = e->id,
					.types = e->types,
					.versions = e->versions,
					.municipalities = e->munis_text,
					.mode = e->mode,
					.reason = e->reason,
					.since = e->since};
}

bool gate_entry_applies(const struct gate *gate, size_t i, const char *plugin)
{
	long p = gate_plugin_index(gate, plugin);
	if (p < 0 || i >= gate->count)
		return false;
	return gate_entry_matches(&gate->entries[i], plugin, gate->plugins[p].plugin,
				  gate->plugins[p].version, gate_all_types(), NULL, false);
}

bool gate_held_by(const struct gate *gate, enum gate_source source, const char *plugin,
		  uint32_t types, struct gate_verdict *out)
{
	if (types == 0)
		types = gate_all_types();
	long p = gate_plugin_index(gate, plugin);
	const char *version = p >= 0 ? gate->plugins[p].version : NULL;
	const char *vendor_name = p >= 0 ? gate->plugins[p].plugin : plugin;
	for (size_t i = 0; i < gate->count; i++) {
		const struct gate_entry *e = &gate->entries[i];
		if (e->source == source &&
		    gate_entry_matches(e, plugin, vendor_name, version, types, NULL, false)) {
			gate_verdict_fill(e, out);
			return true;
		}
	}
	return false;
}

/* --- the store ----------------------------------------------------------------------------- */

static const char gate_schema[] =
    "CREATE TABLE IF NOT EXISTS suspensions ("
    " source TEXT NOT NULL CHECK (source IN ('auto', 'local')),"
    " plugin TEXT NOT NULL,"
    " certificate TEXT NOT NULL," /* a type, or '*' for an auto suspension */
    " reason TEXT NOT NULL,"
    " since INTEGER NOT NULL,"
    " mode TEXT NOT NULL CHECK (mode IN ('immediate', 'drain')),"
    " PRIMARY KEY (source, plugin, certificate));"
    "CREATE TABLE IF NOT EXISTS ministry_list ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " sequence TEXT NOT NULL," /* decimal: an unsigned 64-bit value does not fit INTEGER */
    " list BLOB NOT NULL,"     /* the signed list exactly as verified */
    " received_at INTEGER NOT NULL);";

/*
 * Version 1 (issue 5) kept only auto suspensions, one row per (source, plugin): they move into
 * the per-type table as certificate '*', mode immediate.
 */
static const char gate_migrate_v1[] =
    "ALTER TABLE suspensions RENAME TO suspensions_v1;" /* before the new one is created */
    "%s"
    "INSERT INTO suspensions (source, plugin, certificate, reason, since, mode)"
    " SELECT source, plugin, '*', reason, since, 'immediate' FROM suspensions_v1;"
    "DROP TABLE suspensions_v1;";

static int gate_fail_db(sqlite3 *db, const char *path, char *err, size_t err_size)
{
	snprintf(err, err_size, "suspension store %s: %s", path,
		 db ? sqlite3_errmsg(db) : "out of memory");
	return -1;
}

static int gate_query_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
		 sqlite3_step(st) == SQLITE_ROW;
	if (ok)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

/* Opens the store (WAL, full sync: a suspension must survive a crash) with its tables. */
static sqlite3 *gate_db_open(const char *path, char *err, size_t err_size)
{
	sqlite3 *db = NULL;
	int version = 0, old = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
		SQLITE_OK ||
	    sqlite3_busy_timeout(db, GATE_BUSY_TIMEOUT_MS) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    gate_query_int(db, "PRAGMA user_version", &version) != 0 ||
	    gate_query_int(db,
			   "SELECT count(*) FROM sqlite_master WHERE name = 'suspensions' AND "
			   "sql NOT LIKE '%certificate%'",
			   &old) != 0)
		goto fail;
	if (version > GATE_SCHEMA_VERSION) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		snprintf(err, err_size,
			 "suspension store %s was written by a newer madoguchi (schema %d); "
			 "start that version or restore the file",
			 path, version);
		sqlite3_close(db);
		return NULL;
	}
	char *sql = old ? sqlite3_mprintf(gate_migrate_v1, gate_schema)
			: sqlite3_mprintf("%s", gate_schema);
	int rc = sql != NULL ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
	sqlite3_free(sql);
	if (rc != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA user_version = 2; COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	return db;
fail:
	gate_fail_db(db, path, err, err_size);
	sqlite3_close(db);
	return NULL;
}

static enum gate_mode gate_mode_of(const char *s)
{
	return s != NULL && strcmp(s, "drain") == 0 ? GATE_DRAIN : GATE_IMMEDIATE;
}

/* Loads the stored suspensions and list into gate.  0 or -1 (err filled). */
static int gate_load(struct gate *gate, sqlite3 *db, const char *path, char *err, size_t err_size)
{
	sqlite3_stmt *st = NULL;
	int step;
	if (sqlite3_prepare_v2(db,
			       "SELECT source, plugin, certificate, reason, since, mode "
			       "FROM suspensions",
			       -1, &st, NULL) != SQLITE_OK)
		return gate_fail_db(db, path, err, err_size);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *source = (const char *)sqlite3_column_text(st, 0);
		const char *plugin = (const char *)sqlite3_column_text(st, 1);
		const char *cert = (const char *)sqlite3_column_text(st, 2);
		const char *reason = (const char *)sqlite3_column_text(st, 3);
		time_t since = (time_t)sqlite3_column_int64(st, 4);
		const char *mode = (const char *)sqlite3_column_text(st, 5);
		int rc = 0, t = record_certificate_index(cert);
		if (strcmp(source, "auto") == 0)
			rc = gate_put_auto(gate, plugin, reason, since);
		else if (t >= 0)
			rc = gate_put_local(gate, plugin, 1u << t, gate_mode_of(mode), reason,
					    since);
		else
			continue; /* a type this version does not know cannot match a request */
		if (rc < 0) {
			sqlite3_finalize(st);
			snprintf(err, err_size, "out of memory");
			return -1;
		}
	}
	sqlite3_finalize(st);
	if (step != SQLITE_DONE)
		return gate_fail_db(db, path, err, err_size);

	if (sqlite3_prepare_v2(db, "SELECT list, received_at FROM ministry_list WHERE id = 1", -1,
			       &st, NULL) != SQLITE_OK)
		return gate_fail_db(db, path, err, err_size);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		const char *raw = sqlite3_column_blob(st, 0);
		size_t len = (size_t)sqlite3_column_bytes(st, 0);
		time_t at = (time_t)sqlite3_column_int64(st, 1);
		struct suslist *list = NULL;
		struct suslist_error serr;
		if (suslist_parse_stored(raw, len, at, &list, &serr) != SUSLIST_OK) {
			sqlite3_finalize(st);
			snprintf(err, err_size,
				 "suspension store %s: the stored ministry list cannot be read "
				 "(%s%s%s); restore the file from a backup: starting without it "
				 "would lift its suspensions",
				 path, serr.field, serr.field[0] ? ": " : "", serr.message);
			return -1;
		}
		if (gate_replace_list(gate, list, at) < 0) {
			sqlite3_finalize(st);
			snprintf(err, err_size, "out of memory");
			return -1;
		}
	} else if (step != SQLITE_DONE) {
		sqlite3_finalize(st);
		return gate_fail_db(db, path, err, err_size);
	}
	sqlite3_finalize(st);
	return 0;
}

void gate_free(struct gate *gate)
{
	if (gate == NULL)
		return;
	for (size_t i = 0; i < gate->count; i++)
		gate_entry_clear(&gate->entries[i]);
	free(gate->entries);
	suslist_free(gate->list);
	free(gate->table);
	free(gate->plugins);
	free(gate->munis);
	free(gate);
}

int gate_open(const char *db_path, const struct gate_plugin *plugins, size_t plugin_count,
	      const char *const *municipalities, size_t municipality_count, struct gate **out,
	      char *err, size_t err_size)
{
	*out = NULL;
	struct gate *gate = calloc(1, sizeof *gate);
	if (gate == NULL)
		goto oom;
	gate->plugins = calloc(plugin_count ? plugin_count : 1, sizeof *gate->plugins);
	gate->munis = calloc(municipality_count ? municipality_count : 1, sizeof *gate->munis);
	/* Never NULL, so qsort and memmove of zero entries get a valid pointer. */
	gate->entries = calloc(16, sizeof *gate->entries);
	gate->cap = 16;
	if (gate->plugins == NULL || gate->munis == NULL || gate->entries == NULL)
		goto oom;
	gate->plugin_count = plugin_count;
	for (size_t i = 0; i < plugin_count; i++) {
		snprintf(gate->plugins[i].name, sizeof gate->plugins[i].name, "%s",
			 plugins[i].name);
		snprintf(gate->plugins[i].plugin, sizeof gate->plugins[i].plugin, "%s",
			 plugins[i].plugin ? plugins[i].plugin : plugins[i].name);
		snprintf(gate->plugins[i].version, sizeof gate->plugins[i].version, "%s",
			 plugins[i].version ? plugins[i].version : "");
	}
	gate->muni_count = municipality_count;
	for (size_t i = 0; i < municipality_count; i++)
		snprintf(gate->munis[i], sizeof gate->munis[i], "%s", municipalities[i]);
	size_t slots = plugin_count * GATE_TYPES * municipality_count * 2;
	gate->table = calloc(slots ? slots : 1, sizeof *gate->table);
	if (gate->table == NULL)
		goto oom;
	if (db_path != NULL) {
		sqlite3 *db = gate_db_open(db_path, err, err_size);
		if (db == NULL) {
			gate_free(gate);
			return -1;
		}
		int rc = gate_load(gate, db, db_path, err, err_size);
		sqlite3_close(db);
		if (rc != 0) {
			gate_free(gate);
			return -1;
		}
	}
	gate_rebuild(gate);
	*out = gate;
	return 0;
oom:
	gate_free(gate);
	snprintf(err, err_size, "out of memory");
	return -1;
}

/* Runs one statement with the change's plugin (?1) and text (?2..) bound. */
static int gate_exec(sqlite3 *db, const char *sql, const char *plugin, const char *a, const char *b,
		     sqlite3_int64 since, const char *mode)
{
	sqlite3_stmt *st = NULL;
	int ok =
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(st, 1, plugin, -1, SQLITE_STATIC) == SQLITE_OK &&
	    (a == NULL || sqlite3_bind_text(st, 2, a, -1, SQLITE_STATIC) == SQLITE_OK) &&
	    (b == NULL || sqlite3_bind_text(st, 3, b, -1, SQLITE_STATIC) == SQLITE_OK) &&
	    (mode == NULL || (sqlite3_bind_int64(st, 4, since) == SQLITE_OK &&
			      sqlite3_bind_text(st, 5, mode, -1, SQLITE_STATIC) == SQLITE_OK)) &&
	    sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

/* The ministry list's part of gate_persist(): inside the open transaction. */
static int gate_persist_list(sqlite3 *db, struct gate_change *c)
{
	sqlite3_stmt *st = NULL;
	int ok = sqlite3_prepare_v2(db, "SELECT sequence FROM ministry_list WHERE id = 1", -1, &st,
				    NULL) == SQLITE_OK;
	int step = ok ? sqlite3_step(st) : SQLITE_ERROR;
	if (step == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		c->stored_sequence = text ? strtoull(text, NULL, 10) : 0;
		if (suslist_sequence(c->list) <= c->stored_sequence) {
			sqlite3_finalize(st);
			return GATE_NOT_NEWER;
		}
	}
	sqlite3_finalize(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return GATE_FAILED;
	char seq[24];
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)suslist_sequence(c->list));
	size_t len = 0;
	const char *raw = suslist_raw(c->list, &len);
	ok = sqlite3_prepare_v2(db,
				"INSERT OR REPLACE INTO ministry_list (id, sequence, list, "
				"received_at) VALUES (1, ?1, ?2, ?3)",
				-1, &st, NULL) == SQLITE_OK &&
	     sqlite3_bind_text(st, 1, seq, -1, SQLITE_STATIC) == SQLITE_OK &&
	     sqlite3_bind_blob(st, 2, raw, (int)len, SQLITE_STATIC) == SQLITE_OK &&
	     sqlite3_bind_int64(st, 3, (sqlite3_int64)c->at) == SQLITE_OK &&
	     sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok ? GATE_OK : GATE_FAILED;
}

void gate_persist(const char *db_path, struct gate_change *c)
{
	c->status = GATE_FAILED;
	c->err[0] = '\0';
	sqlite3 *db = gate_db_open(db_path, c->err, sizeof c->err);
	if (db == NULL)
		return;
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? GATE_OK
										    : GATE_FAILED;
	for (size_t t = 0; rc == GATE_OK && t < GATE_TYPES; t++) {
		if ((c->types & 1u << t) == 0)
			continue;
		const char *type = record_certificate_types[t];
		if (c->kind == GATE_LOCAL_SUSPEND)
			rc = gate_exec(db,
				       "INSERT INTO suspensions (source, plugin, certificate, "
				       "reason, since, mode) VALUES ('local', ?1, ?3, ?2, ?4, ?5) "
				       "ON CONFLICT (source, plugin, certificate) DO UPDATE SET "
				       "reason = excluded.reason, mode = excluded.mode",
				       c->plugin, c->reason, type, (sqlite3_int64)c->at,
				       gate_mode_name(c->mode));
		else if (c->kind == GATE_LOCAL_RESUME)
			rc = gate_exec(db,
				       "DELETE FROM suspensions WHERE source = 'local' AND "
				       "plugin = ?1 AND certificate = ?2",
				       c->plugin, type, NULL, 0, NULL);
	}
	if (rc == GATE_OK && c->kind == GATE_AUTO_SUSPEND)
		rc = gate_exec(db,
			       "INSERT OR IGNORE INTO suspensions (source, plugin, certificate, "
			       "reason, since, mode) VALUES ('auto', ?1, '*', ?2, ?4, ?5)",
			       c->plugin, c->reason, NULL, (sqlite3_int64)c->at, "immediate");
	else if (rc == GATE_OK && c->kind == GATE_AUTO_ACK)
		rc = gate_exec(db, "DELETE FROM suspensions WHERE source = 'auto' AND plugin = ?1",
			       c->plugin, NULL, NULL, 0, NULL);
	else if (rc == GATE_OK && c->kind == GATE_MINISTRY_APPLY)
		rc = gate_persist_list(db, c);
	if (rc != GATE_OK) {
		if (rc == GATE_FAILED)
			snprintf(c->err, sizeof c->err, "suspension store %s: %s", db_path,
				 sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	} else if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(c->err, sizeof c->err, "suspension store %s: %s", db_path,
			 sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		rc = GATE_FAILED;
	}
	sqlite3_close(db);
	c->status = rc;
}
