/*
 * fuzz_dlr: what the SMS providers post (src/sms/sms_parse.c with
 * base/input.c and base/form.c): the parameters of a callback, Africa's
 * Talking's and Kannel's delivery reports, and an inbound message (AT's
 * form body, Kannel's get-url with charset=).
 *
 * Input: the query string, a '\n', then the form body (no '\n': all of it
 * is the body), any bytes.
 * Invariants:
 *   - sms_params_parse gives 0 or -1; on 0, at most SMS_PARAMS_MAX names,
 *     no two the same, each value's length as reported, none longer than
 *     the input;
 *   - every reader returns 0 or -1 (sms_in_read one of its three
 *     results); on failure `why` is a non-empty string within its exact-size
 *     buffer;
 *   - an accepted delivery report names a row (AT: 1..128 printable ASCII;
 *     Kannel: 1..19 digits), its status (<= 32 bytes, no NUL), and a state
 *     of "", "delivered" or "undeliverable": what PostgreSQL stores without
 *     complaint;
 *   - an accepted message has a sender matching ^\+[1-9][0-9]{7,14}$, an id
 *     of at most 128 printable ASCII bytes (or none), and a text that is
 *     valid UTF-8, at most 1000 bytes, without NUL or control characters
 *     other than tab, CR, LF: nothing PostgreSQL would refuse, so nothing
 *     that could come back as a 503 the provider retries forever;
 *   - the same input read twice gives the same answers.
 */
#include "fuzz_common.h"
#include "base/gsm7.h"
#include "sms/sms_parse.h"

static void check_why(const char *why, size_t len)
{
	fuzz_check_err(why, len);
}

static bool printable_token(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n < 1 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static void check_dlr(const struct sms_dlr *d, bool kannel)
{
	FUZZ_CHECK(d->id && d->raw && d->state);
	if (kannel)
		FUZZ_CHECK(strlen(d->id) >= 1 && strlen(d->id) <= 19 && strspn(d->id, "0123456789") == strlen(d->id));
	else
		FUZZ_CHECKF(printable_token(d->id, 128), "id \"%s\"", d->id);
	FUZZ_CHECK(strlen(d->raw) <= 32 && printable_token(d->raw, 32));
	FUZZ_CHECK(!strcmp(d->state, "") || !strcmp(d->state, "delivered") || !strcmp(d->state, "undeliverable"));
	if (d->reason) {
		size_t n = strlen(d->reason);

		FUZZ_CHECK(n <= 200 && utf8_valid(d->reason, n));
	}
}

static void check_in(const struct sms_in *in)
{
	size_t n = strlen(in->phone), t;

	FUZZ_CHECKF(n >= 9 && n <= 16 && in->phone[0] == '+' && in->phone[1] >= '1' && in->phone[1] <= '9' &&
		    strspn(in->phone + 1, "0123456789") == n - 1, "phone \"%s\"", in->phone);
	FUZZ_CHECK(in->id[0] == '\0' || printable_token(in->id, 128));
	FUZZ_CHECK(in->text != NULL);
	t = strlen(in->text);
	FUZZ_CHECK(t <= 1000);
	FUZZ_CHECK(fuzz_utf8_valid((const unsigned char *)in->text, t, NULL));
	for (size_t i = 0; i < t; i++) {
		unsigned char c = (unsigned char)in->text[i];

		FUZZ_CHECKF(c >= 0x20 || c == '\t' || c == '\r' || c == '\n', "control 0x%02x at %zu", c, i);
		FUZZ_CHECK(c != 0x7f);
	}
}

/* One pass over the input; the answers folded into a few numbers so a
 * second pass can be compared with the first. */
static unsigned long one(const char *q, size_t qlen, const char *b, size_t blen)
{
	struct sms_params p;
	struct sms_dlr d;
	struct sms_in in;
	const size_t whylen = 64;
	char *why = fuzz_errbuf(whylen);
	unsigned long h = 1;
	int rc;

	rc = sms_params_parse(&p, q, qlen, b, blen);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		FUZZ_CHECK(p.n == 0);
		free(why);
		return 0;
	}
	FUZZ_CHECK(p.n <= SMS_PARAMS_MAX);
	for (size_t i = 0; i < p.n; i++) {
		FUZZ_CHECK(p.len[i] <= qlen + blen && p.val[i][p.len[i]] == '\0');
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(p.key[i], p.key[j]) != 0);
	}
	rc = sms_dlr_at(&p, &d, why, whylen);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0)
		check_dlr(&d, false);
	else
		check_why(why, whylen);
	h = h * 31 + (unsigned long)(rc + 2) + (rc == 0 ? strlen(d.state) * 7 + strlen(d.id) : 0);
	rc = sms_dlr_kannel(&p, &d, why, whylen);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0)
		check_dlr(&d, true);
	else
		check_why(why, whylen);
	h = h * 31 + (unsigned long)(rc + 2) + (rc == 0 ? strlen(d.state) * 7 + strlen(d.raw) : 0);
	switch (sms_in_read(&p, "254", &in, why, whylen)) {
	case SMS_IN_OK:
		check_in(&in);
		h = h * 31 + 1 + strlen(in.text) + strlen(in.phone) * 1009;
		sms_in_clear(&in);
		FUZZ_CHECK(in.text == NULL);
		break;
	case SMS_IN_MISSING:
	case SMS_IN_BAD:
		check_why(why, whylen);
		FUZZ_CHECK(in.text == NULL);
		h = h * 31 + 2 + strlen(why);
		break;
	default:
		FUZZ_CHECK(!"sms_in_read returned something else");
	}
	sms_params_free(&p);
	free(why);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_copy(data, size);
	const char *nl = memchr(in, '\n', size);
	size_t qlen = nl ? (size_t)(nl - in) : 0;
	const char *b = nl ? nl + 1 : in;
	size_t blen = nl ? size - qlen - 1 : size;
	/* exact-size copies: a read past either end is an ASan report */
	char *q = fuzz_copy((const uint8_t *)in, qlen);
	char *body = fuzz_copy((const uint8_t *)b, blen);

	FUZZ_CHECK(one(q, qlen, body, blen) == one(q, qlen, body, blen));
	free(body);
	free(q);
	free(in);
	return 0;
}
