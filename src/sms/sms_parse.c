/*
 * sms_parse: the pure readers of SMS callbacks and commands (sms_parse.h).
 */
#include "sms/sms_parse.h"
#include "base/form.h"
#include "base/input.h"
#include "base/phone.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parameters ---- */

static void param_add(const char *key, const char *val, size_t vlen, void *arg)
{
	struct sms_params *p = arg;

	if (p->n < SMS_PARAMS_MAX && !sms_param(p, key)) {
		p->key[p->n] = xstrdup(key);
		p->val[p->n] = xmalloc(vlen + 1);
		memcpy(p->val[p->n], val, vlen + 1);
		p->len[p->n++] = vlen;
	}
}

int sms_params_parse(struct sms_params *p, const char *query, size_t qlen, const char *body, size_t blen)
{
	memset(p, 0, sizeof(*p));
	if (form_parse_bytes(query, qlen, param_add, p) < 0 || form_parse_bytes(body, blen, param_add, p) < 0) {
		sms_params_free(p);
		return -1;
	}
	return 0;
}

const char *sms_param(const struct sms_params *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->key[i], key))
			return p->val[i];
	return NULL;
}

const char *sms_param_get(const void *src, const char *key, size_t *len)
{
	const struct sms_params *p = src;

	for (size_t i = 0; i < p->n; i++) {
		if (!strcmp(p->key[i], key)) {
			*len = p->len[i];
			return p->val[i];
		}
	}
	return NULL;
}

void sms_params_free(struct sms_params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->key[i]);
		free(p->val[i]);
	}
	memset(p, 0, sizeof(*p));
}

/* ---- delivery reports ---- */

static const struct input_field at_dlr_fields[] = {
	{ "id", INPUT_TOKEN, 128, true },	/* notifications.provider_message_id */
	{ "status", INPUT_TOKEN, 32, true },	/* delivery_status (32) */
	{ "failureReason", INPUT_TEXT, 200, false },
	{ NULL },
};

int sms_dlr_at(const struct sms_params *p, struct sms_dlr *out, char *why, size_t whylen)
{
	const char *status;

	memset(out, 0, sizeof(*out));
	if (input_check(at_dlr_fields, sms_param_get, p, why, whylen) < 0)
		return -1;
	out->id = sms_param(p, "id");
	out->raw = status = sms_param(p, "status");
	out->state = "";
	if (!strcasecmp(status, "Success"))
		out->state = "delivered";
	else if (!strcasecmp(status, "Failed") || !strcasecmp(status, "Rejected") || !strcasecmp(status, "Expired"))
		out->state = "undeliverable";
	out->reason = sms_param(p, "failureReason");
	if (out->reason && !*out->reason)
		out->reason = NULL;
	return 0;
}

static const struct input_field kannel_dlr_fields[] = {
	{ "id", INPUT_DIGITS, 19, true },	/* our notifications.id, put in the dlr-url */
	{ "status", INPUT_DIGITS, 5, true },	/* Kannel's %d */
	{ NULL },
};

int sms_dlr_kannel(const struct sms_params *p, struct sms_dlr *out, char *why, size_t whylen)
{
	long long n, type;

	memset(out, 0, sizeof(*out));
	if (input_check(kannel_dlr_fields, sms_param_get, p, why, whylen) < 0)
		return -1;
	if (util_parse_ll(sms_param(p, "id"), 1, INT64_MAX, &n) < 0 ||
	    util_parse_ll(sms_param(p, "status"), 0, 1 << 16, &type) < 0) {
		snprintf(why, whylen, "id or status out of range");
		return -1;
	}
	out->id = sms_param(p, "id");
	out->state = "";
	/* Kannel's report types: 1 delivered to the phone, 2 not delivered,
	 * 4 buffered at the SMSC, 8 accepted by the SMSC, 16 rejected by it */
	if (type & 1) {
		out->state = "delivered";
	} else if (type & (2 | 16)) {
		out->state = "undeliverable";
		out->reason = type & 16 ? "rejected by the SMSC" : "not delivered to the phone";
	}
	snprintf(out->rawbuf, sizeof(out->rawbuf), "kannel:%lld", type);
	out->raw = out->rawbuf;
	return 0;
}

/* ---- inbound ---- */

static const struct input_field in_fields[] = {
	{ "from", INPUT_PHONE, 16, true },	/* phone_normalise has the last word */
	{ "id", INPUT_TOKEN, 128, false },	/* sms_inbound.provider_message_id */
	{ "charset", INPUT_TOKEN, 32, false },
	{ NULL },
};

/* sms_inbound.text_masked holds 1000 characters; a longer text is no command */
#define IN_TEXT_MAX 1000

enum sms_in_result sms_in_read(const struct sms_params *p, const char *country_code, struct sms_in *out, char *why,
			       size_t whylen)
{
	size_t tlen = 0;
	const char *text, *bad, *cwhy = NULL;

	memset(out, 0, sizeof(*out));
	if (!sms_param(p, "from") || !(text = sms_param_get(p, "text", &tlen))) {
		snprintf(why, whylen, "need from and text");
		return SMS_IN_MISSING;
	}
	if (input_check(in_fields, sms_param_get, p, why, whylen) < 0)
		return SMS_IN_BAD;
	if (phone_normalise(sms_param(p, "from"), country_code, out->phone, sizeof(out->phone)) < 0) {
		snprintf(why, whylen, "from is not a phone number");
		return SMS_IN_BAD;
	}
	/* Kannel names the text's charset when asked to (charset=%C) */
	if (!(out->text = input_to_utf8(sms_param(p, "charset"), text, tlen, &cwhy))) {
		snprintf(why, whylen, "text %s", cwhy);
		return SMS_IN_BAD;
	}
	if ((bad = input_bad(INPUT_TEXT, out->text, strlen(out->text), IN_TEXT_MAX))) {
		snprintf(why, whylen, "text %s", bad);
		sms_in_clear(out);
		return SMS_IN_BAD;
	}
	snprintf(out->id, sizeof(out->id), "%s", sms_param(p, "id") ? sms_param(p, "id") : "");
	return SMS_IN_OK;
}

void sms_in_clear(struct sms_in *in)
{
	free(in->text);
	in->text = NULL;
}

/* ---- command words ---- */

#define SPACES " \t\r\n"

/* One word at p (after spaces): its offset and length. */
static const char *next_word(const char *p, size_t *n)
{
	p += strspn(p, SPACES);
	*n = strcspn(p, SPACES);
	return p;
}

static bool is_pin(const char *w, size_t n)
{
	return n == 4 && strspn(w, "0123456789") >= 4;
}

void sms_words_split(const char *text, struct sms_words *out)
{
	const char *w[3], *p = text, *pin = NULL;
	size_t n[3];

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 3; i++) {
		w[i] = next_word(p, &n[i]);
		p = w[i] + n[i];
	}
	if (n[0] < sizeof(out->word))
		memcpy(out->word, w[0], n[0]);
	if (is_pin(w[1], n[1])) {
		pin = w[1];
	} else {
		if (n[1] < sizeof(out->arg))
			memcpy(out->arg, w[1], n[1]);
		if (is_pin(w[2], n[2]))
			pin = w[2];
	}
	out->masked = xstrdup(text);
	if (pin) {
		memcpy(out->pin, pin, 4);
		/* the PIN where it stands, not the first such digits (they may
		 * be part of a word before it) */
		memcpy(out->masked + (pin - text), "****", 4);
	}
}

void sms_words_clear(struct sms_words *w)
{
	free(w->masked);
	w->masked = NULL;
}
