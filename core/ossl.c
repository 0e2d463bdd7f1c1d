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

int ossl_ed25519_key_id(EVP_PKEY *key, char out[OSSL_KEY_ID_LEN + 1])
{
	unsigned char raw[32], md[32];
	size_t raw_len = sizeof raw;
	if (EVP_PKEY_get_raw_public_key(key, raw, &raw_len) != 1 || raw_len != sizeof raw ||
	    EVP_Digest(raw, raw_len, md, NULL, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		return -1;
	}
	ossl_hex(md, OSSL_KEY_ID_LEN / 2, out);
	return 0;
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
