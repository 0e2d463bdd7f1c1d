/*
 * wire.c: encoder and validating decoder of the fujitsu-like legacy protocol
 * (docs/vendor-protocol.md).
 *
 * Invariants: a decoder never reads outside [payload, payload + len); it accepts a payload
 * only when every line has its code, its fixed widths, digits where numbers are, spaces where
 * padding is, a newline at its end, the lines in the documented order, and a trailer whose
 * counts match; values are converted from CP932 with iconv and any byte sequence that does
 * not convert is an error.  Error messages name the line number and the problem, never a
 * value (values are personal data).
 *
 * Thread-safety: no shared state; objects belong to their caller.
 */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define LINE_BODY (WIRE_LINE_SIZE - 1u) /* bytes before the newline */

/* Field-line layout: code(2) name(32) used(2) value(88) padding(3) '\n'. */
#define FIELD_NAME_AT  2u
#define FIELD_USED_AT  (FIELD_NAME_AT + WIRE_NAME_WIDTH)
#define FIELD_VALUE_AT (FIELD_USED_AT + 2u)
#define FIELD_END      (FIELD_VALUE_AT + WIRE_VALUE_WIDTH)

/* Head-line layout: "HD" result(2) certificate(20) resident(20) version(20) status(12)
 * as_of(20). */
#define HEAD_RESULT_AT	2u
#define HEAD_CERT_AT	4u
#define HEAD_CODE_AT	24u
#define HEAD_VERSION_AT 44u
#define HEAD_STATUS_AT	64u
#define HEAD_AS_OF_AT	76u
#define HEAD_END	96u

/* Item-start layout: "IS" list(32) index(6). */
#define ITEM_INDEX_AT (2u + WIRE_NAME_WIDTH)
#define ITEM_END      (ITEM_INDEX_AT + 6u)

/* Trailer layout: "TR" lines(6) items(6). */
#define TRAILER_END 14u

/* Request layout: "RQ" certificate(20) municipality(6) resident(20) options(8). */
#define REQ_CERT_AT 2u
#define REQ_MUNI_AT 22u
#define REQ_CODE_AT 28u
#define REQ_OPTS_AT 48u
#define REQ_END	    56u

/* --- small helpers ------------------------------------------------------------------- */

/* Fills err (when given) with a printf-style message. */
#define SETERR(...)                                                                                \
	do {                                                                                       \
		if (err != NULL && err_size > 0)                                                   \
			snprintf(err, err_size, __VA_ARGS__);                                      \
	} while (0)

/* Parses width decimal digits; returns 0 or -1 when a byte is not a digit. */
static int parse_digits(const char *p, size_t width, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < width; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (UINT64_MAX - 9u) / 10u)
			return -1;
		v = v * 10u + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

static int all_spaces(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ')
			return 0;
	}
	return 1;
}

/*
 * Reads a left-aligned, space-padded ASCII text field of width bytes into out (size > width):
 * printable ASCII, no space inside, padding spaces only.  Returns 0 or -1.
 */
static int parse_text(const char *p, size_t width, char *out, size_t out_size)
{
	size_t n = 0;
	while (n < width && p[n] != ' ')
		n++;
	if (n >= out_size || !all_spaces(p + n, width - n))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x21 || p[i] > 0x7e)
			return -1;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* A name is [a-z0-9_]{1,32}. */
static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > WIRE_NAME_WIDTH)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

/* Printable ASCII without spaces, at most width bytes. */
static int text_ok(const char *s, size_t width)
{
	size_t n = strlen(s);
	if (n > width)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	}
	return 1;
}

static void put_text(char *line, size_t at, size_t width, const char *s)
{
	size_t n = strlen(s);
	memcpy(line + at, s, n);
	memset(line + at + n, ' ', width - n);
}

static void put_digits(char *line, size_t at, size_t width, uint64_t v)
{
	for (size_t i = width; i-- > 0;) {
		line[at + i] = (char)('0' + v % 10u);
		v /= 10u;
	}
}

/* --- header -------------------------------------------------------------------------- */

int wire_header_parse(const char *buf, struct wire_header *out, char *err, size_t err_size)
{
	uint64_t corr, len;
	if (memcmp(buf, WIRE_MAGIC, 6) != 0) {
		SETERR("frame header: bad magic");
		return WIRE_ERR_MALFORMED;
	}
	if (memcmp(buf + 6, "RQ", 2) == 0) {
		out->type = WIRE_REQUEST;
	} else if (memcmp(buf + 6, "RS", 2) == 0) {
		out->type = WIRE_RESPONSE;
	} else {
		SETERR("frame header: unknown type");
		return WIRE_ERR_MALFORMED;
	}
	if (parse_digits(buf + 8, 10, &corr) != 0 || parse_digits(buf + 18, 8, &len) != 0) {
		SETERR("frame header: bad number");
		return WIRE_ERR_MALFORMED;
	}
	if (!all_spaces(buf + 26, 5) || buf[31] != '\n') {
		SETERR("frame header: bad padding");
		return WIRE_ERR_MALFORMED;
	}
	if (len == 0 || len > WIRE_MAX_PAYLOAD || len % WIRE_LINE_SIZE != 0) {
		SETERR("frame header: bad payload length");
		return WIRE_ERR_MALFORMED;
	}
	out->correlation_id = corr;
	out->payload_len = (uint32_t)len;
	return WIRE_OK;
}

static void header_put(char *buf, enum wire_type type, uint64_t corr, size_t payload_len)
{
	memcpy(buf, WIRE_MAGIC, 6);
	memcpy(buf + 6, type == WIRE_REQUEST ? "RQ" : "RS", 2);
	put_digits(buf, 8, 10, corr);
	put_digits(buf, 18, 8, payload_len);
	memset(buf + 26, ' ', 5);
	buf[31] = '\n';
}

/* Checks the frame of lines common to every payload: size, newlines.  Returns lines or 0. */
static size_t payload_lines(const char *payload, size_t len, char *err, size_t err_size)
{
	if (len == 0 || len % WIRE_LINE_SIZE != 0 || len > WIRE_MAX_PAYLOAD) {
		SETERR("payload: bad length");
		return 0;
	}
	size_t n = len / WIRE_LINE_SIZE;
	for (size_t i = 0; i < n; i++) {
		if (payload[i * WIRE_LINE_SIZE + LINE_BODY] != '\n') {
			SETERR("line %zu: no newline at column 128", i + 1);
			return 0;
		}
	}
	return n;
}

/* Checks the trailer line l (the last of n).  Returns WIRE_OK or an error. */
static int check_trailer(const char *l, size_t n, size_t items, char *err, size_t err_size)
{
	uint64_t dl, di;
	if (memcmp(l, "TR", 2) != 0) {
		SETERR("line %zu: no trailer line: record incomplete", n);
		return WIRE_ERR_INCOMPLETE;
	}
	if (parse_digits(l + 2, 6, &dl) != 0 || parse_digits(l + 8, 6, &di) != 0 ||
	    !all_spaces(l + TRAILER_END, LINE_BODY - TRAILER_END)) {
		SETERR("line %zu: malformed trailer", n);
		return WIRE_ERR_MALFORMED;
	}
	if (dl > n - 1 || di > items) {
		SETERR("line %zu: trailer counts more lines than received: "
		       "record incomplete",
		       n);
		return WIRE_ERR_INCOMPLETE;
	}
	if (dl != n - 1 || di != items) {
		SETERR("line %zu: trailer counts do not match", n);
		return WIRE_ERR_MALFORMED;
	}
	return WIRE_OK;
}

/* --- requests ------------------------------------------------------------------------ */

int wire_request_encode(uint64_t correlation_id, const struct wire_request *req, char **out,
			size_t *out_len)
{
	if (correlation_id > WIRE_MAX_CORRELATION || !text_ok(req->certificate, 20) ||
	    req->certificate[0] == '\0' || strlen(req->municipality) != 6 ||
	    !text_ok(req->municipality, 6) || !text_ok(req->resident_code, 20) ||
	    req->resident_code[0] == '\0' || req->options > 99999999u)
		return WIRE_ERR_MALFORMED;
	size_t len = WIRE_HEADER_SIZE + 2 * WIRE_LINE_SIZE;
	char *buf = malloc(len);
	if (buf == NULL)
		return WIRE_ERR_NO_MEMORY;
	header_put(buf, WIRE_REQUEST, correlation_id, 2 * WIRE_LINE_SIZE);
	char *l = buf + WIRE_HEADER_SIZE;
	memset(l, ' ', 2 * WIRE_LINE_SIZE);
	memcpy(l, "RQ", 2);
	put_text(l, REQ_CERT_AT, 20, req->certificate);
	put_text(l, REQ_MUNI_AT, 6, req->municipality);
	put_text(l, REQ_CODE_AT, 20, req->resident_code);
	put_digits(l, REQ_OPTS_AT, 8, req->options);
	l[LINE_BODY] = '\n';
	l += WIRE_LINE_SIZE;
	memcpy(l, "TR", 2);
	put_digits(l, 2, 6, 1);
	put_digits(l, 8, 6, 0);
	l[LINE_BODY] = '\n';
	*out = buf;
	*out_len = len;
	return WIRE_OK;
}

int wire_request_decode(const char *payload, size_t len, struct wire_request *out, char *err,
			size_t err_size)
{
	size_t n = payload_lines(payload, len, err, err_size);
	if (n == 0)
		return WIRE_ERR_MALFORMED;
	if (n != 2) {
		SETERR("request: %zu lines, expected 2", n);
		return WIRE_ERR_MALFORMED;
	}
	const char *l = payload;
	uint64_t opts;
	memset(out, 0, sizeof *out);
	if (memcmp(l, "RQ", 2) != 0 ||
	    parse_text(l + REQ_CERT_AT, 20, out->certificate, sizeof out->certificate) != 0 ||
	    parse_text(l + REQ_MUNI_AT, 6, out->municipality, sizeof out->municipality) != 0 ||
	    parse_text(l + REQ_CODE_AT, 20, out->resident_code, sizeof out->resident_code) != 0 ||
	    parse_digits(l + REQ_OPTS_AT, 8, &opts) != 0 ||
	    !all_spaces(l + REQ_END, LINE_BODY - REQ_END) || out->certificate[0] == '\0' ||
	    out->resident_code[0] == '\0') {
		SETERR("line 1: malformed request line");
		return WIRE_ERR_MALFORMED;
	}
	out->options = (uint32_t)opts;
	return check_trailer(payload + WIRE_LINE_SIZE, 2, 0, err, err_size);
}

/* --- writer -------------------------------------------------------------------------- */

int wire_writer_init(struct wire_writer *w)
{
	memset(w, 0, sizeof *w);
	iconv_t cd = iconv_open("CP932", "UTF-8");
	if (cd == (iconv_t)-1)
		return WIRE_ERR_NO_MEMORY;
	w->cd = cd;
	return WIRE_OK;
}

void wire_writer_free(struct wire_writer *w)
{
	if (w->cd != NULL)
		iconv_close((iconv_t)w->cd);
	free(w->buf);
	memset(w, 0, sizeof *w);
}

/* Appends one blank line (spaces, newline) and returns it, or NULL. */
static char *writer_line(struct wire_writer *w)
{
	if (w->len + WIRE_LINE_SIZE + WIRE_LINE_SIZE > WIRE_MAX_PAYLOAD) {
		w->error = WIRE_ERR_MALFORMED; /* the record would not fit a frame */
		return NULL;
	}
	if (w->len + WIRE_LINE_SIZE > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16 * WIRE_LINE_SIZE;
		char *b = realloc(w->buf, cap);
		if (b == NULL) {
			w->error = WIRE_ERR_NO_MEMORY;
			return NULL;
		}
		w->buf = b;
		w->cap = cap;
	}
	char *l = w->buf + w->len;
	memset(l, ' ', WIRE_LINE_SIZE);
	l[LINE_BODY] = '\n';
	w->len += WIRE_LINE_SIZE;
	w->lines++;
	return l;
}

int wire_writer_head(struct wire_writer *w, enum wire_result result, const char *certificate,
		     const char *resident_code, uint64_t version, const char *status, int64_t as_of)
{
	if (w->error)
		return w->error;
	if (w->lines != 0 || !text_ok(certificate, 20) || !text_ok(resident_code, 20) ||
	    !text_ok(status, 12) || as_of < 0) {
		w->error = WIRE_ERR_MALFORMED;
		return w->error;
	}
	char *l = writer_line(w);
	if (l == NULL)
		return w->error;
	memcpy(l, "HD", 2);
	memcpy(l + HEAD_RESULT_AT,
	       result == WIRE_RESULT_OK		 ? "00"
	       : result == WIRE_RESULT_NOT_FOUND ? "10"
						 : "90",
	       2);
	put_text(l, HEAD_CERT_AT, 20, certificate);
	put_text(l, HEAD_CODE_AT, 20, resident_code);
	put_digits(l, HEAD_VERSION_AT, 20, version);
	put_text(l, HEAD_STATUS_AT, 12, status);
	put_digits(l, HEAD_AS_OF_AT, 20, (uint64_t)as_of);
	return WIRE_OK;
}

/* Is b the lead byte of a CP932 double-byte character? */
static int cp932_lead(unsigned char b)
{
	return (b >= 0x81 && b <= 0x9f) || (b >= 0xe0 && b <= 0xfc);
}

/* Writes a field (code first/cont for record or item) split over as many lines as needed. */
static int writer_value(struct wire_writer *w, const char *first, const char *cont,
			const char *name, const char *value)
{
	if (w->error)
		return w->error;
	if (w->lines == 0 || !name_ok(name)) {
		w->error = WIRE_ERR_MALFORMED;
		return w->error;
	}
	size_t in_len = strlen(value);
	size_t cap = in_len * 2 + 4; /* CP932 never needs more than 2 bytes per UTF-8 byte */
	char *conv = malloc(cap);
	if (conv == NULL) {
		w->error = WIRE_ERR_NO_MEMORY;
		return w->error;
	}
	char *in = (char *)value;
	char *o = conv;
	size_t in_left = in_len, out_left = cap;
	iconv((iconv_t)w->cd, NULL, NULL, NULL, NULL);
	if (iconv((iconv_t)w->cd, &in, &in_left, &o, &out_left) == (size_t)-1 ||
	    iconv((iconv_t)w->cd, NULL, NULL, &o, &out_left) == (size_t)-1) {
		free(conv);
		w->error = WIRE_ERR_ENCODING;
		return w->error;
	}
	size_t total = (size_t)(o - conv);
	for (size_t i = 0; i < total; i++) {
		unsigned char b = (unsigned char)conv[i];
		if (b < 0x20 || b == 0x7f) {
			free(conv);
			w->error = WIRE_ERR_ENCODING; /* control characters have no place here */
			return w->error;
		}
		if (cp932_lead(b))
			i++;
	}
	size_t at = 0;
	int first_line = 1;
	do {
		size_t chunk = 0;
		while (at + chunk < total) {
			size_t step = cp932_lead((unsigned char)conv[at + chunk]) ? 2 : 1;
			if (chunk + step > WIRE_VALUE_WIDTH)
				break;
			chunk += step;
		}
		if (at + chunk > total)
			chunk = total - at; /* a lone lead byte at the end cannot happen; be safe */
		char *l = writer_line(w);
		if (l == NULL) {
			free(conv);
			return w->error;
		}
		memcpy(l, first_line ? first : cont, 2);
		put_text(l, FIELD_NAME_AT, WIRE_NAME_WIDTH, name);
		put_digits(l, FIELD_USED_AT, 2, chunk);
		memcpy(l + FIELD_VALUE_AT, conv + at, chunk);
		at += chunk;
		first_line = 0;
	} while (at < total);
	free(conv);
	return WIRE_OK;
}

int wire_writer_field(struct wire_writer *w, const char *name, const char *value)
{
	if (!w->error && w->in_item)
		w->error = WIRE_ERR_MALFORMED; /* record fields come before the lists */
	return writer_value(w, "FD", "FC", name, value);
}

int wire_writer_item(struct wire_writer *w, const char *list)
{
	if (w->error)
		return w->error;
	if (w->lines == 0 || !name_ok(list)) {
		w->error = WIRE_ERR_MALFORMED;
		return w->error;
	}
	/* The index counts the items of this list so far. */
	size_t index = 1;
	for (size_t off = 0; off < w->len; off += WIRE_LINE_SIZE) {
		const char *l = w->buf + off;
		if (memcmp(l, "IS", 2) == 0 && strncmp(l + 2, list, strlen(list)) == 0 &&
		    (strlen(list) == WIRE_NAME_WIDTH || l[2 + strlen(list)] == ' '))
			index++;
	}
	size_t at = w->len;
	char *l = writer_line(w);
	if (l == NULL)
		return w->error;
	memcpy(l, "IS", 2);
	put_text(l, 2, WIRE_NAME_WIDTH, list);
	put_digits(l, ITEM_INDEX_AT, 6, index);
	w->in_item = 1;
	w->items++;
	w->last_item_at = at;
	return WIRE_OK;
}

int wire_writer_item_field(struct wire_writer *w, const char *name, const char *value)
{
	if (!w->error && !w->in_item)
		w->error = WIRE_ERR_MALFORMED;
	return writer_value(w, "IF", "IC", name, value);
}

int wire_writer_drop_last_item(struct wire_writer *w)
{
	if (w->error || w->items == 0)
		return 0;
	/* Keep the declared counts; lose the lines. */
	w->len = w->last_item_at;
	return 1;
}

int wire_writer_finish(struct wire_writer *w, uint64_t correlation_id, char **out, size_t *out_len)
{
	int rc = w->error;
	if (rc == 0 && (w->lines == 0 || correlation_id > WIRE_MAX_CORRELATION))
		rc = WIRE_ERR_MALFORMED;
	if (rc != 0) {
		wire_writer_free(w);
		return rc;
	}
	size_t declared_lines = w->lines, declared_items = w->items;
	w->lines = 0;
	char *l = writer_line(w);
	if (l == NULL) {
		rc = w->error;
		wire_writer_free(w);
		return rc;
	}
	memcpy(l, "TR", 2);
	put_digits(l, 2, 6, declared_lines);
	put_digits(l, 8, 6, declared_items);
	char *buf = malloc(WIRE_HEADER_SIZE + w->len);
	if (buf == NULL) {
		wire_writer_free(w);
		return WIRE_ERR_NO_MEMORY;
	}
	header_put(buf, WIRE_RESPONSE, correlation_id, w->len);
	memcpy(buf + WIRE_HEADER_SIZE, w->buf, w->len);
	*out = buf;
	*out_len = WIRE_HEADER_SIZE + w->len;
	wire_writer_free(w);
	return WIRE_OK;
}

/* --- response decoder ---------------------------------------------------------------- */

void wire_record_free(struct wire_record *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->field_count; i++) {
		free(r->fields[i].name);
		free(r->fields[i].value);
	}
	free(r->fields);
	for (size_t i = 0; i < r->list_count; i++) {
		struct wire_list *ls = &r->lists[i];
		for (size_t j = 0; j < ls->item_count; j++) {
			for (size_t k = 0; k < ls->items[j].field_count; k++) {
				free(ls->items[j].fields[k].name);
				free(ls->items[j].fields[k].value);
			}
			free(ls->items[j].fields);
		}
		free(ls->items);
		free(ls->name);
	}
	free(r->lists);
	free(r);
}

/* Grows an array of elements of size sz to hold count + 1. */
static int grow(void **arr, size_t count, size_t sz)
{
	void *p = realloc(*arr, (count + 1) * sz);
	if (p == NULL)
		return -1;
	*arr = p;
	memset((char *)p + count * sz, 0, sz);
	return 0;
}

/* Converts CP932 bytes to a malloc'd UTF-8 string; returns NULL on bad input (*enc set) or no
 * memory (*enc clear). */
static char *cp932_to_utf8(iconv_t cd, const char *raw, size_t n, int *enc)
{
	*enc = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)raw[i];
		if (b < 0x20 || b == 0x7f) {
			*enc = 1;
			return NULL;
		}
		if (cp932_lead(b))
			i++; /* the trail byte (0x40-0xfc) is checked by iconv */
	}
	size_t cap = n * 3 + 1;
	char *out = malloc(cap);
	if (out == NULL)
		return NULL;
	char *in = (char *)raw;
	char *o = out;
	size_t in_left = n, out_left = cap - 1;
	iconv(cd, NULL, NULL, NULL, NULL);
	if (iconv(cd, &in, &in_left, &o, &out_left) == (size_t)-1 || in_left != 0) {
		free(out);
		*enc = 1;
		return NULL;
	}
	*o = '\0';
	if (strlen(out) != (size_t)(o - out)) {
		free(out);
		*enc = 1;
		return NULL;
	}
	return out;
}

/* Appends n raw bytes to a growing buffer. */
struct rawbuf {
	char *p;
	size_t len, cap;
};

static int rawbuf_add(struct rawbuf *b, const char *p, size_t n)
{
	if (n == 0) /* an empty value: b->p may still be NULL, and NULL + 0 is undefined */
		return 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int wire_response_decode(const char *payload, size_t len, struct wire_record **out, char *err,
			 size_t err_size)
{
	size_t n = payload_lines(payload, len, err, err_size);
	if (n == 0)
		return WIRE_ERR_MALFORMED;
	if (n < 2) {
		SETERR("response: %zu line, expected a head and a trailer", n);
		return WIRE_ERR_INCOMPLETE;
	}
	struct wire_record *r = calloc(1, sizeof *r);
	if (r == NULL)
		return WIRE_ERR_NO_MEMORY;
	iconv_t cd = iconv_open("UTF-8", "CP932");
	if (cd == (iconv_t)-1) {
		free(r);
		return WIRE_ERR_NO_MEMORY;
	}
	struct rawbuf raw = {0};
	int rc = WIRE_OK;
	size_t items = 0;
	/* The field being assembled: where it goes (record or current item) and its name. */
	struct wire_item *cur_item = NULL;
	struct wire_field *pending = NULL; /* field whose raw value is in raw */
	char pending_name[WIRE_NAME_WIDTH + 1] = "";
	char pending_code = 0; /* 'F' or 'I' */

	/* Head line. */
	const char *l = payload;
	uint64_t v, as_of;
	char result[3] = {0};
	memcpy(result, l + HEAD_RESULT_AT, 2);
	if (memcmp(l, "HD", 2) != 0 ||
	    parse_text(l + HEAD_CERT_AT, 20, r->certificate, sizeof r->certificate) != 0 ||
	    parse_text(l + HEAD_CODE_AT, 20, r->resident_code, sizeof r->resident_code) != 0 ||
	    parse_digits(l + HEAD_VERSION_AT, 20, &v) != 0 ||
	    parse_text(l + HEAD_STATUS_AT, 12, r->status, sizeof r->status) != 0 ||
	    parse_digits(l + HEAD_AS_OF_AT, 20, &as_of) != 0 || as_of > (uint64_t)INT64_MAX ||
	    !all_spaces(l + HEAD_END, LINE_BODY - HEAD_END)) {
		SETERR("line 1: malformed head line");
		rc = WIRE_ERR_MALFORMED;
		goto out;
	}
	if (strcmp(result, "00") == 0) {
		r->result = WIRE_RESULT_OK;
	} else if (strcmp(result, "10") == 0) {
		r->result = WIRE_RESULT_NOT_FOUND;
	} else if (strcmp(result, "90") == 0) {
		r->result = WIRE_RESULT_ERROR;
	} else {
		SETERR("line 1: unknown result code");
		rc = WIRE_ERR_MALFORMED;
		goto out;
	}
	r->version = v;
	r->as_of = (int64_t)as_of;
	if (r->result == WIRE_RESULT_OK &&
	    (r->resident_code[0] == '\0' || r->status[0] == '\0' || r->certificate[0] == '\0')) {
		SETERR("line 1: head line lacks the record's identity");
		rc = WIRE_ERR_MALFORMED;
		goto out;
	}

	for (size_t i = 1; i < n; i++) {
		l = payload + i * WIRE_LINE_SIZE;
		int is_field = memcmp(l, "FD", 2) == 0 || memcmp(l, "FC", 2) == 0 ||
			       memcmp(l, "IF", 2) == 0 || memcmp(l, "IC", 2) == 0;
		int is_cont = is_field && l[1] == 'C';
		/* A value ends at the first line that does not continue it. */
		if (pending != NULL && !is_cont) {
			int enc;
			pending->value = cp932_to_utf8(cd, raw.p ? raw.p : "", raw.len, &enc);
			if (pending->value == NULL) {
				SETERR("line %zu: value is not valid CP932", i);
				rc = enc ? WIRE_ERR_ENCODING : WIRE_ERR_NO_MEMORY;
				goto out;
			}
			pending = NULL;
			raw.len = 0;
		}
		if (memcmp(l, "TR", 2) == 0 || i == n - 1) {
			if (i != n - 1) {
				SETERR("line %zu: trailer before the end", i + 1);
				rc = WIRE_ERR_MALFORMED;
				goto out;
			}
			rc = check_trailer(l, n, items, err, err_size);
			goto out;
		}
		if (r->result != WIRE_RESULT_OK) {
			SETERR("line %zu: data after a head without a record", i + 1);
			rc = WIRE_ERR_MALFORMED;
			goto out;
		}
		if (memcmp(l, "IS", 2) == 0) {
			char name[WIRE_NAME_WIDTH + 1];
			uint64_t index;
			if (parse_text(l + 2, WIRE_NAME_WIDTH, name, sizeof name) != 0 ||
			    !name_ok(name) || parse_digits(l + ITEM_INDEX_AT, 6, &index) != 0 ||
			    !all_spaces(l + ITEM_END, LINE_BODY - ITEM_END)) {
				SETERR("line %zu: malformed item line", i + 1);
				rc = WIRE_ERR_MALFORMED;
				goto out;
			}
			size_t li = 0;
			while (li < r->list_count && strcmp(r->lists[li].name, name) != 0)
				li++;
			if (li == r->list_count) {
				if (grow((void **)&r->lists, r->list_count, sizeof *r->lists) != 0)
					goto nomem;
				r->list_count++;
				r->lists[li].name = strdup(name);
				if (r->lists[li].name == NULL)
					goto nomem;
			}
			struct wire_list *ls = &r->lists[li];
			if (index != ls->item_count + 1) {
				SETERR("line %zu: item out of sequence", i + 1);
				rc = WIRE_ERR_MALFORMED;
				goto out;
			}
			if (grow((void **)&ls->items, ls->item_count, sizeof *ls->items) != 0)
				goto nomem;
			cur_item = &ls->items[ls->item_count++];
			items++;
			continue;
		}
		if (!is_field) {
			SETERR("line %zu: unknown line code", i + 1);
			rc = WIRE_ERR_MALFORMED;
			goto out;
		}
		char name[WIRE_NAME_WIDTH + 1];
		uint64_t used;
		if (parse_text(l + FIELD_NAME_AT, WIRE_NAME_WIDTH, name, sizeof name) != 0 ||
		    !name_ok(name) || parse_digits(l + FIELD_USED_AT, 2, &used) != 0 ||
		    used > WIRE_VALUE_WIDTH ||
		    !all_spaces(l + FIELD_VALUE_AT + used, LINE_BODY - FIELD_VALUE_AT - used)) {
			SETERR("line %zu: malformed field line", i + 1);
			rc = WIRE_ERR_MALFORMED;
			goto out;
		}
		char code = l[0];
		if (is_cont) {
			if (pending == NULL || pending_code != code ||
			    strcmp(pending_name, name) != 0) {
				SETERR("line %zu: continuation of nothing", i + 1);
				rc = WIRE_ERR_MALFORMED;
				goto out;
			}
		} else {
			struct wire_field **arr;
			size_t *count;
			if (code == 'F') {
				if (cur_item != NULL) {
					SETERR("line %zu: record field after the lists", i + 1);
					rc = WIRE_ERR_MALFORMED;
					goto out;
				}
				arr = &r->fields;
				count = &r->field_count;
			} else {
				if (cur_item == NULL) {
					SETERR("line %zu: item field outside an item", i + 1);
					rc = WIRE_ERR_MALFORMED;
					goto out;
				}
				arr = &cur_item->fields;
				count = &cur_item->field_count;
			}
			if (grow((void **)arr, *count, sizeof **arr) != 0)
				goto nomem;
			pending = &(*arr)[(*count)++];
			pending->name = strdup(name);
			if (pending->name == NULL)
				goto nomem;
			snprintf(pending_name, sizeof pending_name, "%s", name);
			pending_code = code;
			raw.len = 0;
		}
		if (rawbuf_add(&raw, l + FIELD_VALUE_AT, (size_t)used) != 0)
			goto nomem;
	}
	goto out;
nomem:
	rc = WIRE_ERR_NO_MEMORY;
	SETERR("out of memory");
out:
	/* A field left without value (error path) must still be freeable. */
	if (pending != NULL && pending->value == NULL && rc == WIRE_OK)
		rc = WIRE_ERR_MALFORMED;
	free(raw.p);
	iconv_close(cd);
	if (rc != WIRE_OK) {
		wire_record_free(r);
		return rc;
	}
	*out = r;
	return WIRE_OK;
}

/* --- stream reassembly -------------------------------------------------------------- */

void wire_reader_init(struct wire_reader *r)
{
	memset(r, 0, sizeof *r);
}

void wire_reader_free(struct wire_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof *r);
}

int wire_reader_feed(struct wire_reader *r, const char *data, size_t n)
{
	if (r->consumed > 0) {
		memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
		r->len -= r->consumed;
		r->consumed = 0;
	}
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + n)
			cap *= 2;
		char *b = realloc(r->buf, cap);
		if (b == NULL)
			return WIRE_ERR_NO_MEMORY;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	return WIRE_OK;
}

int wire_reader_next(struct wire_reader *r, struct wire_header *h, const char **payload, char *err,
		     size_t err_size)
{
	size_t avail = r->len - r->consumed;
	if (avail < WIRE_HEADER_SIZE)
		return 0;
	const char *p = r->buf + r->consumed;
	int rc = wire_header_parse(p, h, err, err_size);
	if (rc != WIRE_OK)
		return rc;
	if (avail < WIRE_HEADER_SIZE + (size_t)h->payload_len)
		return 0;
	*payload = p + WIRE_HEADER_SIZE;
	r->consumed += WIRE_HEADER_SIZE + h->payload_len;
	return 1;
}
