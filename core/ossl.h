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

/* Lower-case hex of in[0..n) into out (2n + 1 bytes with the NUL). */
void ossl_hex(const unsigned char *in, size_t n, char *out);

#endif
