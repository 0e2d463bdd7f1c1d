/*
 * ossl.c: OpenSSL helpers shared by modules (contract in ossl.h).
 */
#include <stdio.h>

#include <openssl/err.h>

#include "ossl.h"

const char *ossl_reason(char *buf, size_t size, bool clear)
{
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		snprintf(buf, size, "no detail from OpenSSL");
	else
		ERR_error_string_n(e, buf, size);
	if (clear)
		ERR_clear_error();
	return buf;
}

void ossl_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}
