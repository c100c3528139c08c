/*
 * gsm7: the GSM 03.38 7-bit default alphabet that USSD screens travel in.
 *
 * A screen outside it would be sent as UCS-2 (80 characters, not 182) or
 * mangled by the handset, so menu texts are checked at load and text that
 * comes from people (names, chama names) is transliterated when rendered.
 * Lengths are counted in septets: the extension characters { } [ ] ~ \ | ^ €
 * take two.
 */
#ifndef CHAMAD_GSM7_H
#define CHAMAD_GSM7_H

#include <stdbool.h>
#include <stddef.h>

/* Septets needed for the UTF-8 string s, or -1 if s holds a character
 * outside the GSM-7 alphabet (or is not valid UTF-8).  *bad_at, when not
 * NULL, gets the byte offset of the first offending character. */
int gsm7_septets(const char *s, size_t *bad_at);

/* Copies UTF-8 text into out (at most outlen-1 bytes, NUL-terminated) as
 * GSM-7-safe text: common letters with accents lose them, typographic
 * quotes and dashes become ASCII, control characters become spaces, and
 * anything else (or invalid UTF-8) becomes '?'.  Returns bytes written. */
size_t gsm7_transliterate(const char *in, size_t inlen, char *out, size_t outlen);

/* True if s is valid UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t len);

#endif
