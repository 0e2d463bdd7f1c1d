/*
 * test_ttf.c: the TrueType subsetter of the PDF writer (core/ttf.c).
 *
 * A subset is read back with HarfBuzz, as a PDF viewer's font engine would read it: every glyph
 * of the subset must draw the same outline, with the same advance and side bearing, as the
 * original glyph it stands for.  The IPAex faces the certificates use (fonts-ipaexfont, found
 * through fontconfig as the renderer finds them) have simple glyphs only, so composite glyphs
 * are tested on a small font built here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fontconfig/fontconfig.h>
#include <hb.h>

#include "ttf.h"

/* ------------------------------------------------------------------------ reading back */

struct outline {
	char *text;
	size_t len, cap;
};

static void outline_add(struct outline *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void outline_add(struct outline *o, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof line);
	if (o->len + (size_t)n + 1 > o->cap) {
		o->cap = o->cap ? 2 * o->cap + (size_t)n : 1024;
		o->text = realloc(o->text, o->cap);
		assert_non_null(o->text);
	}
	memcpy(o->text + o->len, line, (size_t)n + 1);
	o->len += (size_t)n;
}

static void move_to(hb_draw_funcs_t *df, void *o, hb_draw_state_t *st, float x, float y, void *u)
{
	(void)df, (void)st, (void)u;
	outline_add(o, "M%g,%g ", x, y);
}

static void line_to(hb_draw_funcs_t *df, void *o, hb_draw_state_t *st, float x, float y, void *u)
{
	(void)df, (void)st, (void)u;
	outline_add(o, "L%g,%g ", x, y);
}

static void quad_to(hb_draw_funcs_t *df, void *o, hb_draw_state_t *st, float cx, float cy, float x,
		    float y, void *u)
{
	(void)df, (void)st, (void)u;
	outline_add(o, "Q%g,%g,%g,%g ", cx, cy, x, y);
}

static void cubic_to(hb_draw_funcs_t *df, void *o, hb_draw_state_t *st, float c1x, float c1y,
		     float c2x, float c2y, float x, float y, void *u)
{
	(void)df, (void)st, (void)u;
	outline_add(o, "C%g,%g,%g,%g,%g,%g ", c1x, c1y, c2x, c2y, x, y);
}

static void close_path(hb_draw_funcs_t *df, void *o, hb_draw_state_t *st, void *u)
{
	(void)df, (void)st, (void)u;
	outline_add(o, "Z ");
}

/* Glyph g of font as text: its outline, advance and extents (so side bearings count too). */
static char *glyph_text(hb_font_t *font, unsigned g)
{
	static hb_draw_funcs_t *funcs;
	if (funcs == NULL) {
		funcs = hb_draw_funcs_create();
		hb_draw_funcs_set_move_to_func(funcs, move_to, NULL, NULL);
		hb_draw_funcs_set_line_to_func(funcs, line_to, NULL, NULL);
		hb_draw_funcs_set_quadratic_to_func(funcs, quad_to, NULL, NULL);
		hb_draw_funcs_set_cubic_to_func(funcs, cubic_to, NULL, NULL);
		hb_draw_funcs_set_close_path_func(funcs, close_path, NULL, NULL);
		hb_draw_funcs_make_immutable(funcs);
	}
	struct outline o = {0};
	hb_glyph_extents_t e = {0};
	hb_font_get_glyph_extents(font, g, &e);
	outline_add(&o, "adv %d ext %d %d %d %d: ", hb_font_get_glyph_h_advance(font, g),
		    e.x_bearing, e.y_bearing, e.width, e.height);
	hb_font_get_glyph_shape(font, g, funcs, &o);
	return o.text;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The table tagged tag of the font program s (asserts it is there); its length in *len. */
static const unsigned char *table_of(const struct ttf_subset *s, const char *tag, size_t *len)
{
	unsigned n = be16(s->data + 4);
	for (unsigned i = 0; i < n; i++) {
		const unsigned char *rec = s->data + 12 + 16 * i;
		if (memcmp(rec, tag, 4) == 0) {
			*len = be32(rec + 12);
			return s->data + be32(rec + 8);
		}
	}
	fail_msg("the subset has no %s table", tag);
	return NULL;
}

/*
 * Checks what every subset must be: a directory sorted by tag whose checksums are right, a
 * whole-font sum that head's checkSumAdjustment makes 0xB1B0AFBA, no hinting tables, and every
 * glyph the same as the original glyph it stands for.
 */
static void check_subset(const struct ttf_subset *s, const struct ttf_font *f, hb_font_t *original)
{
	unsigned tables = be16(s->data + 4);
	assert_int_equal(s->len % 4, 0);
	uint32_t sum = 0;
	for (size_t i = 0; i < s->len; i += 4)
		sum += be32(s->data + i);
	assert_int_equal(sum, 0xB1B0AFBAu);
	for (unsigned i = 0; i < tables; i++) {
		const unsigned char *rec = s->data + 12 + 16 * i;
		if (i > 0)
			assert_true(memcmp(rec - 16, rec, 4) < 0);
		assert_false(memcmp(rec, "fpgm", 4) == 0 || memcmp(rec, "prep", 4) == 0 ||
			     memcmp(rec, "cvt ", 4) == 0);
		uint32_t off = be32(rec + 8), len = be32(rec + 12), t = 0;
		assert_true(off % 4 == 0 && off + len <= s->len);
		for (uint32_t k = 0; k < ((len + 3) & ~3u); k += 4)
			t += be32(s->data + off + k);
		if (memcmp(rec, "head", 4) == 0) /* summed with checkSumAdjustment 0 */
			t -= be32(s->data + off + 8);
		assert_int_equal(t, be32(rec + 4));
	}

	hb_blob_t *blob = hb_blob_create((const char *)s->data, (unsigned)s->len,
					 HB_MEMORY_MODE_READONLY, NULL, NULL);
	hb_face_t *face = hb_face_create(blob, 0);
	hb_font_t *font = hb_font_create(face);
	assert_int_equal(hb_face_get_glyph_count(face), s->count);
	assert_int_equal(hb_face_get_upem(face), hb_face_get_upem(hb_font_get_face(original)));
	for (size_t i = 0; i < s->count; i++) {
		char *want = glyph_text(original, s->order[i]);
		char *got = glyph_text(font, (unsigned)i);
		if (strcmp(want, got) != 0)
			fail_msg(
			    "subset glyph %zu (original %u) differs:\n want %.300s\n got  %.300s",
			    i, s->order[i], want, got);
		free(want);
		free(got);
	}
	/* Advance and left side bearing (which HarfBuzz does not report; FreeType places the
	 * outline by it) as the original hmtx has them: past numberOfHMetrics, the last advance
	 * and a bearing of their own. */
	size_t hmtx_len;
	const unsigned char *hmtx = table_of(s, "hmtx", &hmtx_len);
	assert_int_equal(hmtx_len, 4 * s->count);
	for (size_t i = 0; i < s->count; i++) {
		unsigned g = s->order[i], last = f->hmetrics - 1;
		unsigned adv = be16(f->hmtx + 4 * (g < f->hmetrics ? g : last));
		unsigned lsb = g < f->hmetrics
				   ? be16(f->hmtx + 4 * g + 2)
				   : be16(f->hmtx + 4 * f->hmetrics + 2 * (g - f->hmetrics));
		assert_int_equal(be16(hmtx + 4 * i), adv);
		assert_int_equal(be16(hmtx + 4 * i + 2), lsb);
	}
	/* No glyph keeps instructions: they would need the tables that were left out. */
	size_t loca_len, glyf_len;
	const unsigned char *loca = table_of(s, "loca", &loca_len);
	const unsigned char *glyf = table_of(s, "glyf", &glyf_len);
	assert_int_equal(loca_len, 4 * (s->count + 1));
	for (size_t i = 0; i < s->count; i++) {
		const unsigned char *g = glyf + be32(loca + 4 * i);
		if (be32(loca + 4 * i + 4) == be32(loca + 4 * i))
			continue;
		int contours = (int16_t)be16(g);
		if (contours >= 0) {
			assert_int_equal(be16(g + 10 + 2 * contours), 0);
			continue;
		}
		size_t at = 10;
		unsigned flags;
		do {
			flags = be16(g + at);
			assert_false(flags & 0x0100);
			at += 4 + (flags & 1 ? 4 : 2) +
			      (flags & 8      ? 2
			       : flags & 0x40 ? 4
			       : flags & 0x80 ? 8
					      : 0);
		} while (flags & 0x20);
	}
	hb_font_destroy(font);
	hb_face_destroy(face);
	hb_blob_destroy(blob);
}

static void assert_all_zero(const uint16_t *new_id, unsigned n)
{
	for (unsigned g = 0; g < n; g++)
		if (new_id[g] != 0)
			fail_msg("new_id[%u] is %u after the subset was forgotten", g, new_id[g]);
}

/* ------------------------------------------------------------------------ the IPAex faces */

static hb_blob_t *ipaex_blob(const char *family)
{
	FcPattern *pat = FcPatternCreate();
	FcPatternAddString(pat, FC_FAMILY, (const FcChar8 *)family);
	FcConfigSubstitute(NULL, pat, FcMatchPattern);
	FcDefaultSubstitute(pat);
	FcResult res;
	FcPattern *match = FcFontMatch(NULL, pat, &res);
	FcChar8 *file = NULL, *got = NULL;
	hb_blob_t *blob = NULL;
	if (match != NULL && FcPatternGetString(match, FC_FAMILY, 0, &got) == FcResultMatch &&
	    strcmp((const char *)got, family) == 0 &&
	    FcPatternGetString(match, FC_FILE, 0, &file) == FcResultMatch)
		blob = hb_blob_create_from_file_or_fail((const char *)file);
	if (match != NULL)
		FcPatternDestroy(match);
	FcPatternDestroy(pat);
	if (blob == NULL)
		fail_msg("font %s not found (install fonts-ipaexfont)", family);
	return blob;
}

/* The glyphs HarfBuzz shapes text into, in order (repeats kept, as the PDF writer's list). */
static size_t shape(hb_font_t *font, const char *text, uint32_t *gids, size_t max)
{
	hb_buffer_t *buf = hb_buffer_create();
	hb_buffer_add_utf8(buf, text, -1, 0, -1);
	hb_buffer_guess_segment_properties(buf);
	hb_shape(font, buf, NULL, 0);
	unsigned n;
	hb_glyph_info_t *info = hb_buffer_get_glyph_infos(buf, &n);
	assert_true(n <= max);
	for (unsigned i = 0; i < n; i++)
		gids[i] = info[i].codepoint;
	hb_buffer_destroy(buf);
	return n;
}

static void each_ipaex_subset_glyph_draws_as_the_original(void **state)
{
	(void)state;
	static const char *const families[] = {"IPAexGothic", "IPAexMincho"};
	static const char text[] =
	    "住民票の写し 横浜市中区扇町2丁目1番12号 平野 由美子 ヒラノ ユミコ "
	    "令和8年11月28日 発行番号 141003-20261128-000001 ABCxyz（）「」";
	for (size_t k = 0; k < 2; k++) {
		hb_blob_t *blob = ipaex_blob(families[k]);
		hb_face_t *face = hb_face_create(blob, 0);
		hb_font_t *font = hb_font_create(face);
		unsigned blen;
		const char *bytes = hb_blob_get_data(blob, &blen);
		struct ttf_font f;
		char err[160];
		assert_int_equal(ttf_font_open(&f, bytes, blen, err, sizeof err), 0);
		assert_int_equal(f.glyphs, hb_face_get_glyph_count(face));

		uint32_t gids[512];
		size_t n = shape(font, text, gids, 500);
		/* The last glyphs of the font, and the one after the last advance in hmtx. */
		gids[n++] = f.glyphs - 1;
		gids[n++] = f.hmetrics;
		uint16_t *new_id = calloc(f.glyphs, sizeof *new_id);
		struct ttf_subset s = {0};
		assert_int_equal(ttf_subset(&f, gids, n, new_id, &s, err, sizeof err), 0);
		/* 0 first, then each glyph once, in order of first use. */
		assert_int_equal(s.order[0], 0);
		size_t want = 1;
		for (size_t i = 0; i < n; i++) {
			if (gids[i] == 0)
				continue;
			assert_int_equal(s.order[new_id[gids[i]]], gids[i]);
			if (new_id[gids[i]] == want)
				want++;
			assert_true(new_id[gids[i]] < want);
		}
		assert_int_equal(s.count, want);
		check_subset(&s, &f, font);
		/* Far smaller than the font: outlines of the drawn glyphs only. */
		assert_true(s.len < 64 * 1024);

		ttf_subset_forget(&s, new_id);
		assert_all_zero(new_id, f.glyphs);
		/* The same struct again, for another document: nothing of the first is left. */
		uint32_t one[] = {gids[3]};
		assert_int_equal(ttf_subset(&f, one, 1, new_id, &s, err, sizeof err), 0);
		assert_int_equal(s.count, 2);
		check_subset(&s, &f, font);
		ttf_subset_forget(&s, new_id);
		ttf_subset_free(&s);
		free(new_id);
		hb_font_destroy(font);
		hb_face_destroy(face);
		hb_blob_destroy(blob);
	}
}

/* ------------------------------------------------------------------ a font built here */

struct bytes {
	unsigned char d[4096];
	size_t len;
};

static void put16(struct bytes *b, unsigned v)
{
	b->d[b->len++] = (unsigned char)(v >> 8);
	b->d[b->len++] = (unsigned char)v;
}

static void put32(struct bytes *b, uint32_t v)
{
	put16(b, v >> 16);
	put16(b, v & 0xffff);
}

static void pad4(struct bytes *b)
{
	while (b->len % 4)
		b->d[b->len++] = 0;
}

/* A simple glyph: one closed triangle at (x, y) of size w, with 2 bytes of instructions. */
static void simple_glyph(struct bytes *g, int x, int y, int w)
{
	put16(g, 1);
	put16(g, (unsigned)x & 0xffff);
	put16(g, (unsigned)y & 0xffff);
	put16(g, (unsigned)(x + w) & 0xffff);
	put16(g, (unsigned)(y + w) & 0xffff);
	put16(g, 2);	  /* endPtsOfContours */
	put16(g, 2);	  /* instructionLength */
	put16(g, 0xB000); /* PUSHB[0] 0: harmless bytes to be dropped */
	for (int i = 0; i < 3; i++)
		g->d[g->len++] = 0x01; /* on curve, x and y as words */
	put16(g, (unsigned)x & 0xffff);
	put16(g, (unsigned)w);
	put16(g, (unsigned)-w & 0xffff);
	put16(g, (unsigned)y & 0xffff);
	put16(g, 0);
	put16(g, (unsigned)w);
}

/*
 * A 7-glyph font: 0 and 1 triangles, 2 empty, 3 a composite of 1 moved by (100, 50),
 * 4 a composite of 3 (so of 1 too) scaled by 1/2 and of 5 with instructions, 5 a triangle,
 * 6 a triangle; numberOfHMetrics 5, so glyphs 5 and 6 take the last advance.
 */
static size_t build_font(unsigned char *out, size_t cap)
{
	struct bytes glyf = {0}, loca = {0};
	size_t starts[8];
	for (int g = 0; g < 7; g++) {
		starts[g] = glyf.len;
		if (g == 0 || g == 1 || g == 5 || g == 6) {
			simple_glyph(&glyf, 10 * g, 20 * g, 100 + 30 * g);
		} else if (g == 3) {
			put16(&glyf, 0xffff);
			for (int i = 0; i < 4; i++)
				put16(&glyf, 0);
			put16(&glyf, 0x0001 | 0x0002); /* words, x/y offsets */
			put16(&glyf, 1);
			put16(&glyf, 100);
			put16(&glyf, 50);
		} else if (g == 4) {
			put16(&glyf, 0xffff);
			for (int i = 0; i < 4; i++)
				put16(&glyf, 0);
			put16(&glyf, 0x0002 | 0x0008 | 0x0020); /* bytes, scale, more */
			put16(&glyf, 3);
			glyf.d[glyf.len++] = 7;
			glyf.d[glyf.len++] = 9;
			put16(&glyf, 0x2000);	       /* 0.5 in F2Dot14 */
			put16(&glyf, 0x0002 | 0x0100); /* bytes, instructions follow */
			put16(&glyf, 5);
			glyf.d[glyf.len++] = 0;
			glyf.d[glyf.len++] = 0;
			put16(&glyf, 1);
			glyf.d[glyf.len++] = 0xB0;
		}
		pad4(&glyf);
	}
	starts[7] = glyf.len;
	for (int g = 0; g <= 7; g++)
		put32(&loca, (uint32_t)starts[g]);

	struct bytes head = {0}, hhea = {0}, maxp = {0}, hmtx = {0};
	put32(&head, 0x00010000);
	put32(&head, 0x00010000);
	put32(&head, 0); /* checkSumAdjustment */
	put32(&head, 0x5F0F3CF5);
	put16(&head, 0);
	put16(&head, 1000); /* unitsPerEm */
	for (int i = 0; i < 4; i++)
		put32(&head, 0); /* created, modified */
	put16(&head, 0);
	put16(&head, 0);
	put16(&head, 1000);
	put16(&head, 1000);
	put16(&head, 0);
	put16(&head, 8);
	put16(&head, 2);
	put16(&head, 1); /* indexToLocFormat: long */
	put16(&head, 0);
	put32(&hhea, 0x00010000);
	put16(&hhea, 800);
	put16(&hhea, (unsigned)-200 & 0xffff);
	for (int i = 0; i < 13; i++)
		put16(&hhea, 0);
	put16(&hhea, 5); /* numberOfHMetrics */
	put32(&maxp, 0x00010000);
	put16(&maxp, 7);
	put16(&maxp, 3); /* maxPoints */
	put16(&maxp, 1); /* maxContours */
	put16(&maxp, 6); /* maxCompositePoints */
	put16(&maxp, 2); /* maxCompositeContours */
	put16(&maxp, 2); /* maxZones */
	for (int i = 0; i < 6; i++)
		put16(&maxp, 4); /* twilight points .. maxSizeOfInstructions */
	put16(&maxp, 2);	 /* maxComponentElements */
	put16(&maxp, 2);	 /* maxComponentDepth */
	for (int g = 0; g < 5; g++) {
		put16(&hmtx, 500 + 10 * (unsigned)g);
		put16(&hmtx, 10 * (unsigned)g);
	}
	put16(&hmtx, 50);
	put16(&hmtx, 60);

	const struct {
		const char *tag;
		struct bytes *b;
	} t[] = {{"glyf", &glyf}, {"head", &head}, {"hhea", &hhea},
		 {"hmtx", &hmtx}, {"loca", &loca}, {"maxp", &maxp}};
	static struct bytes font;
	size_t n = sizeof t / sizeof t[0];
	font.len = 0;
	put32(&font, 0x00010000);
	put16(&font, (unsigned)n);
	put16(&font, 64);
	put16(&font, 2);
	put16(&font, (unsigned)(n * 16 - 64));
	size_t at = 12 + 16 * n;
	for (size_t i = 0; i < n; i++) {
		memcpy(font.d + font.len, t[i].tag, 4);
		font.len += 4;
		put32(&font, 0); /* checksums are not checked on reading */
		put32(&font, (uint32_t)at);
		put32(&font, (uint32_t)t[i].b->len);
		at += (t[i].b->len + 3) & ~(size_t)3;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(font.d + font.len, t[i].b->d, t[i].b->len);
		font.len += t[i].b->len;
		pad4(&font);
	}
	assert_true(font.len <= cap);
	memcpy(out, font.d, font.len);
	return font.len;
}

static void composite_glyphs_bring_their_components_renumbered(void **state)
{
	(void)state;
	static unsigned char data[4096];
	size_t len = build_font(data, sizeof data);
	struct ttf_font f;
	char err[160];
	assert_int_equal(ttf_font_open(&f, data, len, err, sizeof err), 0);
	hb_blob_t *blob =
	    hb_blob_create((const char *)data, (unsigned)len, HB_MEMORY_MODE_READONLY, NULL, NULL);
	hb_face_t *face = hb_face_create(blob, 0);
	hb_font_t *font = hb_font_create(face);
	assert_int_equal(hb_face_get_glyph_count(face), 7);

	uint16_t new_id[7] = {0};
	struct ttf_subset s = {0};
	uint32_t gids[] = {6, 4, 2, 4};
	assert_int_equal(ttf_subset(&f, gids, 4, new_id, &s, err, sizeof err), 0);
	/* 0, the glyphs asked for in order, then 4's components 3 and 5, then 3's component 1. */
	static const uint16_t want[] = {0, 6, 4, 2, 3, 5, 1};
	assert_int_equal(s.count, 7);
	assert_memory_equal(s.order, want, sizeof want);
	/* The composites draw as before although their components have new numbers. */
	char *outline = glyph_text(font, 4);
	assert_non_null(strstr(outline, "M"));
	free(outline);
	check_subset(&s, &f, font);

	ttf_subset_forget(&s, new_id);
	assert_all_zero(new_id, 7);
	uint32_t just3[] = {3};
	assert_int_equal(ttf_subset(&f, just3, 1, new_id, &s, err, sizeof err), 0);
	assert_int_equal(s.count, 3);
	check_subset(&s, &f, font);
	ttf_subset_forget(&s, new_id);
	ttf_subset_free(&s);
	hb_font_destroy(font);
	hb_face_destroy(face);
	hb_blob_destroy(blob);
}

static void a_glyph_past_the_font_is_refused_and_nothing_stays_numbered(void **state)
{
	(void)state;
	static unsigned char data[4096];
	size_t len = build_font(data, sizeof data);
	struct ttf_font f;
	char err[160] = "";
	assert_int_equal(ttf_font_open(&f, data, len, err, sizeof err), 0);
	uint16_t new_id[7] = {0};
	struct ttf_subset s = {0};
	uint32_t gids[] = {1, 4, 7};
	assert_int_equal(ttf_subset(&f, gids, 3, new_id, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "past the font's glyphs"));
	assert_all_zero(new_id, 7);
	assert_int_equal(s.count, 0);
	ttf_subset_free(&s);
}

static void a_damaged_font_is_refused_with_the_reason(void **state)
{
	(void)state;
	static unsigned char data[4096], bad[4096];
	size_t len = build_font(data, sizeof data);
	struct ttf_font f;
	char err[160];

	assert_int_equal(ttf_font_open(&f, data, 8, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a TrueType font"));
	memcpy(bad, data, len);
	memcpy(bad, "OTTO", 4); /* CFF outlines: no glyf to embed as FontFile2 */
	assert_int_equal(ttf_font_open(&f, bad, len, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a TrueType font"));

	memcpy(bad, data, len);
	memcpy(bad + 12, "gly_", 4); /* the first directory record is glyf's */
	assert_int_equal(ttf_font_open(&f, bad, len, err, sizeof err), -1);
	assert_non_null(strstr(err, "is missing"));

	/* loca's last entry (the end of glyph 6) past the end of glyf. */
	memcpy(bad, data, len);
	const unsigned char *rec = bad + 12 + 16 * 4;
	assert_memory_equal(rec, "loca", 4);
	unsigned char *last = bad + be32(rec + 8) + 4 * 7;
	last[0] = 0x7f;
	assert_int_equal(ttf_font_open(&f, bad, len, err, sizeof err), -1);
	assert_non_null(strstr(err, "loca entry 6 points outside glyf"));

	/* A composite whose component names a glyph the font does not have. */
	memcpy(bad, data, len);
	assert_int_equal(ttf_font_open(&f, bad, len, err, sizeof err), 0);
	size_t at = (size_t)(f.glyf - bad) + be32(f.loca + 4 * 3);
	bad[at + 12] = 0;
	bad[at + 13] = 99;
	uint16_t new_id[7] = {0};
	struct ttf_subset s = {0};
	uint32_t gids[] = {3};
	assert_int_equal(ttf_subset(&f, gids, 1, new_id, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "malformed composite glyph"));
	assert_all_zero(new_id, 7);
	ttf_subset_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(each_ipaex_subset_glyph_draws_as_the_original),
	    cmocka_unit_test(composite_glyphs_bring_their_components_renumbered),
	    cmocka_unit_test(a_glyph_past_the_font_is_refused_and_nothing_stays_numbered),
	    cmocka_unit_test(a_damaged_font_is_refused_with_the_reason),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	FcFini(); /* fontconfig's caches, for the leak checker */
	return failed;
}
