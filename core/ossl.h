/*
 * ossl.h: small helpers around OpenSSL that several modules share (doccode, cardproof, audit,
 * issuance).  Stateless: any thread.
 */
#ifndef MDG_OSSL_H
#define MDG_OSSL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The reason of the last failure on this thread's OpenSSL error queue, in buf ("no detail
 * from OpenSSL" when the queue is empty); the queue is cleared when clear is true.  Returns buf.
 */
const char *ossl_reason(char *buf, size_t size, bool clear);

#include <openssl/evp.h>

#define OSSL_KEY_ID_LEN 16

/*
 * The key id of an Ed25519 key (DESIGN §6): the first 16 lower-case hex digits of the SHA-256
 * of the raw 32-byte public key, into out.  0, or -1 (not an Ed25519 key; queue cleared).
 */
int ossl_ed25519_key_id(EVP_PKEY *key, char out[OSSL_KEY_ID_LEN + 1]);

/* Lower-case hex of in[0..n) into out (2n + 1 bytes with the NUL). */
void ossl_hex(const unsigned char *in, size_t n, char *out);

#endif
