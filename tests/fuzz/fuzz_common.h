/*
 * fuzz_common.h: helpers shared by the libFuzzer targets in tests/fuzz.
 *
 * FUZZ_CHECK(cond) is an invariant: when it does not hold the target prints
 * which one (file:line and the condition) and traps, so libFuzzer saves the
 * input as a crash artifact exactly as for an ASan or UBSan report.
 */
#ifndef CHAMAD_FUZZ_COMMON_H
#define CHAMAD_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "\nINVARIANT BROKEN %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		fflush(stderr); \
		__builtin_trap(); \
	} \
} while (0)

/* Same, with a printf-style note (the values involved). */
#define FUZZ_CHECKF(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "\nINVARIANT BROKEN %s:%d: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		fflush(stderr); \
		__builtin_trap(); \
	} \
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An exact-size heap copy (no NUL after it), so ASan sees a read one byte
 * past the end of the input.  malloc(0) may return NULL: use 1 byte then,
 * still nothing readable past len as far as the parser is concerned. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	return p;
}

/* A heap copy with a NUL after it (for APIs that take a C string). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *p = malloc(size + 1);

	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	p[size] = '\0';
	return p;
}

/* Error buffers are allocated at exactly errlen bytes so a write past
 * errlen is a heap overflow ASan reports.  After a failure err must be a
 * non-empty C string within errlen. */
static inline char *fuzz_errbuf(size_t errlen)
{
	char *e = malloc(errlen);

	if (!e)
		abort();
	memset(e, 'E', errlen);	/* not NUL-terminated until the callee says so */
	return e;
}

static inline void fuzz_check_err(const char *err, size_t errlen)
{
	size_t n = strnlen(err, errlen);

	FUZZ_CHECKF(n < errlen, "error message not NUL-terminated within %zu bytes", errlen);
	FUZZ_CHECKF(n > 0, "failure with an empty error message");
}

static inline bool fuzz_streq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above
 * U+10FFFF.  U+0000 counts as valid. Sets *ncp to the code point count. */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n, size_t *ncp)
{
	size_t i = 0, cps = 0;

	while (i < n) {
		unsigned c = s[i], cp, min;
		size_t k;

		if (c < 0x80) {
			i++;
			cps++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			k = 1; cp = c & 0x1F; min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2; cp = c & 0x0F; min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
		cps++;
	}
	if (ncp)
		*ncp = cps;
	return true;
}

/* A made-up reply text from the fuzz input: printable ASCII, '\n', '"' and
 * '\\' included (so JSON renderers must escape), at most 182 bytes (the
 * USSD screen cap).  Caller frees. */
static inline char *fuzz_reply_text(const uint8_t *data, size_t size)
{
	size_t n = size < 182 ? size : 182;
	char *t = malloc(n + 1);

	if (!t)
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned c = data[size - n + i];	/* the tail: differs from the head parsers look at */

		if (c % 17 == 0)
			t[i] = '\n';
		else
			t[i] = (char)(' ' + c % 95);
	}
	t[n] = '\0';
	return t;
}

#endif
