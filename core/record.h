/*
 * record.h: records as the host holds them, behind the SDK's opaque mdg_record.
 *
 * A plugin builds a record through the host table (record_new, record_set, record_add_item,
 * item_set); the host keeps it as a JSON object: the four fields every record carries
 * (resident_code, version, status, as_of), the type's string fields, and named lists of items
 * (docs/records.md).  A record belongs to one thread at a time: the plugin's until it is
 * completed, then the loop's.
 */
#ifndef MDG_RECORD_H
#define MDG_RECORD_H

#include <stdint.h>

#include <jansson.h>

#include <madoguchi/plugin.h>

/* The seven certificate types of DESIGN §4, in a fixed order. */
extern const char *const record_certificate_types[];
#define RECORD_CERTIFICATE_TYPE_COUNT 7

/* Index of a certificate type in record_certificate_types, or -1 when unknown. */
int record_certificate_index(const char *certificate);

/* True for a status a record may carry: active, moved-out, deceased, deleted. */
int record_status_known(const char *status);

/* The host-table functions (see madoguchi/plugin.h for their contracts). */
mdg_record *record_new(mdg_plugin_ctx *ctx, const char *certificate, const char *resident_code,
		       uint64_t version, const char *status, int64_t as_of_unix);
int record_set(mdg_record *record, const char *field, const char *value);
mdg_item *record_add_item(mdg_record *record, const char *list);
int record_item_set(mdg_item *item, const char *field, const char *value);
void record_free(mdg_record *record);

/* Accessors for the core. */
const char *record_certificate(const mdg_record *record);
const char *record_resident_code(const mdg_record *record);
uint64_t record_version(const mdg_record *record);
const char *record_status(const mdg_record *record);
int64_t record_as_of(const mdg_record *record);
/* The record's fields and lists as one JSON object (borrowed; lives as long as the record). */
const json_t *record_json(const mdg_record *record);

/*
 * Checks that the record is complete enough to verify and render: a known certificate type,
 * a resident code, a known status, and no field left invalid by a failed set.  Returns 0, or
 * -1 with reason filled (no personal data in it).
 */
int record_validate(const mdg_record *record, char *reason, size_t reason_size);

#endif
