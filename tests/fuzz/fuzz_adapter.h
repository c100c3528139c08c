/*
 * fuzz_adapter.h: the driver both aggregator targets share.  Each target
 * supplies its own request and render checks; this runs parse, checks the
 * error or the request, parses the same body again (no hidden state may
 * change the answer), and renders a few replies.
 */
#ifndef CHAMAD_FUZZ_ADAPTER_H
#define CHAMAD_FUZZ_ADAPTER_H

#include "fuzz_common.h"
#include "ussd/ussd.h"
#include "base/util.h"

/* Per-target checks of a request parsed from body (size bytes). */
typedef void (*fuzz_req_check)(const struct ussd_req *r, const char *body, size_t size);
/* Per-target check of rendering text as a CON (end false) or END reply. */
typedef void (*fuzz_render_check)(const struct ussd_req *r, bool end, const char *text);

static inline void fuzz_check_session_id(const char *s)
{
	size_t n = strlen(s);

	FUZZ_CHECKF(n >= 1 && n <= 64, "session_id of %zu bytes", n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		FUZZ_CHECKF(c > 0x20 && c < 0x7f, "session_id byte 0x%02x at %zu", c, i);
	}
}

/* What every adapter promises of a request it accepted. */
static inline void fuzz_check_req_common(const struct ussd_req *r)
{
	FUZZ_CHECK(r->session_id != NULL);
	FUZZ_CHECK(r->phone != NULL);
	FUZZ_CHECK(r->text != NULL);
	FUZZ_CHECK(r->hop_key != NULL);
	FUZZ_CHECK(r->kind == USSD_BEGIN || r->kind == USSD_CONTINUE || r->kind == USSD_RELEASE);
	fuzz_check_session_id(r->session_id);
}

static inline void fuzz_check_same(const struct ussd_req *a, const struct ussd_req *b)
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

static inline int fuzz_adapter_one(const struct ussd_adapter *adapter, const uint8_t *data, size_t size,
				   fuzz_req_check check_req, fuzz_render_check check_render)
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
	fuzz_check_req_common(&req);
	check_req(&req, body, size);

	memset(&again, 0, sizeof again);
	rc2 = adapter->parse(body, size, &again, err, errlen);
	FUZZ_CHECKF(rc2 == 0, "second parse of the same body returned %d", rc2);
	fuzz_check_same(&req, &again);
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

#endif
