/*
 * pdf.c: the certificate renderer's PDF writer (contract and the reasons for it in pdf.h).
 *
 * A document is drawn into one content buffer (all pages, each page a slice).  Text is drawn
 * with the faces' original glyph ids as fixed-width placeholders ("<" 4 hex digits per glyph
 * ">"), and every such hex string is remembered as a run.  pdf_doc_finish() subsets each face to
 * the glyphs the document used (ttf.c), numbered in order of first use, and overwrites the
 * placeholders in place with the subset's glyph ids: same width, so nothing moves.  Then it writes
 * the objects, each one's offset noted for the xref table.
 *
 * The faces (struct pdf_fonts) are process-wide and read-only once loaded: any number of threads
 * may shape with their HarfBuzz fonts and subset from their ttf.c tables at once.  Everything
 * else belongs to one struct pdf_doc, used by one thread at a time.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <hb-ot.h>
#include <hb.h>
#include <libdeflate.h>
#include <pango/pango.h>
#include <zlib.h>

#include "pdf.h"
#include "ttf.h"

#define PDF_PAGE_W 595.276
#define PDF_PAGE_H 841.890

/* Content streams smaller than this are stored as they are: deflating them costs more time than
 * their size is worth. */
#define PDF_DEFLATE_MIN 512

struct pdf_face_data {
	const char *family; /* fontconfig family, also the PDF BaseFont after the subset tag */
	hb_blob_t *blob;
	hb_face_t *face;     /* for shaping and metrics */
	struct ttf_font ttf; /* the blob's tables, for subsetting */
	hb_font_t *font;     /* scale = upem: positions in font units */
	unsigned upem, glyph_count;
	int ascender, descender; /* font units, descender negative */
	int bbox[4], cap_height;
};

static struct {
	pthread_mutex_t lock;
	int state; /* 0 not tried, 1 loaded, -1 failed (err says why) */
	char err[256];
	struct pdf_face_data face[PDF_FACE_COUNT];
} pdf_fonts = {.lock = PTHREAD_MUTEX_INITIALIZER,
	       .face = {{.family = "IPAexMincho"}, {.family = "IPAexGothic"}}};

/* One glyph of a shaped text: the face's glyph id, its advance in font units, and the text it
 * stands for (for the ToUnicode map; a cluster's later glyphs carry none). */
struct pdf_glyph {
	uint32_t gid;
	int32_t adv;
	uint32_t uni[3];
	uint8_t nuni;
};

struct pdf_line {
	size_t first, count;
	int32_t width; /* font units, trailing spaces excluded */
};

/* A placeholder hex string in the content: count glyphs from first, at offset. */
struct pdf_run {
	size_t offset, first, count;
	enum pdf_face face;
};

struct pdf_page {
	size_t start, end; /* slice of doc->content */
};

/* Something painted with Do: an image (borrowed) or a module mask (bytes in doc->masks). */
struct pdf_xobj {
	const struct pdf_image *img;
	size_t mask_off, mask_len;
	int mask_n;
	int obj; /* object number, assigned while finishing */
};

struct pdf_buf {
	unsigned char *d;
	size_t len, cap;
};

struct pdf_use {
	uint32_t *first; /* per original glyph id: index + 1 of the first glyph drawn, 0: unused */
	uint32_t *list;	 /* the used glyph ids, in order of first use */
	size_t count;
};

struct pdf_doc {
	int failed;
	struct pdf_buf content, masks, out, scratch;
	struct pdf_glyph *glyphs;
	size_t glyph_count, glyph_cap;
	struct pdf_line *lines;
	size_t line_count, line_cap;
	struct pdf_run *runs;
	size_t run_count, run_cap;
	struct pdf_page *pages;
	size_t page_count, page_cap;
	struct pdf_xobj *xobjs;
	size_t xobj_count, xobj_cap;
	size_t *offsets; /* per object number */
	size_t offset_cap;
	PangoLogAttr *attrs;
	size_t attr_cap;
	struct pdf_use use[PDF_FACE_COUNT];
	uint16_t *new_id[PDF_FACE_COUNT]; /* per original glyph id: its id in the subset */
	struct ttf_subset sub[PDF_FACE_COUNT];
	hb_buffer_t *hb;
	struct libdeflate_compressor *deflater; /* made on first use */
	/* Graphics state of the current page, so unchanged settings are not written again. */
	double fill[3], stroke[3], line_width;
};

/* ------------------------------------------------------------------------------- buffers */

/* Grows an array of n_have elements to hold one more; marks doc failed when out of memory. */
static int pdf_grow(struct pdf_doc *doc, void **array, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *p = realloc(*array, n * elem);
	if (p == NULL) {
		doc->failed = 1;
		return -1;
	}
	*array = p;
	*cap = n;
	return 0;
}

#define PDF_RESERVE(doc, arr, cap, need)                                                           \
	pdf_grow((doc), (void **)&(arr), &(cap), (need), sizeof *(arr))

static void pdf_put(struct pdf_doc *doc, struct pdf_buf *b, const void *p, size_t n)
{
	if (PDF_RESERVE(doc, b->d, b->cap, b->len + n) != 0)
		return;
	memcpy(b->d + b->len, p, n);
	b->len += n;
}

static void pdf_puts(struct pdf_doc *doc, struct pdf_buf *b, const char *s)
{
	pdf_put(doc, b, s, strlen(s));
}

static void pdf_putc(struct pdf_doc *doc, struct pdf_buf *b, char c)
{
	pdf_put(doc, b, &c, 1);
}

static void pdf_uint(struct pdf_doc *doc, struct pdf_buf *b, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	pdf_put(doc, b, tmp + i, sizeof tmp - i);
}

/* A number with at most two decimals, '.' as the separator whatever the locale, then a space. */
static void pdf_num(struct pdf_doc *doc, struct pdf_buf *b, double v)
{
	long long n = llround(v * 100.0);
	if (n < 0) {
		pdf_putc(doc, b, '-');
		n = -n;
	}
	pdf_uint(doc, b, (unsigned long long)(n / 100));
	int frac = (int)(n % 100);
	if (frac != 0) {
		char f[3] = {'.', (char)('0' + frac / 10), (char)('0' + frac % 10)};
		pdf_put(doc, b, f, frac % 10 ? 3 : 2);
	}
	pdf_putc(doc, b, ' ');
}

static void pdf_hex4(unsigned char *dst, unsigned v)
{
	static const char hex[] = "0123456789ABCDEF";
	dst[0] = (unsigned char)hex[(v >> 12) & 15];
	dst[1] = (unsigned char)hex[(v >> 8) & 15];
	dst[2] = (unsigned char)hex[(v >> 4) & 15];
	dst[3] = (unsigned char)hex[v & 15];
}

/* ------------------------------------------------------------------------------- fonts */

static void pdf_face_close(struct pdf_face_data *f)
{
	hb_font_destroy(f->font);
	hb_face_destroy(f->face);
	hb_blob_destroy(f->blob);
	f->font = NULL;
	f->face = NULL;
	f->blob = NULL;
}

/* The file of a font family, through fontconfig; 0 with path filled, or -1. */
static int pdf_font_file(const char *family, char *path, size_t size)
{
	FcPattern *pat = FcPatternCreate();
	if (pat == NULL)
		return -1;
	FcPatternAddString(pat, FC_FAMILY, (const FcChar8 *)family);
	FcConfigSubstitute(NULL, pat, FcMatchPattern);
	FcDefaultSubstitute(pat);
	FcResult res;
	FcPattern *match = FcFontMatch(NULL, pat, &res);
	FcPatternDestroy(pat);
	int rc = -1;
	FcChar8 *file = NULL, *got = NULL;
	/* fontconfig always answers with some font: accept only the family asked for. */
	if (match != NULL && FcPatternGetString(match, FC_FAMILY, 0, &got) == FcResultMatch &&
	    strcmp((const char *)got, family) == 0 &&
	    FcPatternGetString(match, FC_FILE, 0, &file) == FcResultMatch &&
	    strlen((const char *)file) < size) {
		strcpy(path, (const char *)file);
		rc = 0;
	}
	if (match != NULL)
		FcPatternDestroy(match);
	return rc;
}

static int pdf_face_open(struct pdf_face_data *f, char *err, size_t err_size)
{
	char path[1024];
	if (pdf_font_file(f->family, path, sizeof path) != 0) {
		snprintf(err, err_size, "font %s not found (install fonts-ipaexfont)", f->family);
		return -1;
	}
	f->blob = hb_blob_create_from_file_or_fail(path);
	if (f->blob == NULL) {
		snprintf(err, err_size, "cannot read font file %s", path);
		return -1;
	}
	f->face = hb_face_create(f->blob, 0);
	f->glyph_count = hb_face_get_glyph_count(f->face);
	f->upem = hb_face_get_upem(f->face);
	if (f->glyph_count == 0 || f->glyph_count > 65535 || f->upem == 0) {
		snprintf(err, err_size, "font file %s is not a usable TrueType font", path);
		return -1;
	}
	unsigned blen;
	const char *bytes = hb_blob_get_data(f->blob, &blen);
	char why[160];
	if (ttf_font_open(&f->ttf, bytes, blen, why, sizeof why) != 0) {
		snprintf(err, err_size, "font file %s cannot be embedded: %s", path, why);
		return -1;
	}
	if (f->ttf.glyphs != f->glyph_count) {
		snprintf(err, err_size, "font file %s: HarfBuzz and maxp disagree on its glyphs",
			 path);
		return -1;
	}
	f->font = hb_font_create(f->face);
	hb_font_extents_t e;
	hb_font_get_h_extents(f->font, &e);
	f->ascender = e.ascender;
	f->descender = e.descender;
	hb_position_t cap = e.ascender;
	hb_ot_metrics_get_position(f->font, HB_OT_METRICS_TAG_CAP_HEIGHT, &cap);
	f->cap_height = cap;
	/* The bounding box from the 'head' table (xMin, yMin, xMax, yMax at offset 36). */
	hb_blob_t *head = hb_face_reference_table(f->face, HB_TAG('h', 'e', 'a', 'd'));
	unsigned len;
	const unsigned char *h = (const unsigned char *)hb_blob_get_data(head, &len);
	for (int i = 0; i < 4 && len >= 44; i++)
		f->bbox[i] = (int16_t)((h[36 + 2 * i] << 8) | h[37 + 2 * i]);
	hb_blob_destroy(head);
	hb_font_make_immutable(f->font);
	return 0;
}

int pdf_fonts_load(char *err, size_t err_size)
{
	pthread_mutex_lock(&pdf_fonts.lock);
	if (pdf_fonts.state == 0) {
		pdf_fonts.state = 1;
		for (int i = 0; i < PDF_FACE_COUNT && pdf_fonts.state == 1; i++) {
			if (pdf_face_open(&pdf_fonts.face[i], pdf_fonts.err,
					  sizeof pdf_fonts.err) != 0) {
				pdf_fonts.state = -1;
				for (int k = 0; k <= i; k++)
					pdf_face_close(&pdf_fonts.face[k]);
			}
		}
	}
	int rc = pdf_fonts.state == 1 ? 0 : -1;
	if (rc != 0 && err != NULL && err_size > 0)
		snprintf(err, err_size, "%s", pdf_fonts.err);
	pthread_mutex_unlock(&pdf_fonts.lock);
	return rc;
}

void pdf_fonts_unload(void)
{
	pthread_mutex_lock(&pdf_fonts.lock);
	if (pdf_fonts.state == 1)
		for (int i = 0; i < PDF_FACE_COUNT; i++)
			pdf_face_close(&pdf_fonts.face[i]);
	pdf_fonts.state = 0;
	pthread_mutex_unlock(&pdf_fonts.lock);
}

/* ----------------------------------------------------------------------------- documents */

struct pdf_doc *pdf_doc_new(void)
{
	struct pdf_doc *doc = calloc(1, sizeof *doc);
	if (doc == NULL)
		return NULL;
	doc->hb = hb_buffer_create();
	if (!hb_buffer_allocation_successful(doc->hb)) {
		pdf_doc_free(doc);
		return NULL;
	}
	return doc;
}

void pdf_doc_free(struct pdf_doc *doc)
{
	if (doc == NULL)
		return;
	free(doc->content.d);
	free(doc->masks.d);
	free(doc->out.d);
	free(doc->scratch.d);
	free(doc->glyphs);
	free(doc->lines);
	free(doc->runs);
	free(doc->pages);
	free(doc->xobjs);
	free(doc->offsets);
	free(doc->attrs);
	for (int f = 0; f < PDF_FACE_COUNT; f++) {
		free(doc->use[f].first);
		free(doc->use[f].list);
		free(doc->new_id[f]);
		ttf_subset_free(&doc->sub[f]);
	}
	hb_buffer_destroy(doc->hb);
	libdeflate_free_compressor(doc->deflater);
	free(doc);
}

void pdf_doc_reset(struct pdf_doc *doc)
{
	doc->failed = 0;
	doc->content.len = doc->masks.len = doc->out.len = doc->scratch.len = 0;
	doc->glyph_count = doc->line_count = doc->run_count = 0;
	doc->page_count = doc->xobj_count = 0;
	for (int f = 0; f < PDF_FACE_COUNT; f++) {
		struct pdf_use *u = &doc->use[f];
		for (size_t i = 0; i < u->count; i++)
			u->first[u->list[i]] = 0;
		u->count = 0;
	}
}

int pdf_doc_failed(const struct pdf_doc *doc)
{
	return doc->failed;
}

/* ------------------------------------------------------------------------------- shaping */

/* Decodes up to max code points of s[0..len) (valid UTF-8, as jansson and HarfBuzz require). */
static uint8_t pdf_utf8_decode(const unsigned char *s, size_t len, uint32_t *out, int max)
{
	uint8_t n = 0;
	for (size_t i = 0; i < len && n < max;) {
		uint32_t c = s[i];
		int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
		c &= extra == 3 ? 0x07 : extra == 2 ? 0x0F : extra == 1 ? 0x1F : 0x7F;
		i++;
		for (int k = 0; k < extra && i < len; k++, i++)
			c = (c << 6) | (s[i] & 0x3F);
		out[n++] = c;
	}
	return n;
}

static int pdf_is_space(const struct pdf_glyph *g)
{
	return g->nuni == 1 && (g->uni[0] == ' ' || g->uni[0] == 0x3000);
}

/*
 * Breaks the glyphs [first, first+count) of one paragraph into lines no wider than max (font
 * units): at the last line-break opportunity pango finds (UAX #14, which also keeps 、。）
 * from starting a line), else between characters; a space may hang past the edge.
 */
static void pdf_wrap(struct pdf_doc *doc, const char *text, size_t len, size_t first, size_t count,
		     const uint32_t *glyph_byte, int32_t max)
{
	glong chars = g_utf8_strlen(text, (gssize)len);
	if (PDF_RESERVE(doc, doc->attrs, doc->attr_cap, (size_t)chars + 1) != 0 ||
	    PDF_RESERVE(doc, doc->scratch.d, doc->scratch.cap, (len + 1) * sizeof(uint32_t)) != 0)
		return;
	/* Pango 1.50 leaves is_line_break of the first position unset for some texts. */
	memset(doc->attrs, 0, ((size_t)chars + 1) * sizeof *doc->attrs);
	pango_get_log_attrs(text, (int)len, -1, pango_language_from_string("ja"), doc->attrs,
			    (int)chars + 1);
	/* Character index of each byte offset where a character starts. */
	uint32_t *char_at = (uint32_t *)(void *)doc->scratch.d;
	uint32_t ci = 0;
	for (size_t b = 0; b < len; b = (size_t)(g_utf8_next_char(text + b) - text))
		char_at[b] = ci++;

	size_t start = first, candidate = first, end = first + count;
	int32_t width = 0;
	for (size_t i = first; i < end; i++) {
		const PangoLogAttr *a = &doc->attrs[char_at[glyph_byte[i - first]]];
		if (a->is_line_break && i > start)
			candidate = i;
		struct pdf_glyph *g = &doc->glyphs[i];
		if (width + g->adv > max && i > start && !pdf_is_space(g)) {
			size_t at = candidate > start ? candidate : (a->is_char_break ? i : 0);
			if (at > start) {
				if (PDF_RESERVE(doc, doc->lines, doc->line_cap,
						doc->line_count + 1))
					return;
				doc->lines[doc->line_count++] =
				    (struct pdf_line){.first = start, .count = at - start};
				start = candidate = at;
				width = 0;
				for (size_t k = at; k < i; k++)
					width += doc->glyphs[k].adv;
			}
		}
		width += g->adv;
	}
	if (PDF_RESERVE(doc, doc->lines, doc->line_cap, doc->line_count + 1) == 0)
		doc->lines[doc->line_count++] =
		    (struct pdf_line){.first = start, .count = end - start};
}

/* Shapes one paragraph (no '\n') and appends its lines. */
static void pdf_shape_paragraph(struct pdf_doc *doc, const struct pdf_face_data *f,
				const char *text, size_t len, int32_t max)
{
	hb_buffer_t *hb = doc->hb;
	hb_buffer_clear_contents(hb);
	hb_buffer_add_utf8(hb, text, (int)len, 0, (int)len);
	hb_buffer_set_direction(hb, HB_DIRECTION_LTR);
	hb_buffer_set_script(hb, HB_SCRIPT_HAN);
	hb_buffer_set_language(hb, hb_language_from_string("ja", 2));
	hb_shape(f->font, hb, NULL, 0);
	unsigned n;
	const hb_glyph_info_t *info = hb_buffer_get_glyph_infos(hb, &n);
	const hb_glyph_position_t *pos = hb_buffer_get_glyph_positions(hb, &n);
	if (PDF_RESERVE(doc, doc->glyphs, doc->glyph_cap, doc->glyph_count + n) != 0)
		return;
	size_t first = doc->glyph_count;
	int32_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		struct pdf_glyph *g = &doc->glyphs[first + i];
		g->gid = info[i].codepoint;
		g->adv = pos[i].x_advance;
		total += g->adv;
		g->nuni = 0;
		if (i > 0 && info[i].cluster == info[i - 1].cluster)
			continue;
		size_t end = len;
		for (unsigned k = i + 1; k < n; k++)
			if (info[k].cluster != info[i].cluster) {
				end = info[k].cluster;
				break;
			}
		g->nuni = pdf_utf8_decode((const unsigned char *)text + info[i].cluster,
					  end - info[i].cluster, g->uni, 3);
	}
	doc->glyph_count += n;
	if (max <= 0 || total <= max) {
		if (PDF_RESERVE(doc, doc->lines, doc->line_cap, doc->line_count + 1) == 0)
			doc->lines[doc->line_count++] =
			    (struct pdf_line){.first = first, .count = n};
		return;
	}
	/* The glyphs' clusters (byte offsets) for the break opportunities. */
	uint32_t *glyph_byte = malloc((n ? n : 1) * sizeof *glyph_byte);
	if (glyph_byte == NULL) {
		doc->failed = 1;
		return;
	}
	for (unsigned i = 0; i < n; i++)
		glyph_byte[i] = info[i].cluster;
	pdf_wrap(doc, text, len, first, n, glyph_byte, max);
	free(glyph_byte);
}

void pdf_text_shape(struct pdf_doc *doc, struct pdf_text *out, const struct pdf_style *style,
		    double max_width, const char *text)
{
	const struct pdf_face_data *f = &pdf_fonts.face[style->face];
	double scale = style->size / f->upem;
	memset(out, 0, sizeof *out);
	out->style = *style;
	out->line_height = (f->ascender - f->descender) * scale;
	out->first_line = doc->line_count;
	int32_t max = max_width > 0 ? (int32_t)(max_width / scale) : 0;
	const char *p = text ? text : "";
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		pdf_shape_paragraph(doc, f, p, len, max);
		if (nl == NULL || doc->failed)
			break;
		p = nl + 1;
	}
	if (doc->failed) {
		out->line_count = 0;
		return;
	}
	out->line_count = doc->line_count - out->first_line;
	int32_t widest = 0;
	for (size_t l = out->first_line; l < doc->line_count; l++) {
		struct pdf_line *line = &doc->lines[l];
		size_t visible = line->count;
		while (visible > 0 && pdf_is_space(&doc->glyphs[line->first + visible - 1]))
			visible--;
		line->width = 0;
		for (size_t i = 0; i < visible; i++)
			line->width += doc->glyphs[line->first + i].adv;
		if (line->width > widest)
			widest = line->width;
	}
	out->width = widest * scale;
	out->height = out->line_count * out->line_height;
}

/* ------------------------------------------------------------------------------- drawing */

void pdf_page_begin(struct pdf_doc *doc)
{
	if (doc->page_count > 0)
		doc->pages[doc->page_count - 1].end = doc->content.len;
	if (PDF_RESERVE(doc, doc->pages, doc->page_cap, doc->page_count + 1) != 0)
		return;
	doc->pages[doc->page_count++] = (struct pdf_page){.start = doc->content.len};
	/* PDF's initial graphics state: black, line width 1. */
	memset(doc->fill, 0, sizeof doc->fill);
	memset(doc->stroke, 0, sizeof doc->stroke);
	doc->line_width = 1.0;
}

static void pdf_colour(struct pdf_doc *doc, double *cur, const double rgb[3], const char *op)
{
	if (cur[0] == rgb[0] && cur[1] == rgb[1] && cur[2] == rgb[2])
		return;
	memcpy(cur, rgb, 3 * sizeof *cur);
	for (int i = 0; i < 3; i++)
		pdf_num(doc, &doc->content, rgb[i]);
	pdf_puts(doc, &doc->content, op);
}

void pdf_stroke_colour(struct pdf_doc *doc, double r, double g, double b)
{
	const double rgb[3] = {r, g, b};
	pdf_colour(doc, doc->stroke, rgb, "RG\n");
}

void pdf_line_width(struct pdf_doc *doc, double w)
{
	if (doc->line_width == w)
		return;
	doc->line_width = w;
	pdf_num(doc, &doc->content, w);
	pdf_puts(doc, &doc->content, "w\n");
}

static void pdf_rect_path(struct pdf_doc *doc, double x, double y, double w, double h)
{
	struct pdf_buf *c = &doc->content;
	pdf_num(doc, c, x);
	pdf_num(doc, c, PDF_PAGE_H - y - h);
	pdf_num(doc, c, w);
	pdf_num(doc, c, h);
	pdf_puts(doc, c, "re ");
}

void pdf_fill_rect(struct pdf_doc *doc, double x, double y, double w, double h, double r, double g,
		   double b)
{
	const double rgb[3] = {r, g, b};
	pdf_colour(doc, doc->fill, rgb, "rg\n");
	pdf_rect_path(doc, x, y, w, h);
	pdf_puts(doc, &doc->content, "f\n");
}

void pdf_stroke_rect(struct pdf_doc *doc, double x, double y, double w, double h)
{
	pdf_rect_path(doc, x, y, w, h);
	pdf_puts(doc, &doc->content, "S\n");
}

void pdf_stroke_line(struct pdf_doc *doc, double x1, double y1, double x2, double y2)
{
	struct pdf_buf *c = &doc->content;
	pdf_num(doc, c, x1);
	pdf_num(doc, c, PDF_PAGE_H - y1);
	pdf_puts(doc, c, "m ");
	pdf_num(doc, c, x2);
	pdf_num(doc, c, PDF_PAGE_H - y2);
	pdf_puts(doc, c, "l S\n");
}

void pdf_stroke_circle(struct pdf_doc *doc, double cx, double cy, double radius)
{
	/* Four cubic Béziers, each a quarter circle (control distance 0.5523 r). */
	const double k = 0.5523 * radius, r = radius;
	const double y = PDF_PAGE_H - cy;
	const double pts[4][6] = {
	    {cx + r, y + k, cx + k, y + r, cx, y + r},
	    {cx - k, y + r, cx - r, y + k, cx - r, y},
	    {cx - r, y - k, cx - k, y - r, cx, y - r},
	    {cx + k, y - r, cx + r, y - k, cx + r, y},
	};
	struct pdf_buf *c = &doc->content;
	pdf_num(doc, c, cx + r);
	pdf_num(doc, c, y);
	pdf_puts(doc, c, "m\n");
	for (int q = 0; q < 4; q++) {
		for (int i = 0; i < 6; i++)
			pdf_num(doc, c, pts[q][i]);
		pdf_puts(doc, c, "c\n");
	}
	pdf_puts(doc, c, "S\n");
}

/* Appends a placeholder hex string for glyphs [first, first+count) of face and remembers it. */
static void pdf_glyph_run(struct pdf_doc *doc, enum pdf_face face, size_t first, size_t count)
{
	struct pdf_buf *c = &doc->content;
	if (PDF_RESERVE(doc, doc->runs, doc->run_cap, doc->run_count + 1) != 0 ||
	    PDF_RESERVE(doc, c->d, c->cap, c->len + 4 * count + 2) != 0)
		return;
	c->d[c->len++] = '<';
	doc->runs[doc->run_count++] =
	    (struct pdf_run){.offset = c->len, .first = first, .count = count, .face = face};
	memset(c->d + c->len, '0', 4 * count);
	c->len += 4 * count;
	c->d[c->len++] = '>';

	/* Note each glyph's first use, for the subset and the ToUnicode map. */
	struct pdf_use *u = &doc->use[face];
	const struct pdf_face_data *f = &pdf_fonts.face[face];
	if (doc->new_id[face] == NULL) {
		u->first = calloc(f->glyph_count, sizeof *u->first);
		u->list = malloc(f->glyph_count * sizeof *u->list);
		doc->new_id[face] = calloc(f->glyph_count, sizeof *doc->new_id[face]);
		if (u->first == NULL || u->list == NULL || doc->new_id[face] == NULL) {
			free(u->first);
			free(u->list);
			free(doc->new_id[face]);
			u->first = NULL;
			u->list = NULL;
			doc->new_id[face] = NULL;
			doc->failed = 1;
			return;
		}
	}
	for (size_t i = first; i < first + count; i++) {
		uint32_t gid = doc->glyphs[i].gid;
		if (gid < f->glyph_count && u->first[gid] == 0) {
			u->first[gid] = (uint32_t)i + 1;
			u->list[u->count++] = gid;
		} else if (gid < f->glyph_count && doc->glyphs[u->first[gid] - 1].nuni == 0) {
			u->first[gid] = (uint32_t)i + 1; /* a use that carries text wins */
		}
	}
}

void pdf_text_draw(struct pdf_doc *doc, const struct pdf_text *t, double x, double top,
		   double box_width)
{
	const struct pdf_style *s = &t->style;
	const struct pdf_face_data *f = &pdf_fonts.face[s->face];
	const double scale = s->size / f->upem;
	const double hs = s->hscale > 0 ? s->hscale : 1.0;
	struct pdf_buf *c = &doc->content;
	if (t->line_count == 0)
		return;
	pdf_colour(doc, doc->fill, s->rgb, "rg\n");
	pdf_puts(doc, c, "BT /F");
	pdf_uint(doc, c, (unsigned)s->face);
	pdf_putc(doc, c, ' ');
	pdf_num(doc, c, s->size);
	pdf_puts(doc, c, "Tf\n");
	if (hs != 1.0) {
		pdf_num(doc, c, hs * 100);
		pdf_puts(doc, c, "Tz\n");
	}
	if (s->bold) {
		/* Synthetic bold as cairo does it for a face without a bold style. */
		pdf_colour(doc, doc->stroke, s->rgb, "RG\n");
		pdf_line_width(doc, s->size * 0.035);
		pdf_puts(doc, c, "2 Tr\n");
	}
	double px = 0, py = 0; /* the text line matrix's origin, for relative Td moves */
	for (size_t l = 0; l < t->line_count; l++) {
		const struct pdf_line *line = &doc->lines[t->first_line + l];
		if (line->count == 0)
			continue; /* an empty line takes its height but draws nothing */
		double w = line->width * scale * hs, lx = x;
		if (s->align == PDF_ALIGN_CENTER)
			lx += (box_width - w) / 2;
		else if (s->align == PDF_ALIGN_RIGHT)
			lx += box_width - w;
		double by = PDF_PAGE_H - (top + l * t->line_height + f->ascender * scale);
		pdf_num(doc, c, lx - px);
		pdf_num(doc, c, by - py);
		pdf_puts(doc, c, "Td ");
		px = lx;
		py = by;
		pdf_glyph_run(doc, s->face, line->first, line->count);
		pdf_puts(doc, c, "Tj\n");
	}
	pdf_puts(doc, c, s->bold ? "0 Tr ET\n" : "ET\n");
}

static size_t pdf_xobj_add(struct pdf_doc *doc, const struct pdf_xobj *x)
{
	if (PDF_RESERVE(doc, doc->xobjs, doc->xobj_cap, doc->xobj_count + 1) != 0)
		return (size_t)-1;
	doc->xobjs[doc->xobj_count] = *x;
	return doc->xobj_count++;
}

static void pdf_do(struct pdf_doc *doc, size_t xobj, double x, double y, double w, double h)
{
	struct pdf_buf *c = &doc->content;
	pdf_puts(doc, c, "q ");
	pdf_num(doc, c, w);
	pdf_puts(doc, c, "0 0 ");
	pdf_num(doc, c, h);
	pdf_num(doc, c, x);
	pdf_num(doc, c, PDF_PAGE_H - y - h);
	pdf_puts(doc, c, "cm /X");
	pdf_uint(doc, c, xobj);
	pdf_puts(doc, c, " Do Q\n");
}

void pdf_draw_image(struct pdf_doc *doc, const struct pdf_image *img, double x, double y, double w,
		    double h)
{
	size_t i;
	for (i = 0; i < doc->xobj_count && doc->xobjs[i].img != img; i++)
		;
	if (i == doc->xobj_count)
		i = pdf_xobj_add(doc, &(struct pdf_xobj){.img = img});
	if (i != (size_t)-1)
		pdf_do(doc, i, x, y, w, h);
}

void pdf_draw_modules(struct pdf_doc *doc, const unsigned char *modules, int n, double x, double y,
		      double size)
{
	size_t row = ((size_t)n + 7) / 8, len = row * (size_t)n;
	struct pdf_buf *m = &doc->masks;
	if (n <= 0 || PDF_RESERVE(doc, m->d, m->cap, m->len + len) != 0)
		return;
	size_t off = m->len;
	memset(m->d + off, 0, len);
	for (int r = 0; r < n; r++)
		for (int col = 0; col < n; col++)
			if (modules[r * n + col] & 1)
				m->d[off + (size_t)r * row + (size_t)col / 8] |=
				    (unsigned char)(0x80u >> (col % 8));
	m->len += len;
	size_t i =
	    pdf_xobj_add(doc, &(struct pdf_xobj){.mask_off = off, .mask_len = len, .mask_n = n});
	if (i == (size_t)-1)
		return;
	const double black[3] = {0, 0, 0};
	pdf_colour(doc, doc->fill, black, "rg\n");
	pdf_do(doc, i, x, y, size, size);
}

/* ------------------------------------------------------------------------------- writing */

static void pdf_obj_begin(struct pdf_doc *doc, int obj)
{
	if (PDF_RESERVE(doc, doc->offsets, doc->offset_cap, (size_t)obj + 1) != 0)
		return;
	doc->offsets[obj] = doc->out.len;
	pdf_uint(doc, &doc->out, (unsigned)obj);
	pdf_puts(doc, &doc->out, " 0 obj\n");
}

static void pdf_ref(struct pdf_doc *doc, int obj)
{
	pdf_uint(doc, &doc->out, (unsigned)obj);
	pdf_puts(doc, &doc->out, " 0 R");
}

/* A stream object: dict holds the entries besides /Length and /Filter. */
static void pdf_stream(struct pdf_doc *doc, int obj, const char *dict, const unsigned char *data,
		       size_t len, int deflated)
{
	struct pdf_buf *o = &doc->out;
	pdf_obj_begin(doc, obj);
	pdf_puts(doc, o, "<<");
	pdf_puts(doc, o, dict);
	if (deflated)
		pdf_puts(doc, o, " /Filter /FlateDecode");
	pdf_puts(doc, o, " /Length ");
	pdf_uint(doc, o, len);
	pdf_puts(doc, o, ">>\nstream\n");
	pdf_put(doc, o, data, len);
	pdf_puts(doc, o, "\nendstream\nendobj\n");
}

/*
 * A stream deflated when that pays (content streams); stored when compression fails.
 * libdeflate rather than zlib: same format (zlib-wrapped DEFLATE, as FlateDecode reads it), at
 * a third of zlib's time for these whole-buffer streams (zlib took 28 % of a document).
 */
static void pdf_stream_maybe_deflate(struct pdf_doc *doc, int obj, const char *dict,
				     const unsigned char *data, size_t len)
{
	if (len >= PDF_DEFLATE_MIN) {
		if (doc->deflater == NULL)
			doc->deflater = libdeflate_alloc_compressor(1);
		struct pdf_buf *z = &doc->scratch;
		size_t bound =
		    doc->deflater ? libdeflate_zlib_compress_bound(doc->deflater, len) : 0;
		size_t zlen = 0;
		if (bound > 0 && PDF_RESERVE(doc, z->d, z->cap, bound) == 0)
			zlen = libdeflate_zlib_compress(doc->deflater, data, len, z->d, bound);
		if (zlen > 0) {
			pdf_stream(doc, obj, dict, z->d, zlen, 1);
			return;
		}
	}
	pdf_stream(doc, obj, dict, data, len, 0);
}

/* UTF-16BE hex of one code point (surrogate pair above the BMP). */
static void pdf_utf16_hex(struct pdf_doc *doc, struct pdf_buf *b, uint32_t cp)
{
	unsigned char h[8];
	if (cp >= 0x10000) {
		cp -= 0x10000;
		pdf_hex4(h, 0xD800 + (cp >> 10));
		pdf_hex4(h + 4, 0xDC00 + (cp & 0x3FF));
		pdf_put(doc, b, h, 8);
	} else {
		pdf_hex4(h, cp);
		pdf_put(doc, b, h, 4);
	}
}

/*
 * Subsets face to the glyphs the document drew, numbered in order of first use, into
 * doc->sub[face] and doc->new_id[face] (set back by pdf_doc_finish()), and names the subset:
 * tag gets "ABCDEF+", from a hash of the glyph set.  0, or -1 with err saying why.
 */
static int pdf_subset_make(struct pdf_doc *doc, enum pdf_face face, char tag[8], char *err,
			   size_t err_size)
{
	const struct pdf_use *u = &doc->use[face];
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < u->count; i++)
		h = (h ^ u->list[i]) * 16777619u;
	for (int i = 0; i < 6; i++, h /= 26)
		tag[i] = (char)('A' + h % 26);
	tag[6] = '+';
	tag[7] = '\0';
	return ttf_subset(&pdf_fonts.face[face].ttf, u->list, u->count, doc->new_id[face],
			  &doc->sub[face], err, err_size);
}

/* Writes the five objects of one face from obj on: Type0, CIDFont, descriptor, file, ToUnicode. */
static void pdf_write_font(struct pdf_doc *doc, enum pdf_face face, const char *tag, int obj)
{
	const struct ttf_subset *s = &doc->sub[face];
	const struct pdf_face_data *f = &pdf_fonts.face[face];
	const struct pdf_use *u = &doc->use[face];
	struct pdf_buf *o = &doc->out;
	const double k = 1000.0 / f->upem;

	pdf_obj_begin(doc, obj);
	pdf_puts(doc, o, "<</Type /Font /Subtype /Type0 /BaseFont /");
	pdf_puts(doc, o, tag);
	pdf_puts(doc, o, f->family);
	pdf_puts(doc, o, " /Encoding /Identity-H /DescendantFonts [");
	pdf_ref(doc, obj + 1);
	pdf_puts(doc, o, "] /ToUnicode ");
	pdf_ref(doc, obj + 4);
	pdf_puts(doc, o, ">>\nendobj\n");

	pdf_obj_begin(doc, obj + 1);
	pdf_puts(doc, o, "<</Type /Font /Subtype /CIDFontType2 /BaseFont /");
	pdf_puts(doc, o, tag);
	pdf_puts(doc, o, f->family);
	pdf_puts(doc, o,
		 " /CIDSystemInfo <</Registry (Adobe) /Ordering (Identity) /Supplement 0>>"
		 " /FontDescriptor ");
	pdf_ref(doc, obj + 2);
	pdf_puts(doc, o, " /CIDToGIDMap /Identity /DW 1000 /W [0 [");
	for (size_t g = 0; g < s->count; g++) {
		hb_position_t adv = hb_font_get_glyph_h_advance(f->font, s->order[g]);
		pdf_uint(doc, o, (unsigned long long)llround(adv * k));
		pdf_putc(doc, o, ' ');
	}
	pdf_puts(doc, o, "]]>>\nendobj\n");

	pdf_obj_begin(doc, obj + 2);
	pdf_puts(doc, o, "<</Type /FontDescriptor /FontName /");
	pdf_puts(doc, o, tag);
	pdf_puts(doc, o, f->family);
	pdf_puts(doc, o, " /Flags 4 /FontBBox [");
	for (int i = 0; i < 4; i++)
		pdf_num(doc, o, f->bbox[i] * k);
	pdf_puts(doc, o, "] /ItalicAngle 0 /Ascent ");
	pdf_num(doc, o, f->ascender * k);
	pdf_puts(doc, o, "/Descent ");
	pdf_num(doc, o, f->descender * k);
	pdf_puts(doc, o, "/CapHeight ");
	pdf_num(doc, o, f->cap_height * k);
	pdf_puts(doc, o, "/StemV 80 /FontFile2 ");
	pdf_ref(doc, obj + 3);
	pdf_puts(doc, o, ">>\nendobj\n");

	/* The subset is stored as it is: glyph outlines deflate by a fifth at most, and zlib
	 * would cost more than the rest of the document (measured). */
	char dict[48];
	snprintf(dict, sizeof dict, " /Length1 %zu", s->len);
	pdf_stream(doc, obj + 3, dict, s->data, s->len, 0);

	struct pdf_buf *cm = &doc->scratch;
	cm->len = 0;
	pdf_puts(doc, cm,
		 "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
		 "/CIDSystemInfo <</Registry (Adobe) /Ordering (UCS) /Supplement 0>> def\n"
		 "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
		 "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n");
	size_t listed = 0, block = 0;
	for (size_t i = 0; i < u->count; i++) {
		const struct pdf_glyph *g = &doc->glyphs[u->first[u->list[i]] - 1];
		if (g->nuni == 0)
			continue;
		if (block == 0) {
			size_t left = 0;
			for (size_t k2 = i; k2 < u->count && left < 100; k2++)
				left += doc->glyphs[u->first[u->list[k2]] - 1].nuni != 0;
			pdf_uint(doc, cm, left);
			pdf_puts(doc, cm, " beginbfchar\n");
			block = left;
		}
		unsigned char h[4];
		pdf_hex4(h, doc->new_id[face][u->list[i]]);
		pdf_putc(doc, cm, '<');
		pdf_put(doc, cm, h, 4);
		pdf_puts(doc, cm, "> <");
		for (int c = 0; c < g->nuni; c++)
			pdf_utf16_hex(doc, cm, g->uni[c]);
		pdf_puts(doc, cm, ">\n");
		listed++;
		if (--block == 0)
			pdf_puts(doc, cm, "endbfchar\n");
	}
	pdf_puts(doc, cm, "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
	if (!doc->failed) {
		/* The scratch buffer is the deflate target too: write the map from a copy. */
		unsigned char *map = malloc(cm->len);
		if (map == NULL) {
			doc->failed = 1;
			return;
		}
		memcpy(map, cm->d, cm->len);
		pdf_stream_maybe_deflate(doc, obj + 4, "", map, cm->len);
		free(map);
	}
	(void)listed;
}

static void pdf_write_image(struct pdf_doc *doc, const struct pdf_xobj *x)
{
	char dict[160];
	if (x->img == NULL) {
		snprintf(dict, sizeof dict,
			 " /Type /XObject /Subtype /Image /Width %d /Height %d /ImageMask true"
			 " /BitsPerComponent 1 /Decode [1 0]",
			 x->mask_n, x->mask_n);
		pdf_stream(doc, x->obj, dict, doc->masks.d + x->mask_off, x->mask_len, 0);
		return;
	}
	const struct pdf_image *img = x->img;
	if (img->alpha_z != NULL) {
		snprintf(dict, sizeof dict,
			 " /Type /XObject /Subtype /Image /Width %d /Height %d"
			 " /ColorSpace /DeviceGray /BitsPerComponent 8",
			 img->width, img->height);
		pdf_stream(doc, x->obj + 1, dict, img->alpha_z, img->alpha_z_len, 1);
	}
	int n = snprintf(dict, sizeof dict,
			 " /Type /XObject /Subtype /Image /Width %d /Height %d"
			 " /ColorSpace /DeviceRGB /BitsPerComponent 8",
			 img->width, img->height);
	if (img->alpha_z != NULL)
		snprintf(dict + n, sizeof dict - (size_t)n, " /SMask %d 0 R", x->obj + 1);
	pdf_stream(doc, x->obj, dict, img->rgb_z, img->rgb_z_len, 1);
}

/* A PDF text string in UTF-16BE hex with its byte-order mark. */
static void pdf_text_string(struct pdf_doc *doc, const char *utf8)
{
	uint32_t cps[128];
	uint8_t n = pdf_utf8_decode((const unsigned char *)utf8, strlen(utf8), cps, 128);
	pdf_puts(doc, &doc->out, "<FEFF");
	for (uint8_t i = 0; i < n; i++)
		pdf_utf16_hex(doc, &doc->out, cps[i]);
	pdf_putc(doc, &doc->out, '>');
}

int pdf_doc_finish(struct pdf_doc *doc, const char *title, time_t created, unsigned char **pdf,
		   size_t *len, char *err, size_t err_size)
{
	char tag[PDF_FACE_COUNT][8];
	int font_obj[PDF_FACE_COUNT] = {0};
	struct pdf_buf *o = &doc->out;
	int rc = -1;

	*pdf = NULL;
	*len = 0;
	if (doc->page_count == 0)
		pdf_page_begin(doc);
	doc->pages[doc->page_count - 1].end = doc->content.len;

	/* Object numbers: 1 catalog, 2 pages, 3 info, 4 resources, then fonts, images, pages. */
	int next = 5;
	for (int f = 0; f < PDF_FACE_COUNT; f++) {
		if (doc->use[f].count == 0)
			continue;
		char why[128];
		if (pdf_subset_make(doc, f, tag[f], why, sizeof why) != 0) {
			snprintf(err, err_size, "font %s: %s", pdf_fonts.face[f].family, why);
			goto out;
		}
		font_obj[f] = next;
		next += 5;
	}
	for (size_t i = 0; i < doc->xobj_count; i++) {
		doc->xobjs[i].obj = next;
		next += doc->xobjs[i].img && doc->xobjs[i].img->alpha_z ? 2 : 1;
	}
	const int first_page = next;

	/* The placeholders become the subsets' glyph ids. */
	for (size_t r = 0; r < doc->run_count; r++) {
		const struct pdf_run *run = &doc->runs[r];
		unsigned char *dst = doc->content.d + run->offset;
		for (size_t i = 0; i < run->count; i++, dst += 4)
			pdf_hex4(dst, doc->new_id[run->face][doc->glyphs[run->first + i].gid]);
	}

	pdf_puts(doc, o, "%PDF-1.5\n%\xe2\xe3\xcf\xd3\n");
	pdf_obj_begin(doc, 1);
	pdf_puts(doc, o, "<</Type /Catalog /Pages 2 0 R /Lang (ja-JP)>>\nendobj\n");
	pdf_obj_begin(doc, 2);
	pdf_puts(doc, o, "<</Type /Pages /Count ");
	pdf_uint(doc, o, doc->page_count);
	pdf_puts(doc, o, " /Kids [");
	for (size_t p = 0; p < doc->page_count; p++) {
		pdf_ref(doc, first_page + 2 * (int)p);
		pdf_putc(doc, o, ' ');
	}
	pdf_puts(doc, o, "]>>\nendobj\n");

	pdf_obj_begin(doc, 3);
	pdf_puts(doc, o, "<</Title ");
	pdf_text_string(doc, title ? title : "");
	char date[64];
	time_t jst = created + 9 * 3600;
	struct tm tm;
	gmtime_r(&jst, &tm);
	strftime(date, sizeof date, " /CreationDate (D:%Y%m%d%H%M%S+09'00')", &tm);
	pdf_puts(doc, o, date);
	pdf_puts(doc, o, " /Creator (madoguchi) /Producer (madoguchi)>>\nendobj\n");

	pdf_obj_begin(doc, 4);
	pdf_puts(doc, o, "<</Font <<");
	for (int f = 0; f < PDF_FACE_COUNT; f++) {
		if (font_obj[f] == 0)
			continue;
		pdf_puts(doc, o, "/F");
		pdf_uint(doc, o, (unsigned)f);
		pdf_putc(doc, o, ' ');
		pdf_ref(doc, font_obj[f]);
		pdf_putc(doc, o, ' ');
	}
	pdf_puts(doc, o, ">> /XObject <<");
	for (size_t i = 0; i < doc->xobj_count; i++) {
		pdf_puts(doc, o, "/X");
		pdf_uint(doc, o, i);
		pdf_putc(doc, o, ' ');
		pdf_ref(doc, doc->xobjs[i].obj);
		pdf_putc(doc, o, ' ');
	}
	pdf_puts(doc, o, ">>>>\nendobj\n");

	for (int f = 0; f < PDF_FACE_COUNT; f++)
		if (font_obj[f] != 0)
			pdf_write_font(doc, f, tag[f], font_obj[f]);
	for (size_t i = 0; i < doc->xobj_count; i++)
		pdf_write_image(doc, &doc->xobjs[i]);

	for (size_t p = 0; p < doc->page_count; p++) {
		int obj = first_page + 2 * (int)p;
		pdf_obj_begin(doc, obj);
		pdf_puts(doc, o, "<</Type /Page /Parent 2 0 R /MediaBox [0 0 ");
		pdf_num(doc, o, PDF_PAGE_W);
		pdf_num(doc, o, PDF_PAGE_H);
		pdf_puts(doc, o, "] /Resources 4 0 R /Contents ");
		pdf_ref(doc, obj + 1);
		pdf_puts(doc, o, ">>\nendobj\n");
		const struct pdf_page *pg = &doc->pages[p];
		pdf_stream_maybe_deflate(doc, obj + 1, "", doc->content.d + pg->start,
					 pg->end - pg->start);
	}

	/* Cross-reference table: one 20-byte line per object. */
	int objects = first_page + 2 * (int)doc->page_count;
	size_t xref = o->len;
	pdf_puts(doc, o, "xref\n0 ");
	pdf_uint(doc, o, (unsigned)objects);
	pdf_puts(doc, o, "\n0000000000 65535 f \n");
	for (int i = 1; i < objects && !doc->failed; i++) {
		char line[21];
		size_t v = doc->offsets[i];
		for (int d = 9; d >= 0; d--, v /= 10)
			line[d] = (char)('0' + v % 10);
		memcpy(line + 10, " 00000 n \n", 10);
		pdf_put(doc, o, line, 20);
	}
	pdf_puts(doc, o, "trailer\n<</Size ");
	pdf_uint(doc, o, (unsigned)objects);
	pdf_puts(doc, o, " /Root 1 0 R /Info 3 0 R>>\nstartxref\n");
	pdf_uint(doc, o, xref);
	pdf_puts(doc, o, "\n%%EOF\n");

	if (doc->failed) {
		snprintf(err, err_size, "out of memory writing the PDF");
		goto out;
	}
	*pdf = malloc(o->len);
	if (*pdf == NULL) {
		snprintf(err, err_size, "out of memory writing the PDF");
		goto out;
	}
	memcpy(*pdf, o->d, o->len);
	*len = o->len;
	rc = 0;
out:
	for (int f = 0; f < PDF_FACE_COUNT; f++)
		if (font_obj[f] != 0)
			ttf_subset_forget(&doc->sub[f], doc->new_id[f]);
	return rc;
}

/* ------------------------------------------------------------------------------- images */

static int pdf_deflate(const unsigned char *data, size_t len, unsigned char **out, size_t *out_len)
{
	uLongf zlen = compressBound(len);
	*out = malloc(zlen);
	if (*out == NULL || compress2(*out, &zlen, data, len, 6) != Z_OK) {
		free(*out);
		*out = NULL;
		return -1;
	}
	*out_len = zlen;
	return 0;
}

int pdf_image_load_png(const char *path, struct pdf_image *img, char *err, size_t err_size)
{
	memset(img, 0, sizeof *img);
	cairo_surface_t *src = cairo_image_surface_create_from_png(path);
	if (cairo_surface_status(src) != CAIRO_STATUS_SUCCESS) {
		snprintf(err, err_size, "cannot read PNG image: %s",
			 cairo_status_to_string(cairo_surface_status(src)));
		cairo_surface_destroy(src);
		return -1;
	}
	int w = cairo_image_surface_get_width(src), h = cairo_image_surface_get_height(src);
	/* Repaint as ARGB32 so every PNG flavour arrives in one layout. */
	cairo_surface_t *argb = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
	cairo_t *cr = cairo_create(argb);
	cairo_set_source_surface(cr, src, 0, 0);
	cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
	cairo_paint(cr);
	cairo_destroy(cr);
	cairo_surface_destroy(src);
	cairo_surface_flush(argb);
	const unsigned char *px = cairo_image_surface_get_data(argb);
	int stride = cairo_image_surface_get_stride(argb);
	size_t n = (size_t)w * (size_t)h;
	unsigned char *rgb = malloc(n * 3 + 1), *alpha = malloc(n + 1);
	int rc = -1, translucent = 0;
	if (px == NULL || rgb == NULL || alpha == NULL || w <= 0 || h <= 0) {
		snprintf(err, err_size, "cannot decode PNG image (empty or out of memory)");
		goto out;
	}
	for (int y = 0; y < h; y++) {
		const uint32_t *row = (const uint32_t *)(const void *)(px + (size_t)y * stride);
		for (int x = 0; x < w; x++) {
			uint32_t v = row[x];
			unsigned a = v >> 24, i = (unsigned)y * (unsigned)w + (unsigned)x;
			for (int c = 0; c < 3; c++) {
				unsigned ch = (v >> (16 - 8 * c)) & 0xFF; /* premultiplied */
				rgb[3 * i + c] = (unsigned char)(a ? (ch * 255 + a / 2) / a : 255);
			}
			alpha[i] = (unsigned char)a;
			translucent |= a != 255;
		}
	}
	img->width = w;
	img->height = h;
	if (pdf_deflate(rgb, n * 3, &img->rgb_z, &img->rgb_z_len) != 0 ||
	    (translucent && pdf_deflate(alpha, n, &img->alpha_z, &img->alpha_z_len) != 0)) {
		snprintf(err, err_size, "out of memory compressing PNG image");
		pdf_image_free(img);
		goto out;
	}
	rc = 0;
out:
	free(rgb);
	free(alpha);
	cairo_surface_destroy(argb);
	return rc;
}

void pdf_image_free(struct pdf_image *img)
{
	if (img == NULL)
		return;
	free(img->rgb_z);
	free(img->alpha_z);
	memset(img, 0, sizeof *img);
}
