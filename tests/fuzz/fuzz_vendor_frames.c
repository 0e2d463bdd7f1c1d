/*
 * fuzz_vendor_frames.c: libFuzzer target for the fujitsu-like vendor protocol
 * (plugins/fujitsu-like/wire.c, docs/vendor-protocol.md).
 *
 * The input is what the vendor's server sends on one TCP connection (or, for requests, what
 * the simulator receives).  It is cut into frames by the stream reader, fed in pieces as the
 * plugin's read callback gets them, and each frame's payload goes to the decoder for its type.
 * The input is also decoded as one bare payload, so the line decoders are reached without a
 * valid frame header.  What decodes must encode again to the same thing: a request re-encoded
 * decodes to the same request, and a record written back with the writer decodes to the same
 * record (the simulator and the plugin must agree on every record they can exchange).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_str(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int same_fields(const struct wire_field *a, size_t na, const struct wire_field *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		if (!same_str(a[i].name, b[i].name) || !same_str(a[i].value, b[i].value))
			return 0;
	}
	return 1;
}

static int same_record(const struct wire_record *a, const struct wire_record *b)
{
	if (a->result != b->result || strcmp(a->certificate, b->certificate) != 0 ||
	    strcmp(a->resident_code, b->resident_code) != 0 || a->version != b->version ||
	    strcmp(a->status, b->status) != 0 || a->as_of != b->as_of ||
	    !same_fields(a->fields, a->field_count, b->fields, b->field_count) ||
	    a->list_count != b->list_count)
		return 0;
	for (size_t i = 0; i < a->list_count; i++) {
		const struct wire_list *la = &a->lists[i], *lb = &b->lists[i];
		if (!same_str(la->name, lb->name) || la->item_count != lb->item_count)
			return 0;
		for (size_t j = 0; j < la->item_count; j++) {
			if (!same_fields(la->items[j].fields, la->items[j].field_count,
					 lb->items[j].fields, lb->items[j].field_count))
				return 0;
		}
	}
	return 1;
}

/* Writes rec with the writer (items in list order) and decodes it again. */
static void response_roundtrip(const struct wire_record *rec, uint64_t corr)
{
	struct wire_writer w;
	if (wire_writer_init(&w) != WIRE_OK)
		return;
	int rc = wire_writer_head(&w, rec->result, rec->certificate, rec->resident_code,
				  rec->version, rec->status, rec->as_of);
	for (size_t i = 0; rc == WIRE_OK && i < rec->field_count; i++)
		rc = wire_writer_field(&w, rec->fields[i].name, rec->fields[i].value);
	for (size_t i = 0; rc == WIRE_OK && i < rec->list_count; i++) {
		const struct wire_list *ls = &rec->lists[i];
		for (size_t j = 0; rc == WIRE_OK && j < ls->item_count; j++) {
			rc = wire_writer_item(&w, ls->name);
			for (size_t k = 0; rc == WIRE_OK && k < ls->items[j].field_count; k++)
				rc = wire_writer_item_field(&w, ls->items[j].fields[k].name,
							    ls->items[j].fields[k].value);
		}
	}
	char *frame = NULL;
	size_t len = 0;
	if (rc != WIRE_OK) {
		/* The writer is stricter about some text than the decoder: nothing to compare. */
		wire_writer_free(&w);
		return;
	}
	if (wire_writer_finish(&w, corr, &frame, &len) != WIRE_OK)
		return;
	struct wire_header h;
	struct wire_record *again = NULL;
	char err[128];
	if (len < WIRE_HEADER_SIZE || wire_header_parse(frame, &h, err, sizeof err) != WIRE_OK ||
	    h.type != WIRE_RESPONSE || h.correlation_id != corr ||
	    h.payload_len != len - WIRE_HEADER_SIZE ||
	    wire_response_decode(frame + WIRE_HEADER_SIZE, h.payload_len, &again, err,
				 sizeof err) != WIRE_OK ||
	    !same_record(rec, again))
		abort(); /* the writer wrote what the decoder refuses or reads differently */
	wire_record_free(again);
	free(frame);
}

static void request_roundtrip(const struct wire_request *req, uint64_t corr)
{
	char *frame = NULL;
	size_t len = 0;
	if (wire_request_encode(corr, req, &frame, &len) != WIRE_OK)
		return;
	struct wire_request again;
	char err[128];
	if (wire_request_decode(frame + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE, &again, err,
				sizeof err) != WIRE_OK ||
	    strcmp(again.certificate, req->certificate) != 0 ||
	    strcmp(again.municipality, req->municipality) != 0 ||
	    strcmp(again.resident_code, req->resident_code) != 0 || again.options != req->options)
		abort();
	free(frame);
}

static void decode_payload(enum wire_type type, const char *payload, size_t len, uint64_t corr)
{
	char err[128];
	if (type == WIRE_REQUEST) {
		struct wire_request req;
		if (wire_request_decode(payload, len, &req, err, sizeof err) == WIRE_OK)
			request_roundtrip(&req, corr);
		return;
	}
	struct wire_record *rec = NULL;
	if (wire_response_decode(payload, len, &rec, err, sizeof err) == WIRE_OK) {
		response_roundtrip(rec, corr);
		wire_record_free(rec);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t chunk = 1 + (size > 0 ? (size_t)data[size - 1] * 3 : 0);
	struct wire_reader r;
	char err[128];
	int rc = 0;

	wire_reader_init(&r);
	for (size_t off = 0; off < size && rc >= 0; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (wire_reader_feed(&r, in + off, n) != WIRE_OK)
			abort();
		struct wire_header h;
		const char *payload;
		while ((rc = wire_reader_next(&r, &h, &payload, err, sizeof err)) == 1)
			decode_payload(h.type, payload, h.payload_len, h.correlation_id);
	}
	wire_reader_free(&r);

	/* The input as a bare payload, for both decoders. */
	decode_payload(WIRE_REQUEST, in, size, 1);
	decode_payload(WIRE_RESPONSE, in, size, 1);
	return 0;
}
