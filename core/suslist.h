/*
 * suslist.h: the ministry's signed suspension list (DESIGN §6), parsed, verified and matched.
 *
 * A signed list is one JSON object, the envelope:
 *
 *   {"payload": "base64 of the list JSON",
 *    "signatures": [{"key_id": "16 lower-case hex", "alg": "ed25519", "sig": "base64"}, …]}
 *
 * payload and sig are standard base64 (RFC 4648 §4: padded, no line breaks, unused bits zero);
 * sig is an Ed25519 signature over the exact decoded payload bytes.  A key_id is the first 16
 * lower-case hex characters of the SHA-256 of the raw 32-byte public key (the rule of
 * doccode.h).  The list verifies when at least `threshold` distinct configured keys made a
 * valid signature; signatures by unknown key ids and signatures that do not verify are not
 * counted (an unknown key id is not an error: the ministry may sign for several fleets).
 *
 * The payload, once verified, is one JSON object:
 *
 *   type           required  "madoguchi-suspension-list"
 *   sequence       required  unsigned 64-bit integer (0 .. 18446744073709551615), no fraction
 *   issued_at      required  RFC 3339 UTC "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (fraction dropped)
 *   expires_at     required  the same; later than issued_at
 *   suspensions    required  array (may be empty) of at most SUSLIST_ENTRIES_MAX objects:
 *     id             required  1..64 printable ASCII characters, unique in the list
 *     plugin         required  1..64 characters of [a-z0-9-] (the SDK's plugin name rule)
 *     versions       optional  comparators joined by commas, e.g. ">=1.0.0,<2.3.1": operator
 *                              < <= > >= = == (none means =) then a dotted number of any
 *                              length; spaces around comparators are allowed.  Absent: every
 *                              version.  See suslist_version_matches().
 *     certificates   optional  non-empty array: ["*"] (default) or distinct DESIGN §4 types
 *     municipalities optional  non-empty array: ["*"] (default) or distinct 6-digit codes
 *     mode           optional  "immediate" (default) or "drain"
 *     reason         optional  0..255 bytes of UTF-8 without control characters; default ""
 *
 * Everything else is refused as SUSLIST_MALFORMED: malformed JSON, duplicate keys, unknown
 * fields at any level, wrong JSON types, bad values.  The error names the field by its path
 * ("suspensions[2].versions") and says what is expected, never the value.
 *
 * An expired list still verifies and parses: it stays in force (never fail-open) and
 * suslist_expired() lets the caller report the appliance degraded.  Whether a list is newer
 * than the stored one is the caller's check (suslist_sequence()).
 *
 * Threads: a keyring and a list are immutable once made; any number of threads may use them
 * at once.  Every call makes its own OpenSSL contexts.
 */
#ifndef MDG_SUSLIST_H
#define MDG_SUSLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SUSLIST_KEY_ID_LEN	 16	 /* hex characters of a key id */
#define SUSLIST_BYTES_MAX	 1048576 /* bytes of a signed list */
#define SUSLIST_SIGNATURES_MAX	 16	 /* signatures in one envelope */
#define SUSLIST_ENTRIES_MAX	 4096	 /* suspensions in one list */
#define SUSLIST_ID_MAX		 64	 /* characters of a suspension id */
#define SUSLIST_PLUGIN_MAX	 64	 /* characters of a plugin name */
#define SUSLIST_VERSIONS_MAX	 128	 /* characters of a version range */
#define SUSLIST_REASON_MAX	 255	 /* bytes of a reason (gate.h's GATE_REASON_MAX - 1) */
#define SUSLIST_MUNICIPALITY_LEN 6	 /* digits of a municipality code */

enum suslist_status {
	SUSLIST_OK = 0,
	SUSLIST_MALFORMED = -1,		/* 400 LIST_MALFORMED: not a well-formed list or envelope */
	SUSLIST_SIGNATURE_INVALID = -2, /* 401 LIST_SIGNATURE_INVALID: fewer valid signatures
					   by distinct configured keys than the threshold */
	SUSLIST_ERROR = -3,		/* key file unusable, threshold 0, out of memory */
};

enum suslist_mode {
	SUSLIST_IMMEDIATE = 0, /* new requests and in-flight deliveries (steps 7 and 13) */
	SUSLIST_DRAIN = 1,     /* new requests only (step 7) */
};

struct suslist_error {
	char field[64];	   /* path of the offending field ("suspensions[2].plugin"); "" = whole */
	char message[256]; /* what is wrong and what to do; never a value from the list */
};

struct suslist_keyring;
struct suslist;
struct suslist_entry;

/*
 * Loads the ministry's Ed25519 public keys, one PEM SubjectPublicKeyInfo file each (as
 * scripts/dev-pki writes ministry/NAME.pub), n >= 1.  Returns SUSLIST_OK with *out (free with
 * suslist_keyring_free), or SUSLIST_ERROR with err naming the file and what to fix (not PEM,
 * not Ed25519, the same key twice).  Blocking (file reads): at start or reload.
 */
int suslist_keyring_load(const char *const *pub_paths, size_t n, struct suslist_keyring **out,
			 struct suslist_error *err);
void suslist_keyring_free(struct suslist_keyring *keys);
/* Number of keys, and the key id of key i (< count), in the order of pub_paths. */
size_t suslist_keyring_count(const struct suslist_keyring *keys);
const char *suslist_keyring_key_id(const struct suslist_keyring *keys, size_t i);

/*
 * Verifies and parses a signed list of len bytes (need not be NUL-terminated).  threshold >= 1
 * is the number of distinct configured keys that must have signed.  now is the time of
 * verification (kept as suslist_verified_at(); it does not decide acceptance: an expired list
 * is accepted).  Checks run in this order: the envelope's shape (MALFORMED), the signatures
 * (SIGNATURE_INVALID), the payload (MALFORMED), so an unverified payload is never parsed.
 * Returns SUSLIST_OK with *out (free with suslist_free), or a negative status with *out NULL
 * and err filled (err may be NULL).  Cost: one Ed25519 verification per signature with a
 * configured key id and two JSON parses, about 0.2 ms for a short list with two signatures
 * (OpenSSL 3.0, one core): call it off the event loop.
 */
int suslist_parse_verify(const struct suslist_keyring *keys, unsigned threshold,
			 const char *signed_json, size_t len, time_t now, struct suslist **out,
			 struct suslist_error *err);

/*
 * Parses a list this appliance verified and stored earlier (suslist_raw() as persisted), without
 * checking who signed it: the ministry keys may have been rotated since, and a suspension that
 * was in force must stay in force after a restart (never fail-open).  Everything else is checked
 * as by suslist_parse_verify(); verified_at is when it was verified.  Never call it on bytes
 * that did not come from the appliance's own store.
 */
int suslist_parse_stored(const char *signed_json, size_t len, time_t verified_at,
			 struct suslist **out, struct suslist_error *err);
void suslist_free(struct suslist *list);

/* The problem "code" member for a status: "LIST_MALFORMED", "LIST_SIGNATURE_INVALID", … */
const char *suslist_status_code(int status);
/* The HTTP status for it (DESIGN §7): 200, 400, 401, or 500 for SUSLIST_ERROR. */
int suslist_status_http(int status);

uint64_t suslist_sequence(const struct suslist *list);
time_t suslist_issued_at(const struct suslist *list);
time_t suslist_expires_at(const struct suslist *list);
time_t suslist_verified_at(const struct suslist *list);
/* True when now is at or after expires_at.  The list stays in force either way. */
bool suslist_expired(const struct suslist *list, time_t now);
/*
 * The exact signed bytes the list was parsed from (len bytes, NUL-terminated after them), to
 * persist and to parse again after a restart.  Owned by the list.
 */
const char *suslist_raw(const struct suslist *list, size_t *len);

/* Number of suspensions, and suspension i (< count) in the list's order. */
size_t suslist_count(const struct suslist *list);
const struct suslist_entry *suslist_entry_at(const struct suslist *list, size_t i);

/* An entry's fields; strings are owned by the list and live as long as it. */
const char *suslist_entry_id(const struct suslist_entry *entry);
const char *suslist_entry_plugin(const struct suslist_entry *entry);
/* The version range as written, or NULL when the entry covers every version. */
const char *suslist_entry_versions(const struct suslist_entry *entry);
enum suslist_mode suslist_entry_mode(const struct suslist_entry *entry);
/* The reason as written ("" when absent). */
const char *suslist_entry_reason(const struct suslist_entry *entry);
/* Certificate types covered: count >= 1; the single name "*" means every type. */
size_t suslist_entry_certificate_count(const struct suslist_entry *entry);
const char *suslist_entry_certificate(const struct suslist_entry *entry, size_t i);
/* Municipality codes covered: count >= 1; the single code "*" means every municipality. */
size_t suslist_entry_municipality_count(const struct suslist_entry *entry);
const char *suslist_entry_municipality(const struct suslist_entry *entry, size_t i);

/*
 * True when a suspension of list covers this request; *out (out may be NULL) is then the
 * matching entry, an immediate one when any matches, else the first in list order.  plugin is
 * the plugin instance's name.  version is its version; NULL or a version that is not dotted
 * numbers (e.g. "2.3.1-rc1") matches every range, so an odd version string never escapes a
 * suspension.  certificate and municipality are the request's; NULL matches every scope.
 * in_flight: the request is past step 7 (step 13), where only immediate suspensions count.
 */
bool suslist_match(const struct suslist *list, const char *plugin, const char *version,
		   const char *certificate, const char *municipality, bool in_flight,
		   const struct suslist_entry **out);

/*
 * True when version satisfies every comparator of range (the versions grammar above).  Dotted
 * numbers compare component by component as unsigned integers of any length ("2.10" > "2.9",
 * "007" == "7"), missing components count as 0 ("1.2" == "1.2.0").  A version that is not
 * dotted numbers (or NULL) satisfies every range; an invalid range (never in a parsed list)
 * is satisfied by no version.  Exposed for tests and for the admin API's checks.
 */
bool suslist_version_matches(const char *range, const char *version);

#endif
