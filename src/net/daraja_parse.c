/*
 * daraja_parse: what Daraja posts to us (see daraja.h): the STK callback,
 * the C2B validation and confirmation, the asynchronous Result and its
 * AccountBalance text.  Nothing here trusts the sender: every input is
 * any bytes (tests/fuzz: fuzz_mpesa_cb.c, fuzz_result.c).
 */
#include "base/input.h"
#include "base/log.h"
#include "base/util.h"
#include "net/daraja.h"
#include "net/daraja_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- numbers as text ---- */

/* Length of the JSON number at p (RFC 8259 grammar), 0 if none. */
static size_t number_len(const char *p, const char *end)
{
	const char *s = p;

	if (s < end && *s == '-')
		s++;
	if (s < end && *s == '0')
		s++;
	else if (s < end && *s >= '1' && *s <= '9')
		while (s < end && *s >= '0' && *s <= '9')
			s++;
	else
		return 0;
	if (s < end && *s == '.') {
		const char *f = ++s;

		while (s < end && *s >= '0' && *s <= '9')
			s++;
		if (s == f)
			return 0;
	}
	if (s < end && (*s == 'e' || *s == 'E')) {
		const char *x;

		s++;
		if (s < end && (*s == '+' || *s == '-'))
			s++;
		x = s;
		while (s < end && *s >= '0' && *s <= '9')
			s++;
		if (s == x)
			return 0;
	}
	return (size_t)(s - p);
}

json_t *daraja_json_numbers_as_text(const char *body, size_t len, size_t flags)
{
	struct buf b;
	const char *p = body, *end = body + len;
	json_t *doc;

	/* each number gains two quotes: at most 3 bytes for 1 */
	buf_init(&b, 3 * len + 16);
	while (p < end) {
		if (*p == '"') {
			const char *s = p++;

			/* a string, copied as it is (escapes included) */
			while (p < end && *p != '"')
				p += (*p == '\\' && p + 1 < end) ? 2 : 1;
			if (p < end)
				p++;
			buf_append(&b, s, (size_t)(p - s));
		} else if (*p == '-' || (*p >= '0' && *p <= '9')) {
			size_t n = number_len(p, end);

			if (!n) {
				buf_free(&b);
				return NULL;	/* not a JSON number: not JSON */
			}
			buf_append(&b, "\"", 1);
			buf_append(&b, p, n);
			buf_append(&b, "\"", 1);
			p += n;
		} else {
			buf_append(&b, p, 1);
			p++;
		}
	}
	doc = json_loadb(b.data ? b.data : "", b.len, flags, NULL);
	buf_free(&b);
	return doc;
}

bool daraja_ll(const char *s, long long *out)
{
	char *e;
	long long v;

	*out = -1;
	if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
		return false;
	errno = 0;
	v = strtoll(s, &e, 10);
	if (errno || *e)
		return false;
	*out = v;
	return true;
}

/* Shillings and cents from "123", "123.4", "123.45" (trailing zeros past
 * two decimals allowed: "123.4500"); digits at most 12 (a trillion
 * shillings is no M-Pesa amount).  whole: refuse any cents. */
static long long kes_parse(const char *s, bool whole)
{
	long long kes = 0, cents = 0;
	int digits = 0, dec = 0;

	if (!s || !*s)
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (++digits > 12)
			return -1;
		kes = kes * 10 + (*s - '0');
	}
	if (!digits)
		return -1;
	if (*s == '.') {
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return -1;
		for (; *s >= '0' && *s <= '9'; s++, dec++) {
			if (dec < 2)
				cents = cents * 10 + (*s - '0');
			else if (*s != '0')
				return -1;	/* a fraction of a cent */
		}
		if (dec == 1)
			cents *= 10;
	}
	if (*s)
		return -1;
	if (whole && cents)
		return -1;	/* cents at the M-Pesa boundary: refuse */
	return kes * 100 + cents;
}

long long daraja_kes_whole(const char *s)
{
	return kes_parse(s, true);
}

long long daraja_kes_exact(const char *s)
{
	return kes_parse(s, false);
}

/* ---- what Daraja posts to us ---- */

/* The Amount item's value as cents, read from the JSON text: "100.00" or
 * "100" -> 10000; -1 if absent or not whole shillings. */
static long long amount_from_text(const char *body)
{
	const char *p = strstr(body, "\"Amount\""), *v;
	long long kes = 0;
	int digits = 0;

	if (!p || !(v = strstr(p, "\"Value\"")))
		return -1;
	v += 7;
	v += strspn(v, " \t\r\n:");
	for (; *v >= '0' && *v <= '9' && digits < 10; v++, digits++)
		kes = kes * 10 + (*v - '0');
	if (!digits)
		return -1;
	if (*v == '.')
		for (v++; *v >= '0' && *v <= '9'; v++)
			if (*v != '0')
				return -1;	/* cents at the M-Pesa boundary: refuse */
	return kes * 100;
}

int daraja_stk_callback_parse(const char *body, size_t len, struct daraja_stk_callback *out)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	json_t *cb = json_object_get(json_object_get(doc, "Body"), "stkCallback");
	json_t *items, *it;
	const char *checkout = json_string_value(json_object_get(cb, "CheckoutRequestID"));
	const char *desc;
	size_t i;

	memset(out, 0, sizeof(*out));
	/* an id of ours is a token: "" or a space is none we ever made */
	if (!json_is_object(cb) || !checkout ||
	    input_bad(INPUT_TOKEN, checkout, json_string_length(json_object_get(cb, "CheckoutRequestID")), 64) ||
	    !json_is_integer(json_object_get(cb, "ResultCode"))) {
		json_decref(doc);
		return -1;
	}
	snprintf(out->checkout, sizeof(out->checkout), "%s", checkout);
	out->result_code = json_integer_value(json_object_get(cb, "ResultCode"));
	desc = json_string_value(json_object_get(cb, "ResultDesc"));
	snprintf(out->desc, sizeof(out->desc), "%s", desc ? desc : "");
	if (out->result_code == 0) {
		/* the text is NUL-terminated: json_loadb accepted len bytes of it */
		char *text = xstrndup(body, len);

		out->amount_cents = amount_from_text(text);
		free(text);
	} else {
		out->amount_cents = -1;
	}
	items = json_object_get(json_object_get(cb, "CallbackMetadata"), "Item");
	json_array_foreach(items, i, it) {
		const char *name = json_string_value(json_object_get(it, "Name"));
		json_t *v = json_object_get(it, "Value");

		if (!name)
			continue;
		if (!strcmp(name, "MpesaReceiptNumber") && json_is_string(v))
			snprintf(out->receipt, sizeof(out->receipt), "%s", json_string_value(v));
		else if (!strcmp(name, "PhoneNumber") && json_is_integer(v) && json_integer_value(v) > 0)	/* exact */
			snprintf(out->phone, sizeof(out->phone), "+%lld", (long long)json_integer_value(v));
	}
	json_decref(doc);
	return 0;
}

static char *dup_string(json_t *doc, const char *key)
{
	const char *s = json_string_value(json_object_get(doc, key));

	return s ? xstrdup(s) : NULL;
}

void daraja_c2b_parse(const char *body, size_t len, struct daraja_c2b *out)
{
	json_t *doc = json_loadb(body, len, 0, NULL);

	out->trans_id = dup_string(doc, "TransID");
	out->bill_ref = dup_string(doc, "BillRefNumber");
	out->first_name = dup_string(doc, "FirstName");
	out->msisdn = dup_string(doc, "MSISDN");
	{
		json_t *sc = json_object_get(doc, "BusinessShortCode");
		char digits[24];

		if (json_is_integer(sc) && json_integer_value(sc) >= 0) {
			snprintf(digits, sizeof(digits), "%lld", (long long)json_integer_value(sc));
			out->shortcode = xstrdup(digits);
		} else {
			out->shortcode = dup_string(doc, "BusinessShortCode");
		}
	}
	{
		long long c = daraja_kes_whole(json_string_value(json_object_get(doc, "TransAmount")));

		out->amount_cents = c > 0 ? c : -1;
	}
	json_decref(doc);
}

void daraja_c2b_clear(struct daraja_c2b *c)
{
	free(c->trans_id);
	free(c->bill_ref);
	free(c->first_name);
	free(c->msisdn);
	free(c->shortcode);
	memset(c, 0, sizeof(*c));
}

/* ---- the asynchronous Result ---- */

/* The parameters a Result may carry, each naming one field (several names
 * may name one field: a Result that gives it twice is refused). */
enum rfield {
	RF_AMOUNT, RF_RECEIPT, RF_STATUS, RF_DEBIT, RF_CREDIT, RF_REASON, RF_COMPLETED, RF_ORIGINAL, RF_WORKING,
	RF_BALANCE, RF_COUNT
};

static const struct {
	const char *key;
	enum rfield field;
} result_keys[] = {
	{ "TransactionAmount", RF_AMOUNT },
	{ "Amount", RF_AMOUNT },
	{ "TransactionReceipt", RF_RECEIPT },
	{ "ReceiptNo", RF_RECEIPT },
	{ "TransactionStatus", RF_STATUS },
	{ "DebitPartyName", RF_DEBIT },
	{ "DebitPartyPublicName", RF_DEBIT },
	{ "CreditPartyName", RF_CREDIT },
	{ "ReceiverPartyPublicName", RF_CREDIT },
	{ "CreditPartyPublicName", RF_CREDIT },
	{ "TransactionReason", RF_REASON },
	{ "TransactionCompletedDateTime", RF_COMPLETED },
	{ "FinalisedTime", RF_COMPLETED },
	{ "TransCompletedTime", RF_COMPLETED },
	{ "OriginalTransactionID", RF_ORIGINAL },
	{ "B2CWorkingAccountAvailableFunds", RF_WORKING },
	{ "AccountBalance", RF_BALANCE },
};

static char **rfield_slot(struct daraja_result *r, enum rfield f)
{
	switch (f) {
	case RF_RECEIPT:
		return &r->receipt;
	case RF_STATUS:
		return &r->status;
	case RF_DEBIT:
		return &r->debit_party;
	case RF_CREDIT:
		return &r->credit_party;
	case RF_REASON:
		return &r->reason;
	case RF_COMPLETED:
		return &r->completed;
	case RF_ORIGINAL:
		return &r->original_transaction_id;
	case RF_BALANCE:
		return &r->account_balance;
	default:
		return NULL;
	}
}

/* A string member (a number arrives as its text); absent: NULL and ok.
 * Present but not a string (an object, an array, true, null): not ok. */
static bool member_text(json_t *o, const char *key, const char **out)
{
	json_t *v = json_object_get(o, key);

	*out = json_string_value(v);
	return !v || json_is_string(v);
}

static bool dup_member(json_t *o, const char *key, char **out)
{
	const char *s;

	if (!member_text(o, key, &s))
		return false;
	*out = s ? xstrdup(s) : NULL;
	return true;
}

/* One ResultParameter item {"Key": k, "Value": v}. */
static bool result_param(struct daraja_result *r, json_t *item, bool seen[RF_COUNT])
{
	const char *key, *value;
	json_t *v;
	size_t i;

	if (!json_is_object(item) || !member_text(item, "Key", &key) || !key)
		return false;
	v = json_object_get(item, "Value");
	/* a Value that is not a scalar is a nesting error; null: no value */
	if (v && !json_is_string(v) && !json_is_null(v))
		return false;
	value = json_string_value(v);
	for (i = 0; i < sizeof(result_keys) / sizeof(result_keys[0]); i++) {
		enum rfield f = result_keys[i].field;
		char **slot;

		if (strcmp(key, result_keys[i].key))
			continue;
		if (seen[f])
			return false;	/* said twice: it cannot be trusted to say one thing */
		seen[f] = true;
		if (!value)
			return true;
		if (f == RF_AMOUNT)
			r->amount_cents = daraja_kes_whole(value);
		else if (f == RF_WORKING)
			r->working_funds_cents = daraja_kes_exact(value);
		else if ((slot = rfield_slot(r, f)))
			*slot = xstrdup(value);
		return true;
	}
	return true;	/* a parameter we do not read */
}

int daraja_result_parse(const char *body, size_t len, struct daraja_result *out)
{
	json_t *doc, *res, *params, *list;
	const char *s;
	bool seen[RF_COUNT] = { false };
	size_t i;
	json_t *it;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->amount_cents = -1;
	out->working_funds_cents = -1;
	doc = daraja_json_numbers_as_text(body, len, JSON_REJECT_DUPLICATES);
	res = json_object_get(doc, "Result");
	if (!json_is_object(res))
		goto done;
	if (!member_text(res, "ResultCode", &s) || !daraja_ll(s, &out->result_code))
		goto done;
	if (!member_text(res, "ResultType", &s) || (s && !daraja_ll(s, &out->result_type)))
		goto done;
	if (!dup_member(res, "ResultDesc", &out->desc) ||
	    !dup_member(res, "OriginatorConversationID", &out->originator_id) ||
	    !dup_member(res, "ConversationID", &out->conversation_id) ||
	    !dup_member(res, "TransactionID", &out->transaction_id))
		goto done;
	params = json_object_get(res, "ResultParameters");
	if (params && !json_is_null(params) && !(json_is_string(params) && !*json_string_value(params))) {
		if (!json_is_object(params))
			goto done;
		list = json_object_get(params, "ResultParameter");
		/* one parameter may come as the object itself */
		if (json_is_object(list)) {
			if (!result_param(out, list, seen))
				goto done;
		} else if (json_is_array(list)) {
			json_array_foreach(list, i, it)
				if (!result_param(out, it, seen))
					goto done;
		} else if (list) {
			goto done;
		}
	}
	rc = 0;
done:
	json_decref(doc);
	if (rc < 0) {
		daraja_result_clear(out);
		out->result_code = -1;
	}
	return rc;
}

void daraja_result_clear(struct daraja_result *r)
{
	free(r->desc);
	free(r->originator_id);
	free(r->conversation_id);
	free(r->transaction_id);
	free(r->receipt);
	free(r->status);
	free(r->debit_party);
	free(r->credit_party);
	free(r->reason);
	free(r->completed);
	free(r->original_transaction_id);
	free(r->account_balance);
	memset(r, 0, sizeof(*r));
	r->amount_cents = -1;
	r->working_funds_cents = -1;
}

long long daraja_balance_cents(const char *account_balance, const char *account_name)
{
	const char *g = account_balance;
	size_t nlen;
	long long found = -1;
	bool named = false;

	if (!g || !account_name || !*account_name)
		return -1;
	nlen = strlen(account_name);
	while (*g) {
		const char *gend = strchr(g, '&');
		size_t glen = gend ? (size_t)(gend - g) : strlen(g);

		if (glen > nlen && !strncmp(g, account_name, nlen) && g[nlen] == '|') {
			/* name|currency|amount|...: the third field */
			const char *cur = g + nlen + 1, *amt, *aend;
			char text[32];

			if (named)
				return -1;	/* named twice: which one? */
			named = true;
			amt = memchr(cur, '|', glen - nlen - 1);
			amt = amt ? amt + 1 : g + glen;	/* no amount: -1 below */
			aend = memchr(amt, '|', (size_t)(g + glen - amt));
			if (!aend)
				aend = g + glen;
			if (aend > amt && (size_t)(aend - amt) < sizeof(text)) {
				memcpy(text, amt, (size_t)(aend - amt));
				text[aend - amt] = '\0';
				found = daraja_kes_exact(text);
			}
		}
		if (!gend)
			break;
		g = gend + 1;
	}
	return found;
}
