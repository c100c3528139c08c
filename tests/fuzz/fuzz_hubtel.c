/*
 * fuzz_hubtel: Hubtel adapter (src/ussd_hubtel.c), parse and render.
 *
 * Input: an HTTP body (JSON), any bytes.
 * Invariants:
 *   - parse returns 0 or -1; on -1 err is a non-empty C string within
 *     errlen (allocated at exactly errlen), and ussd_req_clear frees what
 *     was filled in;
 *   - on 0: session_id, phone, text and hop_key are non-NULL, session_id is
 *     1..64 printable characters, kind is a valid enum value, cumulative
 *     is false (Hubtel sends the newest input only);
 *   - on 0 the body is a JSON object that jansson itself accepts, and the
 *     request agrees with it: SessionId, Mobile, Message (when strings)
 *     are copied unchanged (a Release whose Message is not text we take
 *     reads ""), Type maps to kind (Initiation -> BEGIN,
 *     Response -> CONTINUE, Release/Timeout -> RELEASE);
 *   - parsing the same body twice gives the same request;
 *   - render gives a JSON object (jansson parses it back) whose Message is
 *     exactly the reply text and whose Type is Response for CON and
 *     Release for END; the content type names JSON.  The reply text
 *     holds quotes, backslashes and newlines, so escaping is exercised,
 *     and req's strings (SessionId, ClientState...) come from the fuzzed
 *     body.
 */
#include <jansson.h>
#include <strings.h>

#include "fuzz_adapter.h"

static const struct ussd_adapter *const adapter = &ussd_adapter_hubtel;

/* The request must agree with what jansson reads from the same body. */
static void check_against_jansson(const struct ussd_req *r, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr);
	json_t *v;

	FUZZ_CHECKF(doc != NULL, "parse accepted a body jansson rejects: %s", jerr.text);
	FUZZ_CHECK(json_is_object(doc));

	v = json_object_get(doc, "SessionId");
	if (json_is_string(v))
		FUZZ_CHECKF(strcmp(json_string_value(v), r->session_id) == 0, "SessionId \"%s\" vs \"%s\"",
			    json_string_value(v), r->session_id);
	v = json_object_get(doc, "Mobile");
	if (json_is_string(v))
		FUZZ_CHECK(strcmp(json_string_value(v), r->phone) == 0);
	/* the Message as sent, except that a Release's Message that is not
	 * text we take (a control character, too long) is read as "": the
	 * session ends either way */
	v = json_object_get(doc, "Message");
	if (json_is_string(v))
		FUZZ_CHECK(strcmp(json_string_value(v), r->text) == 0 ||
			   (r->kind == USSD_RELEASE && r->text[0] == '\0'));
	v = json_object_get(doc, "Type");
	if (json_is_string(v)) {
		const char *t = json_string_value(v);

		if (!strcasecmp(t, "Initiation"))
			FUZZ_CHECK(r->kind == USSD_BEGIN);
		else if (!strcasecmp(t, "Response"))
			FUZZ_CHECK(r->kind == USSD_CONTINUE);
		else if (!strcasecmp(t, "Release") || !strcasecmp(t, "Timeout"))
			FUZZ_CHECK(r->kind == USSD_RELEASE);
	}
	json_decref(doc);
}

static void check_render(const struct ussd_req *r, bool end, const char *text)
{
	struct ussd_reply rep = { .end = end, .text = text };
	const char *ct = NULL;
	struct buf out;
	json_error_t jerr;
	json_t *doc, *v;

	buf_init(&out, 64 * 1024);
	adapter->render(r, &rep, &out, &ct);
	FUZZ_CHECK(ct != NULL && strstr(ct, "json") != NULL);
	FUZZ_CHECK(out.len > 0 && out.data != NULL && out.data[out.len] == '\0');

	doc = json_loadb(out.data, out.len, 0, &jerr);
	FUZZ_CHECKF(doc != NULL, "render gave invalid JSON (%s): %s", jerr.text, out.data);
	FUZZ_CHECK(json_is_object(doc));
	v = json_object_get(doc, "Message");
	FUZZ_CHECK(json_is_string(v));
	FUZZ_CHECKF(strcmp(json_string_value(v), text) == 0, "Message \"%s\" vs reply \"%s\"",
		    json_string_value(v), text);
	v = json_object_get(doc, "Type");
	FUZZ_CHECK(json_is_string(v));
	FUZZ_CHECKF(!strcasecmp(json_string_value(v), end ? "Release" : "Response"), "Type \"%s\" for %s",
		    json_string_value(v), end ? "END" : "CON");
	json_decref(doc);
	buf_free(&out);
}

static void check_req(const struct ussd_req *r, const char *body, size_t size)
{
	FUZZ_CHECK(!r->cumulative);	/* Hubtel sends the newest input only */
	check_against_jansson(r, body, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_adapter_one(adapter, data, size, check_req, check_render);
}
