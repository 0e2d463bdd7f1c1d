/*
 * ttf.c: the TrueType subsetter of the PDF writer's embedded faces (contract, and why it is not
 * hb-subset, in ttf.h).
 *
 * The subset is laid out as: table directory, head, hhea, maxp, OS/2 and gasp (copied when the
 * font has them, as hb-subset kept them), hmtx, loca, glyf; every table starts on a 4-byte
 * boundary and is padded with zeros, so the checksums can be summed over whole words.  loca is
 * always the long format, and every glyph starts on a 4-byte boundary.
 *
 * Nothing here is shared between calls but the read-only struct ttf_font.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "ttf.h"

/* Component flags of a composite glyph (OpenType 'glyf'). */
#define TTF_ARG_WORDS	 0x0001
#define TTF_SCALE	 0x0008
#define TTF_MORE	 0x0020
#define TTF_XY_SCALE	 0x0040
#define TTF_TWO_BY_TWO	 0x0080
#define TTF_INSTRUCTIONS 0x0100

static unsigned ttf_u16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t ttf_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void ttf_put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void ttf_put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* The table tagged tag, or NULL when the font has none; its length in *len. */
static const unsigned char *ttf_table(const unsigned char *d, size_t size, const char *tag,
				      size_t *len)
{
	unsigned n = ttf_u16(d + 4);
	for (unsigned i = 0; i < n && 12 + 16 * (size_t)(i + 1) <= size; i++) {
		const unsigned char *rec = d + 12 + 16 * (size_t)i;
		uint32_t off = ttf_u32(rec + 8), l = ttf_u32(rec + 12);
		if (memcmp(rec, tag, 4) == 0 && off <= size && l <= size - off) {
			*len = l;
			return d + off;
		}
	}
	*len = 0;
	return NULL;
}

/* Where glyph g's data starts in glyf (g may be f->glyphs, the end of the last glyph). */
static size_t ttf_loca(const struct ttf_font *f, unsigned g)
{
	return f->long_loca ? ttf_u32(f->loca + 4 * (size_t)g)
			    : 2 * (size_t)ttf_u16(f->loca + 2 * (size_t)g);
}

int ttf_font_open(struct ttf_font *f, const void *data, size_t len, char *err, size_t err_size)
{
	const unsigned char *d = data;
	size_t head_len, hhea_len, loca_len;

	memset(f, 0, sizeof *f);
	if (len < 12 || (ttf_u32(d) != 0x00010000u && memcmp(d, "true", 4) != 0))
		return errbuf_set(err, err_size, "not a TrueType font (no glyf outlines)");
	f->data = d;
	f->len = len;
	f->head = ttf_table(d, len, "head", &head_len);
	f->hhea = ttf_table(d, len, "hhea", &hhea_len);
	f->maxp = ttf_table(d, len, "maxp", &f->maxp_len);
	f->hmtx = ttf_table(d, len, "hmtx", &f->hmtx_len);
	f->loca = ttf_table(d, len, "loca", &loca_len);
	f->glyf = ttf_table(d, len, "glyf", &f->glyf_len);
	f->os2 = ttf_table(d, len, "OS/2", &f->os2_len);
	f->gasp = ttf_table(d, len, "gasp", &f->gasp_len);
	if (f->head == NULL || f->hhea == NULL || f->maxp == NULL || f->hmtx == NULL ||
	    f->loca == NULL || f->glyf == NULL)
		return errbuf_set(err, err_size,
				  "a table of head, hhea, maxp, hmtx, loca and glyf is missing");
	if (head_len < 54 || ttf_u32(f->head + 12) != 0x5F0F3CF5u || ttf_u16(f->head + 50) > 1)
		return errbuf_set(err, err_size, "the head table is malformed");
	if (hhea_len < 36 || f->maxp_len < 6)
		return errbuf_set(err, err_size, "the hhea or maxp table is too short");
	f->long_loca = ttf_u16(f->head + 50) == 1;
	f->glyphs = ttf_u16(f->maxp + 4);
	f->hmetrics = ttf_u16(f->hhea + 34);
	if (f->glyphs == 0 || f->hmetrics == 0 || f->hmetrics > f->glyphs ||
	    f->hmtx_len < 4 * (size_t)f->hmetrics + 2 * (size_t)(f->glyphs - f->hmetrics))
		return errbuf_set(err, err_size, "hmtx does not cover the font's %u glyphs",
				  f->glyphs);
	if (loca_len < (f->long_loca ? 4 : 2) * ((size_t)f->glyphs + 1))
		return errbuf_set(err, err_size, "loca does not cover the font's %u glyphs",
				  f->glyphs);
	for (unsigned g = 0; g < f->glyphs; g++)
		if (ttf_loca(f, g) > ttf_loca(f, g + 1) || ttf_loca(f, g + 1) > f->glyf_len)
			return errbuf_set(err, err_size, "loca entry %u points outside glyf", g);
	return 0;
}

/* Makes room for need more bytes of s->data; 0 or -1. */
static int ttf_reserve(struct ttf_subset *s, size_t need)
{
	if (s->cap - s->len >= need)
		return 0;
	size_t cap = s->cap ? s->cap : 64 * 1024;
	while (cap - s->len < need)
		cap *= 2;
	unsigned char *d = realloc(s->data, cap);
	if (d == NULL)
		return -1;
	s->data = d;
	s->cap = cap;
	return 0;
}

/* Appends bytes (or zeros when p is NULL), then zeros up to the next 4-byte boundary. */
static int ttf_append(struct ttf_subset *s, const void *p, size_t n)
{
	size_t padded = (n + 3) & ~(size_t)3;
	if (ttf_reserve(s, padded) != 0)
		return -1;
	if (p != NULL)
		memcpy(s->data + s->len, p, n);
	else
		memset(s->data + s->len, 0, n);
	memset(s->data + s->len + n, 0, padded - n);
	s->len += padded;
	return 0;
}

/* Gives original glyph g the next new id; 0 or -1 (out of memory). */
static int ttf_push(struct ttf_subset *s, uint16_t *new_id, unsigned g)
{
	if (s->count == s->order_cap) {
		size_t cap = s->order_cap ? 2 * s->order_cap : 256;
		uint16_t *o = realloc(s->order, cap * sizeof *o);
		if (o == NULL)
			return -1;
		s->order = o;
		s->order_cap = cap;
	}
	new_id[g] = (uint16_t)s->count;
	s->order[s->count++] = (uint16_t)g;
	return 0;
}

/* Takes n bytes written in place at s->data + s->len (room reserved for n + 3), padded to 4. */
static void ttf_advance(struct ttf_subset *s, size_t n)
{
	size_t padded = (n + 3) & ~(size_t)3;
	memset(s->data + s->len + n, 0, padded - n);
	s->len += padded;
}

/* Adds original glyph g to the subset unless it is there already (0 always is). */
static int ttf_keep(struct ttf_subset *s, uint16_t *new_id, unsigned g)
{
	return g == 0 || new_id[g] != 0 ? 0 : ttf_push(s, new_id, g);
}

/*
 * Walks the components of the composite glyph at p[0..len): calls keep() for each component's
 * glyph id when out is NULL, else writes the glyph renumbered through new_id and without
 * instructions to out (len bytes at most) and sets *out_len.  0, or -1 if it is malformed.
 */
static int ttf_components(const struct ttf_font *f, const unsigned char *p, size_t len,
			  struct ttf_subset *s, uint16_t *new_id, unsigned char *out,
			  size_t *out_len)
{
	size_t at = 10;
	unsigned flags;
	if (out != NULL)
		memcpy(out, p, 10);
	do {
		if (len - at < 4)
			return -1;
		flags = ttf_u16(p + at);
		unsigned g = ttf_u16(p + at + 2);
		size_t size = 4 + (flags & TTF_ARG_WORDS ? 4 : 2) +
			      (flags & TTF_SCALE	? 2
			       : flags & TTF_XY_SCALE	? 4
			       : flags & TTF_TWO_BY_TWO ? 8
							: 0);
		if (g >= f->glyphs || len - at < size)
			return -1;
		if (out == NULL) {
			if (ttf_keep(s, new_id, g) != 0)
				return -1;
		} else {
			memcpy(out + at, p + at, size);
			ttf_put16(out + at, flags & ~(unsigned)TTF_INSTRUCTIONS);
			ttf_put16(out + at + 2, new_id[g]);
		}
		at += size;
	} while (flags & TTF_MORE);
	if (out_len != NULL)
		*out_len = at;
	return 0;
}

/*
 * Appends original glyph g to glyf: a simple glyph without its instructions, a composite one
 * renumbered and without instructions, an empty one as nothing.  0 or -1 (malformed, memory).
 */
static int ttf_copy_glyph(const struct ttf_font *f, unsigned g, struct ttf_subset *s,
			  uint16_t *new_id)
{
	size_t start = ttf_loca(f, g), len = ttf_loca(f, g + 1) - start;
	const unsigned char *p = f->glyf + start;
	if (len == 0)
		return 0;
	if (len < 10)
		return -1;
	int contours = (int16_t)ttf_u16(p);
	if (contours < 0) {
		size_t n;
		if (ttf_reserve(s, len + 3) != 0 ||
		    ttf_components(f, p, len, s, new_id, s->data + s->len, &n) != 0)
			return -1;
		ttf_advance(s, n);
		return 0;
	}
	size_t ends = 10 + 2 * (size_t)contours;
	if (len < ends + 2 || len - ends - 2 < ttf_u16(p + ends))
		return -1;
	size_t rest = ends + 2 + ttf_u16(p + ends);
	if (ttf_reserve(s, len + 3) != 0)
		return -1;
	unsigned char *o = s->data + s->len;
	memcpy(o, p, ends);
	ttf_put16(o + ends, 0);
	memcpy(o + ends + 2, p + rest, len - rest);
	ttf_advance(s, ends + 2 + len - rest);
	return 0;
}

static uint32_t ttf_checksum(const unsigned char *p, size_t padded_len)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < padded_len; i += 4)
		sum += ttf_u32(p + i);
	return sum;
}

int ttf_subset(const struct ttf_font *f, const uint32_t *gids, size_t n, uint16_t *new_id,
	       struct ttf_subset *s, char *err, size_t err_size)
{
	enum { HEAD, HHEA, MAXP, OS2, GASP, HMTX, LOCA, GLYF, TABLES };
	static const char tags[TABLES][5] = {"head", "hhea", "maxp", "OS/2",
					     "gasp", "hmtx", "loca", "glyf"};
	/* The directory lists tables by tag, in byte order. */
	static const int sorted[TABLES] = {OS2, GASP, GLYF, HEAD, HHEA, HMTX, LOCA, MAXP};
	size_t at[TABLES] = {0}, size[TABLES] = {0};
	const char *why = "out of memory";

	s->len = 0;
	s->count = 0;
	if (ttf_push(s, new_id, 0) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (gids[i] >= f->glyphs) {
			why = "a glyph id past the font's glyphs";
			goto fail;
		}
		if (ttf_keep(s, new_id, gids[i]) != 0)
			goto fail;
	}
	/* The components of composite glyphs, and theirs in turn (the list grows as it goes; each
	 * glyph joins once, so it ends at f->glyphs <= 65535 entries at most). */
	for (size_t i = 1; i < s->count; i++) {
		unsigned g = s->order[i];
		size_t start = ttf_loca(f, g), len = ttf_loca(f, g + 1) - start;
		if (len >= 10 && (int16_t)ttf_u16(f->glyf + start) < 0 &&
		    ttf_components(f, f->glyf + start, len, s, new_id, NULL, NULL) != 0) {
			why = "a malformed composite glyph";
			goto fail;
		}
	}

	int present[TABLES] = {1, 1, 1, f->os2 != NULL, f->gasp != NULL, 1, 1, 1};
	unsigned tables = 0;
	for (int t = 0; t < TABLES; t++)
		tables += (unsigned)present[t];
	unsigned pow2 = 1, log2 = 0;
	while (pow2 * 2 <= tables) {
		pow2 *= 2;
		log2++;
	}
	if (ttf_append(s, NULL, 12 + 16 * (size_t)tables) != 0)
		goto fail;
	ttf_put32(s->data, 0x00010000u);
	ttf_put16(s->data + 4, tables);
	ttf_put16(s->data + 6, pow2 * 16);
	ttf_put16(s->data + 8, log2);
	ttf_put16(s->data + 10, tables * 16 - pow2 * 16);

	const unsigned char *copy[TABLES] = {f->head, f->hhea, f->maxp, f->os2, f->gasp};
	const size_t copy_len[TABLES] = {54, 36, f->maxp_len, f->os2_len, f->gasp_len};
	for (int t = HEAD; t <= GASP; t++) {
		if (!present[t])
			continue;
		at[t] = s->len;
		size[t] = copy_len[t];
		if (ttf_append(s, copy[t], size[t]) != 0)
			goto fail;
	}
	unsigned char *p = s->data + at[HEAD];
	ttf_put32(p + 8, 0);  /* checkSumAdjustment, set last */
	ttf_put16(p + 50, 1); /* long loca */
	ttf_put16(s->data + at[HHEA] + 34, (unsigned)s->count);
	p = s->data + at[MAXP];
	ttf_put16(p + 4, (unsigned)s->count);
	if (size[MAXP] >= 28) {
		/* No instructions left: no zones, storage, functions or stack to reserve. */
		ttf_put16(p + 14, 1);
		memset(p + 16, 0, 12);
	}

	at[HMTX] = s->len;
	size[HMTX] = 4 * s->count;
	if (ttf_append(s, NULL, size[HMTX]) != 0)
		goto fail;
	for (size_t i = 0; i < s->count; i++) {
		unsigned g = s->order[i];
		const unsigned char *m =
		    f->hmtx + 4 * (size_t)(g < f->hmetrics ? g : f->hmetrics - 1);
		unsigned char *o = s->data + at[HMTX] + 4 * i;
		memcpy(o, m, 2);
		memcpy(o + 2,
		       g < f->hmetrics
			   ? m + 2
			   : f->hmtx + 4 * (size_t)f->hmetrics + 2 * (size_t)(g - f->hmetrics),
		       2);
	}
	at[LOCA] = s->len;
	size[LOCA] = 4 * (s->count + 1);
	if (ttf_append(s, NULL, size[LOCA]) != 0)
		goto fail;
	at[GLYF] = s->len;
	for (size_t i = 0; i < s->count; i++) {
		ttf_put32(s->data + at[LOCA] + 4 * i, (uint32_t)(s->len - at[GLYF]));
		if (ttf_copy_glyph(f, s->order[i], s, new_id) != 0) {
			why = "a malformed glyph";
			goto fail;
		}
	}
	size[GLYF] = s->len - at[GLYF];
	ttf_put32(s->data + at[LOCA] + 4 * s->count, (uint32_t)size[GLYF]);

	unsigned char *rec = s->data + 12;
	for (int k = 0; k < TABLES; k++) {
		int t = sorted[k];
		if (!present[t])
			continue;
		memcpy(rec, tags[t], 4);
		ttf_put32(rec + 4, ttf_checksum(s->data + at[t], (size[t] + 3) & ~(size_t)3));
		ttf_put32(rec + 8, (uint32_t)at[t]);
		ttf_put32(rec + 12, (uint32_t)size[t]);
		rec += 16;
	}
	ttf_put32(s->data + at[HEAD] + 8, 0xB1B0AFBAu - ttf_checksum(s->data, s->len));
	return 0;

fail:
	ttf_subset_forget(s, new_id);
	s->count = 0;
	s->len = 0;
	return errbuf_set(err, err_size, "cannot subset the font: %s", why);
}

void ttf_subset_forget(const struct ttf_subset *s, uint16_t *new_id)
{
	for (size_t i = 0; i < s->count; i++)
		new_id[s->order[i]] = 0;
}

void ttf_subset_free(struct ttf_subset *s)
{
	free(s->data);
	free(s->order);
	memset(s, 0, sizeof *s);
}
