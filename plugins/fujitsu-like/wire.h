/*
 * wire.h: the fujitsu-like legacy protocol (docs/vendor-protocol.md), shared by the plugin and
 * the vendor simulator.
 *
 * A frame is a 32-byte ASCII header (magic, type, correlation id, payload length) and a
 * payload of 128-byte CP932 lines.  This module builds frames (wire_writer, wire_request_encode)
 * and takes them apart (wire_reader for the byte stream, wire_request_decode and
 * wire_response_decode for payloads).  Every decoder validates every byte it reads: bad input
 * is an error with a reason (no personal data in it), never a crash or an over-read.
 *
 * No global state except nothing: every function may be called from any thread on its own
 * objects.  iconv descriptors are opened per call.
 */
#ifndef MDG_FUJITSU_WIRE_H
#define MDG_FUJITSU_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC	     "MDGV01"
#define WIRE_HEADER_SIZE     32u
#define WIRE_LINE_SIZE	     128u
#define WIRE_MAX_PAYLOAD     (1024u * 1024u)
#define WIRE_NAME_WIDTH	     32u
#define WIRE_VALUE_WIDTH     88u /* CP932 bytes of a value per field line */
#define WIRE_MAX_CORRELATION 9999999999ull

/* Frame types (two ASCII characters on the wire). */
enum wire_type {
	WIRE_REQUEST = 1,  /* "RQ" */
	WIRE_RESPONSE = 2, /* "RS" */
};

/* Result codes of a response's header line. */
enum wire_result {
	WIRE_RESULT_OK = 0,	   /* "00": a record follows */
	WIRE_RESULT_NOT_FOUND = 1, /* "10": no such resident or no data of that type */
	WIRE_RESULT_ERROR = 2,	   /* "90": the backend failed */
};

/* Decoder statuses. */
enum wire_status {
	WIRE_OK = 0,
	WIRE_ERR_MALFORMED = -1,  /* framing, padding, codes, numbers */
	WIRE_ERR_ENCODING = -2,	  /* a value is not valid CP932 / not convertible */
	WIRE_ERR_INCOMPLETE = -3, /* the trailer's counts do not match: lines are missing */
	WIRE_ERR_NO_MEMORY = -4,
};

struct wire_header {
	enum wire_type type;
	uint64_t correlation_id; /* 0 .. WIRE_MAX_CORRELATION */
	uint32_t payload_len;	 /* multiple of WIRE_LINE_SIZE, <= WIRE_MAX_PAYLOAD */
};

/* A decoded record: the same shape as plugins/common/registry.h's reg_record.  Strings are
 * UTF-8 and owned by the record. */
struct wire_field {
	char *name;
	char *value;
};

struct wire_item {
	struct wire_field *fields;
	size_t field_count;
};

struct wire_list {
	char *name;
	struct wire_item *items;
	size_t item_count;
};

struct wire_record {
	enum wire_result result;
	char certificate[32];
	char resident_code[32];
	uint64_t version;
	char status[16];
	int64_t as_of; /* Unix seconds */
	struct wire_field *fields;
	size_t field_count;
	struct wire_list *lists;
	size_t list_count;
};

void wire_record_free(struct wire_record *record);

/* Parses a frame header (exactly WIRE_HEADER_SIZE bytes at buf).  Returns WIRE_OK or
 * WIRE_ERR_MALFORMED with err filled. */
int wire_header_parse(const char *buf, struct wire_header *out, char *err, size_t err_size);

/* --- requests ------------------------------------------------------------------------ */

struct wire_request {
	char certificate[24];
	char municipality[8];
	char resident_code[24];
	uint32_t options;
};

/* Builds a whole request frame.  Returns WIRE_OK with *out (malloc'd, caller frees) and
 * *out_len, or WIRE_ERR_MALFORMED when a string does not fit its field or is not printable
 * ASCII. */
int wire_request_encode(uint64_t correlation_id, const struct wire_request *req, char **out,
			size_t *out_len);
/* Decodes a request payload.  Returns WIRE_OK or an error with err filled. */
int wire_request_decode(const char *payload, size_t len, struct wire_request *out, char *err,
			size_t err_size);

/* --- responses ----------------------------------------------------------------------- */

/*
 * Builds a response frame line by line: wire_writer_init, wire_writer_head, then the record's
 * fields (wire_writer_field), then per list item wire_writer_item and its fields
 * (wire_writer_item_field), then wire_writer_finish.  A value longer than one line's
 * WIRE_VALUE_WIDTH goes on continuation lines.  Each add returns WIRE_OK, WIRE_ERR_ENCODING
 * (a value has no CP932 form) or WIRE_ERR_MALFORMED (a name too long or not ASCII), or
 * WIRE_ERR_NO_MEMORY; after an error the writer only accepts wire_writer_free.
 */
struct wire_writer {
	char *buf; /* payload lines so far */
	size_t len, cap;
	size_t lines;	     /* lines written (trailer excluded) */
	size_t items;	     /* item start lines written */
	size_t last_item_at; /* offset of the last item start line, 0 = none */
	size_t last_item_lines;
	int in_item;
	int error;
	void *cd; /* iconv_t UTF-8 -> CP932 */
};

int wire_writer_init(struct wire_writer *w);
int wire_writer_head(struct wire_writer *w, enum wire_result result, const char *certificate,
		     const char *resident_code, uint64_t version, const char *status,
		     int64_t as_of);
int wire_writer_field(struct wire_writer *w, const char *name, const char *value);
int wire_writer_item(struct wire_writer *w, const char *list);
int wire_writer_item_field(struct wire_writer *w, const char *name, const char *value);
/* Fault injection for the simulator's `partial` mode: removes the lines of the last item
 * while the trailer keeps declaring them (a truncated record, incident I6).  Returns 1 when
 * something was dropped, 0 when the record has no item. */
int wire_writer_drop_last_item(struct wire_writer *w);
/* Appends the trailer and the frame header.  Returns WIRE_OK with *out (malloc'd, caller
 * frees) and *out_len; the writer is freed either way. */
int wire_writer_finish(struct wire_writer *w, uint64_t correlation_id, char **out, size_t *out_len);
void wire_writer_free(struct wire_writer *w);

/*
 * Decodes a response payload into a record (result, head and, for WIRE_RESULT_OK, the
 * fields and lists), converting CP932 to UTF-8.  Returns WIRE_OK with *out (free with
 * wire_record_free), or an error with err filled.
 */
int wire_response_decode(const char *payload, size_t len, struct wire_record **out, char *err,
			 size_t err_size);

/* --- stream reassembly -------------------------------------------------------------- */

/* Collects bytes from a stream and cuts them into frames. */
struct wire_reader {
	char *buf;
	size_t len, cap;
	size_t consumed; /* bytes of buf already handed out */
};

void wire_reader_init(struct wire_reader *r);
void wire_reader_free(struct wire_reader *r);
/* Appends n bytes.  Returns WIRE_OK or WIRE_ERR_NO_MEMORY. */
int wire_reader_feed(struct wire_reader *r, const char *data, size_t n);
/*
 * Takes the next whole frame: returns 1 with *h and *payload (valid until the next feed or
 * free), 0 when more bytes are needed, or WIRE_ERR_MALFORMED with err filled when the header
 * is bad (the stream cannot be resynchronised: close it).
 */
int wire_reader_next(struct wire_reader *r, struct wire_header *h, const char **payload, char *err,
		     size_t err_size);

#endif
