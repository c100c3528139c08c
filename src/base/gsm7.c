/*
 * gsm7: GSM 03.38 default alphabet checks, septet counts, transliteration.
 */
#include "base/gsm7.h"

#include <stdint.h>
#include <string.h>

/* Decodes one UTF-8 code point at s[*i] (len bytes in all); advances *i.
 * Returns the code point, or -1 for invalid UTF-8. */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	int32_t cp;
	size_t n, k;

	if (c < 0x80) {
		(*i)++;
		return c;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
	} else {
		return -1;
	}
	if (n >= len - *i)	/* truncated sequence */
		return -1;
	for (k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[*i + k] & 0x3f);
	}
	/* overlongs, surrogates, beyond Unicode */
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return -1;
	*i += n + 1;
	return cp;
}

bool utf8_valid(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len)
		if (utf8_next((const unsigned char *)s, len, &i) < 0)
			return false;
	return true;
}

/* Non-ASCII code points of the basic set (one septet each). */
static const int32_t gsm_basic_high[] = {
	0x00a3, 0x00a5, 0x00e8, 0x00e9, 0x00f9, 0x00ec, 0x00f2, 0x00c7, 0x00d8, 0x00f8, 0x00c5, 0x00e5,
	0x0394, 0x03a6, 0x0393, 0x039b, 0x03a9, 0x03a0, 0x03a8, 0x03a3, 0x0398, 0x039e, 0x00c6, 0x00e6,
	0x00df, 0x00c9, 0x00a4, 0x00a1, 0x00c4, 0x00d6, 0x00d1, 0x00dc, 0x00a7, 0x00bf, 0x00e4, 0x00f6,
	0x00f1, 0x00fc, 0x00e0,
};

/* Septets for one code point: 1, 2 (extension table) or 0 (not GSM-7). */
static int cp_septets(int32_t cp)
{
	if (cp == '\n' || cp == '\r')
		return 1;
	if (cp >= 0x20 && cp < 0x7f) {
		if (cp == '`')
			return 0;
		return strchr("^{}\\[]~|", (int)cp) ? 2 : 1;
	}
	if (cp == 0x20ac || cp == 0x0c)	/* euro sign, form feed */
		return 2;
	for (size_t k = 0; k < sizeof(gsm_basic_high) / sizeof(gsm_basic_high[0]); k++)
		if (gsm_basic_high[k] == cp)
			return 1;
	return 0;
}

int gsm7_septets(const char *s, size_t *bad_at)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, at;
	int total = 0;

	while (i < len) {
		int32_t cp;
		int n;

		at = i;
		cp = utf8_next(u, len, &i);
		n = cp < 0 ? 0 : cp_septets(cp);
		if (!n) {
			if (bad_at)
				*bad_at = at;
			return -1;
		}
		total += n;
	}
	return total;
}

/* ASCII stand-ins for the Latin letters and punctuation people type. */
static const struct {
	int32_t cp;
	const char *to;
} translit[] = {
	{ 0x00e1, "a" }, { 0x00e2, "a" }, { 0x00e3, "a" }, { 0x0101, "a" }, { 0x00c0, "A" }, { 0x00c1, "A" },
	{ 0x00c2, "A" }, { 0x00c3, "A" }, { 0x00e7, "c" }, { 0x00ea, "e" }, { 0x00eb, "e" }, { 0x0113, "e" },
	{ 0x00c8, "E" }, { 0x00ca, "E" }, { 0x00cb, "E" }, { 0x00ed, "i" }, { 0x00ee, "i" }, { 0x00ef, "i" },
	{ 0x012b, "i" }, { 0x00cc, "I" }, { 0x00cd, "I" }, { 0x00ce, "I" }, { 0x00cf, "I" }, { 0x00f3, "o" },
	{ 0x00f4, "o" }, { 0x00f5, "o" }, { 0x014d, "o" }, { 0x00d2, "O" }, { 0x00d3, "O" }, { 0x00d4, "O" },
	{ 0x00d5, "O" }, { 0x00fa, "u" }, { 0x00fb, "u" }, { 0x016b, "u" }, { 0x00d9, "U" }, { 0x00da, "U" },
	{ 0x00db, "U" }, { 0x00fd, "y" }, { 0x00ff, "y" }, { 0x00dd, "Y" }, { 0x2018, "'" }, { 0x2019, "'" },
	{ 0x201a, "'" }, { 0x02bc, "'" }, { 0x201c, "\"" }, { 0x201d, "\"" }, { 0x201e, "\"" }, { 0x2013, "-" },
	{ 0x2014, "-" }, { 0x2026, "..." }, { 0x00a0, " " }, { 0x0060, "'" },
};

size_t gsm7_transliterate(const char *in, size_t inlen, char *out, size_t outlen)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t i = 0, o = 0;

	if (!outlen)
		return 0;
	while (i < inlen) {
		size_t start = i;
		int32_t cp = utf8_next(u, inlen, &i);
		const char *rep = NULL;
		char tmp[2] = { 0, 0 };
		size_t n;

		if (cp < 0) {
			i = start + 1;
			rep = "?";
		} else if (cp == '\t' || (cp < 0x20 && cp != '\n') || cp == 0x7f || cp == '\r') {
			rep = " ";
		} else if (cp != '`' && cp_septets(cp)) {
			/* already GSM-7: copy its UTF-8 bytes */
			n = i - start;
			if (o + n >= outlen)
				break;
			memcpy(out + o, in + start, n);
			o += n;
			continue;
		} else {
			for (size_t k = 0; k < sizeof(translit) / sizeof(translit[0]); k++)
				if (translit[k].cp == cp)
					rep = translit[k].to;
			if (!rep) {
				tmp[0] = '?';
				rep = tmp;
			}
		}
		n = strlen(rep);
		if (o + n >= outlen)
			break;
		memcpy(out + o, rep, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}
