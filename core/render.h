/*
 * render.h: certificate documents as PDF (DESIGN §3 step 12; layouts in docs/documents.md).
 *
 * render_document() turns one record (the JSON object of record_json(), docs/records.md) and
 * the issuance's metadata into an A4 PDF in Japanese: one layout per certificate type, every
 * field the record holds, the certification text, the municipality and mayor with the seal,
 * the issue date in the Japanese era and the Western calendar, and on every page the page's
 * verification code (doccode.h) as a QR code and as text.  The renderer prints what the record
 * holds: request options (household, My Number, domicile) are already reflected in the record
 * by the backend.
 *
 * Threads: render_document() may be called from any number of threads at once.  Each thread
 * keeps its own PDF writer buffers and decoded mayor's seal (built on first use, freed when the
 * thread exits or calls render_thread_release()); the only shared state is the two faces
 * (pdf.h), loaded once and read-only after.  The caller owns everything it passes in (borrowed
 * for the duration of the call) and everything it gets out (render_output_free()).
 */
#ifndef MDG_RENDER_H
#define MDG_RENDER_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <qrencode.h>

#include "doccode.h"

/* Request options, for the record of what was asked (the record already reflects them). */
#define RENDER_OPT_HOUSEHOLD	  0x1u
#define RENDER_OPT_SHOW_MY_NUMBER 0x2u
#define RENDER_OPT_SHOW_DOMICILE  0x4u

/* What the document says besides the record.  All strings borrowed, UTF-8. */
struct render_meta {
	const char *issuance_id;       /* required; doccode_issuance_id_ok() */
	time_t issued_at;	       /* printed as a date in Japan time (UTC+9) */
	const char *municipality_name; /* required, e.g. 横浜市中区 */
	/* The certification sentence; NULL for the type's standard text (docs/documents.md). */
	const char *certification_text;
	const char *mayor_name; /* e.g. 横浜市中区長 山田 一郎; NULL: "{municipality}長" */
	const char *seal_png;	/* the mayor's seal (公印) image; NULL: a drawn placeholder */
	/* Directory of resident seal impressions (<seal_image>.png); NULL or missing file: the
	 * record's seal_text is drawn in a seal outline. */
	const char *seal_impressions_dir;
	unsigned options; /* RENDER_OPT_* as requested (informational) */
};

/* The rendered document; owned by the caller, release with render_output_free(). */
struct render_output {
	unsigned char *pdf;
	size_t pdf_len;
	unsigned pages;
	char digest[DOCCODE_DIGEST_LEN + 1]; /* doccode_digest() of the document */
	char first_code[DOCCODE_TEXT_MAX];   /* the code printed on page 1 */
};

enum render_status {
	RENDER_OK = 0,
	RENDER_INVALID = -1, /* the record or meta is unusable (err says which field) */
	RENDER_ERROR = -2,   /* fonts, images, signing or out of memory (err says which) */
};

/*
 * Renders record (certificate type from its "certificate" member) with meta, signing each
 * page's code with signer.  Returns RENDER_OK with *out filled, or RENDER_INVALID /
 * RENDER_ERROR with err filled (no personal data in err) and *out zeroed.
 */
int render_document(const json_t *record, const struct render_meta *meta,
		    const struct doc_signer *signer, struct render_output *out, char *err,
		    size_t err_size);

void render_output_free(struct render_output *out);

/* Frees the calling thread's caches now (they are also freed at thread exit). */
void render_thread_release(void);

/*
 * Frees the process-wide one-time caches (the faces, cairo's and fontconfig's), for leak checkers
 * at exit (tests, madoguchictl).  Only when no thread renders any more; never needed in the daemon.
 */
void render_library_shutdown(void);

/* The Japanese title of a certificate type (住民票の写し, …), or NULL when unknown. */
const char *render_certificate_title(const char *certificate);

/*
 * Formats an ISO date YYYY-MM-DD in the Japanese era ("令和8年11月27日", year 1 as "元年").
 * Returns 0, or -1 (out set to the input unchanged) for an invalid or pre-Meiji date.
 */
int render_era_date(const char *iso, char *out, size_t size);

/*
 * The QR symbol of a page's code text (level M, the smallest version that holds it), as every
 * page carries it; RENDER_QR_MASK says which mask pattern it uses.  NULL when out of memory or
 * the text does not fit a QR code.  Free with QRcode_free().
 */
QRcode *render_qr_encode(const char *text);

/* The symbol's fixed mask pattern (0-7), or -1 where libqrencode picks one (core/render.c). */
extern const int render_qr_mask;

#endif
