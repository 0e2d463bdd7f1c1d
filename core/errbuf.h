/*
 * errbuf.h: filling a caller's error buffer, for the modules whose functions answer 0 or -1 and
 * say why in char *err / size_t err_size (hours.c, spool.c, ttf.c).  Modules with their own
 * status codes keep their own helper, which also picks the code (audit_fail, doccode_fail).
 */
#ifndef MDG_ERRBUF_H
#define MDG_ERRBUF_H

#include <stddef.h>

/* Formats into err (when err is not NULL and err_size > 0) and returns -1, so a failing
 * function can end with `return errbuf_set(err, err_size, "...", ...);`.  Any thread. */
int errbuf_set(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
