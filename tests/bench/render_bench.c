/*
 * render_bench.c: documents per second of render_document() on one thread (tests/bench/render.sh
 * compiles it against build/core/libmdgcore.a).  Usage: render_bench N: renders N one-page
 * residence documents and N three-page koseki-full documents, prints docs/s, pages/s and sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "doccode.h"
#include "record.h"
#include "render.h"

static json_t *residence(void)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:s, s:s, "
			 "s:s, s:s, s:s}]}",
			 "certificate", "residence", "resident_code", "12345678901", "version", 3,
			 "status", "active", "as_of", 1795000000, "address",
			 "神奈川県横浜市中区山下町1番地2 グランドハイツ305号", "householder_name",
			 "山田 太郎", "members", "subject", "true", "name", "山田 太郎", "kana",
			 "ヤマダ タロウ", "birth_date", "1970-03-02", "sex", "male", "relationship",
			 "世帯主", "became_resident_date", "1999-04-01", "address_since",
			 "2005-10-10", "previous_address", "東京都大田区蒲田一丁目2番3号");
}

/* A register whose persons and events fill three pages. */
static json_t *koseki(int persons)
{
	json_t *r =
	    json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "certificate",
		      "koseki-full", "resident_code", "12345678901", "version", 3, "status",
		      "active", "as_of", 1795000000, "domicile", "神奈川県横浜市中区山下町1番地",
		      "head_name", "山田 太郎", "register_created_date", "1995-06-01",
		      "register_created_reason", "婚姻", "subject_person_no", "1");
	json_t *ps = json_array(), *es = json_array();
	for (int i = 1; i <= persons; i++) {
		char no[8];
		snprintf(no, sizeof no, "%d", i);
		json_array_append_new(
		    ps, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "person_no", no,
				  "name", "太郎", "kana", "タロウ", "birth_date", "1970-03-02",
				  "sex", "male", "father", "山田 一郎", "mother", "山田 春子",
				  "parental_relationship", "長男", "state", "present"));
		for (int k = 0; k < 3; k++)
			json_array_append_new(
			    es, json_pack("{s:s, s:s, s:s, s:s}", "person_no", no, "kind", "birth",
					  "date", "1970-03-02", "detail",
					  "東京都大田区で出生 同月十日父届出入籍"));
	}
	json_object_set_new(r, "persons", ps);
	json_object_set_new(r, "events", es);
	return r;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bench(const char *label, json_t *rec, int n, const struct doc_signer *signer)
{
	struct render_meta meta = {.issuance_id = "141003-20261127-000123",
				   .issued_at = 1795741200,
				   .municipality_name = "横浜市中区"};
	char err[256];
	struct render_output out;
	/* Warm up the thread's caches (font map, glyph caches). */
	if (render_document(rec, &meta, signer, &out, err, sizeof err) != RENDER_OK) {
		fprintf(stderr, "render: %s\n", err);
		return 1;
	}
	unsigned pages = out.pages;
	size_t size = out.pdf_len;
	render_output_free(&out);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		if (render_document(rec, &meta, signer, &out, err, sizeof err) != RENDER_OK) {
			fprintf(stderr, "render: %s\n", err);
			return 1;
		}
		render_output_free(&out);
	}
	double dt = now() - t0;
	printf("%-28s %6d docs  %u page(s)/doc  %8.1f docs/s  %8.1f pages/s  %6.2f ms/doc  "
	       "PDF %zu bytes\n",
	       label, n, pages, n / dt, n * pages / dt, dt * 1000 / n, size);
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 500;
	char err[256];
	struct doc_signer *signer;
	if (doc_signer_generate(&signer, err, sizeof err) != DOCCODE_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	json_t *r1 = residence(), *r3 = koseki(9);
	int rc = bench("residence (1 page)", r1, n, signer) ||
		 bench("koseki-full (3 pages)", r3, n, signer);
	json_decref(r1);
	json_decref(r3);
	doc_signer_free(signer);
	render_thread_release();
	return rc;
}
