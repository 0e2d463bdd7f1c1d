/*
 * registry.c: the demo municipality's registry file read as neutral records (registry.h).
 *
 * One struct registry is one read-only SQLite connection (SQLITE_OPEN_READONLY |
 * SQLITE_OPEN_NOMUTEX, PRAGMA query_only) with every statement prepared once at open and
 * reset after each use; it must be used by one thread at a time (the sqlite-registry plugin
 * keeps a pool of them, the vendor simulator one).  registry_fetch() maps the tables of
 * plugins/sqlite-registry/README.md to the fields of docs/records.md, in the order that page
 * lists them, so two readers of the same file build identical records.  Fields an option
 * does not ask for, and optional fields whose column is NULL, are absent.
 *
 * Nothing here logs, and no error message carries personal data (no code, name or address):
 * messages name only the table or the step that failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "registry.h"

/* The prepared statements of a connection; registry_open() prepares them all. */
enum reg_stmt {
	ST_RESIDENT,
	ST_HISTORY,
	ST_NAME,
	ST_MEMBERS,
	ST_SEAL,
	ST_TAX,
	ST_INCOMES,
	ST_DEDUCTIONS,
	ST_REGISTER,
	ST_PERSONS,
	ST_EVENTS,
	ST_ATTACHMENTS,
	ST_COUNT
};

/* The latest resident_history row of a resident, as a correlated subquery's condition. */
#define REG_LATEST_HISTORY(alias, code)                                                            \
	alias ".version = (SELECT MAX(version) FROM resident_history WHERE resident_code = " code  \
	      ")"

static const char *const reg_sql[ST_COUNT] = {
    [ST_RESIDENT] = "SELECT r.family_name, r.given_name, r.family_kana, r.given_kana, r.sex, "
		    "r.birth_date, r.relationship, r.my_number, r.became_resident_date, "
		    "r.address_since, r.previous_address, r.domicile, r.domicile_head, "
		    "r.register_id, r.person_no, r.status, r.version, h.household_id, h.address, "
		    "h.householder_code "
		    "FROM residents r JOIN households h ON h.household_id = r.household_id "
		    "WHERE r.resident_code = ?1",
    [ST_HISTORY] = "SELECT version, as_of, changed_at, change_kind, address, address_since, "
		   "previous_address, status, seal_status FROM resident_history "
		   "WHERE resident_code = ?1 ORDER BY version DESC LIMIT 1",
    [ST_NAME] = "SELECT family_name || ' ' || given_name FROM residents WHERE resident_code = ?1",
    /* Every resident of the household with their own latest history row (if any), so that
     * the previous state of a household can be shown member by member. */
    [ST_MEMBERS] = "SELECT r.resident_code, r.family_name, r.given_name, r.family_kana, "
		   "r.given_kana, r.sex, r.birth_date, r.relationship, r.my_number, "
		   "r.became_resident_date, r.address_since, r.previous_address, r.domicile, "
		   "r.domicile_head, r.status, hi.change_kind, hi.address_since, "
		   "hi.previous_address, hi.status "
		   "FROM residents r LEFT JOIN resident_history hi "
		   "ON hi.resident_code = r.resident_code AND " REG_LATEST_HISTORY(
		       "hi", "r.resident_code") " WHERE r.household_id = ?1 ORDER BY r.rowid",
    [ST_SEAL] = "SELECT registration_number, registered_name, seal_text, seal_image, "
		"registered_date, status, abolished_date FROM seals WHERE resident_code = ?1",
    [ST_TAX] = "SELECT fiscal_year, income_year, total_income_yen, total_deductions_yen, "
	       "taxable_income_yen, municipal_tax_yen, prefectural_tax_yen FROM tax_records "
	       "WHERE resident_code = ?1 AND fiscal_year = ?2",
    [ST_INCOMES] = "SELECT kind, revenue_yen, income_yen FROM tax_incomes "
		   "WHERE resident_code = ?1 AND fiscal_year = ?2 ORDER BY seq",
    [ST_DEDUCTIONS] = "SELECT kind, amount_yen FROM tax_deductions "
		      "WHERE resident_code = ?1 AND fiscal_year = ?2 ORDER BY seq",
    [ST_REGISTER] = "SELECT domicile, head_name, created_date, created_reason FROM registers "
		    "WHERE register_id = ?1",
    /* The register's persons with the latest history row of those who live here. */
    [ST_PERSONS] = "SELECT p.person_no, p.family_name, p.given_name, p.family_kana, "
		   "p.given_kana, p.birth_date, p.sex, p.father, p.mother, "
		   "p.parental_relationship, p.spouse_role, p.state, p.removed_reason, "
		   "p.removed_date, hi.change_kind, hi.changed_at "
		   "FROM register_persons p LEFT JOIN resident_history hi "
		   "ON hi.resident_code = p.resident_code AND " REG_LATEST_HISTORY(
		       "hi", "p.resident_code") " WHERE p.register_id = ?1 ORDER BY p.person_no",
    [ST_EVENTS] = "SELECT kind, date, detail FROM register_events "
		  "WHERE register_id = ?1 AND person_no = ?2 ORDER BY seq",
    [ST_ATTACHMENTS] = "SELECT address, since_date FROM attachment_entries "
		       "WHERE register_id = ?1 AND person_no = ?2 ORDER BY seq",
};

struct registry {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char municipality[16];
	char fiscal_year[16];
	int64_t as_of; /* meta.as_of: the file's reference time */
};

/* --- small helpers ------------------------------------------------------------------------ */

static void reg_err(char *err, size_t err_size, const char *msg)
{
	if (err != NULL && err_size > 0)
		snprintf(err, err_size, "%s", msg);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t reg_days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Parses "YYYY-MM-DDTHH:MM:SSZ" into Unix seconds; returns 0 or -1. */
static int reg_parse_time(const char *text, int64_t *out)
{
	int y, mo, d, h, mi, s;
	char z = 0;
	if (text == NULL ||
	    sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z) != 7 ||
	    z != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	*out = reg_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	return 0;
}

/* Column i as text (integers as decimal text), or NULL for SQL NULL. */
static const char *col(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Binds the texts a (and b, when not NULL) to ?1 and ?2 of a statement. */
static int reg_bind(sqlite3_stmt *st, const char *a, const char *b)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT) != SQLITE_OK)
		return -1;
	if (b != NULL && sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT) != SQLITE_OK)
		return -1;
	return 0;
}

/* --- building a reg_record ---------------------------------------------------------------- */

/* The record being built and the fetch's outcome so far: the first failure sticks. */
struct reg_build {
	struct registry *reg;
	struct reg_record *rec;
	uint32_t options;
	enum reg_variant variant;
	int failed;	 /* REG_OK, or the first REG_ERROR */
	const char *why; /* what failed (no personal data) */
	char code[32];	 /* the resident code asked for */
	int history;	 /* ST_HISTORY is on the resident's row (REG_PREVIOUS) */
};

static void build_fail(struct reg_build *b, const char *why)
{
	if (b->failed == REG_OK) {
		b->failed = REG_ERROR;
		b->why = why;
	}
}

static int fields_append(struct reg_build *b, struct reg_field **fields, size_t *count,
			 const char *name, const char *value)
{
	if (value == NULL)
		return 0; /* NULL: the field does not apply and stays absent */
	struct reg_field *nf = realloc(*fields, (*count + 1) * sizeof *nf);
	if (nf == NULL) {
		build_fail(b, "out of memory");
		return -1;
	}
	*fields = nf;
	nf[*count].name = strdup(name);
	nf[*count].value = strdup(value);
	if (nf[*count].name == NULL || nf[*count].value == NULL) {
		free(nf[*count].name);
		free(nf[*count].value);
		build_fail(b, "out of memory");
		return -1;
	}
	(*count)++;
	return 0;
}

static void set_field(struct reg_build *b, const char *name, const char *value)
{
	fields_append(b, &b->rec->fields, &b->rec->field_count, name, value);
}

/* Adds an empty list to the record; returns its index, or -1.  Lists of a record are added
 * before their items, so an index stays valid while items grow. */
static long add_list(struct reg_build *b, const char *name)
{
	struct reg_record *r = b->rec;
	struct reg_list *nl = realloc(r->lists, (r->list_count + 1) * sizeof *nl);
	if (nl == NULL) {
		build_fail(b, "out of memory");
		return -1;
	}
	r->lists = nl;
	memset(&nl[r->list_count], 0, sizeof nl[r->list_count]);
	nl[r->list_count].name = strdup(name);
	if (nl[r->list_count].name == NULL) {
		build_fail(b, "out of memory");
		return -1;
	}
	return (long)r->list_count++;
}

/* Appends an item to list li; the pointer is valid until the next add_item() on that list. */
static struct reg_item *add_item(struct reg_build *b, long li)
{
	if (li < 0)
		return NULL;
	struct reg_list *l = &b->rec->lists[li];
	struct reg_item *ni = realloc(l->items, (l->item_count + 1) * sizeof *ni);
	if (ni == NULL) {
		build_fail(b, "out of memory");
		return NULL;
	}
	l->items = ni;
	memset(&ni[l->item_count], 0, sizeof ni[l->item_count]);
	return &ni[l->item_count++];
}

static void set_item(struct reg_build *b, struct reg_item *it, const char *name, const char *value)
{
	if (it != NULL)
		fields_append(b, &it->fields, &it->field_count, name, value);
}

void reg_record_free(struct reg_record *record)
{
	if (record == NULL)
		return;
	for (size_t i = 0; i < record->field_count; i++) {
		free(record->fields[i].name);
		free(record->fields[i].value);
	}
	free(record->fields);
	for (size_t l = 0; l < record->list_count; l++) {
		struct reg_list *list = &record->lists[l];
		for (size_t i = 0; i < list->item_count; i++) {
			for (size_t f = 0; f < list->items[i].field_count; f++) {
				free(list->items[i].fields[f].name);
				free(list->items[i].fields[f].value);
			}
			free(list->items[i].fields);
		}
		free(list->items);
		free(list->name);
	}
	free(record->lists);
	free(record);
}

/* --- open and close ----------------------------------------------------------------------- */

/* Reads meta: schema_version (major 1), municipality, fiscal_year, as_of. */
static int registry_read_meta(struct registry *reg, char *err, size_t err_size)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(reg->db, "SELECT key, value FROM meta", -1, &st, NULL) !=
	    SQLITE_OK) {
		reg_err(err, err_size, "not a madoguchi registry file (no meta table)");
		return REG_ERROR;
	}
	char schema[16] = "";
	const char *as_of_text = NULL;
	char as_of[32] = "";
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = col(st, 0), *v = col(st, 1);
		if (k == NULL || v == NULL)
			continue;
		if (strcmp(k, "schema_version") == 0)
			snprintf(schema, sizeof schema, "%s", v);
		else if (strcmp(k, "municipality") == 0)
			snprintf(reg->municipality, sizeof reg->municipality, "%s", v);
		else if (strcmp(k, "fiscal_year") == 0)
			snprintf(reg->fiscal_year, sizeof reg->fiscal_year, "%s", v);
		else if (strcmp(k, "as_of") == 0) {
			snprintf(as_of, sizeof as_of, "%s", v);
			as_of_text = as_of;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		reg_err(err, err_size, "cannot read the registry's meta table");
		return REG_ERROR;
	}
	if (schema[0] == '\0' || reg->municipality[0] == '\0' || reg->fiscal_year[0] == '\0' ||
	    as_of_text == NULL) {
		reg_err(err, err_size,
			"not a madoguchi registry file (meta lacks schema_version, municipality, "
			"fiscal_year or as_of)");
		return REG_ERROR;
	}
	if (strtol(schema, NULL, 10) != 1) {
		reg_err(err, err_size,
			"registry schema_version is not 1.x: this reader does not know it");
		return REG_ERROR;
	}
	if (reg_parse_time(as_of_text, &reg->as_of) != 0) {
		reg_err(err, err_size, "registry meta.as_of is not a UTC time");
		return REG_ERROR;
	}
	return REG_OK;
}

int registry_open(const char *path, struct registry **out, char *err, size_t err_size)
{
	*out = NULL;
	struct registry *reg = calloc(1, sizeof *reg);
	if (reg == NULL) {
		reg_err(err, err_size, "out of memory");
		return REG_ERROR;
	}
	if (sqlite3_open_v2(path, &reg->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		char msg[256];
		snprintf(msg, sizeof msg, "cannot open the registry file: %s",
			 reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
		reg_err(err, err_size, msg);
		registry_close(reg);
		return REG_ERROR;
	}
	sqlite3_busy_timeout(reg->db, 2000);
	if (sqlite3_exec(reg->db, "PRAGMA query_only = 1", NULL, NULL, NULL) != SQLITE_OK) {
		char msg[256];
		snprintf(msg, sizeof msg, "cannot use the registry file: %s",
			 sqlite3_errmsg(reg->db));
		reg_err(err, err_size, msg);
		registry_close(reg);
		return REG_ERROR;
	}
	if (registry_read_meta(reg, err, err_size) != REG_OK) {
		registry_close(reg);
		return REG_ERROR;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(reg->db, reg_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &reg->st[i], NULL) != SQLITE_OK) {
			char msg[256];
			snprintf(msg, sizeof msg,
				 "the registry file does not have the expected schema: %s",
				 sqlite3_errmsg(reg->db));
			reg_err(err, err_size, msg);
			registry_close(reg);
			return REG_ERROR;
		}
	}
	*out = reg;
	return REG_OK;
}

void registry_close(struct registry *reg)
{
	if (reg == NULL)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(reg->st[i]);
	sqlite3_close_v2(reg->db);
	free(reg);
}

const char *registry_municipality(const struct registry *reg)
{
	return reg->municipality;
}

/* --- the certificate types ---------------------------------------------------------------- */

/* ST_RESIDENT's columns. */
enum {
	R_FAMILY,
	R_GIVEN,
	R_FAMILY_KANA,
	R_GIVEN_KANA,
	R_SEX,
	R_BIRTH,
	R_RELATIONSHIP,
	R_MY_NUMBER,
	R_BECAME,
	R_ADDRESS_SINCE,
	R_PREVIOUS_ADDRESS,
	R_DOMICILE,
	R_DOMICILE_HEAD,
	R_REGISTER,
	R_PERSON_NO,
	R_STATUS,
	R_VERSION,
	R_HOUSEHOLD,
	R_ADDRESS,
	R_HOUSEHOLDER
};

/* ST_HISTORY's columns. */
enum {
	H_VERSION,
	H_AS_OF,
	H_CHANGED_AT,
	H_KIND,
	H_ADDRESS,
	H_ADDRESS_SINCE,
	H_PREVIOUS_ADDRESS,
	H_STATUS,
	H_SEAL_STATUS
};

/* "family given" of two columns of st into buf. */
static const char *join_name(sqlite3_stmt *st, int family, int given, char *buf, size_t size)
{
	const char *f = col(st, family), *g = col(st, given);
	if (f == NULL || g == NULL)
		return NULL;
	snprintf(buf, size, "%s %s", f, g);
	return buf;
}

/* True when the fetch serves the previous state and its history row is of kind. */
static int previous_is(const struct reg_build *b, const char *kind)
{
	const char *k = b->history ? col(b->reg->st[ST_HISTORY], H_KIND) : NULL;
	return k != NULL && strcmp(k, kind) == 0;
}

/* The household's address as served: the old one for a previous state before a move. */
static const char *served_address(const struct reg_build *b)
{
	if (previous_is(b, "address") && col(b->reg->st[ST_HISTORY], H_ADDRESS) != NULL)
		return col(b->reg->st[ST_HISTORY], H_ADDRESS);
	return col(b->reg->st[ST_RESIDENT], R_ADDRESS);
}

/* ST_MEMBERS's columns. */
enum {
	M_CODE,
	M_FAMILY,
	M_GIVEN,
	M_FAMILY_KANA,
	M_GIVEN_KANA,
	M_SEX,
	M_BIRTH,
	M_RELATIONSHIP,
	M_MY_NUMBER,
	M_BECAME,
	M_ADDRESS_SINCE,
	M_PREVIOUS_ADDRESS,
	M_DOMICILE,
	M_DOMICILE_HEAD,
	M_STATUS,
	M_H_KIND,
	M_H_ADDRESS_SINCE,
	M_H_PREVIOUS_ADDRESS,
	M_H_STATUS
};

/* One item of `members` from the current row of ST_MEMBERS. */
static void add_member(struct reg_build *b, long li, sqlite3_stmt *st, int subject)
{
	struct reg_item *it = add_item(b, li);
	char name[256], kana[256];
	/* A previous state shows each member as they were before their own last change. */
	const char *kind = b->variant == REG_PREVIOUS ? col(st, M_H_KIND) : NULL;
	int moved = kind != NULL && strcmp(kind, "address") == 0;
	set_item(b, it, "subject", subject ? "true" : "false");
	set_item(b, it, "name", join_name(st, M_FAMILY, M_GIVEN, name, sizeof name));
	set_item(b, it, "kana", join_name(st, M_FAMILY_KANA, M_GIVEN_KANA, kana, sizeof kana));
	set_item(b, it, "birth_date", col(st, M_BIRTH));
	set_item(b, it, "sex", col(st, M_SEX));
	set_item(b, it, "relationship", col(st, M_RELATIONSHIP));
	set_item(b, it, "became_resident_date", col(st, M_BECAME));
	set_item(b, it, "address_since",
		 moved && col(st, M_H_ADDRESS_SINCE) ? col(st, M_H_ADDRESS_SINCE)
						     : col(st, M_ADDRESS_SINCE));
	set_item(b, it, "previous_address",
		 moved ? col(st, M_H_PREVIOUS_ADDRESS) : col(st, M_PREVIOUS_ADDRESS));
	if ((b->options & REG_SHOW_MY_NUMBER) && strcmp(b->rec->certificate, "residence") == 0)
		set_item(b, it, "my_number", col(st, M_MY_NUMBER));
	if (b->options & REG_SHOW_DOMICILE) {
		set_item(b, it, "domicile", col(st, M_DOMICILE));
		set_item(b, it, "domicile_head", col(st, M_DOMICILE_HEAD));
	}
}

/* The status a member row is served with (the old one for a previous state). */
static const char *member_status(const struct reg_build *b, sqlite3_stmt *st)
{
	const char *kind = b->variant == REG_PREVIOUS ? col(st, M_H_KIND) : NULL;
	if (kind != NULL && strcmp(kind, "status") == 0 && col(st, M_H_STATUS) != NULL)
		return col(st, M_H_STATUS);
	return col(st, M_STATUS);
}

static void build_residence(struct reg_build *b)
{
	struct registry *reg = b->reg;
	sqlite3_stmt *rs = reg->st[ST_RESIDENT];
	sqlite3_stmt *ns = reg->st[ST_NAME];
	set_field(b, "address", served_address(b));
	if (reg_bind(ns, col(rs, R_HOUSEHOLDER), NULL) != 0) {
		build_fail(b, "cannot read the householder");
		return;
	}
	int rc = sqlite3_step(ns);
	if (rc != SQLITE_ROW) {
		build_fail(b, rc == SQLITE_DONE ? "the household has no householder row"
						: "cannot read the householder");
		return;
	}
	set_field(b, "householder_name", col(ns, 0));

	long li = add_list(b, "members");
	sqlite3_stmt *ms = reg->st[ST_MEMBERS];
	if (reg_bind(ms, col(rs, R_HOUSEHOLD), NULL) != 0) {
		build_fail(b, "cannot read the household");
		return;
	}
	/* The subject first, whatever their status; then the other active members. */
	int found = 0;
	while ((rc = sqlite3_step(ms)) == SQLITE_ROW) {
		if (strcmp(col(ms, M_CODE), b->code) == 0) {
			add_member(b, li, ms, 1);
			found = 1;
			break;
		}
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		build_fail(b, "cannot read the household's members");
		return;
	}
	if (!found) {
		build_fail(b, "the resident is missing from their household");
		return;
	}
	if (!(b->options & REG_HOUSEHOLD))
		return;
	sqlite3_reset(ms);
	while ((rc = sqlite3_step(ms)) == SQLITE_ROW) {
		const char *status = member_status(b, ms);
		if (strcmp(col(ms, M_CODE), b->code) != 0 && status != NULL &&
		    strcmp(status, "active") == 0)
			add_member(b, li, ms, 0);
	}
	if (rc != SQLITE_DONE)
		build_fail(b, "cannot read the household's members");
}

/* Returns REG_NOT_FOUND when the resident has no seal registration. */
static int build_seal(struct reg_build *b)
{
	sqlite3_stmt *rs = b->reg->st[ST_RESIDENT];
	sqlite3_stmt *ss = b->reg->st[ST_SEAL];
	if (reg_bind(ss, b->code, NULL) != 0) {
		build_fail(b, "cannot read the seal registration");
		return REG_ERROR;
	}
	int rc = sqlite3_step(ss);
	if (rc == SQLITE_DONE)
		return REG_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		build_fail(b, "cannot read the seal registration");
		return REG_ERROR;
	}
	/* Before an abolition the registration read `registered`, with no abolition date. */
	int unabolished = previous_is(b, "seal");
	const char *seal_status =
	    unabolished ? col(b->reg->st[ST_HISTORY], H_SEAL_STATUS) : col(ss, 5);
	char kana[256];
	set_field(b, "registration_number", col(ss, 0));
	set_field(b, "registered_name", col(ss, 1));
	set_field(b, "kana", join_name(rs, R_FAMILY_KANA, R_GIVEN_KANA, kana, sizeof kana));
	set_field(b, "birth_date", col(rs, R_BIRTH));
	set_field(b, "sex", col(rs, R_SEX));
	set_field(b, "address", served_address(b));
	set_field(b, "seal_image", col(ss, 3));
	set_field(b, "seal_text", col(ss, 2));
	set_field(b, "seal_status", seal_status);
	set_field(b, "registered_date", col(ss, 4));
	if (seal_status != NULL && strcmp(seal_status, "abolished") == 0)
		set_field(b, "abolished_date", col(ss, 6));
	return REG_OK;
}

/* Returns REG_NOT_FOUND when there is no tax record of the current fiscal year. */
static int build_tax(struct reg_build *b)
{
	struct registry *reg = b->reg;
	sqlite3_stmt *rs = reg->st[ST_RESIDENT];
	sqlite3_stmt *ts = reg->st[ST_TAX];
	if (reg_bind(ts, b->code, reg->fiscal_year) != 0) {
		build_fail(b, "cannot read the tax record");
		return REG_ERROR;
	}
	int rc = sqlite3_step(ts);
	if (rc == SQLITE_DONE)
		return REG_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		build_fail(b, "cannot read the tax record");
		return REG_ERROR;
	}
	char name[256], kana[256];
	set_field(b, "fiscal_year", col(ts, 0));
	set_field(b, "income_year", col(ts, 1));
	set_field(b, "name", join_name(rs, R_FAMILY, R_GIVEN, name, sizeof name));
	set_field(b, "kana", join_name(rs, R_FAMILY_KANA, R_GIVEN_KANA, kana, sizeof kana));
	set_field(b, "birth_date", col(rs, R_BIRTH));
	set_field(b, "address", served_address(b));
	set_field(b, "total_income_yen", col(ts, 2));
	set_field(b, "total_deductions_yen", col(ts, 3));
	set_field(b, "taxable_income_yen", col(ts, 4));
	set_field(b, "municipal_tax_yen", col(ts, 5));
	set_field(b, "prefectural_tax_yen", col(ts, 6));

	long li = add_list(b, "incomes");
	sqlite3_stmt *is = reg->st[ST_INCOMES];
	if (reg_bind(is, b->code, reg->fiscal_year) != 0) {
		build_fail(b, "cannot read the incomes");
		return REG_ERROR;
	}
	while ((rc = sqlite3_step(is)) == SQLITE_ROW) {
		struct reg_item *it = add_item(b, li);
		set_item(b, it, "kind", col(is, 0));
		set_item(b, it, "revenue_yen", col(is, 1));
		set_item(b, it, "income_yen", col(is, 2));
	}
	if (rc != SQLITE_DONE)
		build_fail(b, "cannot read the incomes");
	long ld = add_list(b, "deductions");
	sqlite3_stmt *ds = reg->st[ST_DEDUCTIONS];
	if (reg_bind(ds, b->code, reg->fiscal_year) != 0) {
		build_fail(b, "cannot read the deductions");
		return REG_ERROR;
	}
	while ((rc = sqlite3_step(ds)) == SQLITE_ROW) {
		struct reg_item *it = add_item(b, ld);
		set_item(b, it, "kind", col(ds, 0));
		set_item(b, it, "amount_yen", col(ds, 1));
	}
	if (rc != SQLITE_DONE)
		build_fail(b, "cannot read the deductions");
	return REG_OK;
}

/* ST_PERSONS's columns. */
enum {
	P_NO,
	P_FAMILY,
	P_GIVEN,
	P_FAMILY_KANA,
	P_GIVEN_KANA,
	P_BIRTH,
	P_SEX,
	P_FATHER,
	P_MOTHER,
	P_PARENTAL,
	P_SPOUSE_ROLE,
	P_STATE,
	P_REMOVED_REASON,
	P_REMOVED_DATE,
	P_H_KIND,
	P_H_CHANGED_AT
};

/* Which persons of the register a koseki type lists. */
static int koseki_lists_person(const struct reg_build *b, sqlite3_stmt *ps, const char *subject_no)
{
	int is_subject = strcmp(col(ps, P_NO), subject_no) == 0;
	const char *cert = b->rec->certificate;
	if (strcmp(cert, "koseki-full") == 0)
		return 1;
	if (strcmp(cert, "koseki-individual") == 0)
		return is_subject;
	/* koseki-attachment: the subject; with household every other present person. */
	return !is_subject && (b->options & REG_HOUSEHOLD) && col(ps, P_STATE) != NULL &&
	       strcmp(col(ps, P_STATE), "present") == 0;
}

/* Adds the person item of ps's current row. */
static void add_person(struct reg_build *b, long li, sqlite3_stmt *ps)
{
	struct reg_item *it = add_item(b, li);
	char name[256], kana[256];
	set_item(b, it, "person_no", col(ps, P_NO));
	set_item(b, it, "name", join_name(ps, P_FAMILY, P_GIVEN, name, sizeof name));
	if (strcmp(b->rec->certificate, "koseki-attachment") == 0) {
		set_item(b, it, "birth_date", col(ps, P_BIRTH));
		return;
	}
	set_item(b, it, "kana", join_name(ps, P_FAMILY_KANA, P_GIVEN_KANA, kana, sizeof kana));
	set_item(b, it, "birth_date", col(ps, P_BIRTH));
	set_item(b, it, "sex", col(ps, P_SEX));
	set_item(b, it, "father", col(ps, P_FATHER));
	set_item(b, it, "mother", col(ps, P_MOTHER));
	set_item(b, it, "parental_relationship", col(ps, P_PARENTAL));
	set_item(b, it, "spouse_role", col(ps, P_SPOUSE_ROLE));
	set_item(b, it, "state", col(ps, P_STATE));
	set_item(b, it, "removed_reason", col(ps, P_REMOVED_REASON));
	set_item(b, it, "removed_date", col(ps, P_REMOVED_DATE));
}

/* The persons chosen for the record, in list order (person_no as text). */
struct koseki_persons {
	char (*no)[16];
	char (*cutoff)[16]; /* previous state: attachment entries from this date on are newer */
	size_t count;
};

static void koseki_take(struct reg_build *b, struct koseki_persons *kp, sqlite3_stmt *ps)
{
	char(*no)[16] = realloc(kp->no, (kp->count + 1) * sizeof *no);
	if (no != NULL)
		kp->no = no;
	char(*cut)[16] = realloc(kp->cutoff, (kp->count + 1) * sizeof *cut);
	if (cut != NULL)
		kp->cutoff = cut;
	if (no == NULL || cut == NULL) {
		build_fail(b, "out of memory");
		return;
	}
	snprintf(kp->no[kp->count], sizeof kp->no[0], "%s", col(ps, P_NO));
	kp->cutoff[kp->count][0] = '\0';
	const char *kind = b->variant == REG_PREVIOUS ? col(ps, P_H_KIND) : NULL;
	const char *at = col(ps, P_H_CHANGED_AT);
	/* Before a move or a move-out, the attachment did not have the new address yet. */
	if (kind != NULL && at != NULL &&
	    (strcmp(kind, "address") == 0 || strcmp(kind, "status") == 0))
		snprintf(kp->cutoff[kp->count], sizeof kp->cutoff[0], "%.10s", at);
	kp->count++;
}

/* Returns REG_NOT_FOUND when the resident's register is not held here. */
static int build_koseki(struct reg_build *b)
{
	struct registry *reg = b->reg;
	sqlite3_stmt *rs = reg->st[ST_RESIDENT];
	const char *register_id = col(rs, R_REGISTER);
	const char *subject_no = col(rs, R_PERSON_NO);
	if (register_id == NULL || subject_no == NULL)
		return REG_NOT_FOUND;
	sqlite3_stmt *gs = reg->st[ST_REGISTER];
	if (reg_bind(gs, register_id, NULL) != 0) {
		build_fail(b, "cannot read the family register");
		return REG_ERROR;
	}
	int rc = sqlite3_step(gs);
	if (rc != SQLITE_ROW) {
		build_fail(b, rc == SQLITE_DONE ? "the resident's family register is missing"
						: "cannot read the family register");
		return REG_ERROR;
	}
	int attachment = strcmp(b->rec->certificate, "koseki-attachment") == 0;
	set_field(b, "domicile", col(gs, 0));
	set_field(b, "head_name", col(gs, 1));
	if (!attachment) {
		set_field(b, "register_created_date", col(gs, 2));
		set_field(b, "register_created_reason", col(gs, 3));
	}
	set_field(b, "subject_person_no", subject_no);

	long li = add_list(b, "persons");
	struct koseki_persons kp = {0};
	sqlite3_stmt *ps = reg->st[ST_PERSONS];
	if (reg_bind(ps, register_id, NULL) != 0) {
		build_fail(b, "cannot read the register's persons");
		return REG_ERROR;
	}
	int found = 0;
	if (attachment) {
		/* The subject first, then (household) the other present persons. */
		while ((rc = sqlite3_step(ps)) == SQLITE_ROW) {
			if (strcmp(col(ps, P_NO), subject_no) == 0) {
				add_person(b, li, ps);
				koseki_take(b, &kp, ps);
				found = 1;
				break;
			}
		}
		sqlite3_reset(ps);
	}
	while ((rc = sqlite3_step(ps)) == SQLITE_ROW) {
		if (koseki_lists_person(b, ps, subject_no)) {
			add_person(b, li, ps);
			koseki_take(b, &kp, ps);
			found |= strcmp(col(ps, P_NO), subject_no) == 0;
		}
	}
	if (rc != SQLITE_DONE)
		build_fail(b, "cannot read the register's persons");
	else if (!found)
		build_fail(b, "the resident is missing from their family register");

	/* Events (full, individual) or addresses (attachment) of the listed persons. */
	long le = add_list(b, attachment ? "addresses" : "events");
	sqlite3_stmt *es = reg->st[attachment ? ST_ATTACHMENTS : ST_EVENTS];
	for (size_t i = 0; i < kp.count && b->failed == REG_OK; i++) {
		if (reg_bind(es, register_id, kp.no[i]) != 0) {
			build_fail(b, "cannot read the register's entries");
			break;
		}
		while ((rc = sqlite3_step(es)) == SQLITE_ROW) {
			if (attachment && kp.cutoff[i][0] != '\0' && col(es, 1) != NULL &&
			    strcmp(col(es, 1), kp.cutoff[i]) >= 0)
				continue;
			struct reg_item *it = add_item(b, le);
			set_item(b, it, "person_no", kp.no[i]);
			if (attachment) {
				set_item(b, it, "address", col(es, 0));
				set_item(b, it, "since", col(es, 1));
			} else {
				set_item(b, it, "kind", col(es, 0));
				set_item(b, it, "date", col(es, 1));
				set_item(b, it, "detail", col(es, 2));
			}
		}
		if (rc != SQLITE_DONE)
			build_fail(b, "cannot read the register's entries");
	}
	free(kp.no);
	free(kp.cutoff);
	return REG_OK;
}

/* --- registry_fetch ----------------------------------------------------------------------- */

static const char *const reg_types[] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment", NULL,
};

static void registry_reset_all(struct registry *reg)
{
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_reset(reg->st[i]);
		sqlite3_clear_bindings(reg->st[i]);
	}
}

/* Reads the resident row (and, for REG_PREVIOUS, its history row) and the type's data. */
static int registry_build(struct reg_build *b)
{
	struct registry *reg = b->reg;
	sqlite3_stmt *rs = reg->st[ST_RESIDENT];
	if (reg_bind(rs, b->code, NULL) != 0) {
		build_fail(b, "cannot read the residents table");
		return REG_ERROR;
	}
	int rc = sqlite3_step(rs);
	if (rc == SQLITE_DONE)
		return REG_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		build_fail(b, "cannot read the residents table");
		return REG_ERROR;
	}
	struct reg_record *rec = b->rec;
	snprintf(rec->status, sizeof rec->status, "%s", col(rs, R_STATUS) ? col(rs, R_STATUS) : "");
	rec->version = (uint64_t)sqlite3_column_int64(rs, R_VERSION);
	rec->as_of = (int64_t)time(NULL);

	if (b->variant == REG_PREVIOUS) {
		sqlite3_stmt *hs = reg->st[ST_HISTORY];
		if (reg_bind(hs, b->code, NULL) != 0) {
			build_fail(b, "cannot read the resident history");
			return REG_ERROR;
		}
		rc = sqlite3_step(hs);
		if (rc == SQLITE_DONE)
			return REG_NOT_FOUND;
		int64_t old_as_of;
		if (rc != SQLITE_ROW || reg_parse_time(col(hs, H_AS_OF), &old_as_of) != 0) {
			build_fail(b, "cannot read the resident history");
			return REG_ERROR;
		}
		b->history = 1;
		rec->version = (uint64_t)sqlite3_column_int64(hs, H_VERSION);
		/* The staleness the file records, shifted to now (README: as_of rule). */
		rec->as_of -= reg->as_of - old_as_of;
		if (previous_is(b, "status") && col(hs, H_STATUS) != NULL)
			snprintf(rec->status, sizeof rec->status, "%s", col(hs, H_STATUS));
	}

	const char *c = rec->certificate;
	if (strcmp(c, "residence") == 0 || strcmp(c, "residence-record") == 0) {
		build_residence(b);
		return REG_OK;
	}
	if (strcmp(c, "seal") == 0)
		return build_seal(b);
	if (strcmp(c, "tax-income") == 0)
		return build_tax(b);
	return build_koseki(b);
}

int registry_fetch(struct registry *reg, const char *certificate, const char *resident_code,
		   uint32_t options, enum reg_variant variant, struct reg_record **out, char *err,
		   size_t err_size)
{
	*out = NULL;
	int known = 0;
	for (size_t i = 0; certificate != NULL && reg_types[i] != NULL; i++)
		known |= strcmp(reg_types[i], certificate) == 0;
	if (!known) {
		reg_err(err, err_size, "unknown certificate type");
		return REG_ERROR;
	}
	if (resident_code == NULL || resident_code[0] == '\0' || strlen(resident_code) >= 32)
		return REG_NOT_FOUND; /* no resident has such a code */
	if (variant != REG_CURRENT && variant != REG_PREVIOUS) {
		reg_err(err, err_size, "unknown record variant");
		return REG_ERROR;
	}
	struct reg_build b = {.reg = reg, .options = options, .variant = variant, .failed = REG_OK};
	snprintf(b.code, sizeof b.code, "%s", resident_code);
	b.rec = calloc(1, sizeof *b.rec);
	if (b.rec == NULL) {
		reg_err(err, err_size, "out of memory");
		return REG_ERROR;
	}
	snprintf(b.rec->certificate, sizeof b.rec->certificate, "%s", certificate);
	snprintf(b.rec->resident_code, sizeof b.rec->resident_code, "%s", resident_code);
	int rc = registry_build(&b);
	registry_reset_all(reg);
	if (b.failed != REG_OK) {
		reg_err(err, err_size, b.why);
		rc = REG_ERROR;
	}
	if (rc != REG_OK) {
		reg_record_free(b.rec);
		return rc;
	}
	*out = b.rec;
	return REG_OK;
}
