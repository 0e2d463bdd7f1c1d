/*
 * doccode.h: the per-page verification code of a certificate document (DESIGN §1 I6).
 *
 * Every page of a rendered certificate carries, as a QR code and as text, one line
 *
 *   MDG1:<key_id>:<issuance_id>:<page>/<pages>:<digest>:<signature>
 *
 * key_id     16 lower-case hex: SHA-256 of the raw 32-byte Ed25519 public key (DESIGN §6 rule)
 * digest     16 lower-case hex: the first 8 bytes of SHA-256 over what the document certifies
 *            (doccode_digest(): issuance id, certificate type, the record as canonical JSON);
 *            never the PDF bytes, which contain the code
 * signature  base64url (no padding, 86 characters) of the Ed25519 signature over the exact text
 *            "madoguchi-page-v1\n{issuance_id}\n{page}\n{pages}\n{digest}\n"
 *
 * The text form is canonical: every part has exactly one spelling (no leading zeros, lower-case
 * hex, canonical base64url), so any changed character makes verification fail.  docs/documents.md
 * describes the format for verifiers.
 *
 * Threads: a doc_signer / doc_verifier is immutable after it is made and may be used by any
 * number of threads at once (each call makes its own OpenSSL context).
 */
#ifndef MDG_DOCCODE_H
#define MDG_DOCCODE_H

#include <stddef.h>

#include <jansson.h>

#define DOCCODE_PREFIX	     "MDG1"
#define DOCCODE_KEY_ID_LEN   16
#define DOCCODE_DIGEST_LEN   16
#define DOCCODE_ISSUANCE_MAX 64	 /* characters of an issuance id: [A-Za-z0-9._-] */
#define DOCCODE_PAGES_MAX    999 /* a document has at most this many pages */
#define DOCCODE_TEXT_MAX     256 /* buffer size that holds any code with its NUL */
#define DOCCODE_SIG_LEN	     64	 /* bytes of an Ed25519 signature */

enum doccode_status {
	DOCCODE_OK = 0,
	DOCCODE_MALFORMED = -1, /* not a code of this format (a character is wrong or missing) */
	DOCCODE_BAD_SIGNATURE = -2, /* well-formed, our key, but the signature does not verify */
	DOCCODE_WRONG_KEY = -3,	    /* well-formed, but made by another key than the one given */
	DOCCODE_ERROR = -4,	    /* key file unreadable, out of memory, OpenSSL failure */
};

struct doc_signer;   /* a private document key and its public half */
struct doc_verifier; /* a public document key */

/* What a verified code says. */
struct doccode_info {
	char key_id[DOCCODE_KEY_ID_LEN + 1];
	char issuance_id[DOCCODE_ISSUANCE_MAX + 1];
	unsigned page;
	unsigned pages;
	char digest[DOCCODE_DIGEST_LEN + 1];
};

/*
 * Loads an Ed25519 private key (PEM, PKCS#8 as scripts/dev-pki writes document.key).  Returns
 * DOCCODE_OK with *out (free with doc_signer_free), or DOCCODE_ERROR with err filled.
 */
int doc_signer_load(const char *pem_path, struct doc_signer **out, char *err, size_t err_size);
/* A fresh random key (previews: `madoguchictl render` without --key).  As doc_signer_load. */
int doc_signer_generate(struct doc_signer **out, char *err, size_t err_size);
void doc_signer_free(struct doc_signer *signer);
/* The key id (16 lower-case hex); lives as long as signer. */
const char *doc_signer_key_id(const struct doc_signer *signer);
/* Signs len bytes of msg with Ed25519 into sig.  DOCCODE_OK or DOCCODE_ERROR.  Any thread. */
int doc_signer_sign(const struct doc_signer *signer, const void *msg, size_t len,
		    unsigned char sig[DOCCODE_SIG_LEN]);
/* The public key as PEM SPKI text; the caller frees it.  NULL on out-of-memory. */
char *doc_signer_public_pem(const struct doc_signer *signer);

/* Loads a public key from PEM SPKI text (pem) or a file (path).  As doc_signer_load. */
int doc_verifier_from_pem(const char *pem, struct doc_verifier **out, char *err, size_t err_size);
int doc_verifier_load(const char *pem_path, struct doc_verifier **out, char *err, size_t err_size);
void doc_verifier_free(struct doc_verifier *verifier);
const char *doc_verifier_key_id(const struct doc_verifier *verifier);
/* The public key as PEM SPKI text; the caller frees it.  NULL on out-of-memory. */
char *doc_verifier_public_pem(const struct doc_verifier *verifier);

/* True for an issuance id a code can carry: 1..64 characters of [A-Za-z0-9._-]. */
int doccode_issuance_id_ok(const char *issuance_id);

/*
 * The document digest: first 16 lower-case hex of SHA-256 over
 * "madoguchi-doc-v1\n{issuance_id}\n{certificate}\n{record as JSON}\n", the record serialised by
 * json_dumps(JSON_SORT_KEYS | JSON_COMPACT).  Writes 17 bytes (NUL included) into out.
 * Returns DOCCODE_OK, or DOCCODE_ERROR (bad id, out of memory).
 */
int doccode_digest(const char *issuance_id, const char *certificate, const json_t *record,
		   char out[DOCCODE_DIGEST_LEN + 1]);

/*
 * Makes the code of page `page` of `pages` (1 <= page <= pages <= DOCCODE_PAGES_MAX) into out
 * (at least DOCCODE_TEXT_MAX bytes).  Returns DOCCODE_OK, or DOCCODE_ERROR with err filled.
 */
int doccode_make(const struct doc_signer *signer, const char *issuance_id, unsigned page,
		 unsigned pages, const char *digest, char *out, size_t out_size, char *err,
		 size_t err_size);

/*
 * Verifies code against verifier's key.  Returns DOCCODE_OK with *info filled, or
 * DOCCODE_MALFORMED / DOCCODE_WRONG_KEY / DOCCODE_BAD_SIGNATURE with err saying what is wrong
 * (info is then zeroed).  info may be NULL.
 */
int doccode_verify(const struct doc_verifier *verifier, const char *code, struct doccode_info *info,
		   char *err, size_t err_size);

#endif
