/*
 * ussd_at: Africa's Talking.  A form-encoded POST per hop (sessionId,
 * serviceCode, phoneNumber, networkCode, text: every input so far joined
 * by '*'), answered 200 text/plain "CON ..." or "END ...".
 */
#include "ussd/ussd.h"
#include "base/input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_TEXT_MAX 1000

struct at_fields {
	char *f[5];
	int bad;		/* a field appeared twice */
};

static const char *const at_names[5] = { "sessionId", "phoneNumber", "text", "serviceCode", "networkCode" };

/* Checked at the boundary (base/input), in this order; the session id's
 * form and the phone number's meaning are the engine's. */
static const struct input_field at_checks[] = {
	{ "sessionId", INPUT_TEXT, 64, true },
	{ "phoneNumber", INPUT_TEXT, 32, true },
	{ "text", INPUT_TEXT, AT_TEXT_MAX, true },
	{ "serviceCode", INPUT_TEXT, 64, false },
	{ "networkCode", INPUT_TEXT, 32, false },
	{ NULL },
};

static const char *at_get(const void *src, const char *name, size_t *len)
{
	const struct at_fields *a = src;

	for (int i = 0; i < 5; i++) {
		if (!strcmp(name, at_names[i])) {
			*len = a->f[i] ? strlen(a->f[i]) : 0;
			return a->f[i];
		}
	}
	return NULL;
}

static void at_field(const char *key, const char *val, void *arg)
{
	struct at_fields *a = arg;

	for (int i = 0; i < 5; i++) {
		if (strcmp(key, at_names[i]))
			continue;
		if (a->f[i])
			a->bad = 1;
		else
			a->f[i] = strdup(val);
	}
}

static int at_parse(const char *body, size_t len, struct ussd_req *out, char *err, size_t errlen)
{
	struct at_fields a = { { NULL }, 0 };
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (form_parse(body, len, at_field, &a) < 0) {
		snprintf(err, errlen, "malformed form body");
		goto done;
	}
	if (a.bad) {
		snprintf(err, errlen, "a field is repeated");
		goto done;
	}
	/* missing ones first: a request without them is no hop at all */
	for (int i = 0; i < 3; i++) {
		if (!a.f[i]) {
			snprintf(err, errlen, "missing %s", at_names[i]);
			goto done;
		}
	}
	if (input_check(at_checks, at_get, &a, err, errlen) < 0)
		goto done;
	if (!ussd_session_id_ok(a.f[0])) {
		snprintf(err, errlen, "bad sessionId");
		goto done;
	}
	if (!a.f[1][0]) {
		snprintf(err, errlen, "bad phoneNumber");
		goto done;
	}
	out->kind = USSD_CONTINUE;	/* new or not is decided from our state */
	out->session_id = a.f[0];
	out->phone = a.f[1];
	out->text = a.f[2];
	out->service_code = a.f[3] ? a.f[3] : strdup("");
	out->network = a.f[4] ? a.f[4] : strdup("");
	out->cumulative = true;
	out->hop_key = strdup(out->text);
	memset(&a, 0, sizeof(a));
	rc = 0;
done:
	for (int i = 0; i < 5; i++)
		free(a.f[i]);
	return rc;
}

static void at_render(const struct ussd_req *req, const struct ussd_reply *rep, struct buf *out,
		      const char **content_type)
{
	(void)req;
	buf_puts(out, rep->end ? "END " : "CON ");
	buf_puts(out, rep->text);
	*content_type = "text/plain";
}

const struct ussd_adapter ussd_adapter_at = {
	.name = "africastalking",
	.path = "/ussd/africastalking",
	.parse = at_parse,
	.render = at_render,
};
