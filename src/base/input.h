/*
 * input: the checks every HTTP route makes of what a caller sent, before
 * any of it reaches PostgreSQL or Redis.
 *
 * PostgreSQL refuses text that is not UTF-8 (and NUL bytes).  A value that
 * got that far turned into a failed statement, answered 503, which tells
 * the provider to send the same bytes again, forever.  A route describes
 * its fields in a table (name, kind, longest length, required) and asks
 * input_check; what fails is answered at once (http_reply_bad_input).
 */
#ifndef CHAMAD_INPUT_H
#define CHAMAD_INPUT_H

#include <stdbool.h>
#include <stddef.h>

enum input_kind {
	INPUT_TEXT,	/* valid UTF-8 (may be empty); no control characters except tab, CR, LF */
	INPUT_TOKEN,	/* 1+ printable ASCII characters without spaces: ids, status words */
	INPUT_DIGITS,	/* 0-9 only, at least one (counts, codes, our row ids) */
	INPUT_PHONE,	/* "+" optional, then 6 to 15 digits (phone_normalise decides more) */
};

struct input_field {
	const char *name;	/* NULL ends a table */
	enum input_kind kind;
	size_t max;		/* longest value in bytes */
	bool required;		/* absent is refused; an optional field that is empty is not checked */
};

/*
 * A field's value from the caller's parsed request: NULL when absent;
 * *len gets its length in bytes, which differs from strlen when the value
 * holds a NUL byte (refused).
 */
typedef const char *(*input_get_fn)(const void *src, const char *name, size_t *len);

/* NULL when v (len bytes) is a good value of that kind within max, else
 * the reason, to follow the field's name ("is not UTF-8", "too long"...). */
const char *input_bad(enum input_kind kind, const char *v, size_t len, size_t max);

/* Checks the fields in table order.  Returns 0, or -1 with "missing <name>"
 * or "<name> <reason>" in why (the first field that fails). */
int input_check(const struct input_field *fields, input_get_fn get, const void *src, char *why, size_t whylen);

/*
 * Text in the charset a provider declared, as UTF-8: charset NULL or ""
 * means UTF-8; also UTF-16BE / UCS-2 / UTF-16 (big-endian unless a byte
 * order mark says otherwise), ISO-8859-1 / latin1 and WINDOWS-1252 / CP1252
 * (what Kannel's %C names).  Returns a new NUL-terminated string, or NULL
 * with the reason in *why (a charset we do not read, bytes not valid in
 * it, a NUL character).
 */
char *input_to_utf8(const char *charset, const char *in, size_t len, const char **why);

#endif
