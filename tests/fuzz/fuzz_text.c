/*
 * fuzz_text: GSM-7 (src/gsm7.c), phone numbers (src/phone.c) and the
 * urlencoded form parser (src/ussd_form.c), all on each input.
 *
 * Invariants:
 *   utf8_valid     agrees with a reference strict UTF-8 check (no
 *                  overlongs, no surrogates, nothing above U+10FFFF).
 *   gsm7_septets   agrees with a reference GSM 03.38 table (basic table 1
 *                  septet, extension table ^ { } \ [ ] ~ | € 2 septets;
 *                  ç/Ç, CR and form feed may go either way); on success the
 *                  string is valid UTF-8 and code points <= septets <= 2 x
 *                  code points; on -1 *bad_at is a character start inside
 *                  the string and everything before it is GSM-7.
 *   gsm7_transliterate  for output buffers from 1 byte up: returns n <
 *                  outlen, out[n] == 0, strlen(out) == n, the output is
 *                  valid UTF-8 with gsm7_septets >= 0, transliterating the
 *                  output again gives it unchanged, a truncated output is a
 *                  prefix of the untruncated one, and letters, digits and
 *                  spaces pass through as they are.  Output buffers are
 *                  exact-size heap blocks: a write past outlen is an ASan
 *                  report.
 *   phone_normalise on success gives ^\+[1-9][0-9]{7,14}$ and is
 *                  idempotent; fixed examples from src/phone.h hold.
 *   form_parse     returns 0 or -1; callbacks get non-NULL C strings no
 *                  longer than the body; there are at most (number of '&')
 *                  + 1 pairs; a body with no '%' and no NUL byte parses.
 */
#include <ctype.h>

#include "fuzz_common.h"
#include "base/gsm7.h"
#include "base/phone.h"
#include "ussd/ussd.h"

/* ---- reference GSM 03.38 ---------------------------------------------- */

/* Code points of the basic table other than ASCII letters and digits. */
static const unsigned gsm7_basic[] = {
	'@', 0xA3, '$', 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, '\n', 0xD8, 0xF8, 0xC5, 0xE5,
	0x394, '_', 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E,
	0xC6, 0xE6, 0xDF, 0xC9,
	' ', '!', '"', '#', 0xA4, '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	':', ';', '<', '=', '>', '?', 0xA1, 0xC4, 0xD6, 0xD1, 0xDC, 0xA7, 0xBF,
	0xE4, 0xF6, 0xF1, 0xFC, 0xE0,
};
static const unsigned gsm7_ext[] = { '^', '{', '}', '\\', '[', '~', ']', '|', 0x20AC };
/* Either way is defensible: 0x09 is Ç in the standard, ç in many phones;
 * CR is in the table but useless on a USSD screen; form feed is in the
 * extension table. */
static const unsigned gsm7_either[] = { 0xC7, 0xE7, '\r', '\f' };

static bool in_list(unsigned cp, const unsigned *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] == cp)
			return true;
	return false;
}

/* Decodes one code point of valid UTF-8 at s; returns its byte length. */
static size_t utf8_next(const unsigned char *s, unsigned *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] < 0xE0) {
		*cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
		return 2;
	}
	if (s[0] < 0xF0) {
		*cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
		return 3;
	}
	*cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
	return 4;
}

/* Septets for s (a C string) with the "either" characters accepted
 * (lenient) or refused (strict); -1 when refused. */
static int ref_septets(const char *s, bool lenient)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	int total = 0;

	if (!fuzz_utf8_valid(p, n, NULL))
		return -1;
	for (size_t i = 0; i < n;) {
		unsigned cp;

		i += utf8_next(p + i, &cp);
		if ((cp < 0x80 && isalnum((int)cp)) || in_list(cp, gsm7_basic, ARRAY_LEN(gsm7_basic)))
			total += 1;
		else if (in_list(cp, gsm7_ext, ARRAY_LEN(gsm7_ext)))
			total += 2;
		else if (in_list(cp, gsm7_either, ARRAY_LEN(gsm7_either)) && lenient)
			total += cp == '\f' ? 2 : 1;
		else
			return -1;
	}
	return total;
}

/* ---- checks -------------------------------------------------------------- */

static void check_utf8(const uint8_t *data, size_t size)
{
	bool want = fuzz_utf8_valid(data, size, NULL);
	bool got = utf8_valid((const char *)data, size);

	FUZZ_CHECKF(got == want, "utf8_valid says %d, reference %d", got, want);
}

static void check_septets(const char *s)
{
	size_t n = strlen(s), ncp = 0, bad = (size_t)-1;
	int got = gsm7_septets(s, &bad);
	int strict = ref_septets(s, false), lenient = ref_septets(s, true);

	FUZZ_CHECKF(got == strict || got == lenient, "gsm7_septets %d, reference %d (strict) / %d (lenient)", got,
		    strict, lenient);
	FUZZ_CHECK(gsm7_septets(s, NULL) == got);
	if (got >= 0) {
		FUZZ_CHECK(utf8_valid(s, n));
		FUZZ_CHECK(fuzz_utf8_valid((const unsigned char *)s, n, &ncp));
		FUZZ_CHECKF((size_t)got >= ncp && (size_t)got <= 2 * ncp, "%d septets for %zu code points", got, ncp);
	} else {
		char *pre;

		FUZZ_CHECKF(got == -1, "gsm7_septets returned %d", got);
		FUZZ_CHECKF(bad < n, "bad_at %zu in a string of %zu bytes", bad, n);
		/* Everything before bad_at is GSM-7 (so bad_at is a character start). */
		pre = strndup(s, bad);
		FUZZ_CHECK(pre != NULL);
		FUZZ_CHECKF(gsm7_septets(pre, NULL) >= 0, "text before bad_at %zu is not GSM-7", bad);
		free(pre);
	}
}

/* Transliterates in into an exact-size buffer of outlen; returns the
 * output (caller frees). */
static char *translit(const char *in, size_t inlen, size_t outlen)
{
	char *out = malloc(outlen);
	size_t n;
	int sept;

	FUZZ_CHECK(out != NULL);
	memset(out, 'X', outlen);
	n = gsm7_transliterate(in, inlen, out, outlen);
	FUZZ_CHECKF(n < outlen, "returned %zu for outlen %zu", n, outlen);
	FUZZ_CHECK(out[n] == '\0');
	FUZZ_CHECKF(strlen(out) == n, "returned %zu but strlen is %zu", n, strlen(out));
	FUZZ_CHECKF(fuzz_utf8_valid((const unsigned char *)out, n, NULL), "output not valid UTF-8 (outlen %zu)",
		    outlen);
	sept = gsm7_septets(out, NULL);
	FUZZ_CHECKF(sept >= 0, "output not GSM-7 (outlen %zu): \"%s\"", outlen, out);
	return out;
}

static void check_transliterate(const uint8_t *data, size_t size)
{
	static const size_t small[] = { 1, 2, 3, 4, 5, 8, 17, 64, 183 };
	size_t biglen = 4 * size + 16;	/* nothing expands more than 4x (one '?' per byte is 1x) */
	char *big = translit((const char *)data, size, biglen), *again;
	size_t bign = strlen(big);

	/* Idempotent. */
	again = translit(big, bign, bign + 1);
	FUZZ_CHECKF(strcmp(again, big) == 0, "not idempotent: \"%s\" -> \"%s\"", big, again);
	free(again);

	/* Truncation keeps a prefix. */
	for (size_t i = 0; i < ARRAY_LEN(small); i++) {
		char *t = translit((const char *)data, size, small[i]);

		FUZZ_CHECKF(strncmp(t, big, strlen(t)) == 0, "outlen %zu: \"%s\" is not a prefix of \"%s\"", small[i],
			    t, big);
		free(t);
	}

	/* Letters, digits and spaces pass through. */
	{
		bool plain = true;

		for (size_t i = 0; i < size && plain; i++)
			plain = data[i] < 0x80 && (isalnum(data[i]) || data[i] == ' ');
		if (plain)
			FUZZ_CHECKF(bign == size && memcmp(big, data, size) == 0, "plain text changed: \"%s\"", big);
	}
	free(big);
}

static bool e164(const char *s)
{
	size_t n = strlen(s);

	if (n < 9 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return false;
	for (size_t i = 2; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static void check_phone(const char *in, const char *cc)
{
	const size_t outlen = 17;
	char *out = malloc(outlen), *out2 = malloc(outlen);
	int rc;

	FUZZ_CHECK(out && out2);
	memset(out, 'X', outlen);
	rc = phone_normalise(in, cc, out, outlen);
	FUZZ_CHECKF(rc == 0 || rc == -1, "phone_normalise returned %d", rc);
	if (rc == 0) {
		FUZZ_CHECKF(strnlen(out, outlen) < outlen && e164(out), "cc %s: \"%s\" -> \"%.17s\"", cc, in, out);
		rc = phone_normalise(out, cc, out2, outlen);
		FUZZ_CHECKF(rc == 0 && strcmp(out, out2) == 0, "cc %s: not idempotent: \"%s\" -> \"%s\"", cc, out,
			    rc == 0 ? out2 : "(refused)");
	}
	free(out);
	free(out2);
}

struct form_state {
	size_t len, pairs;
};

static void form_cb(const char *key, const char *val, void *arg)
{
	struct form_state *st = arg;

	FUZZ_CHECK(key != NULL && val != NULL);
	FUZZ_CHECKF(strlen(key) + strlen(val) <= st->len, "pair of %zu+%zu bytes from %zu", strlen(key), strlen(val),
		    st->len);
	st->pairs++;
}

static void check_form(const uint8_t *data, size_t size)
{
	char *body = fuzz_copy(data, size);
	struct form_state st = { .len = size };
	size_t amps = 0;
	bool pct = false, nul = false;
	int rc;

	for (size_t i = 0; i < size; i++) {
		amps += data[i] == '&';
		pct |= data[i] == '%';
		nul |= data[i] == '\0';
	}
	rc = form_parse(body, size, form_cb, &st);
	FUZZ_CHECKF(rc == 0 || rc == -1, "form_parse returned %d", rc);
	FUZZ_CHECKF(st.pairs <= amps + 1, "%zu pairs from %zu '&'", st.pairs, amps);
	if (!pct && !nul)
		FUZZ_CHECKF(rc == 0, "a body with no %% and no NUL refused");
	free(body);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const same[] = {
		"0712345678", "712345678", "254712345678", "+254712345678", "00254712345678",
		"0712 345 678", "0712-345-678", "+254 712 345 678",
	};
	char out[17];

	for (size_t i = 0; i < ARRAY_LEN(same); i++) {
		int rc = phone_normalise(same[i], "254", out, sizeof out);

		FUZZ_CHECKF(rc == 0 && strcmp(out, "+254712345678") == 0, "\"%s\" -> %s", same[i],
			    rc == 0 ? out : "(refused)");
	}
	FUZZ_CHECK(phone_normalise("", "254", out, sizeof out) == -1);
	FUZZ_CHECK(phone_normalise("12", "254", out, sizeof out) == -1);
	FUZZ_CHECK(gsm7_septets("Hello", NULL) == 5);
	FUZZ_CHECK(gsm7_septets("{}", NULL) == 4);
	FUZZ_CHECK(gsm7_septets("\xe2\x82\xac", NULL) == 2);	/* € */
	FUZZ_CHECK(gsm7_septets("`", NULL) == -1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);	/* stops at the first NUL for the C-string APIs */

	check_utf8(data, size);
	check_septets(s);
	check_transliterate(data, size);
	check_phone(s, "254");
	check_phone(s, "233");
	check_form(data, size);
	free(s);
	return 0;
}
