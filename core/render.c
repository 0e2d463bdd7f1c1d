/*
 * render.c: certificate PDFs (contract in render.h, layouts in docs/documents.md, the PDF
 * writer and why it is not cairo's surface in pdf.h).
 *
 * A document is built in two passes.  First the record becomes a list of groups (a person, a
 * table, the header fields), each a list of rows of up to four cells; every cell is shaped once
 * (HarfBuzz, wrapped at pango's line-break opportunities) and measured.  Groups are never split
 * across pages unless a group alone is taller than a page, and a row is never split.  That gives
 * the page count N, so the second pass can draw each page with its header (title, page n/N,
 * issuance id), its body, and its footer (issue date, municipality, certification on the last
 * page, the page's QR code and code text).
 *
 * Threads: all state that outlives a call is per thread (struct render_thread behind a
 * pthread key: the PDF writer's reusable buffers and the mayor's seal image), created on first
 * use and freed by the key's destructor or render_thread_release().  The only shared state is
 * the loaded fonts (pdf.c), read-only once loaded.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <glib.h>
#include <qrencode.h>

#include "pdf.h"
#include "render.h"

/* A4 in points, and the page's fixed geometry. */
#define PAGE_W		   595.276
#define PAGE_H		   841.890
#define MARGIN_X	   42.0
#define BODY_TOP	   108.0
#define FOOTER_H	   150.0
#define BODY_BOTTOM	   (PAGE_H - 36.0 - FOOTER_H)
#define BODY_W		   (PAGE_W - 2 * MARGIN_X)
#define CELL_PAD_X	   4.0
#define CELL_PAD_Y	   2.0
#define QR_SIZE		   84.0
#define MAX_CELLS	   4
#define FONT_COUNT	   8
#define RENDER_SEAL_IMAGES 2

enum render_font { F_BODY, F_LABEL, F_HEADING, F_TITLE, F_SMALL, F_CODE, F_CERT, F_SEAL };
#define VERMILION                                                                                  \
	{                                                                                          \
		0.82, 0.16, 0.12                                                                   \
	}
/* Type sizes in points (the layout was first drawn with pango at its 96 dpi, which these keep). */
static const struct pdf_style render_fonts[FONT_COUNT] = {
    [F_BODY] = {.face = PDF_MINCHO, .size = 12},
    [F_LABEL] = {.face = PDF_GOTHIC, .size = 10.67},
    [F_HEADING] = {.face = PDF_GOTHIC, .size = 12.67},
    [F_TITLE] = {.face = PDF_GOTHIC, .size = 24, .bold = 1},
    [F_SMALL] = {.face = PDF_GOTHIC, .size = 10},
    [F_CODE] = {.face = PDF_GOTHIC, .size = 8.67},
    [F_CERT] = {.face = PDF_MINCHO, .size = 14},
    [F_SEAL] = {.face = PDF_MINCHO, .size = 14.67, .rgb = VERMILION},
};

/* Column sets: x offsets (from MARGIN_X) and widths of the cells of a row. */
struct render_cols {
	int count;
	double x[MAX_CELLS];
	double w[MAX_CELLS];
	unsigned label_mask; /* bit i: cell i is a label (gothic, shaded) */
};

static const struct render_cols COLS_FULL = {1, {0}, {BODY_W}, 0};
static const struct render_cols COLS_KV = {2, {0, 110}, {110, BODY_W - 110}, 1u};
static const struct render_cols COLS_KV2 = {
    4, {0, 100, 255, 355}, {100, 155, 100, BODY_W - 355}, 5u};
static const struct render_cols COLS_EVENT = {3, {0, 88, 196}, {88, 108, BODY_W - 196}, 1u};
static const struct render_cols COLS_3 = {3, {0, 170, 340}, {170, 170, BODY_W - 340}, 1u};
static const struct render_cols COLS_3H = {3, {0, 170, 340}, {170, 170, BODY_W - 340}, 7u};
static const struct render_cols COLS_ADDR = {2, {0, 110}, {110, BODY_W - 110}, 1u};

enum row_kind { ROW_CELLS, ROW_HEADING, ROW_SEAL };

struct render_row {
	enum row_kind kind;
	const struct render_cols *cols;
	struct pdf_text cell[MAX_CELLS]; /* shaped into the thread's pdf_doc */
	double height;
	char seal_text[64];   /* ROW_SEAL */
	char seal_image[512]; /* ROW_SEAL: resolved PNG path or "" */
};

struct render_group {
	size_t first_row, row_count;
	double height;
};

/* One document being built: owned by render_document()'s frame. */
struct render_doc {
	struct render_thread *rt;
	struct pdf_doc *pdf; /* rt's writer, reset for this document */
	struct render_row *rows;
	size_t row_count, row_cap;
	struct render_group *groups;
	size_t group_count, group_cap;
	size_t *page_first_row; /* first row of each page, plus a sentinel */
	unsigned pages;
	int oom;
	/* Resident seal impressions drawn, kept until the PDF is written. */
	struct pdf_image seal_images[RENDER_SEAL_IMAGES];
	size_t seal_image_count;
};

/* Per-thread caches. */
struct render_thread {
	struct pdf_doc *pdf;
	struct pdf_image mayor_seal;
	int mayor_seal_loaded; /* 1: mayor_seal holds mayor_seal_path; -1: that path failed */
	char mayor_seal_path[512];
};

static pthread_once_t render_once = PTHREAD_ONCE_INIT;
static pthread_key_t render_key;

static void render_thread_free(void *p)
{
	struct render_thread *rt = p;
	if (rt == NULL)
		return;
	pdf_doc_free(rt->pdf);
	pdf_image_free(&rt->mayor_seal);
	free(rt);
}

static void render_key_make(void)
{
	if (pthread_key_create(&render_key, render_thread_free) != 0)
		abort(); /* no keys left at start-up: a broken invariant, not bad input */
}

static struct render_thread *render_thread_get(char *err, size_t err_size)
{
	pthread_once(&render_once, render_key_make);
	struct render_thread *rt = pthread_getspecific(render_key);
	if (rt != NULL)
		return rt;
	if (pdf_fonts_load(err, err_size) != 0)
		return NULL;
	rt = calloc(1, sizeof *rt);
	if (rt == NULL || (rt->pdf = pdf_doc_new()) == NULL) {
		free(rt);
		snprintf(err, err_size, "out of memory setting up the renderer");
		return NULL;
	}
	pthread_setspecific(render_key, rt);
	return rt;
}

void render_thread_release(void)
{
	pthread_once(&render_once, render_key_make);
	struct render_thread *rt = pthread_getspecific(render_key);
	pthread_setspecific(render_key, NULL);
	render_thread_free(rt);
}

void render_library_shutdown(void)
{
	render_thread_release();
	pdf_fonts_unload();
	cairo_debug_reset_static_data();
	FcFini();
}

/* ---------------------------------------------------------------- text and value formats */

static const char *const render_types[7][3] = {
    {"residence", "住民票の写し", "この写しは、住民票の原本と相違ないことを証明する。"},
    {"residence-record", "住民票記載事項証明書",
     "上記の事項は、住民票に記載されている事項と相違ないことを証明する。"},
    {"seal", "印鑑登録証明書", "この写しは、登録されている印影と相違ないことを証明する。"},
    {"tax-income", "所得・課税証明書", "上記のとおり相違ないことを証明する。"},
    {"koseki-full", "戸籍全部事項証明書",
     "これは、戸籍に記録されている事項の全部を証明した書面である。"},
    {"koseki-individual", "戸籍個人事項証明書",
     "これは、戸籍中の一部の者について記録されている事項の全部を証明した書面である。"},
    {"koseki-attachment", "戸籍の附票の写し",
     "この写しは、戸籍の附票の原本と相違ないことを証明する。"},
};

static int render_type_index(const char *certificate)
{
	for (int i = 0; certificate != NULL && i < 7; i++)
		if (strcmp(render_types[i][0], certificate) == 0)
			return i;
	return -1;
}

const char *render_certificate_title(const char *certificate)
{
	int i = render_type_index(certificate);
	return i < 0 ? NULL : render_types[i][1];
}

struct render_era {
	const char *name;
	int y, m, d; /* first day */
};
static const struct render_era render_eras[] = {
    {"令和", 2019, 5, 1},  {"平成", 1989, 1, 8},  {"昭和", 1926, 12, 25},
    {"大正", 1912, 7, 30}, {"明治", 1868, 1, 25},
};

static int render_era_ymd(int y, int m, int d, char *out, size_t size)
{
	for (size_t i = 0; i < sizeof render_eras / sizeof render_eras[0]; i++) {
		const struct render_era *e = &render_eras[i];
		if (y * 10000 + m * 100 + d >= e->y * 10000 + e->m * 100 + e->d) {
			int n = y - e->y + 1;
			if (n == 1)
				snprintf(out, size, "%s元年%d月%d日", e->name, m, d);
			else
				snprintf(out, size, "%s%d年%d月%d日", e->name, n, m, d);
			return 0;
		}
	}
	return -1;
}

int render_era_date(const char *iso, char *out, size_t size)
{
	int y, m, d;
	char tail;
	if (iso == NULL || strlen(iso) != 10 ||
	    sscanf(iso, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 ||
	    d > 31 || render_era_ymd(y, m, d, out, size) != 0) {
		snprintf(out, size, "%s", iso ? iso : "");
		return -1;
	}
	return 0;
}

/* "1531000" -> "1,531,000円"; anything not a plain integer is printed as it is. */
static void render_yen(const char *v, char *out, size_t size)
{
	size_t n = strlen(v), o = 0, start = (v[0] == '-');
	int digits = n > start;
	for (size_t i = start; i < n; i++)
		digits = digits && isdigit((unsigned char)v[i]);
	if (!digits || n + n / 3 + 8 > size) {
		snprintf(out, size, "%s", v);
		return;
	}
	if (start)
		out[o++] = '-';
	for (size_t i = start; i < n; i++) {
		out[o++] = v[i];
		size_t left = n - i - 1;
		if (left > 0 && left % 3 == 0)
			out[o++] = ',';
	}
	snprintf(out + o, size - o, "円");
}

struct render_map {
	const char *from, *to;
};
static const struct render_map render_words[] = {
    {"male", "男"},
    {"female", "女"},
    {"salary", "給与"},
    {"pension", "公的年金等"},
    {"business", "営業等"},
    {"basic", "基礎控除"},
    {"social_insurance", "社会保険料控除"},
    {"spouse", "配偶者控除"},
    {"dependent", "扶養控除"},
    {"elderly_dependent", "扶養控除(老人)"},
    {"birth", "出生"},
    {"marriage", "婚姻"},
    {"divorce", "離婚"},
    {"death", "死亡"},
    {"entry", "入籍"},
    {"partition", "分籍"},
    {"registered", "登録"},
    {"abolished", "廃止"},
    {"present", "在籍"},
    {"removed", "除籍"},
};

static const char *render_word(const char *v)
{
	for (size_t i = 0; v != NULL && i < sizeof render_words / sizeof render_words[0]; i++)
		if (strcmp(render_words[i].from, v) == 0)
			return render_words[i].to;
	return v;
}

/* ------------------------------------------------------------------ building rows/groups */

static const char *jstr(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static struct render_row *render_row_add(struct render_doc *doc, enum row_kind kind,
					 const struct render_cols *cols)
{
	if (doc->oom)
		return NULL;
	if (doc->row_count == doc->row_cap) {
		size_t cap = doc->row_cap ? doc->row_cap * 2 : 64;
		struct render_row *rows = realloc(doc->rows, cap * sizeof *rows);
		if (rows == NULL) {
			doc->oom = 1;
			return NULL;
		}
		doc->rows = rows;
		doc->row_cap = cap;
	}
	struct render_row *row = &doc->rows[doc->row_count++];
	memset(row, 0, sizeof *row);
	row->kind = kind;
	row->cols = cols;
	if (doc->group_count > 0)
		doc->groups[doc->group_count - 1].row_count++;
	return row;
}

static void render_group_begin(struct render_doc *doc)
{
	if (doc->oom)
		return;
	if (doc->group_count == doc->group_cap) {
		size_t cap = doc->group_cap ? doc->group_cap * 2 : 16;
		struct render_group *g = realloc(doc->groups, cap * sizeof *g);
		if (g == NULL) {
			doc->oom = 1;
			return;
		}
		doc->groups = g;
		doc->group_cap = cap;
	}
	struct render_group *g = &doc->groups[doc->group_count++];
	g->first_row = doc->row_count;
	g->row_count = 0;
	g->height = 0;
}

/* Shapes a cell's text in font, wrapped inside the cell's padding. */
static void render_cell_text(struct render_doc *doc, struct pdf_text *t, enum render_font font,
			     double width, const char *text)
{
	pdf_text_shape(doc->pdf, t, &render_fonts[font], width - 2 * CELL_PAD_X, text);
	if (pdf_doc_failed(doc->pdf))
		doc->oom = 1;
}

/* Adds a row of cells (NULL texts are blank) and measures it. */
static void render_cells(struct render_doc *doc, const struct render_cols *cols, const char *a,
			 const char *b, const char *c, const char *d)
{
	const char *text[MAX_CELLS] = {a, b, c, d};
	struct render_row *row = render_row_add(doc, ROW_CELLS, cols);
	if (row == NULL)
		return;
	double h = 0;
	for (int i = 0; i < cols->count; i++) {
		int label = (cols->label_mask >> i) & 1u;
		render_cell_text(doc, &row->cell[i], label ? F_LABEL : F_BODY, cols->w[i], text[i]);
		/* An empty cell is as tall as one line, like a blank line of text. */
		double ch =
		    row->cell[i].line_count ? row->cell[i].height : row->cell[i].line_height;
		if (ch > h)
			h = ch;
	}
	row->height = h + 2 * CELL_PAD_Y;
}

static void render_heading(struct render_doc *doc, const char *text)
{
	struct render_row *row = render_row_add(doc, ROW_HEADING, &COLS_FULL);
	if (row == NULL)
		return;
	render_cell_text(doc, &row->cell[0], F_HEADING, BODY_W, text);
	row->height = row->cell[0].height + 2 * CELL_PAD_Y + 1;
}

/* A label/value row for an optional field: nothing when the record lacks it. */
static void render_kv(struct render_doc *doc, const char *label, const char *value)
{
	if (value != NULL)
		render_cells(doc, &COLS_KV, label, value, NULL, NULL);
}

static void render_kv_date(struct render_doc *doc, const char *label, const char *iso)
{
	char buf[64];
	if (iso == NULL)
		return;
	render_era_date(iso, buf, sizeof buf);
	render_kv(doc, label, buf);
}

/* Two label/value pairs in one row; a pair with a NULL value is left blank. */
static void render_kv2(struct render_doc *doc, const char *l1, const char *v1, const char *l2,
		       const char *v2)
{
	render_cells(doc, &COLS_KV2, l1, v1, v2 ? l2 : NULL, v2);
}

static const char *render_date(const char *iso, char *buf, size_t size)
{
	if (iso == NULL)
		return NULL;
	render_era_date(iso, buf, size);
	return buf;
}

static void render_residence(struct render_doc *doc, const json_t *rec)
{
	char b1[64], b2[64], b3[64], head[128];
	size_t i;
	const json_t *m;

	render_group_begin(doc);
	render_kv(doc, "住所", jstr(rec, "address"));
	render_kv(doc, "世帯主", jstr(rec, "householder_name"));
	json_array_foreach(json_object_get(rec, "members"), i, m)
	{
		const char *subject = jstr(m, "subject");
		render_group_begin(doc);
		snprintf(head, sizeof head, "世帯員 %zu%s", i + 1,
			 subject && strcmp(subject, "true") == 0 ? "（請求に係る者）" : "");
		render_heading(doc, head);
		render_kv2(doc, "氏名", jstr(m, "name"), "続柄", jstr(m, "relationship"));
		render_kv2(doc, "ふりがな", jstr(m, "kana"), "性別", render_word(jstr(m, "sex")));
		render_kv2(doc, "生年月日", render_date(jstr(m, "birth_date"), b1, sizeof b1),
			   "住民となった年月日",
			   render_date(jstr(m, "became_resident_date"), b2, sizeof b2));
		render_kv2(doc, "住所を定めた年月日",
			   render_date(jstr(m, "address_since"), b3, sizeof b3), "個人番号",
			   jstr(m, "my_number"));
		render_kv(doc, "前住所", jstr(m, "previous_address"));
		render_kv(doc, "本籍", jstr(m, "domicile"));
		render_kv(doc, "筆頭者", jstr(m, "domicile_head"));
	}
}

static void render_seal_record(struct render_doc *doc, const json_t *rec, const char *dir)
{
	char b1[64];
	render_group_begin(doc);
	render_heading(doc, "印鑑登録事項");
	render_kv(doc, "登録番号", jstr(rec, "registration_number"));
	render_kv(doc, "氏名", jstr(rec, "registered_name"));
	render_kv(doc, "ふりがな", jstr(rec, "kana"));
	render_kv_date(doc, "生年月日", jstr(rec, "birth_date"));
	render_kv(doc, "性別", render_word(jstr(rec, "sex")));
	render_kv(doc, "住所", jstr(rec, "address"));
	render_kv_date(doc, "登録年月日", jstr(rec, "registered_date"));
	render_kv(doc, "登録の状態", render_word(jstr(rec, "seal_status")));
	render_kv_date(doc, "廃止年月日", jstr(rec, "abolished_date"));
	const char *image = jstr(rec, "seal_image");
	snprintf(b1, sizeof b1, "印影（%s）", image ? image : "");
	render_heading(doc, b1);
	struct render_row *row = render_row_add(doc, ROW_SEAL, &COLS_FULL);
	if (row == NULL)
		return;
	row->height = 96;
	snprintf(row->seal_text, sizeof row->seal_text, "%s",
		 jstr(rec, "seal_text") ? jstr(rec, "seal_text") : "");
	/* An id is a file name only when it is plain: no path can be smuggled in. */
	if (dir != NULL && image != NULL &&
	    strspn(image, "abcdefghijklmnopqrstuvwxyz"
			  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == strlen(image)) {
		int n = snprintf(row->seal_image, sizeof row->seal_image, "%s/%s.png", dir, image);
		FILE *f = n > 0 && (size_t)n < sizeof row->seal_image ? fopen(row->seal_image, "rb")
								      : NULL;
		if (f != NULL)
			fclose(f);
		else
			row->seal_image[0] = '\0';
	}
	render_group_begin(doc);
	render_kv(doc, "印影の文字", jstr(rec, "seal_text"));
}

/*
 * "令和7年度（2025年度）": the era year of year-month_day, then the Western year, each followed by
 * unit ("年度" for a fiscal year, "年分" for an income year).  The day picks the era at its
 * boundaries.
 */
static void render_year_label(const char *year, const char *month_day, const char *unit, char *out,
			      size_t size)
{
	char date[64], era[64];
	snprintf(date, sizeof date, "%s-%s", year, month_day);
	render_era_date(date, era, sizeof era);
	char *nen = strstr(era, "年");
	if (nen)
		*nen = '\0';
	snprintf(out, size, "%s%s（%s%s）", era, unit, year, unit);
}

static void render_tax(struct render_doc *doc, const json_t *rec)
{
	char b1[64], b2[160], b3[160];
	size_t i;
	const json_t *it;
	const char *fy = jstr(rec, "fiscal_year"), *iy = jstr(rec, "income_year");

	render_group_begin(doc);
	if (fy != NULL) {
		render_year_label(fy, "07-01", "年度", b2, sizeof b2);
		render_kv(doc, "年度", b2);
	}
	if (iy != NULL) {
		render_year_label(iy, "12-31", "年分", b3, sizeof b3);
		render_kv(doc, "所得の年", b3);
	}
	render_kv(doc, "氏名", jstr(rec, "name"));
	render_kv(doc, "ふりがな", jstr(rec, "kana"));
	render_kv_date(doc, "生年月日", jstr(rec, "birth_date"));
	render_kv(doc, "住所", jstr(rec, "address"));

	render_group_begin(doc);
	render_heading(doc, "所得の内訳");
	render_cells(doc, &COLS_3H, "所得の種類", "収入金額", "所得金額", NULL);
	json_array_foreach(json_object_get(rec, "incomes"), i, it)
	{
		const char *r = jstr(it, "revenue_yen"), *n = jstr(it, "income_yen");
		if (r)
			render_yen(r, b1, sizeof b1);
		if (n)
			render_yen(n, b2, sizeof b2);
		render_cells(doc, &COLS_3, render_word(jstr(it, "kind")), r ? b1 : NULL,
			     n ? b2 : NULL, NULL);
	}
	render_group_begin(doc);
	render_heading(doc, "所得控除の内訳");
	render_cells(doc, &COLS_3H, "控除の種類", "金額", "", NULL);
	json_array_foreach(json_object_get(rec, "deductions"), i, it)
	{
		const char *a = jstr(it, "amount_yen");
		if (a)
			render_yen(a, b1, sizeof b1);
		render_cells(doc, &COLS_3, render_word(jstr(it, "kind")), a ? b1 : NULL, "", NULL);
	}
	static const char *const totals[][2] = {
	    {"total_income_yen", "合計所得金額"},
	    {"total_deductions_yen", "所得控除合計"},
	    {"taxable_income_yen", "課税標準額"},
	    {"municipal_tax_yen", "市町村民税所得割額"},
	    {"prefectural_tax_yen", "道府県民税所得割額"},
	};
	render_group_begin(doc);
	render_heading(doc, "税額");
	for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++) {
		const char *v = jstr(rec, totals[k][0]);
		if (v == NULL)
			continue;
		render_yen(v, b1, sizeof b1);
		render_kv(doc, totals[k][1], b1);
	}
}

static void render_register_head(struct render_doc *doc, const json_t *rec, int with_dates)
{
	char b[96];
	render_group_begin(doc);
	render_kv(doc, "本籍", jstr(rec, "domicile"));
	render_kv(doc, "氏名（筆頭者）", jstr(rec, "head_name"));
	if (with_dates) {
		render_kv_date(doc, "戸籍編製日", jstr(rec, "register_created_date"));
		render_kv(doc, "編製事由", jstr(rec, "register_created_reason"));
	}
	const char *s = jstr(rec, "subject_person_no");
	if (s != NULL) {
		snprintf(b, sizeof b, "%s番目に記録されている者", s);
		render_kv(doc, "請求に係る者", b);
	}
}

static void render_koseki(struct render_doc *doc, const json_t *rec)
{
	char b1[64], b2[64], b3[64], head[160];
	size_t i, k;
	const json_t *p, *e;
	const json_t *events = json_object_get(rec, "events");

	render_register_head(doc, rec, 1);
	json_array_foreach(json_object_get(rec, "persons"), i, p)
	{
		const char *no = jstr(p, "person_no");
		const char *state = jstr(p, "state");
		render_group_begin(doc);
		snprintf(head, sizeof head, "戸籍に記録されている者 %s（%s）", no ? no : "?",
			 render_word(state));
		render_heading(doc, head);
		render_kv2(doc, "名", jstr(p, "name"), "続柄", jstr(p, "parental_relationship"));
		render_kv2(doc, "ふりがな", jstr(p, "kana"), "性別", render_word(jstr(p, "sex")));
		render_kv2(doc, "生年月日", render_date(jstr(p, "birth_date"), b1, sizeof b1),
			   "配偶者区分", jstr(p, "spouse_role"));
		render_kv2(doc, "父", jstr(p, "father"), "母", jstr(p, "mother"));
		if (jstr(p, "removed_reason") || jstr(p, "removed_date"))
			render_kv2(doc, "除籍事由", jstr(p, "removed_reason"), "除籍日",
				   render_date(jstr(p, "removed_date"), b2, sizeof b2));
		json_array_foreach(events, k, e)
		{
			const char *eno = jstr(e, "person_no");
			if (no == NULL || eno == NULL || strcmp(no, eno) != 0)
				continue;
			render_cells(doc, &COLS_EVENT, render_word(jstr(e, "kind")),
				     render_date(jstr(e, "date"), b3, sizeof b3), jstr(e, "detail"),
				     NULL);
		}
	}
}

static void render_attachment(struct render_doc *doc, const json_t *rec)
{
	char b1[64], b2[64], head[96];
	size_t i, k;
	const json_t *p, *a;
	const json_t *addresses = json_object_get(rec, "addresses");

	render_register_head(doc, rec, 0);
	json_array_foreach(json_object_get(rec, "persons"), i, p)
	{
		const char *no = jstr(p, "person_no");
		render_group_begin(doc);
		snprintf(head, sizeof head, "附票に記録されている者 %s", no ? no : "?");
		render_heading(doc, head);
		render_kv2(doc, "氏名", jstr(p, "name"), "生年月日",
			   render_date(jstr(p, "birth_date"), b1, sizeof b1));
		json_array_foreach(addresses, k, a)
		{
			const char *ano = jstr(a, "person_no");
			if (no == NULL || ano == NULL || strcmp(no, ano) != 0)
				continue;
			render_cells(doc, &COLS_ADDR, "住所", jstr(a, "address"), NULL, NULL);
			render_cells(doc, &COLS_ADDR, "住所を定めた年月日",
				     render_date(jstr(a, "since"), b2, sizeof b2), NULL, NULL);
		}
	}
}

/* ------------------------------------------------------------------------- pagination */

static int render_paginate(struct render_doc *doc)
{
	const double body = BODY_BOTTOM - BODY_TOP;
	size_t cap = doc->row_count + 2;
	doc->page_first_row = calloc(cap, sizeof *doc->page_first_row);
	if (doc->page_first_row == NULL)
		return -1;
	unsigned pages = 1;
	double used = 0;
	doc->page_first_row[0] = 0;
	for (size_t g = 0; g < doc->group_count; g++) {
		struct render_group *grp = &doc->groups[g];
		grp->height = 0;
		for (size_t r = 0; r < grp->row_count; r++)
			grp->height += doc->rows[grp->first_row + r].height;
		grp->height += 4; /* gap after a group */
		if (grp->row_count == 0)
			continue;
		if (used > 0 && used + grp->height > body) {
			doc->page_first_row[pages++] = grp->first_row;
			used = 0;
		}
		if (grp->height <= body) {
			used += grp->height;
			continue;
		}
		/* Taller than a page: break between rows, never inside one. */
		for (size_t r = 0; r < grp->row_count; r++) {
			double h = doc->rows[grp->first_row + r].height;
			if (used > 0 && used + h > body) {
				doc->page_first_row[pages++] = grp->first_row + r;
				used = 0;
			}
			used += h;
		}
		used += 4;
	}
	doc->page_first_row[pages] = doc->row_count;
	doc->pages = pages;
	return 0;
}

/* ---------------------------------------------------------------------------- drawing */

/* Shapes and draws text in font in a box at (x, y) of width (<= 0: unbounded); its height. */
static double render_text(struct render_doc *doc, enum render_font font, double x, double y,
			  double width, enum pdf_align align, const char *text)
{
	struct pdf_style style = render_fonts[font];
	struct pdf_text t;
	style.align = align;
	pdf_text_shape(doc->pdf, &t, &style, width, text);
	pdf_text_draw(doc->pdf, &t, x, y, width > 0 ? width : t.width);
	return t.height;
}

/* A seal outline (circle or square) with text set vertically inside, in vermilion. */
static void render_seal_outline(struct render_doc *doc, double cx, double cy, double r,
				const char *text, int square)
{
	struct pdf_style style = render_fonts[F_SEAL];
	char ch[8];
	size_t count = 0;
	pdf_stroke_colour(doc->pdf, 0.82, 0.16, 0.12);
	pdf_line_width(doc->pdf, 2.0);
	if (square)
		pdf_stroke_rect(doc->pdf, cx - r, cy - r, 2 * r, 2 * r);
	else
		pdf_stroke_circle(doc->pdf, cx, cy, r);
	pdf_stroke_colour(doc->pdf, 0, 0, 0);
	/* One character per line: vertical writing of a short engraving, scaled to fit. */
	for (const char *p = text; *p; p = g_utf8_next_char(p))
		count += *p != ' ';
	if (count == 0)
		return;
	double line = style.size - 2; /* the old layout's -2 pt line spacing */
	if (count * line > 1.7 * r) {
		double k = 1.7 * r / (count * line);
		style.size *= k;
		line *= k;
	}
	double y = cy - count * line / 2;
	style.align = PDF_ALIGN_CENTER;
	for (const char *p = text; *p;) {
		const char *next = g_utf8_next_char(p);
		size_t n = (size_t)(next - p);
		if (*p != ' ' && n < sizeof ch) {
			memcpy(ch, p, n);
			ch[n] = '\0';
			struct pdf_text t;
			pdf_text_shape(doc->pdf, &t, &style, 0, ch);
			pdf_text_draw(doc->pdf, &t, cx - style.size, y - style.size * 0.1,
				      2 * style.size);
			y += line;
		}
		p = next;
	}
}

/* Draws img scaled to fit a size × size square at (x, y), keeping its aspect. */
static void render_image(struct render_doc *doc, const struct pdf_image *img, double x, double y,
			 double size)
{
	if (img->width <= 0 || img->height <= 0)
		return;
	double s = size / (img->width > img->height ? img->width : img->height);
	pdf_draw_image(doc->pdf, img, x, y, img->width * s, img->height * s);
}

/* A resident's seal impression from its PNG, or the engraving drawn in an outline. */
static void render_seal_row(struct render_doc *doc, const struct render_row *row, double y)
{
	char err[128];
	/* The image is written by pdf_doc_finish(): the document keeps it until then. */
	struct pdf_image *img = &doc->seal_images[doc->seal_image_count];
	if (row->seal_image[0] && doc->seal_image_count < RENDER_SEAL_IMAGES &&
	    pdf_image_load_png(row->seal_image, img, err, sizeof err) == 0) {
		doc->seal_image_count++;
		render_image(doc, img, MARGIN_X + BODY_W / 2 - 42, y + 6, 84);
		return;
	}
	render_seal_outline(doc, MARGIN_X + BODY_W / 2, y + row->height / 2, 40, row->seal_text, 0);
}

static void render_rows(struct render_doc *doc, size_t from, size_t to)
{
	double y = BODY_TOP;
	size_t g = 0;
	pdf_line_width(doc->pdf, 0.5);
	for (size_t r = from; r < to; r++) {
		const struct render_row *row = &doc->rows[r];
		while (g + 1 < doc->group_count && doc->groups[g + 1].first_row <= r)
			g++;
		if (r > from && doc->groups[g].first_row == r)
			y += 4;
		const struct render_cols *c = row->cols;
		if (row->kind == ROW_HEADING) {
			pdf_fill_rect(doc->pdf, MARGIN_X, y, BODY_W, row->height, 0.88, 0.88, 0.88);
		} else if (row->kind == ROW_CELLS) {
			for (int i = 0; i < c->count; i++)
				if ((c->label_mask >> i) & 1u)
					pdf_fill_rect(doc->pdf, MARGIN_X + c->x[i], y, c->w[i],
						      row->height, 0.95, 0.95, 0.95);
		}
		if (row->kind == ROW_SEAL) {
			render_seal_row(doc, row, y);
			pdf_line_width(doc->pdf, 0.5);
		}
		for (int i = 0; i < c->count && row->kind != ROW_SEAL; i++)
			pdf_text_draw(doc->pdf, &row->cell[i], MARGIN_X + c->x[i] + CELL_PAD_X,
				      y + CELL_PAD_Y, c->w[i] - 2 * CELL_PAD_X);
		/* Cell borders. */
		pdf_stroke_rect(doc->pdf, MARGIN_X, y, BODY_W, row->height);
		for (int i = 1; i < c->count; i++)
			pdf_stroke_line(doc->pdf, MARGIN_X + c->x[i], y, MARGIN_X + c->x[i],
					y + row->height);
		y += row->height;
	}
}

/*
 * QRcode_encodeString() encodes the text and then draws it with each of the eight mask patterns
 * to keep the one its penalty rules score best; on the issuance path that choice was 40 % of a
 * one-page render (perf on tests/bench/render.sh) and 14 % of the appliance's CPU under load.
 * Any mask is a valid symbol, and the choice matters for data with long regular runs, which a
 * code ending in 86 characters of signature does not have.  So the symbol is encoded exactly as
 * QRcode_encodeString() would (same segmentation, so the same version), with mask 4.  Measured
 * with zbarimg on 150 codes of this format drawn at 1.6 and 1.8 pixels per module with noise,
 * mask 4 decoded 73 and 142 where libqrencode's own choice decoded 57 and 133; at 2.2 pixels
 * and above every mask decoded all.  tests/e2e/test_render.py reads every page's symbol back.
 *
 * The two calls are exported by libqrencode since 3.2.0 but declared only in headers it does
 * not install, hence the declarations here and the configure check (configure.ac).
 */
#if defined(HAVE_QRCODE_ENCODEMASK) && defined(HAVE_SPLIT_SPLITSTRINGTOQRINPUT)
QRcode *QRcode_encodeMask(QRinput *input, int mask);
int Split_splitStringToQRinput(const char *string, QRinput *input, QRencodeMode hint,
			       int casesensitive);

const int render_qr_mask = 4;

QRcode *render_qr_encode(const char *text)
{
	QRinput *in = QRinput_new2(0, QR_ECLEVEL_M);
	if (in == NULL)
		return NULL;
	QRcode *qr = NULL;
	if (Split_splitStringToQRinput(text, in, QR_MODE_8, 1) == 0)
		qr = QRcode_encodeMask(in, render_qr_mask);
	QRinput_free(in);
	return qr;
}
#else
const int render_qr_mask = -1;

QRcode *render_qr_encode(const char *text)
{
	return QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
}
#endif

static void render_qr(struct render_doc *doc, const char *code, double x, double y, double size)
{
	QRcode *qr = render_qr_encode(code);
	if (qr == NULL) {
		doc->oom = 1;
		return;
	}
	int n = qr->width, quiet = 2;
	double m = size / (n + 2 * quiet);
	pdf_fill_rect(doc->pdf, x, y, size, size, 1, 1, 1);
	pdf_draw_modules(doc->pdf, qr->data, n, x + quiet * m, y + quiet * m, n * m);
	QRcode_free(qr);
}

/* The code as one line of text, condensed to fit width: pdftotext must give it whole. */
static void render_code_line(struct render_doc *doc, double x, double y, double width,
			     const char *code)
{
	struct pdf_text t;
	pdf_text_shape(doc->pdf, &t, &render_fonts[F_CODE], 0, code);
	if (t.width > width)
		t.style.hscale = width / t.width;
	pdf_text_draw(doc->pdf, &t, x, y, width);
}

/* The mayor's seal (公印) at (x, y), 60 pt, or a marked placeholder when none is configured. */
static void render_mayor_seal(struct render_doc *doc, const struct render_meta *meta, double sx,
			      double sy)
{
	struct render_thread *rt = doc->rt;
	if (meta->seal_png != NULL && strcmp(rt->mayor_seal_path, meta->seal_png) != 0) {
		char err[128];
		pdf_image_free(&rt->mayor_seal);
		snprintf(rt->mayor_seal_path, sizeof rt->mayor_seal_path, "%s", meta->seal_png);
		rt->mayor_seal_loaded =
		    pdf_image_load_png(meta->seal_png, &rt->mayor_seal, err, sizeof err) == 0 ? 1
											      : -1;
	}
	if (meta->seal_png != NULL && rt->mayor_seal_loaded == 1) {
		render_image(doc, &rt->mayor_seal, sx, sy, 60);
		return;
	}
	render_seal_outline(doc, sx + 30, sy + 30, 27, "公印", 1);
	struct pdf_style style = render_fonts[F_SMALL];
	const double vermilion[3] = VERMILION;
	struct pdf_text t;
	memcpy(style.rgb, vermilion, sizeof vermilion);
	style.align = PDF_ALIGN_CENTER;
	pdf_text_shape(doc->pdf, &t, &style, 100, "見本（公印未設定）");
	pdf_text_draw(doc->pdf, &t, sx - 20, sy + 61, 100);
}

static void render_frame(struct render_doc *doc, const struct render_meta *meta, const char *title,
			 const char *cert_text, const char *issue_date, unsigned page,
			 const char *code)
{
	char buf[512];
	render_text(doc, F_TITLE, MARGIN_X, 44, BODY_W, PDF_ALIGN_CENTER, title);
	snprintf(buf, sizeof buf, "%u / %u ページ", page, doc->pages);
	render_text(doc, F_SMALL, MARGIN_X, 30, BODY_W, PDF_ALIGN_RIGHT, buf);
	snprintf(buf, sizeof buf, "発行番号 %s", meta->issuance_id);
	render_text(doc, F_SMALL, MARGIN_X, 30, BODY_W, PDF_ALIGN_LEFT, buf);
	render_text(doc, F_SMALL, MARGIN_X, 84, BODY_W, PDF_ALIGN_LEFT, meta->municipality_name);
	snprintf(buf, sizeof buf, "発行日 %s", issue_date);
	render_text(doc, F_SMALL, MARGIN_X, 84, BODY_W, PDF_ALIGN_RIGHT, buf);
	pdf_line_width(doc->pdf, 1.0);
	pdf_stroke_line(doc->pdf, MARGIN_X, 100, PAGE_W - MARGIN_X, 100);

	/* Footer: certification on the last page, else a continuation note. */
	double fy = BODY_BOTTOM + 10;
	double text_w = BODY_W - QR_SIZE - 12;
	if (page == doc->pages) {
		render_text(doc, F_BODY, MARGIN_X, fy, text_w, PDF_ALIGN_LEFT, "以下余白");
		fy += 18;
		fy += render_text(doc, F_CERT, MARGIN_X, fy, text_w, PDF_ALIGN_LEFT, cert_text);
		fy += 6;
		render_text(doc, F_CERT, MARGIN_X, fy, text_w, PDF_ALIGN_LEFT, issue_date);
		fy += 22;
		if (meta->mayor_name != NULL)
			snprintf(buf, sizeof buf, "%s", meta->mayor_name);
		else
			snprintf(buf, sizeof buf, "%s長", meta->municipality_name);
		render_text(doc, F_CERT, MARGIN_X, fy, text_w - 80, PDF_ALIGN_RIGHT, buf);
		render_mayor_seal(doc, meta, MARGIN_X + text_w - 66, fy - 24);
	} else {
		render_text(doc, F_BODY, MARGIN_X, fy, text_w, PDF_ALIGN_LEFT,
			    "（次のページに続く）");
	}
	/* The page's verification code: QR and text. */
	render_qr(doc, code, PAGE_W - MARGIN_X - QR_SIZE, BODY_BOTTOM + 8, QR_SIZE);
	render_text(doc, F_SMALL, MARGIN_X, PAGE_H - 48, BODY_W, PDF_ALIGN_LEFT,
		    "検証コード（このページ）:");
	render_code_line(doc, MARGIN_X, PAGE_H - 36, BODY_W, code);
}

/* ----------------------------------------------------------------------------- output */

static void render_doc_free(struct render_doc *doc)
{
	for (size_t i = 0; i < doc->seal_image_count; i++)
		pdf_image_free(&doc->seal_images[i]);
	free(doc->rows);
	free(doc->groups);
	free(doc->page_first_row);
}

static int render_fail(char *err, size_t err_size, int status, const char *msg)
{
	if (err != NULL && err_size > 0)
		snprintf(err, err_size, "%s", msg);
	return status;
}

int render_document(const json_t *record, const struct render_meta *meta,
		    const struct doc_signer *signer, struct render_output *out, char *err,
		    size_t err_size)
{
	char issue_date[128], cerr[256], code[DOCCODE_TEXT_MAX];
	struct render_doc doc;
	int rc = RENDER_OK;

	memset(out, 0, sizeof *out);
	memset(&doc, 0, sizeof doc);
	if (!json_is_object(record))
		return render_fail(err, err_size, RENDER_INVALID, "the record is not an object");
	const char *certificate = jstr(record, "certificate");
	int type = render_type_index(certificate);
	if (type < 0)
		return render_fail(err, err_size, RENDER_INVALID,
				   "the record's certificate type is missing or unknown");
	if (meta == NULL || !doccode_issuance_id_ok(meta->issuance_id))
		return render_fail(err, err_size, RENDER_INVALID,
				   "the issuance id must be 1-64 characters of A-Z a-z 0-9 . _ -");
	if (meta->municipality_name == NULL || meta->municipality_name[0] == '\0')
		return render_fail(err, err_size, RENDER_INVALID, "no municipality name");
	if (signer == NULL)
		return render_fail(err, err_size, RENDER_INVALID, "no document key");
	if (doccode_digest(meta->issuance_id, certificate, record, out->digest) != DOCCODE_OK)
		return render_fail(err, err_size, RENDER_ERROR, "cannot digest the record");

	doc.rt = render_thread_get(cerr, sizeof cerr);
	if (doc.rt == NULL)
		return render_fail(err, err_size, RENDER_ERROR, cerr);
	doc.pdf = doc.rt->pdf;
	pdf_doc_reset(doc.pdf);

	switch (type) {
	case 0:
	case 1:
		render_residence(&doc, record);
		break;
	case 2:
		render_seal_record(&doc, record, meta->seal_impressions_dir);
		break;
	case 3:
		render_tax(&doc, record);
		break;
	case 4:
	case 5:
		render_koseki(&doc, record);
		break;
	default:
		render_attachment(&doc, record);
		break;
	}
	if (doc.oom || render_paginate(&doc) != 0) {
		render_doc_free(&doc);
		return render_fail(err, err_size, RENDER_ERROR,
				   "out of memory laying out the page");
	}
	if (doc.pages > DOCCODE_PAGES_MAX) {
		render_doc_free(&doc);
		return render_fail(err, err_size, RENDER_INVALID,
				   "the document has too many pages");
	}

	/* Issue date in Japan time: the era and the Western calendar. */
	time_t jst = meta->issued_at + 9 * 3600;
	struct tm tm;
	char era[64];
	gmtime_r(&jst, &tm);
	render_era_ymd(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, era, sizeof era);
	snprintf(issue_date, sizeof issue_date, "%s（%d年%d月%d日）", era, tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday);
	const char *cert_text =
	    meta->certification_text ? meta->certification_text : render_types[type][2];

	for (unsigned p = 1; p <= doc.pages && rc == RENDER_OK; p++) {
		if (doccode_make(signer, meta->issuance_id, p, doc.pages, out->digest, code,
				 sizeof code, cerr, sizeof cerr) != DOCCODE_OK) {
			rc = render_fail(err, err_size, RENDER_ERROR, cerr);
			break;
		}
		if (p == 1)
			memcpy(out->first_code, code, sizeof code);
		pdf_page_begin(doc.pdf);
		render_rows(&doc, doc.page_first_row[p - 1], doc.page_first_row[p]);
		render_frame(&doc, meta, render_types[type][1], cert_text, issue_date, p, code);
	}
	if (rc == RENDER_OK && (doc.oom || pdf_doc_failed(doc.pdf)))
		rc = render_fail(err, err_size, RENDER_ERROR, "out of memory drawing the document");
	if (rc == RENDER_OK && pdf_doc_finish(doc.pdf, render_types[type][1], meta->issued_at,
					      &out->pdf, &out->pdf_len, cerr, sizeof cerr) != 0)
		rc = render_fail(err, err_size, RENDER_ERROR, cerr);
	render_doc_free(&doc);
	if (rc != RENDER_OK) {
		free(out->pdf);
		memset(out, 0, sizeof *out);
		return rc;
	}
	out->pages = doc.pages;
	return RENDER_OK;
}

void render_output_free(struct render_output *out)
{
	if (out == NULL)
		return;
	free(out->pdf);
	memset(out, 0, sizeof *out);
}
