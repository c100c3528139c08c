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
#include "fuzz_adapter.h"

static const struct ussd_adapter *const adapter = &ussd_adapter_at;

static void check_field(const char *s, size_t bodylen)
{
	if (!s)
		return;
	FUZZ_CHECKF(strlen(s) <= bodylen, "field of %zu bytes from a body of %zu", strlen(s), bodylen);
}

static void check_req(const struct ussd_req *r, const char *body, size_t bodylen)
{
	(void)body;
	FUZZ_CHECK(r->cumulative);	/* AT sends the whole path */
	check_field(r->session_id, bodylen);
	check_field(r->phone, bodylen);
	check_field(r->service_code, bodylen);
	check_field(r->network, bodylen);
	check_field(r->text, bodylen);
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
	return fuzz_adapter_one(adapter, data, size, check_req, check_render);
}
