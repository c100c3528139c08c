/*
 * fuzz_at: Africa's Talking adapter (src/ussd_at.c), parse and render.
 *
 * Input: an HTTP body (application/x-www-form-urlencoded), any bytes.
 * Invariants:
 *   - parse returns 0 or -1; on -1 err is a non-empty C string within
 *     errlen (err is allocated at exactly errlen so an overflow is an ASan
 *     report), and ussd_req_clear frees whatever was filled in;
 *   - on 0: session_id, phone and text are non-NULL, session_id is 1..64
 *     printable characters, every string is no longer than the body (all
 *     come from %-decoding it), kind is a valid enum value, cumulative is
 *     set (AT sends the whole path), hop_key is non-NULL;
 *   - parsing the same body twice gives the same request (no hidden state);
 *   - render of a CON reply is exactly "CON " + text, of an END reply
 *     exactly "END " + text, with a non-empty content type.
 * The body is an exact-size heap copy, not NUL-terminated: a parser that
 * reads one byte past len is an ASan report.
 */
#include "fuzz_common.h"
#include "ussd.h"
#include "util.h"

static const struct ussd_adapter *const adapter = &ussd_adapter_at;

static void check_field(const char *s, size_t bodylen)
{
	if (!s)
		return;
	FUZZ_CHECKF(strlen(s) <= bodylen, "field of %zu bytes from a body of %zu", strlen(s), bodylen);
}

static void check_req(const struct ussd_req *r, size_t bodylen)
{
	size_t n;

	FUZZ_CHECK(r->session_id != NULL);
	FUZZ_CHECK(r->phone != NULL);
	FUZZ_CHECK(r->text != NULL);
	FUZZ_CHECK(r->hop_key != NULL);
	FUZZ_CHECK(r->kind == USSD_BEGIN || r->kind == USSD_CONTINUE || r->kind == USSD_RELEASE);
	FUZZ_CHECK(r->cumulative);

	n = strlen(r->session_id);
	FUZZ_CHECKF(n >= 1 && n <= 64, "session_id of %zu bytes", n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r->session_id[i];

		FUZZ_CHECKF(c > 0x20 && c < 0x7f, "session_id byte 0x%02x at %zu", c, i);
	}

	check_field(r->session_id, bodylen);
	check_field(r->phone, bodylen);
	check_field(r->service_code, bodylen);
	check_field(r->network, bodylen);
	check_field(r->text, bodylen);
}

static void check_same(const struct ussd_req *a, const struct ussd_req *b)
{
	FUZZ_CHECK(a->kind == b->kind);
	FUZZ_CHECK(a->cumulative == b->cumulative);
	FUZZ_CHECK(fuzz_streq(a->session_id, b->session_id));
	FUZZ_CHECK(fuzz_streq(a->phone, b->phone));
	FUZZ_CHECK(fuzz_streq(a->service_code, b->service_code));
	FUZZ_CHECK(fuzz_streq(a->network, b->network));
	FUZZ_CHECK(fuzz_streq(a->text, b->text));
	FUZZ_CHECK(fuzz_streq(a->hop_key, b->hop_key));
	FUZZ_CHECK(fuzz_streq(a->client_state, b->client_state));
}

static void check_render(const struct ussd_req *r, bool end, const char *text)
{
	struct ussd_reply rep = { .end = end, .text = text };
	const char *ct = NULL;
	const char *prefix = end ? "END " : "CON ";
	struct buf out;

	buf_init(&out, 64 * 1024);
	adapter->render(r, &rep, &out, &ct);
	FUZZ_CHECK(ct != NULL && ct[0] != '\0');
	FUZZ_CHECK(out.len >= 4 && out.data != NULL);
	FUZZ_CHECK(out.data[out.len] == '\0');
	FUZZ_CHECKF(memcmp(out.data, prefix, 4) == 0, "reply starts \"%.4s\", want \"%s\"", out.data, prefix);
	FUZZ_CHECKF(out.len == 4 + strlen(text) && memcmp(out.data + 4, text, strlen(text)) == 0,
		    "reply body differs from the text given (%zu vs %zu bytes)", out.len - 4, strlen(text));
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = fuzz_copy(data, size);
	const size_t errlen = 96;
	char *err = fuzz_errbuf(errlen);
	struct ussd_req req, again;
	int rc, rc2;

	memset(&req, 0, sizeof req);
	rc = adapter->parse(body, size, &req, err, errlen);
	FUZZ_CHECKF(rc == 0 || rc == -1, "parse returned %d", rc);

	if (rc == -1) {
		fuzz_check_err(err, errlen);
		ussd_req_clear(&req);
		goto out;
	}

	check_req(&req, size);

	memset(&again, 0, sizeof again);
	rc2 = adapter->parse(body, size, &again, err, errlen);
	FUZZ_CHECKF(rc2 == 0, "second parse of the same body returned %d", rc2);
	check_same(&req, &again);
	ussd_req_clear(&again);

	{
		char *t = fuzz_reply_text(data, size);

		check_render(&req, false, "Welcome to ChamaSmart\n1. Balance\n2. Contribute");
		check_render(&req, true, "Thank you.");
		check_render(&req, false, "");
		check_render(&req, size & 1, t);
		free(t);
	}
	ussd_req_clear(&req);
out:
	free(err);
	free(body);
	return 0;
}
