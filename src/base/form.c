/*
 * form: application/x-www-form-urlencoded parsing, shared by every
 * form-speaking aggregator and the SMS callbacks.
 */
#include "base/form.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes src[0..n) into dst (room for n+1), its length into *outlen;
 * -1 on a bad escape, or on a NUL unless allow_nul. */
static int decode(const char *src, size_t n, char *dst, bool allow_nul, size_t *outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = src[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;

			if (n - i < 3)	/* needs two hex digits */
				return -1;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' && !allow_nul)
			return -1;
		dst[o++] = c;
	}
	dst[o] = '\0';
	*outlen = o;
	return 0;
}

static int parse(const char *body, size_t len, bool allow_nul,
		 void (*fn)(const char *key, const char *val, size_t vlen, void *arg), void *arg)
{
	size_t i = 0;
	int rc = 0;
	char *buf = malloc(len + 2);

	if (!buf)
		return -1;
	while (i < len && rc == 0) {
		const char *pair = body + i;
		const char *amp = memchr(pair, '&', len - i);
		size_t plen = amp ? (size_t)(amp - pair) : len - i;
		const char *eq = memchr(pair, '=', plen);
		size_t klen = eq ? (size_t)(eq - pair) : plen;

		if (plen) {
			char *key = buf, *val;
			size_t kn, vn;

			if (decode(pair, klen, key, false, &kn) < 0) {
				rc = -1;
				break;
			}
			val = key + kn + 1;
			if (decode(eq ? eq + 1 : pair + plen, eq ? plen - klen - 1 : 0, val, allow_nul, &vn) < 0) {
				rc = -1;
				break;
			}
			fn(key, val, vn, arg);
		}
		i += plen + 1;
	}
	free(buf);
	return rc;
}

struct text_only {
	void (*fn)(const char *key, const char *val, void *arg);
	void *arg;
};

static void text_pair(const char *key, const char *val, size_t vlen, void *arg)
{
	struct text_only *t = arg;

	(void)vlen;
	t->fn(key, val, t->arg);
}

int form_parse(const char *body, size_t len, void (*fn)(const char *key, const char *val, void *arg), void *arg)
{
	struct text_only t = { fn, arg };

	return parse(body, len, false, text_pair, &t);
}

int form_parse_bytes(const char *body, size_t len, void (*fn)(const char *key, const char *val, size_t vlen, void *arg),
		     void *arg)
{
	return parse(body, len, true, fn, arg);
}
