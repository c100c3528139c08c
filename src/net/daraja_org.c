/*
 * daraja_org: the initiator APIs (B2C, Transaction Status, Account
 * Balance, Reversal) and the Pull Transactions statement (see daraja.h).
 *
 * The initiator APIs answer at once only whether Daraja queued the
 * request; the outcome is a Result posted later.  What the answer means
 * for money: ACCEPTED and REFUSED are Daraja's own words (queued, not
 * queued); anything else (no answer, a gateway's 5xx with no errorCode, a
 * 200 we cannot read) is UNANSWERED, because the request may have been
 * queued: a payout must then be asked about, never sent again blindly.
 */
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "net/daraja.h"
#include "net/daraja_int.h"
#include "net/httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* B2C: Daraja's current version (v1 is the older one) */
#define B2C_PATH "/mpesa/b2c/v3/paymentrequest"

static const char *digits_of(const char *phone)
{
	return phone[0] == '+' ? phone + 1 : phone;
}

static const char *b2c_shortcode(const struct config *cfg)
{
	return *cfg->mpesa_b2c_shortcode ? cfg->mpesa_b2c_shortcode : cfg->mpesa_shortcode;
}

/* A string member of doc (numbers come as their text), or NULL. */
static const char *text_of(json_t *doc, const char *key)
{
	return json_string_value(json_object_get(doc, key));
}

/* ---- the synchronous answer of the initiator APIs ---- */

void daraja_ack_finish(struct call *c, const struct httpc_response *r, const char *unsent)
{
	json_t *doc = r->status == HTTPC_OK ? daraja_json_numbers_as_text(r->body, r->body_len, 0) : NULL;
	const char *code = text_of(doc, "ResponseCode");
	const char *ecode = text_of(doc, "errorCode");
	const char *emsg = text_of(doc, "errorMessage");
	const char *rdesc = text_of(doc, "ResponseDescription");
	char detail[300];
	struct daraja_ack a = { DARAJA_UNANSWERED, NULL, NULL, NULL, detail, r->code };

	if (unsent) {
		a.outcome = DARAJA_UNSENT;
		snprintf(detail, sizeof(detail), "%s", unsent);
	} else if (r->status == HTTPC_CANCELLED) {
		a.outcome = DARAJA_CANCELLED;
		snprintf(detail, sizeof(detail), "cancelled");
	} else if (r->status != HTTPC_OK) {
		snprintf(detail, sizeof(detail), "%s", r->error ? r->error : "no answer");
	} else if (r->code == 200 && code && !strcmp(code, "0")) {
		a.outcome = DARAJA_ACCEPTED;
		a.conversation_id = text_of(doc, "ConversationID");
		a.originator_id = text_of(doc, "OriginatorConversationID");
		a.detail = NULL;
	} else if (ecode || (code && strcmp(code, "0"))) {
		/* Daraja's own refusal: the request was not queued */
		a.outcome = DARAJA_REFUSED;
		a.error_code = ecode ? ecode : code;
		snprintf(detail, sizeof(detail), "HTTP %ld %s %s", r->code, a.error_code,
			 emsg ? emsg : rdesc ? rdesc : "");
	} else {
		snprintf(detail, sizeof(detail), "HTTP %ld without a Daraja answer: %.120s", r->code, r->body);
	}
	c->cb.ack(&a, c->arg);
	json_decref(doc);
}

static void set_opt(json_t *body, const char *key, const char *value)
{
	json_object_set_new(body, key, json_string(value ? value : ""));
}

/* Initiator, SecurityCredential and CommandID: the fields every
 * initiator API shares (the name of the initiator field varies). */
static json_t *initiator_body(const struct config *cfg, const char *initiator_key, const char *command)
{
	return json_pack("{s:s, s:s, s:s}", initiator_key, cfg->mpesa_initiator_name, "SecurityCredential",
			 cfg->mpesa_security_credential, "CommandID", command);
}

static void ack_call(struct daraja *d, const char *path, json_t *body, bool once, daraja_ack_cb cb, void *arg)
{
	struct call *c = daraja_call_new(d, CALL_ACK, path, body, arg);

	c->cb.ack = cb;
	c->once = once;
	daraja_call_start(c);
}

void daraja_b2c(struct daraja *d, const struct daraja_b2c_req *r, daraja_ack_cb cb, void *arg)
{
	const struct config *cfg = d->cfg;
	json_t *body = initiator_body(cfg, "InitiatorName", cfg->mpesa_b2c_command_id);

	/* a payout is whole shillings (the caller's invariant) */
	xassert(r->amount_cents > 0 && r->amount_cents % 100 == 0);
	set_opt(body, "OriginatorConversationID", r->originator_id);
	json_object_set_new(body, "Amount", json_integer((json_int_t)(r->amount_cents / 100)));
	set_opt(body, "PartyA", b2c_shortcode(cfg));
	set_opt(body, "PartyB", digits_of(r->phone));
	set_opt(body, "Remarks", r->remarks && *r->remarks ? r->remarks : "Payout");
	set_opt(body, "QueueTimeOutURL", r->timeout_url);
	set_opt(body, "ResultURL", r->result_url);
	set_opt(body, "Occasion", r->occasion);
	if (r->amount_cents / 100 > cfg->mpesa_max_payout) {
		/* a second lock after the caller's checks: never sent */
		struct call *c = daraja_call_new(d, CALL_ACK, B2C_PATH, body, arg);

		log_warn("daraja: B2C %s of %lld cents is over [mpesa] max_payout: not sent", r->originator_id,
			 r->amount_cents);
		c->cb.ack = cb;
		daraja_call_unsent_later(c, "over max_payout");
		return;
	}
	ack_call(d, B2C_PATH, body, true, cb, arg);
}

void daraja_txn_status(struct daraja *d, const struct daraja_status_req *r, daraja_ack_cb cb, void *arg)
{
	const struct config *cfg = d->cfg;
	json_t *body = initiator_body(cfg, "Initiator", "TransactionStatusQuery");
	bool by_receipt = r->transaction_id && *r->transaction_id;

	xassert(by_receipt || (r->original_originator_id && *r->original_originator_id));
	set_opt(body, "TransactionID", by_receipt ? r->transaction_id : "");
	/* the field names what is asked about when no receipt is known */
	set_opt(body, "OriginatorConversationID", by_receipt ? r->originator_id : r->original_originator_id);
	set_opt(body, "PartyA", b2c_shortcode(cfg));
	set_opt(body, "IdentifierType", "4");
	set_opt(body, "ResultURL", r->result_url);
	set_opt(body, "QueueTimeOutURL", r->timeout_url);
	set_opt(body, "Remarks", r->remarks && *r->remarks ? r->remarks : "Status");
	set_opt(body, "Occasion", r->occasion);
	ack_call(d, "/mpesa/transactionstatus/v1/query", body, false, cb, arg);
}

void daraja_account_balance(struct daraja *d, const char *originator_id, const char *result_url,
			    const char *timeout_url, daraja_ack_cb cb, void *arg)
{
	const struct config *cfg = d->cfg;
	json_t *body = initiator_body(cfg, "Initiator", "AccountBalance");

	set_opt(body, "OriginatorConversationID", originator_id);
	set_opt(body, "PartyA", b2c_shortcode(cfg));
	set_opt(body, "IdentifierType", "4");
	set_opt(body, "Remarks", "Balance");
	set_opt(body, "QueueTimeOutURL", timeout_url);
	set_opt(body, "ResultURL", result_url);
	ack_call(d, "/mpesa/accountbalance/v1/query", body, false, cb, arg);
}

void daraja_reversal(struct daraja *d, const struct daraja_reversal_req *r, daraja_ack_cb cb, void *arg)
{
	const struct config *cfg = d->cfg;
	json_t *body = initiator_body(cfg, "Initiator", "TransactionReversal");

	xassert(r->amount_cents > 0 && r->amount_cents % 100 == 0);
	set_opt(body, "OriginatorConversationID", r->originator_id);
	set_opt(body, "TransactionID", r->transaction_id);
	json_object_set_new(body, "Amount", json_integer((json_int_t)(r->amount_cents / 100)));
	set_opt(body, "ReceiverParty", r->receiver_party ? r->receiver_party : cfg->mpesa_shortcode);
	set_opt(body, "RecieverIdentifierType", "11");	/* sic: Daraja's spelling */
	set_opt(body, "ResultURL", r->result_url);
	set_opt(body, "QueueTimeOutURL", r->timeout_url);
	set_opt(body, "Remarks", r->remarks && *r->remarks ? r->remarks : "Reversal");
	set_opt(body, "Occasion", r->occasion);
	ack_call(d, "/mpesa/reversal/v1/request", body, true, cb, arg);
}

/* ---- Pull Transactions ---- */

static const char *or_empty(json_t *o, const char *key)
{
	const char *s = text_of(o, key);

	return s ? s : "";
}

/* Response is [[{...}, ...]] (Daraja's) or [{...}, ...]: every object found
 * at either depth, in order. */
static size_t pull_collect(json_t *resp, struct daraja_pull_txn *out, size_t max)
{
	size_t n = 0, i, j;
	json_t *it, *in;

	json_array_foreach(resp, i, it) {
		json_t *one[1] = { it };
		json_t *list = json_is_array(it) ? it : NULL;
		size_t count = list ? json_array_size(list) : 1;

		for (j = 0; j < count && n < max; j++) {
			in = list ? json_array_get(list, j) : one[0];
			if (!json_is_object(in) || !text_of(in, "transactionId") || !*text_of(in, "transactionId"))
				continue;
			out[n].transaction_id = text_of(in, "transactionId");
			out[n].trx_date = or_empty(in, "trxDate");
			out[n].msisdn = or_empty(in, "msisdn");
			out[n].transaction_type = or_empty(in, "transactiontype");
			out[n].bill_ref = or_empty(in, "billreference");
			out[n].amount_cents = daraja_kes_exact(text_of(in, "amount"));
			n++;
		}
	}
	return n;
}

static size_t pull_count(json_t *resp)
{
	size_t n = 0, i;
	json_t *it;

	json_array_foreach(resp, i, it)
		n += json_is_array(it) ? json_array_size(it) : 1;
	return n;
}

void daraja_pull_finish(struct call *c, const struct httpc_response *r, const char *unsent)
{
	json_t *doc = r->status == HTTPC_OK ? daraja_json_numbers_as_text(r->body, r->body_len, 0) : NULL;
	const char *code = text_of(doc, "ResponseCode");
	const char *ecode = text_of(doc, "errorCode");
	const char *msg = text_of(doc, "ResponseMessage");
	json_t *resp = json_object_get(doc, "Response");
	char detail[300];
	struct daraja_pull_result res = { DARAJA_UNANSWERED, NULL, 0, NULL, detail, r->code };
	struct daraja_pull_txn *txns = NULL;

	if (unsent) {
		res.outcome = DARAJA_UNSENT;
		snprintf(detail, sizeof(detail), "%s", unsent);
	} else if (r->status == HTTPC_CANCELLED) {
		res.outcome = DARAJA_CANCELLED;
		snprintf(detail, sizeof(detail), "cancelled");
	} else if (r->status != HTTPC_OK) {
		snprintf(detail, sizeof(detail), "%s", r->error ? r->error : "no answer");
	} else if (r->code == 200 && code && !strcmp(code, "1000") && (!resp || json_is_array(resp))) {
		size_t max = pull_count(resp);

		res.outcome = DARAJA_ACCEPTED;
		txns = xcalloc(max ? max : 1, sizeof(*txns));
		res.n = pull_collect(resp, txns, max);
		res.txns = txns;
		res.detail = NULL;
	} else {
		res.outcome = DARAJA_REFUSED;
		res.error_code = ecode ? ecode : code;
		snprintf(detail, sizeof(detail), "HTTP %ld %s %s", r->code, res.error_code ? res.error_code : "",
			 msg ? msg : or_empty(doc, "errorMessage"));
	}
	c->cb.pull(&res, c->arg);
	free(txns);
	json_decref(doc);
}

void daraja_pull_transactions(struct daraja *d, const char *start, const char *end, long offset, daraja_pull_cb cb,
			      void *arg)
{
	char off[24];
	struct call *c;

	snprintf(off, sizeof(off), "%ld", offset);
	c = daraja_call_new(d, CALL_PULL, "/pulltransactions/v1/query",
			    json_pack("{s:s, s:s, s:s, s:s}", "ShortCode", d->cfg->mpesa_shortcode, "StartDate", start,
				      "EndDate", end, "OffSetValue", off),
			    arg);
	c->cb.pull = cb;
	daraja_call_start(c);
}
