/*
 * pdf.h: the certificate renderer's PDF writer (used by render.c; format notes in
 * docs/documents.md).
 *
 * Why not cairo's PDF surface: a cairo surface subsets and deflates every font again for every
 * document, and nothing it has drawn can be reused by the next document; measured at 85 one-page
 * certificates/s on one core against a target of 1,000 (issue 4).  This writer keeps what does
 * not change between documents and builds only what does:
 *
 *   - the two IPAex faces are found once (fontconfig), opened once for shaping (HarfBuzz, the
 *     shaper pango itself uses) and their tables located once for subsetting (ttf.c, which
 *     copies the drawn glyphs' outlines: a few microseconds per document);
 *   - text is shaped with HarfBuzz directly; only text wider than its box asks pango for the
 *     line-break opportunities (UAX #14) of its characters;
 *   - the PDF itself is the handful of objects a certificate needs (catalog, pages, Type 0 /
 *     CIDFontType2 fonts with Identity-H and a ToUnicode map so text can be searched and
 *     extracted, images, content streams), written into one buffer with its cross-reference
 *     table.  Numbers are written by hand because printf's %f follows LC_NUMERIC (a comma in
 *     some locales) and was a measured hot spot.
 *
 * Coordinates are in points from the page's top-left corner (y grows downwards, as in the
 * layouts); the writer turns them into PDF's bottom-left user space.
 *
 * Threads: pdf_fonts_get() loads the faces once per process (thread-safe); they are read-only
 * after.  A struct pdf_doc belongs to one thread at a time; render.c keeps one per thread and
 * reuses its buffers from document to document (pdf_doc_reset()).
 */
#ifndef MDG_PDF_H
#define MDG_PDF_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum pdf_face { PDF_MINCHO, PDF_GOTHIC, PDF_FACE_COUNT };

enum pdf_align { PDF_ALIGN_LEFT, PDF_ALIGN_CENTER, PDF_ALIGN_RIGHT };

/* How a text is set; the zero value is black left-aligned text at full width. */
struct pdf_style {
	enum pdf_face face;
	double size; /* points */
	enum pdf_align align;
	double rgb[3]; /* fill colour, 0..1 */
	int bold;      /* synthetic bold: outlines stroked as well as filled */
	double hscale; /* horizontal scale, 0 or 1 for none (condensed code line) */
};

/* A shaped, wrapped text: its lines live in the pdf_doc that shaped it. */
struct pdf_text {
	struct pdf_style style;
	size_t first_line, line_count;
	double width;	    /* widest line, points */
	double height;	    /* line_count × line height, points */
	double line_height; /* points */
};

/* An image ready to be placed: RGB (and an alpha mask when it has transparency), deflated. */
struct pdf_image {
	int width, height;
	unsigned char *rgb_z;
	size_t rgb_z_len;
	unsigned char *alpha_z; /* NULL when opaque */
	size_t alpha_z_len;
};

struct pdf_doc;

/*
 * Finds and loads the faces once for the process.  Returns 0, or -1 with err filled (the fonts
 * are missing: fonts-ipaexfont).  Safe from any thread; later calls return the first result.
 */
int pdf_fonts_load(char *err, size_t err_size);
/* Frees the faces (tests and tools, at exit, when no thread renders any more). */
void pdf_fonts_unload(void);

/* A new empty document (NULL when out of memory); pdf_doc_free() releases it. */
struct pdf_doc *pdf_doc_new(void);
void pdf_doc_free(struct pdf_doc *doc);
/* Empties doc for the next document, keeping its buffers' memory. */
void pdf_doc_reset(struct pdf_doc *doc);
/* True once any allocation for doc failed; the document must then be discarded. */
int pdf_doc_failed(const struct pdf_doc *doc);

/*
 * Shapes text (UTF-8, '\n' starts a new line) in style, wrapped to max_width points (<= 0: no
 * wrapping), into *out.  The text is not copied beyond what the lines need.  Fonts must be
 * loaded.  On allocation failure the doc is marked failed and out is an empty text.
 */
void pdf_text_shape(struct pdf_doc *doc, struct pdf_text *out, const struct pdf_style *style,
		    double max_width, const char *text);

/* Starts a new page (A4); drawing goes to the current page. */
void pdf_page_begin(struct pdf_doc *doc);

/* Draws t with its top-left corner in a box at (x, top) of box_width (for the alignment). */
void pdf_text_draw(struct pdf_doc *doc, const struct pdf_text *t, double x, double top,
		   double box_width);

void pdf_fill_rect(struct pdf_doc *doc, double x, double y, double w, double h, double r, double g,
		   double b);
/* Stroked shapes in black unless set with pdf_stroke_colour(). */
void pdf_stroke_colour(struct pdf_doc *doc, double r, double g, double b);
void pdf_line_width(struct pdf_doc *doc, double w);
void pdf_stroke_rect(struct pdf_doc *doc, double x, double y, double w, double h);
void pdf_stroke_line(struct pdf_doc *doc, double x1, double y1, double x2, double y2);
void pdf_stroke_circle(struct pdf_doc *doc, double cx, double cy, double radius);

/* Places img (borrowed until pdf_doc_finish) scaled into w × h at (x, y). */
void pdf_draw_image(struct pdf_doc *doc, const struct pdf_image *img, double x, double y, double w,
		    double h);
/*
 * Places a 1-bit image mask (row-major, one byte per module, bit 0 set = dark, as libqrencode
 * gives it), n × n modules, painted black into size × size at (x, y): the QR code.
 */
void pdf_draw_modules(struct pdf_doc *doc, const unsigned char *modules, int n, double x, double y,
		      double size);

/*
 * Finishes the document: subsets the fonts, writes every object and the cross-reference table.
 * title (UTF-8) goes into the document information; created is its creation date.  Returns 0
 * with *pdf (malloc'd, the caller frees it) and *len, or -1 with err filled.
 */
int pdf_doc_finish(struct pdf_doc *doc, const char *title, time_t created, unsigned char **pdf,
		   size_t *len, char *err, size_t err_size);

/* Loads a PNG (decoded by cairo) into *img; 0, or -1 with err filled. */
int pdf_image_load_png(const char *path, struct pdf_image *img, char *err, size_t err_size);
void pdf_image_free(struct pdf_image *img);

#endif
