/*
 * registry.h: the demo municipality's registry (a SQLite file) read as neutral records.
 *
 * Shared by the sqlite-registry plugin and the vendor simulator, so that both backends
 * describe a resident with the very same fields: the plugin hands a reg_record to the host's
 * record builder; the simulator serialises it into the legacy wire format, which the
 * fujitsu-like plugin parses back into the host's record builder.  The mapping from tables to
 * fields is docs/records.md.
 *
 * A struct registry is one read-only SQLite connection with prepared statements: use it from
 * one thread at a time (open one per worker thread).  No function logs, and no error message
 * carries personal data.
 */
#ifndef MDG_REGISTRY_H
#define MDG_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct registry;

struct reg_field {
	char *name;  /* lower_snake_case */
	char *value; /* UTF-8 */
};

struct reg_item {
	struct reg_field *fields;
	size_t field_count;
};

struct reg_list {
	char *name;
	struct reg_item *items;
	size_t item_count;
};

struct reg_record {
	char certificate[32];
	char resident_code[32];
	uint64_t version;
	char status[16]; /* active, moved-out, deceased, deleted */
	int64_t as_of;	 /* Unix seconds */
	struct reg_field *fields;
	size_t field_count;
	struct reg_list *lists;
	size_t list_count;
};

/* Which state of a resident to read: the current one, or the one before the last change
 * (what a backend that missed a change would still serve; incidents I3-I5). */
enum reg_variant {
	REG_CURRENT = 0,
	REG_PREVIOUS = 1,
};

/* Request options, the same bits as the SDK's MDG_FETCH_* flags. */
#define REG_HOUSEHOLD	   0x1u
#define REG_SHOW_MY_NUMBER 0x2u
#define REG_SHOW_DOMICILE  0x4u

enum reg_status {
	REG_OK = 0,
	REG_NOT_FOUND = -2, /* no such resident, or no data of that type (e.g. no register) */
	REG_ERROR = -4,	    /* the database failed; err says why */
};

/* Opens path read-only.  Returns REG_OK, or REG_ERROR with err filled. */
int registry_open(const char *path, struct registry **out, char *err, size_t err_size);
void registry_close(struct registry *reg);

/* The municipality code the file is the registry of (meta.municipality); lives as long as
 * reg. */
const char *registry_municipality(const struct registry *reg);

/*
 * Reads the record of resident_code for certificate (one of the seven types), honouring the
 * options.  Returns REG_OK with *out (free with reg_record_free), REG_NOT_FOUND, or REG_ERROR
 * with err filled.  For REG_PREVIOUS, REG_NOT_FOUND means the resident has no older state.
 */
int registry_fetch(struct registry *reg, const char *certificate, const char *resident_code,
		   uint32_t options, enum reg_variant variant, struct reg_record **out, char *err,
		   size_t err_size);

void reg_record_free(struct reg_record *record);

#endif
