/*
 * fuzz_smscmd: the SMS command words (sms_words_split, src/sms/sms_parse.c),
 * what every inbound SMS goes through before its command is looked up and
 * its text stored.
 *
 * Input: the text of an SMS (up to the first NUL), any bytes.
 * Invariants, against a reference split written here (tokens separated by
 * space, tab, CR, LF):
 *   - word is the first token when it is at most 15 bytes, else "";
 *   - pin is the second token when that is exactly 4 ASCII digits, else
 *     the third when that is (and arg is then the second: "APPROVE <code>
 *     <PIN>"), else "";
 *   - arg is the second token (at most 15 bytes) unless it is the PIN;
 *   - masked is the text, byte for byte, except that a PIN's 4 bytes, at
 *     its token's own offset, read "****": the stored text never holds
 *     the PIN, and nothing else changes (a PIN-looking run inside another
 *     word stays as it was);
 *   - splitting the same text twice gives the same answer.
 */
#include "fuzz_common.h"
#include "sms/sms_parse.h"

#define SP " \t\r\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_cstr(data, size);
	size_t n = strlen(text);
	struct sms_words w, again;
	const char *p = text, *first, *second, *third, *pin = NULL;
	size_t flen, slen, tlen;

	/* the reference */
	p += strspn(p, SP);
	first = p;
	flen = strcspn(p, SP);
	p += flen;
	p += strspn(p, SP);
	second = p;
	slen = strcspn(p, SP);
	p += slen;
	p += strspn(p, SP);
	third = p;
	tlen = strcspn(p, SP);
	if (slen == 4 && strspn(second, "0123456789") >= 4)
		pin = second;
	else if (tlen == 4 && strspn(third, "0123456789") >= 4)
		pin = third;

	sms_words_split(text, &w);
	FUZZ_CHECK(w.masked != NULL);
	FUZZ_CHECKF(strlen(w.masked) == n, "masked %zu bytes, text %zu", strlen(w.masked), n);
	if (flen < sizeof(w.word))
		FUZZ_CHECK(strlen(w.word) == flen && memcmp(w.word, first, flen) == 0);
	else
		FUZZ_CHECK(w.word[0] == '\0');
	if (pin == second || slen >= sizeof(w.arg))
		FUZZ_CHECK(w.arg[0] == '\0');
	else
		FUZZ_CHECK(strlen(w.arg) == slen && memcmp(w.arg, second, slen) == 0);
	if (pin) {
		size_t at = (size_t)(pin - text);

		FUZZ_CHECK(memcmp(w.pin, pin, 4) == 0 && w.pin[4] == '\0');
		FUZZ_CHECKF(memcmp(w.masked + at, "****", 4) == 0, "PIN at %zu not masked", at);
		FUZZ_CHECK(memcmp(w.masked, text, at) == 0);
		FUZZ_CHECK(memcmp(w.masked + at + 4, text + at + 4, n - at - 4) == 0);
	} else {
		FUZZ_CHECK(w.pin[0] == '\0');
		FUZZ_CHECK(memcmp(w.masked, text, n) == 0);
	}
	sms_words_split(text, &again);
	FUZZ_CHECK(!strcmp(w.word, again.word) && !strcmp(w.pin, again.pin) && !strcmp(w.arg, again.arg) &&
		   !strcmp(w.masked, again.masked));
	sms_words_clear(&again);
	sms_words_clear(&w);
	FUZZ_CHECK(w.masked == NULL);
	free(text);
	return 0;
}
