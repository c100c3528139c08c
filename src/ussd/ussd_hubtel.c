/*
 * ussd_hubtel: Hubtel Programmable Services.  JSON both ways; Message holds
 * only the newest input (the whole dial string on Initiation), so the path
 * lives in our session.  Answered {"Type": "Response"|"Release", ...}.
 */
#include "ussd/ussd.h"
#include "base/input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

static char *str_field(json_t *o, const char *key, size_t max, const char **why)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (!v) {
		*why = "missing";
		return NULL;
	}
	if (!json_is_string(v)) {
		*why = "not a string";
		return NULL;
	}
	s = json_string_value(v);
	/* jansson already refused invalid UTF-8 */
	if ((*why = input_bad(INPUT_TEXT, s, json_string_length(v), max)))
		return NULL;
	return strdup(s);
}

static int hubtel_parse(const char *body, size_t len, struct ussd_req *out, char *err, size_t errlen)
{
	static const char *const opt[] = { "ServiceCode", "Operator", "ClientState" };
	json_error_t jerr;
	json_t *root, *seq;
	const char *why = NULL, *type;
	char *optv[3] = { NULL, NULL, NULL };
	int rc = -1;

	memset(out, 0, sizeof(*out));
	/* jansson refuses invalid UTF-8 and NUL bytes in strings by itself */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "body is not a JSON object");
		goto done;
	}
	type = json_string_value(json_object_get(root, "Type"));
	if (!type) {
		snprintf(err, errlen, "missing Type");
		goto done;
	}
	if (!strcasecmp(type, "Initiation"))
		out->kind = USSD_BEGIN;
	else if (!strcasecmp(type, "Response"))
		out->kind = USSD_CONTINUE;
	else if (!strcasecmp(type, "Release") || !strcasecmp(type, "Timeout"))
		out->kind = USSD_RELEASE;
	else {
		snprintf(err, errlen, "unknown Type");
		goto done;
	}
	if (!(out->session_id = str_field(root, "SessionId", 64, &why)) || !ussd_session_id_ok(out->session_id)) {
		snprintf(err, errlen, "bad SessionId%s%s", why ? ": " : "", why ? why : "");
		goto done;
	}
	if (!(out->phone = str_field(root, "Mobile", 32, &why)) || !out->phone[0]) {
		snprintf(err, errlen, "bad Mobile%s%s", why ? ": " : "", why ? why : "");
		goto done;
	}
	if (!(out->text = str_field(root, "Message", 1000, &why))) {
		if (out->kind != USSD_RELEASE) {
			snprintf(err, errlen, "bad Message: %s", why);
			goto done;
		}
		out->text = strdup("");
	}
	for (int i = 0; i < 3; i++) {
		if (json_object_get(root, opt[i]) && json_is_null(json_object_get(root, opt[i])))
			continue;
		if (json_object_get(root, opt[i]) && !(optv[i] = str_field(root, opt[i], 256, &why))) {
			snprintf(err, errlen, "bad %s: %s", opt[i], why);
			goto done;
		}
	}
	seq = json_object_get(root, "Sequence");
	if (seq && !json_is_null(seq) && !json_is_integer(seq)) {
		snprintf(err, errlen, "bad Sequence: not an integer");
		goto done;
	}
	/* A resent hop repeats its Sequence; without one, the message is the key. */
	if (json_is_integer(seq))
		out->hop_key = xasprintf("%lld", (long long)json_integer_value(seq));
	else
		out->hop_key = strdup(out->text);
	out->service_code = optv[0] ? optv[0] : strdup("");
	out->network = optv[1] ? optv[1] : strdup("");
	out->client_state = optv[2];
	optv[0] = optv[1] = optv[2] = NULL;
	out->cumulative = false;
	rc = 0;
done:
	for (int i = 0; i < 3; i++)
		free(optv[i]);
	json_decref(root);
	return rc;
}

static void hubtel_render(const struct ussd_req *req, const struct ussd_reply *rep, struct buf *out,
			  const char **content_type)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "SessionId", req->session_id ? req->session_id : "",
			      "Type", rep->end ? "Release" : "Response", "Message", rep->text, "Label", "ChamaSmart",
			      "DataType", rep->end ? "display" : "input", "FieldType", "text");
	char *s;

	if (req->client_state)
		json_object_set_new(o, "ClientState", json_string(req->client_state));
	s = json_dumps(o, JSON_COMPACT);
	buf_puts(out, s ? s : "{}");
	free(s);
	json_decref(o);
	*content_type = "application/json";
}

const struct ussd_adapter ussd_adapter_hubtel = {
	.name = "hubtel",
	.path = "/ussd/hubtel",
	.parse = hubtel_parse,
	.render = hubtel_render,
};
