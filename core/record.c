/*
 * record.c: the record builder behind the SDK, on jansson.
 *
 * A record is a JSON object {"certificate", "resident_code", "version", "status", "as_of",
 * fields…, lists…} wrapped in a struct that also remembers whether any set failed: a plugin
 * that ignores an error still cannot hand over a record with a hole in it, because
 * record_validate() refuses it.  Field and list names are lower_snake_case ASCII; values are
 * UTF-8 strings (jansson checks the encoding).  Callable from any thread for distinct records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

const char *const record_certificate_types[] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment", NULL,
};

static const char *const record_statuses[] = {"active", "moved-out", "deceased", "deleted", NULL};

/* The names the host sets itself; a plugin may not set them as fields. */
static const char *const record_reserved[] = {"certificate", "resident_code", "version",
					      "status",	     "as_of",	      NULL};

struct mdg_record {
	json_t *obj;
	int broken; /* a set failed: the record is refused at validation */
};

static int record_in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strcmp(list[i], s) == 0)
			return (int)i;
	}
	return -1;
}

int record_certificate_index(const char *certificate)
{
	return certificate ? record_in_list(record_certificate_types, certificate) : -1;
}

int record_status_known(const char *status)
{
	return status != NULL && record_in_list(record_statuses, status) >= 0;
}

/* lower_snake_case ASCII, 1 to 63 characters. */
static int record_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

mdg_record *record_new(mdg_plugin_ctx *ctx, const char *certificate, const char *resident_code,
		       uint64_t version, const char *status, int64_t as_of_unix)
{
	(void)ctx;
	struct mdg_record *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->obj = json_object();
	if (r->obj == NULL) {
		free(r);
		return NULL;
	}
	/* Checked here but reported at validation, so the plugin's code stays linear. */
	json_t *code = resident_code ? json_string(resident_code) : NULL;
	json_t *st = status ? json_string(status) : NULL;
	json_t *cert = certificate ? json_string(certificate) : NULL;
	if (code == NULL || st == NULL || cert == NULL || version > (uint64_t)INT64_MAX)
		r->broken = 1;
	json_object_set_new(r->obj, "certificate", cert ? cert : json_null());
	json_object_set_new(r->obj, "resident_code", code ? code : json_null());
	json_object_set_new(r->obj, "version", json_integer((json_int_t)version));
	json_object_set_new(r->obj, "status", st ? st : json_null());
	json_object_set_new(r->obj, "as_of", json_integer((json_int_t)as_of_unix));
	return r;
}

int record_set(mdg_record *r, const char *field, const char *value)
{
	if (r == NULL)
		return MDG_ERR_INVALID;
	json_t *v = value ? json_string(value) : NULL;
	if (!record_name_ok(field) || record_in_list(record_reserved, field) >= 0 || v == NULL ||
	    json_is_array(json_object_get(r->obj, field))) {
		json_decref(v);
		r->broken = 1;
		return MDG_ERR_INVALID;
	}
	json_object_set_new(r->obj, field, v);
	return MDG_OK;
}

mdg_item *record_add_item(mdg_record *r, const char *list)
{
	if (r == NULL)
		return NULL;
	if (!record_name_ok(list) || record_in_list(record_reserved, list) >= 0) {
		r->broken = 1;
		return NULL;
	}
	json_t *arr = json_object_get(r->obj, list);
	if (arr == NULL) {
		arr = json_array();
		if (arr == NULL || json_object_set_new(r->obj, list, arr) != 0) {
			r->broken = 1;
			return NULL;
		}
	} else if (!json_is_array(arr)) {
		r->broken = 1;
		return NULL;
	}
	json_t *item = json_object();
	if (item == NULL || json_array_append_new(arr, item) != 0) {
		r->broken = 1;
		return NULL;
	}
	/* The item stays owned by the array; the handle is only valid while the record is. */
	return (mdg_item *)item;
}

int record_item_set(mdg_item *item, const char *field, const char *value)
{
	json_t *obj = (json_t *)item;
	if (obj == NULL || !json_is_object(obj) || !record_name_ok(field) || value == NULL)
		return MDG_ERR_INVALID;
	json_t *v = json_string(value);
	if (v == NULL)
		return MDG_ERR_INVALID;
	json_object_set_new(obj, field, v);
	return MDG_OK;
}

void record_free(mdg_record *r)
{
	if (r == NULL)
		return;
	json_decref(r->obj);
	free(r);
}

const char *record_certificate(const mdg_record *r)
{
	return json_string_value(json_object_get(r->obj, "certificate"));
}

const char *record_resident_code(const mdg_record *r)
{
	return json_string_value(json_object_get(r->obj, "resident_code"));
}

uint64_t record_version(const mdg_record *r)
{
	return (uint64_t)json_integer_value(json_object_get(r->obj, "version"));
}

const char *record_status(const mdg_record *r)
{
	return json_string_value(json_object_get(r->obj, "status"));
}

int64_t record_as_of(const mdg_record *r)
{
	return (int64_t)json_integer_value(json_object_get(r->obj, "as_of"));
}

const json_t *record_json(const mdg_record *r)
{
	return r->obj;
}

int record_validate(const mdg_record *r, char *reason, size_t reason_size)
{
	const char *why = NULL;
	if (r == NULL)
		why = "no record";
	else if (r->broken)
		why = "the plugin set an invalid field, list or value (names are lower_snake_case, "
		      "values UTF-8)";
	else if (record_certificate_index(record_certificate(r)) < 0)
		why = "unknown certificate type";
	else if (record_resident_code(r) == NULL || record_resident_code(r)[0] == '\0')
		why = "no resident code";
	else if (!record_status_known(record_status(r)))
		why = "unknown status (expected active, moved-out, deceased or deleted)";
	else if (record_as_of(r) <= 0)
		why = "no as_of time";
	if (why == NULL)
		return 0;
	snprintf(reason, reason_size, "%s", why);
	return -1;
}
