/*
 * form: application/x-www-form-urlencoded bodies.
 */
#ifndef CHAMAD_FORM_H
#define CHAMAD_FORM_H

#include <stddef.h>

/* Parses an application/x-www-form-urlencoded body: calls fn(key, value)
 * for each pair, both NUL-terminated and %-decoded (owned by the parser,
 * valid during the call).  Returns -1 on bad escapes or when a key or
 * value holds a NUL byte. */
int form_parse(const char *body, size_t len, void (*fn)(const char *key, const char *val, void *arg), void *arg);
/* The same, but a value may hold NUL bytes (text in a declared charset
 * such as UTF-16BE): fn also gets the value's length.  Keys never may. */
int form_parse_bytes(const char *body, size_t len, void (*fn)(const char *key, const char *val, size_t vlen, void *arg),
		     void *arg);

#endif
