/*
 * kiosk_request.h: the store network's side of POST /v1/issuances (DESIGN §4), as a small
 * library for madoguchi-kiosk-sim and for tests.
 *
 * Two halves:
 *
 *   - building a request: a card (its PEM certificate and private key) and the request fields
 *     give the exact body bytes and the two header values, Madoguchi-Card-Certificate (base64
 *     of the certificate DER) and Madoguchi-Card-Signature (base64 of the signature over the
 *     body: RSA PKCS#1 v1.5 SHA-256 for an RSA card, ECDSA P-256 SHA-256 DER for an EC card);
 *   - checking a 201 answer: the echoes (request_id, municipality, certificate), the subject's
 *     card_serial, the document (sha256 over the decoded bytes, a PDF) and the binding
 *     signature with the appliance's Ed25519 document keys from GET /v1/keys.
 *
 * Base64 is the standard alphabet with padding and no line breaks, both ways.  A card serial
 * is written as DESIGN §4 says: upper-case hexadecimal without leading zeros ("0" for zero).
 *
 * Threads: a loaded card and a keyring are immutable after loading and may be used by any
 * number of threads at once; every other object belongs to its caller.  No function keeps
 * global state.  Errors are a status plus a message in struct kiosk_error that says what is
 * wrong and, where it can, what to do; messages never contain key material.
 */
#ifndef MDG_KIOSK_REQUEST_H
#define MDG_KIOSK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define KIOSK_HEADER_CERTIFICATE "Madoguchi-Card-Certificate"
#define KIOSK_HEADER_SIGNATURE	 "Madoguchi-Card-Signature"
#define KIOSK_SERIAL_MAX	 40  /* hex digits of a card serial (RFC 5280: 20 octets) */
#define KIOSK_REQUEST_ID_MAX	 64  /* characters of request_id */
#define KIOSK_MUNICIPALITY_MAX	 16  /* characters of municipality (6 digits when valid) */
#define KIOSK_CERTIFICATE_MAX	 31  /* characters of a certificate type name */
#define KIOSK_ISSUANCE_ID_MAX	 128 /* characters of an issuance_id this library accepts */
#define KIOSK_UUID_LEN		 36  /* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" */
#define KIOSK_RFC3339_LEN	 20  /* "YYYY-MM-DDTHH:MM:SSZ" */
#define KIOSK_CERTIFICATE_TYPES	 7

enum kiosk_status {
	KIOSK_OK = 0,
	KIOSK_ERR_INPUT = -1,  /* a file or argument is unusable: err says which and why */
	KIOSK_ERR_CRYPTO = -2, /* OpenSSL or the random generator failed */
	KIOSK_ERR_NOMEM = -3,
};

/* The outcome of kiosk_response_verify(), most basic failure first. */
enum kiosk_verify_status {
	KIOSK_VERIFY_OK = 0,
	KIOSK_VERIFY_MALFORMED = -1,   /* not JSON, a member missing or of the wrong type, bad
					  base64 in document.data */
	KIOSK_VERIFY_REQUEST_ID = -2,  /* request_id is not the one sent */
	KIOSK_VERIFY_ECHO = -3,	       /* municipality or certificate is not the one sent */
	KIOSK_VERIFY_CARD_SERIAL = -4, /* subject.card_serial is not the card's serial */
	KIOSK_VERIFY_DOCUMENT = -5,    /* document.sha256 is not the SHA-256 of the decoded data,
					  the data is not a PDF, or media_type is not PDF */
	KIOSK_VERIFY_BINDING = -6,     /* binding alg not ed25519, key_id not in the keyring, or
					  the signature does not verify */
	KIOSK_VERIFY_ERROR = -7, /* out of memory or an OpenSSL failure: not the answer's fault */
};

struct kiosk_error {
	char message[256];
};

/* The seven certificate type names of DESIGN §4, in its order, then NULL. */
extern const char *const kiosk_certificate_types[KIOSK_CERTIFICATE_TYPES + 1];

/* Index of name in kiosk_certificate_types, or -1. */
int kiosk_certificate_index(const char *name);

/* --- cards ------------------------------------------------------------------------------ */

enum kiosk_key_type {
	KIOSK_KEY_RSA = 1,     /* signs with RSA PKCS#1 v1.5 SHA-256 */
	KIOSK_KEY_EC_P256 = 2, /* signs with ECDSA P-256 SHA-256, DER signature */
};

struct kiosk_card;

/*
 * Loads a card from its PEM certificate and PEM private key files (as scripts/dev-pki writes
 * cards/SERIAL.pem and cards/SERIAL.key).  The key must be RSA or EC P-256 and must belong to
 * the certificate; the serial must be positive.  Returns KIOSK_OK with *out (free with
 * kiosk_card_free), or a negative status with err naming the file and the problem.
 */
int kiosk_card_load(const char *cert_path, const char *key_path, struct kiosk_card **out,
		    struct kiosk_error *err);

/* The same from PEM text in memory (cert_len / key_len bytes, need not be NUL-terminated). */
int kiosk_card_load_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			struct kiosk_card **out, struct kiosk_error *err);

void kiosk_card_free(struct kiosk_card *card);

/* The card's serial: upper-case hex without leading zeros; valid as long as the card. */
const char *kiosk_card_serial(const struct kiosk_card *card);

enum kiosk_key_type kiosk_card_key_type(const struct kiosk_card *card);

/* --- requests --------------------------------------------------------------------------- */

/* The fields of one request body.  Strings are copied; NULL where a default is allowed. */
struct kiosk_fields {
	const char *request_id;	  /* NULL: a fresh UUIDv4 (kiosk_uuid4) */
	const char *requested_at; /* NULL: now (kiosk_rfc3339) */
	const char *municipality; /* required, 1..KIOSK_MUNICIPALITY_MAX characters */
	const char *certificate;  /* required, 1..KIOSK_CERTIFICATE_MAX characters (not checked
				     against the seven names, so tests can send others) */
	unsigned copies;	  /* 0 means 1 */
	bool household, show_my_number, show_domicile;
	const char *terminal_operator, *terminal_store, *terminal_kiosk; /* required */
};

/* One built request.  The caller owns it and releases it with kiosk_request_free. */
struct kiosk_request {
	char *body; /* the exact bytes that were signed, NUL-terminated for convenience */
	size_t body_len;
	char *certificate_header; /* value of Madoguchi-Card-Certificate */
	char *signature_header;	  /* value of Madoguchi-Card-Signature */
	/* What the answer must echo, copied from the body. */
	char request_id[KIOSK_REQUEST_ID_MAX + 1];
	char municipality[KIOSK_MUNICIPALITY_MAX + 1];
	char certificate[KIOSK_CERTIFICATE_MAX + 1];
	char card_serial[KIOSK_SERIAL_MAX + 1];
};

/*
 * Builds the body of fields as one compact JSON object (request_id, requested_at,
 * municipality, certificate, copies, options, terminal, in that order) and signs it with the
 * card's key.  Returns KIOSK_OK with *out filled, or a negative status with err filled and
 * *out zeroed.  Thread-safe for a shared card.  Costs one signature: ~1 ms for RSA-2048, well
 * under 0.1 ms for P-256.
 */
int kiosk_request_build(const struct kiosk_card *card, const struct kiosk_fields *fields,
			struct kiosk_request *out, struct kiosk_error *err);

/* Frees what req holds and zeroes it; a zeroed request may be freed again. */
void kiosk_request_free(struct kiosk_request *req);

/* Writes a fresh random UUIDv4 and its NUL into out.  Returns KIOSK_OK or KIOSK_ERR_CRYPTO. */
int kiosk_uuid4(char out[KIOSK_UUID_LEN + 1]);

/* Writes t as RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" and its NUL into out. */
void kiosk_rfc3339(time_t t, char out[KIOSK_RFC3339_LEN + 1]);

/* --- answers ---------------------------------------------------------------------------- */

struct kiosk_keyring;

/*
 * Parses the body of GET /v1/keys ({"keys": [{"key_id", "alg", "public_key_pem"}, ...]}) into
 * a keyring of its Ed25519 keys; keys of other algorithms are skipped.  Returns KIOSK_OK with
 * *out (free with kiosk_keyring_free), or KIOSK_ERR_INPUT when the body is not that shape or
 * holds no usable Ed25519 key.
 */
int kiosk_keyring_parse(const char *json, size_t len, struct kiosk_keyring **out,
			struct kiosk_error *err);

void kiosk_keyring_free(struct kiosk_keyring *keys);

/* Number of keys in the keyring. */
size_t kiosk_keyring_count(const struct kiosk_keyring *keys);

/* The document of a verified answer.  The caller owns it: kiosk_issuance_free. */
struct kiosk_issuance {
	char issuance_id[KIOSK_ISSUANCE_ID_MAX + 1];
	unsigned char *document; /* decoded document.data */
	size_t document_len;
};

/*
 * Checks the body of a 201 answer to req: it is a JSON object whose request_id, municipality
 * and certificate equal req's, whose subject.card_serial equals req->card_serial, whose
 * document has media_type application/pdf, data that decodes to bytes starting with "%PDF"
 * and sha256 (64 hex digits, either case) equal to their SHA-256, and whose binding
 * (alg ed25519) verifies with keys[key_id] over
 *
 *   madoguchi-binding-v1\n{issuance_id}\n{request_id}\n{municipality}\n{certificate}\n
 *   {card_serial}\n{document.sha256}\n
 *
 * issuance_id must be 1..KIOSK_ISSUANCE_ID_MAX printable ASCII characters.  Checks run in the
 * order of enum kiosk_verify_status and the first failure is returned, with err saying what
 * differs (never the document).  On KIOSK_VERIFY_OK and when out is not NULL, *out gets the
 * issuance id and the decoded document; otherwise *out is zeroed.  Thread-safe.
 */
int kiosk_response_verify(const struct kiosk_request *req, const struct kiosk_keyring *keys,
			  const char *body, size_t len, struct kiosk_issuance *out,
			  struct kiosk_error *err);

void kiosk_issuance_free(struct kiosk_issuance *iss);

/* A short name for a verify status ("card_serial", "binding", …) for reports. */
const char *kiosk_verify_name(int status);

/*
 * Copies the `code` member of an RFC 9457 problem body into code (at most cap - 1 characters).
 * Returns 0, or -1 (code set to "") when the body is not a JSON object with a string code.
 */
int kiosk_problem_code(const char *body, size_t len, char *code, size_t cap);

#endif
