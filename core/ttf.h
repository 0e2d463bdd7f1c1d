/*
 * ttf.h: the TrueType subsetter of the PDF writer's embedded faces.
 *
 * A certificate embeds the glyphs it draws of each IPAex face as a CIDFontType2 font program
 * (ISO 32000-1 9.9), which needs only the glyf, loca, head, hhea, hmtx and maxp tables: glyphs
 * are chosen by CID = glyph id, and text is recovered through the PDF's ToUnicode map.
 *
 * Why by hand and not hb-subset: hb-subset plans each subset from the whole font (its maps,
 * closures and table list), ~0.25 ms per one-page certificate even with the tables above only,
 * the largest single cost of an issuance after the card's signature check (measured with perf
 * at 800 issuances/s: 17 % of the daemon's CPU).  Copying the drawn glyphs' outlines out of
 * glyf costs a few microseconds.  HarfBuzz still shapes the text and reads the font back in the
 * tests, which compare every subset glyph's outline with the original's.
 *
 * A struct ttf_font is read-only once opened: any number of threads may subset from it at
 * once.  A struct ttf_subset belongs to one thread at a time and is reused across documents.
 */
#ifndef MDG_TTF_H
#define MDG_TTF_H

#include <stddef.h>
#include <stdint.h>

/* A TrueType font held in memory by the caller (the bytes must outlive the struct). */
struct ttf_font {
	const unsigned char *data;
	size_t len;
	const unsigned char *head, *hhea, *maxp, *hmtx, *loca, *glyf, *os2, *gasp;
	size_t hmtx_len, glyf_len, maxp_len, os2_len, gasp_len;
	unsigned glyphs;   /* maxp numGlyphs */
	unsigned hmetrics; /* hhea numberOfHMetrics */
	int long_loca;	   /* head indexToLocFormat */
};

/* One subset: the font program and its numbering.  Zero-initialise; ttf_subset_free() frees. */
struct ttf_subset {
	unsigned char *data; /* the font program, len bytes */
	size_t len, cap;
	uint16_t *order; /* new glyph id -> original glyph id, count entries */
	size_t count, order_cap;
};

/*
 * Reads the table directory of the font in data[0..len) (a single font, not a collection) and
 * checks what subsetting relies on: the six tables above present and consistent with each
 * other (numGlyphs, numberOfHMetrics, loca's format and length, every loca offset inside glyf).
 * Returns 0, or -1 with err saying what is wrong.
 */
int ttf_font_open(struct ttf_font *f, const void *data, size_t len, char *err, size_t err_size);

/*
 * Writes into s the subset of f holding glyph 0 (.notdef), the glyphs gids[0..n) in that
 * order (repeats and 0 skipped), then the glyphs their composite glyphs are made of: new glyph
 * id i is original glyph s->order[i].  Glyph outlines are copied as they are, without their
 * hinting instructions (and without cvt, fpgm and prep: the subset is unhinted); the table
 * directory's checksums and head's checkSumAdjustment are set.
 *
 * new_id has f->glyphs entries, all 0 on entry (0 also stands for "not in the subset", which
 * glyph 0 always is); on return new_id[s->order[i]] == i for every i.  The caller sets the
 * entries back to 0 through s->order before the next subset (ttf_subset_forget()).
 * Returns 0, or -1 (out of memory, a glyph id past the font's, a malformed glyph) with err
 * saying why and new_id already cleared.
 */
int ttf_subset(const struct ttf_font *f, const uint32_t *gids, size_t n, uint16_t *new_id,
	       struct ttf_subset *s, char *err, size_t err_size);

/* Sets new_id back to all 0 after ttf_subset() filled it from s. */
void ttf_subset_forget(const struct ttf_subset *s, uint16_t *new_id);

void ttf_subset_free(struct ttf_subset *s);

#endif
