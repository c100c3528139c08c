/*
 * input: boundary checks of callers' values (see input.h).
 */
#include "base/input.h"
#include "base/gsm7.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *input_bad(enum input_kind kind, const char *v, size_t len, size_t max)
{
	size_t digits;

	if (strlen(v) != len)
		return "holds a NUL byte";
	if (len > max)
		return "too long";
	switch (kind) {
	case INPUT_TEXT:
		if (!utf8_valid(v, len))
			return "is not UTF-8";
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)v[i];

			if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
				return "holds a control character";
		}
		return NULL;
	case INPUT_TOKEN:
		if (!len)
			return "is empty";
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
				return "is not printable ASCII without spaces";
		return NULL;
	case INPUT_DIGITS:
		return len && strspn(v, "0123456789") == len ? NULL : "is not a number";
	case INPUT_PHONE:
		digits = len - (v[0] == '+');
		if (digits < 6 || digits > 15 || strspn(v + (v[0] == '+'), "0123456789") != digits)
			return "is not a phone number";
		return NULL;
	}
	return "unknown kind";
}

int input_check(const struct input_field *fields, input_get_fn get, const void *src, char *why, size_t whylen)
{
	for (const struct input_field *f = fields; f->name; f++) {
		size_t len = 0;
		const char *v = get(src, f->name, &len);
		const char *bad;

		if (!v || (!len && !f->required)) {
			if (!f->required)
				continue;
			snprintf(why, whylen, "missing %s", f->name);
			return -1;
		}
		if ((bad = input_bad(f->kind, v, len, f->max))) {
			snprintf(why, whylen, "%s %s", f->name, bad);
			return -1;
		}
	}
	return 0;
}

/* ---- charsets ---- */

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* WINDOWS-1252's 0x80..0x9F (0 = not a character). */
static const uint16_t cp1252_high[32] = {
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
	0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
};

static char *from_8bit(const unsigned char *in, size_t len, bool cp1252, const char **why)
{
	char *out = xmalloc(len * 3 + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		uint32_t cp = in[i];

		if (cp1252 && cp >= 0x80 && cp < 0xa0 && !(cp = cp1252_high[cp - 0x80])) {
			*why = "holds a byte WINDOWS-1252 does not define";
			free(out);
			return NULL;
		}
		if (cp == 0) {
			*why = "holds a NUL character";
			free(out);
			return NULL;
		}
		o += put_utf8(out + o, cp);
	}
	out[o] = '\0';
	return out;
}

static char *from_utf16(const unsigned char *in, size_t len, bool little, const char **why)
{
	char *out;
	size_t o = 0, i = 0;

	if (len % 2) {
		*why = "has an odd number of bytes for UTF-16";
		return NULL;
	}
	out = xmalloc(len * 2 + 1);	/* 2 bytes -> at most 3, 4 bytes -> 4 */
	while (i < len) {
		uint32_t u = little ? (uint32_t)(in[i] | in[i + 1] << 8) : (uint32_t)(in[i] << 8 | in[i + 1]);

		i += 2;
		if (u >= 0xdc00 && u <= 0xdfff)
			goto bad;
		if (u >= 0xd800 && u <= 0xdbff) {
			uint32_t lo;

			if (len - i < 2)
				goto bad;
			lo = little ? (uint32_t)(in[i] | in[i + 1] << 8) : (uint32_t)(in[i] << 8 | in[i + 1]);
			if (lo < 0xdc00 || lo > 0xdfff)
				goto bad;
			i += 2;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (u == 0) {
			*why = "holds a NUL character";
			free(out);
			return NULL;
		}
		o += put_utf8(out + o, u);
	}
	out[o] = '\0';
	return out;
bad:
	*why = "holds a broken UTF-16 surrogate pair";
	free(out);
	return NULL;
}

char *input_to_utf8(const char *charset, const char *in, size_t len, const char **why)
{
	const unsigned char *u = (const unsigned char *)in;

	if (!charset || !*charset || !strcasecmp(charset, "UTF-8") || !strcasecmp(charset, "UTF8")) {
		if (memchr(in, '\0', len)) {
			*why = "holds a NUL byte";
			return NULL;
		}
		if (!utf8_valid(in, len)) {
			*why = "is not UTF-8";
			return NULL;
		}
		return xstrndup(in, len);
	}
	if (!strcasecmp(charset, "UTF-16BE") || !strcasecmp(charset, "UCS-2") || !strcasecmp(charset, "UCS-2BE") ||
	    !strcasecmp(charset, "UTF-16")) {
		bool little = false;

		/* a byte order mark is the sender's word on the order */
		if (len >= 2 && ((u[0] == 0xfe && u[1] == 0xff) || (u[0] == 0xff && u[1] == 0xfe))) {
			little = u[0] == 0xff;
			u += 2;
			len -= 2;
		}
		return from_utf16(u, len, little, why);
	}
	if (!strcasecmp(charset, "ISO-8859-1") || !strcasecmp(charset, "latin1") || !strcasecmp(charset, "ISO8859-1"))
		return from_8bit(u, len, false, why);
	if (!strcasecmp(charset, "WINDOWS-1252") || !strcasecmp(charset, "CP1252"))
		return from_8bit(u, len, true, why);
	*why = "is in a charset chamad does not read";
	return NULL;
}
