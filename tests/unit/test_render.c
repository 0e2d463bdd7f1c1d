/*
 * test_render.c: page verification codes (core/doccode.c) and certificate PDFs (core/render.c).
 *
 * Codes: a made code verifies and says its issuance and page; changing any single character
 * of it, or verifying with another key, fails; malformed codes fail with MALFORMED.  Documents:
 * records built by hand with core/record.h's builder, one per certificate type, render to a
 * PDF with the right page count (a large household and a large register spill onto more
 * pages), from several threads at once too.  City-based checks (every field of a real record
 * is printed) are in tests/e2e/test_render.py.  Environment: MDG_SRCDIR (unused here but
 * accepted, like the other unit tests).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cairo.h>
#include <cmocka.h>
#include <jansson.h>

#include "doccode.h"
#include "record.h"
#include "render.h"

static struct doc_signer *signer_a, *signer_b;
static struct doc_verifier *verifier_a, *verifier_b;

static int group_setup(void **state)
{
	(void)state;
	char err[256];
	if (doc_signer_generate(&signer_a, err, sizeof err) != DOCCODE_OK ||
	    doc_signer_generate(&signer_b, err, sizeof err) != DOCCODE_OK)
		return -1;
	char *pa = doc_signer_public_pem(signer_a), *pb = doc_signer_public_pem(signer_b);
	int rc = doc_verifier_from_pem(pa, &verifier_a, err, sizeof err) == DOCCODE_OK &&
			 doc_verifier_from_pem(pb, &verifier_b, err, sizeof err) == DOCCODE_OK
		     ? 0
		     : -1;
	free(pa);
	free(pb);
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	doc_signer_free(signer_a);
	doc_signer_free(signer_b);
	doc_verifier_free(verifier_a);
	doc_verifier_free(verifier_b);
	render_library_shutdown();
	return 0;
}

static void make_code(char *code, unsigned page, unsigned pages)
{
	char err[256];
	assert_int_equal(doccode_make(signer_a, "141003-20261127-000123", page, pages,
				      "0123456789abcdef", code, DOCCODE_TEXT_MAX, err, sizeof err),
			 DOCCODE_OK);
}

static void a_code_verifies_and_names_its_issuance_and_page(void **state)
{
	(void)state;
	char code[DOCCODE_TEXT_MAX], err[256];
	struct doccode_info info;
	make_code(code, 2, 3);
	assert_int_equal(strncmp(code, "MDG1:", 5), 0);
	assert_int_equal(doccode_verify(verifier_a, code, &info, err, sizeof err), DOCCODE_OK);
	assert_string_equal(info.issuance_id, "141003-20261127-000123");
	assert_int_equal(info.page, 2);
	assert_int_equal(info.pages, 3);
	assert_string_equal(info.digest, "0123456789abcdef");
	assert_string_equal(info.key_id, doc_signer_key_id(signer_a));
	assert_string_equal(doc_verifier_key_id(verifier_a), doc_signer_key_id(signer_a));
}

static void any_changed_character_fails(void **state)
{
	(void)state;
	char code[DOCCODE_TEXT_MAX], err[256];
	make_code(code, 1, 2);
	size_t n = strlen(code);
	const char *alphabet = "09afAF:/-_xZ";
	for (size_t i = 0; i < n; i++) {
		for (const char *c = alphabet; *c; c++) {
			if (*c == code[i])
				continue;
			char bad[DOCCODE_TEXT_MAX];
			memcpy(bad, code, n + 1);
			bad[i] = *c;
			int rc = doccode_verify(verifier_a, bad, NULL, err, sizeof err);
			if (rc == DOCCODE_OK)
				fail_msg("changing position %zu to '%c' still verifies", i, *c);
		}
	}
	/* Truncated and extended codes fail too. */
	char bad[DOCCODE_TEXT_MAX + 2];
	memcpy(bad, code, n - 1);
	bad[n - 1] = '\0';
	assert_int_not_equal(doccode_verify(verifier_a, bad, NULL, err, sizeof err), DOCCODE_OK);
	snprintf(bad, sizeof bad, "%sA", code);
	assert_int_not_equal(doccode_verify(verifier_a, bad, NULL, err, sizeof err), DOCCODE_OK);
}

static void another_documents_page_does_not_verify_as_this_one(void **state)
{
	(void)state;
	char c1[DOCCODE_TEXT_MAX], c2[DOCCODE_TEXT_MAX], err[256];
	make_code(c1, 1, 2);
	assert_int_equal(doccode_make(signer_a, "141003-20261127-000124", 1, 2, "0123456789abcdef",
				      c2, sizeof c2, err, sizeof err),
			 DOCCODE_OK);
	/* Splice the other document's signature onto this document's fields. */
	char spliced[DOCCODE_TEXT_MAX];
	const char *sig1 = strrchr(c1, ':'), *sig2 = strrchr(c2, ':');
	snprintf(spliced, sizeof spliced, "%.*s%s", (int)(sig1 - c1), c1, sig2);
	assert_int_equal(doccode_verify(verifier_a, spliced, NULL, err, sizeof err),
			 DOCCODE_BAD_SIGNATURE);
}

static void another_key_fails_as_wrong_key(void **state)
{
	(void)state;
	char code[DOCCODE_TEXT_MAX], err[256];
	make_code(code, 1, 1);
	assert_int_equal(doccode_verify(verifier_b, code, NULL, err, sizeof err),
			 DOCCODE_WRONG_KEY);
	assert_non_null(strstr(err, doc_signer_key_id(signer_a)));
}

static void malformed_codes_fail_as_malformed(void **state)
{
	(void)state;
	char err[256], code[DOCCODE_TEXT_MAX];
	static const char *const bad[] = {
	    "",
	    "MDG1",
	    "MDG2:0123456789abcdef:x:1/1:0123456789abcdef:" /* wrong prefix */,
	    "MDG1:0123456789abcdef:x:0/1:0123456789abcdef:AAAA",
	    "MDG1:0123456789abcdef:x:2/1:0123456789abcdef:AAAA",
	    "MDG1:0123456789abcdef:x:01/1:0123456789abcdef:AAAA",
	    "MDG1:0123456789ABCDEF:x:1/1:0123456789abcdef:AAAA",
	    "MDG1:0123456789abcdef:x y:1/1:0123456789abcdef:AAAA",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(doccode_verify(verifier_a, bad[i], NULL, err, sizeof err),
				 DOCCODE_MALFORMED);
	/* A signature of the wrong length. */
	make_code(code, 1, 1);
	code[strlen(code) - 2] = '\0';
	assert_int_equal(doccode_verify(verifier_a, code, NULL, err, sizeof err),
			 DOCCODE_MALFORMED);
	/* Making a code refuses bad input. */
	assert_int_equal(doccode_make(signer_a, "a:b", 1, 1, "0123456789abcdef", code, sizeof code,
				      err, sizeof err),
			 DOCCODE_ERROR);
	assert_int_equal(doccode_make(signer_a, "x", 2, 1, "0123456789abcdef", code, sizeof code,
				      err, sizeof err),
			 DOCCODE_ERROR);
}

static void the_digest_depends_on_every_input(void **state)
{
	(void)state;
	char d1[17], d2[17], d3[17], d4[17];
	json_t *r = json_pack("{s:s, s:s}", "certificate", "seal", "address", "東京都");
	assert_int_equal(doccode_digest("id-1", "seal", r, d1), DOCCODE_OK);
	assert_int_equal(doccode_digest("id-2", "seal", r, d2), DOCCODE_OK);
	assert_int_equal(doccode_digest("id-1", "residence", r, d3), DOCCODE_OK);
	json_object_set_new(r, "address", json_string("東京都 "));
	assert_int_equal(doccode_digest("id-1", "seal", r, d4), DOCCODE_OK);
	assert_string_not_equal(d1, d2);
	assert_string_not_equal(d1, d3);
	assert_string_not_equal(d1, d4);
	assert_int_equal(strlen(d1), 16);
	json_decref(r);
}

/*
 * The 15 format bits of a symbol as ISO/IEC 18004 §7.9 places them beside the top-left finder
 * (libqrencode draws bits 0-7 down column 8 and bits 8-14 along row 8), unmasked with 0x5412:
 * bits 14-13 the error correction level (00 = M), bits 12-10 the mask pattern.
 */
static unsigned format_bits(const QRcode *qr)
{
	int w = qr->width;
	unsigned f = 0;
	for (int i = 0; i < 8; i++) {
		int row = i < 6 ? i : i + 1;
		f |= (unsigned)(qr->data[w * row + 8] & 1) << i;
	}
	for (int i = 0; i < 7; i++) {
		int col = i == 0 ? 7 : 6 - i;
		f |= (unsigned)(qr->data[w * 8 + col] & 1) << (8 + i);
	}
	return f ^ 0x5412;
}

static void page_symbols_keep_libqrencodes_version_and_use_the_fixed_mask(void **state)
{
	(void)state;
	char code[DOCCODE_TEXT_MAX], err[256], issuance[32];
	for (unsigned i = 0; i < 200; i++) {
		snprintf(issuance, sizeof issuance, "141003-20261127-%06u", i * 4099 % 1000000);
		assert_int_equal(doccode_make(signer_a, issuance, 1 + i % 12, 12 + i % 988,
					      "0123456789abcdef", code, sizeof code, err,
					      sizeof err),
				 DOCCODE_OK);
		QRcode *ours = render_qr_encode(code);
		QRcode *lib = QRcode_encodeString(code, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
		assert_non_null(ours);
		assert_non_null(lib);
		assert_int_equal(ours->version, lib->version);
		unsigned f = format_bits(ours);
		assert_int_equal(f >> 13, 0); /* level M */
		if (render_qr_mask >= 0)
			assert_int_equal((f >> 10) & 7u, (unsigned)render_qr_mask);
		else
			assert_memory_equal(ours->data, lib->data, (size_t)lib->width * lib->width);
		QRcode_free(ours);
		QRcode_free(lib);
	}
}

static void era_dates_follow_the_era_boundaries(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
	    {"2026-11-27", "令和8年11月27日"},	{"2019-05-01", "令和元年5月1日"},
	    {"2019-04-30", "平成31年4月30日"},	{"1989-01-08", "平成元年1月8日"},
	    {"1989-01-07", "昭和64年1月7日"},	{"1926-12-25", "昭和元年12月25日"},
	    {"1926-12-24", "大正15年12月24日"}, {"1912-07-30", "大正元年7月30日"},
	};
	char out[64];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(render_era_date(cases[i][0], out, sizeof out), 0);
		assert_string_equal(out, cases[i][1]);
	}
	assert_int_equal(render_era_date("2026-13-01", out, sizeof out), -1);
	assert_int_equal(render_era_date("1800-01-01", out, sizeof out), -1);
}

/* ------------------------------------------------------------------------ records by hand */

static mdg_record *new_record(const char *type)
{
	mdg_record *r = record_new(NULL, type, "12345678901", 3, "active", 1795000000);
	assert_non_null(r);
	return r;
}

static void add_member(mdg_record *r, int i, int subject)
{
	char name[64], kana[64];
	mdg_item *m = record_add_item(r, "members");
	snprintf(name, sizeof name, "山田 太郎%d", i);
	snprintf(kana, sizeof kana, "ヤマダ タロウ%d", i);
	record_item_set(m, "subject", subject ? "true" : "false");
	record_item_set(m, "name", name);
	record_item_set(m, "kana", kana);
	record_item_set(m, "birth_date", "1970-03-02");
	record_item_set(m, "sex", i % 2 ? "female" : "male");
	record_item_set(m, "relationship", i == 0 ? "世帯主" : "子");
	record_item_set(m, "became_resident_date", "1999-04-01");
	record_item_set(m, "address_since", "2005-10-10");
	record_item_set(m, "previous_address", "東京都大田区蒲田一丁目2番3号");
	record_item_set(m, "my_number", "123456789012");
	record_item_set(m, "domicile", "神奈川県横浜市中区山下町1番地");
	record_item_set(m, "domicile_head", "山田 太郎0");
}

static mdg_record *residence_record(const char *type, int members)
{
	mdg_record *r = new_record(type);
	record_set(r, "address", "神奈川県横浜市中区山下町1番地2 グランドハイツ305号");
	record_set(r, "householder_name", "山田 太郎0");
	for (int i = 0; i < members; i++)
		add_member(r, i, i == 0);
	return r;
}

static mdg_record *seal_record(void)
{
	mdg_record *r = new_record("seal");
	record_set(r, "registration_number", "10000123");
	record_set(r, "registered_name", "山田 太郎");
	record_set(r, "kana", "ヤマダ タロウ");
	record_set(r, "birth_date", "1970-03-02");
	record_set(r, "sex", "male");
	record_set(r, "address", "神奈川県横浜市中区山下町1番地2");
	record_set(r, "seal_image", "seal-10000123");
	record_set(r, "seal_text", "山田");
	record_set(r, "seal_status", "registered");
	record_set(r, "registered_date", "2010-01-05");
	return r;
}

static mdg_record *tax_record(void)
{
	mdg_record *r = new_record("tax-income");
	const char *f[][2] = {
	    {"fiscal_year", "2026"},
	    {"income_year", "2025"},
	    {"name", "山田 太郎"},
	    {"kana", "ヤマダ タロウ"},
	    {"birth_date", "1970-03-02"},
	    {"address", "神奈川県横浜市中区山下町1番地2"},
	    {"total_income_yen", "3560000"},
	    {"total_deductions_yen", "1200000"},
	    {"taxable_income_yen", "2360000"},
	    {"municipal_tax_yen", "141600"},
	    {"prefectural_tax_yen", "94400"},
	};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		record_set(r, f[i][0], f[i][1]);
	mdg_item *it = record_add_item(r, "incomes");
	record_item_set(it, "kind", "salary");
	record_item_set(it, "revenue_yen", "5000000");
	record_item_set(it, "income_yen", "3560000");
	it = record_add_item(r, "deductions");
	record_item_set(it, "kind", "basic");
	record_item_set(it, "amount_yen", "430000");
	it = record_add_item(r, "deductions");
	record_item_set(it, "kind", "social_insurance");
	record_item_set(it, "amount_yen", "770000");
	return r;
}

static mdg_record *koseki_record(const char *type, int persons)
{
	mdg_record *r = new_record(type);
	record_set(r, "domicile", "神奈川県横浜市中区山下町1番地");
	record_set(r, "head_name", "山田 太郎");
	record_set(r, "register_created_date", "1995-06-01");
	record_set(r, "register_created_reason", "婚姻");
	record_set(r, "subject_person_no", "1");
	for (int i = 1; i <= persons; i++) {
		char no[8];
		snprintf(no, sizeof no, "%d", i);
		mdg_item *p = record_add_item(r, "persons");
		record_item_set(p, "person_no", no);
		record_item_set(p, "name", i == 1 ? "太郎" : "花子");
		record_item_set(p, "kana", "タロウ");
		record_item_set(p, "birth_date", "1970-03-02");
		record_item_set(p, "sex", "male");
		record_item_set(p, "father", "山田 一郎");
		record_item_set(p, "mother", "山田 春子");
		record_item_set(p, "parental_relationship", "長男");
		record_item_set(p, "state", i > 3 ? "removed" : "present");
		if (i > 3) {
			record_item_set(p, "removed_reason", "婚姻");
			record_item_set(p, "removed_date", "2020-02-02");
		}
		for (int k = 0; k < 3; k++) {
			mdg_item *e = record_add_item(r, "events");
			record_item_set(e, "person_no", no);
			record_item_set(e, "kind", k == 0 ? "birth" : "marriage");
			record_item_set(e, "date", "1970-03-02");
			record_item_set(e, "detail", "東京都大田区で出生 同月十日父届出入籍");
		}
	}
	return r;
}

static mdg_record *attachment_record(int persons)
{
	mdg_record *r = new_record("koseki-attachment");
	record_set(r, "domicile", "神奈川県横浜市中区山下町1番地");
	record_set(r, "head_name", "山田 太郎");
	record_set(r, "subject_person_no", "1");
	for (int i = 1; i <= persons; i++) {
		char no[8];
		snprintf(no, sizeof no, "%d", i);
		mdg_item *p = record_add_item(r, "persons");
		record_item_set(p, "person_no", no);
		record_item_set(p, "name", "山田 太郎");
		record_item_set(p, "birth_date", "1970-03-02");
		mdg_item *a = record_add_item(r, "addresses");
		record_item_set(a, "person_no", no);
		record_item_set(a, "address", "神奈川県横浜市中区山下町1番地2");
		record_item_set(a, "since", "2001-01-01");
	}
	return r;
}

static void render_ok(mdg_record *r, unsigned *pages)
{
	char err[256];
	struct render_meta meta = {
	    .issuance_id = "141003-20261127-000123",
	    .issued_at = 1795741200, /* 2026-11-27 10:00 JST */
	    .municipality_name = "横浜市中区",
	};
	struct render_output out;
	assert_int_equal(record_validate(r, err, sizeof err), 0);
	int rc = render_document(record_json(r), &meta, signer_a, &out, err, sizeof err);
	if (rc != RENDER_OK)
		fail_msg("render: %s", err);
	assert_true(out.pdf_len > 1000);
	assert_memory_equal(out.pdf, "%PDF-", 5);
	assert_int_equal(strlen(out.digest), 16);
	struct doccode_info info;
	assert_int_equal(doccode_verify(verifier_a, out.first_code, &info, err, sizeof err),
			 DOCCODE_OK);
	assert_int_equal(info.page, 1);
	assert_int_equal(info.pages, out.pages);
	assert_string_equal(info.digest, out.digest);
	*pages = out.pages;
	render_output_free(&out);
	record_free(r);
}

static void every_type_renders_one_page_for_a_small_record(void **state)
{
	(void)state;
	unsigned pages;
	render_ok(residence_record("residence", 1), &pages);
	assert_int_equal(pages, 1);
	render_ok(residence_record("residence-record", 2), &pages);
	assert_int_equal(pages, 1);
	render_ok(seal_record(), &pages);
	assert_int_equal(pages, 1);
	render_ok(tax_record(), &pages);
	assert_int_equal(pages, 1);
	render_ok(koseki_record("koseki-full", 2), &pages);
	assert_int_equal(pages, 1);
	render_ok(koseki_record("koseki-individual", 1), &pages);
	assert_int_equal(pages, 1);
	render_ok(attachment_record(3), &pages);
	assert_int_equal(pages, 1);
}

static void a_large_household_and_register_spill_onto_more_pages(void **state)
{
	(void)state;
	unsigned p6, p12, k2, k8;
	render_ok(residence_record("residence", 6), &p6);
	render_ok(residence_record("residence", 12), &p12);
	render_ok(koseki_record("koseki-full", 2), &k2);
	render_ok(koseki_record("koseki-full", 8), &k8);
	assert_int_equal(p6, 2);
	assert_true(p12 > p6);
	assert_int_equal(k2, 1);
	assert_true(k8 >= 2);
}

static void a_bad_record_or_meta_is_refused(void **state)
{
	(void)state;
	char err[256];
	struct render_output out;
	struct render_meta meta = {.issuance_id = "x", .municipality_name = "横浜市中区"};
	json_t *r = json_pack("{s:s}", "certificate", "passport");
	assert_int_equal(render_document(r, &meta, signer_a, &out, err, sizeof err),
			 RENDER_INVALID);
	json_object_set_new(r, "certificate", json_string("seal"));
	meta.issuance_id = "bad id";
	assert_int_equal(render_document(r, &meta, signer_a, &out, err, sizeof err),
			 RENDER_INVALID);
	assert_null(out.pdf);
	json_decref(r);
}

/* Counts the occurrences of needle in the first len bytes of hay. */
static int count_in(const unsigned char *hay, size_t len, const char *needle)
{
	int n = 0;
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= len; i++)
		n += memcmp(hay + i, needle, k) == 0;
	return n;
}

/* A w × h PNG: a red disc on a transparent ground, written with cairo. */
static void write_png(const char *path, int w, int h)
{
	cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
	cairo_t *cr = cairo_create(s);
	cairo_set_source_rgba(cr, 0.8, 0.1, 0.1, 1);
	cairo_arc(cr, w / 2.0, h / 2.0, w / 3.0, 0, 6.3);
	cairo_fill(cr);
	cairo_destroy(cr);
	assert_int_equal(cairo_surface_write_to_png(s, path), CAIRO_STATUS_SUCCESS);
	cairo_surface_destroy(s);
}

static void seal_images_are_embedded_and_a_missing_one_falls_back(void **state)
{
	(void)state;
	char dir[] = "/tmp/mdg-render-XXXXXX", mayor[128], impression[128], err[256];
	assert_non_null(mkdtemp(dir));
	snprintf(mayor, sizeof mayor, "%s/mayor.png", dir);
	snprintf(impression, sizeof impression, "%s/seal-10000123.png", dir);
	write_png(mayor, 48, 48);
	write_png(impression, 32, 40);
	mdg_record *r = seal_record();
	struct render_meta meta = {.issuance_id = "141003-20261127-000123",
				   .municipality_name = "横浜市中区",
				   .seal_png = mayor,
				   .seal_impressions_dir = dir};
	struct render_output out;
	assert_int_equal(render_document(record_json(r), &meta, signer_a, &out, err, sizeof err),
			 RENDER_OK);
	/* Both images with their alpha masks; no placeholder text for the mayor's seal. */
	assert_int_equal(
	    count_in(out.pdf, out.pdf_len, "/Width 48 /Height 48 /ColorSpace /DeviceRGB"), 1);
	assert_int_equal(
	    count_in(out.pdf, out.pdf_len, "/Width 32 /Height 40 /ColorSpace /DeviceRGB"), 1);
	assert_int_equal(count_in(out.pdf, out.pdf_len, "/SMask"), 2);
	render_output_free(&out);

	/* Unreadable files: the document still renders, with drawn outlines instead. */
	unlink(mayor);
	unlink(impression);
	meta.seal_png = "/nonexistent/mayor.png";
	assert_int_equal(render_document(record_json(r), &meta, signer_a, &out, err, sizeof err),
			 RENDER_OK);
	assert_int_equal(count_in(out.pdf, out.pdf_len, "/ColorSpace /DeviceRGB"), 0);
	render_output_free(&out);
	record_free(r);
	rmdir(dir);
}

static void *render_thread_main(void *arg)
{
	mdg_record *r = residence_record("residence", 2);
	struct render_meta meta = {.issuance_id = "t-1", .municipality_name = "横浜市中区"};
	char err[256];
	intptr_t bad = 0;
	for (int i = 0; i < 20; i++) {
		struct render_output out;
		if (render_document(record_json(r), &meta, signer_a, &out, err, sizeof err) !=
			RENDER_OK ||
		    out.pages != 1)
			bad++;
		render_output_free(&out);
	}
	record_free(r);
	render_thread_release();
	(void)arg;
	return (void *)bad;
}

static void threads_render_concurrently(void **state)
{
	(void)state;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, render_thread_main, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		assert_int_equal((intptr_t)bad, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_code_verifies_and_names_its_issuance_and_page),
	    cmocka_unit_test(any_changed_character_fails),
	    cmocka_unit_test(another_documents_page_does_not_verify_as_this_one),
	    cmocka_unit_test(another_key_fails_as_wrong_key),
	    cmocka_unit_test(malformed_codes_fail_as_malformed),
	    cmocka_unit_test(the_digest_depends_on_every_input),
	    cmocka_unit_test(page_symbols_keep_libqrencodes_version_and_use_the_fixed_mask),
	    cmocka_unit_test(era_dates_follow_the_era_boundaries),
	    cmocka_unit_test(every_type_renders_one_page_for_a_small_record),
	    cmocka_unit_test(a_large_household_and_register_spill_onto_more_pages),
	    cmocka_unit_test(a_bad_record_or_meta_is_refused),
	    cmocka_unit_test(seal_images_are_embedded_and_a_missing_one_falls_back),
	    cmocka_unit_test(threads_render_concurrently),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
