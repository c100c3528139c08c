/*
 * daraja: the Safaricom Daraja API client on the loop.
 *
 * The wire side of M-Pesa and nothing else: the OAuth token (cached until
 * a minute before it expires, one fetch shared by every call waiting for
 * it), the STK push and its status query with their Password/Timestamp
 * (daraja.c), the initiator APIs: B2C, Transaction Status, Account
 * Balance, Reversal, and the Pull Transactions statement (daraja_org.c),
 * and the formats of what Daraja posts back (the STK callback, the paybill
 * C2B validation and confirmation, the asynchronous Result) and of the
 * answers it expects (daraja_parse.c).  It knows nothing of chamas,
 * members or the database: src/mpesa/ decides what a push or a callback
 * means.
 *
 * Amounts cross the boundary as whole shillings: a push takes cents that
 * must be whole shillings, and an amount Daraja reports is read from the
 * JSON text as digits (never through a double) into cents, -1 when it is
 * absent or not whole shillings.  Phone numbers are "+2547..." here and
 * digits on the wire.
 *
 * Contract (httpc's): the callback of every call (daraja_stk_push,
 * daraja_stk_query, daraja_b2c, daraja_txn_status, daraja_account_balance,
 * daraja_reversal, daraja_pull_transactions) is called exactly once, never
 * from inside the call itself, including when the client is freed
 * (DARAJA_CANCELLED, or DARAJA_UNSENT for a call that was still waiting
 * for its token).  The result is borrowed for the duration of the
 * callback.  A call is sent at most once, plus once more only after Daraja
 * refused the token (404.001.03: the request itself was not processed);
 * one whose answer is lost is DARAJA_UNANSWERED and never sent again here:
 * whether it was processed is the caller's question (the Transaction
 * Status query).
 */
#ifndef CHAMAD_DARAJA_H
#define CHAMAD_DARAJA_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct config;
struct daraja;

/* cfg is borrowed and read at each call ([mpesa] base_url, consumer_key,
 * consumer_secret, shortcode, passkey, transaction_type, b2c_shortcode,
 * initiator_name, security_credential, b2c_command_id, max_payout;
 * timeout_ms once). */
struct daraja *daraja_new(struct event_base *base, const struct config *cfg);
/* Ends every call in flight (see the contract), then frees.  Must not be
 * called from a daraja callback. */
void daraja_free(struct daraja *d);

enum daraja_outcome {
	DARAJA_ACCEPTED,	/* push, initiator APIs: accepted (ResponseCode 0); STK query: decided
				 * (a ResultCode); pull: the statement (ResponseCode 1000) */
	DARAJA_REFUSED,		/* an HTTP answer that is not that: Daraja said no, or not yet */
	DARAJA_UNSENT,		/* no OAuth token: the request never reached Daraja */
	DARAJA_UNANSWERED,	/* no HTTP answer (timeout, reset): it may have been processed */
	DARAJA_CANCELLED,	/* the client is being freed */
};

/* ---- STK push (M-Pesa Express) ---- */

struct daraja_push {
	const char *phone;		/* "+2547..." or digits: PartyA and PhoneNumber */
	long long amount_cents;		/* whole shillings (an invariant: asserted) */
	const char *account_ref;	/* AccountReference, at most 12 characters */
	const char *desc;		/* TransactionDesc */
	const char *callback_url;	/* CallBackURL */
};

struct daraja_push_result {
	enum daraja_outcome outcome;
	const char *checkout;	/* ACCEPTED: CheckoutRequestID */
	const char *merchant;	/* ACCEPTED: MerchantRequestID, or NULL */
	const char *detail;	/* otherwise: "HTTP <code> <errorMessage>" or the transport error */
};

typedef void (*daraja_push_cb)(const struct daraja_push_result *r, void *arg);

/* Sends the push on a fresh connection (httpc once): it reaches Daraja at
 * most once, plus once more only after Daraja refused the token
 * (404.001.03: the push itself was not processed). */
void daraja_stk_push(struct daraja *d, const struct daraja_push *p, daraja_push_cb cb, void *arg);

/* ---- STK push status query ---- */

struct daraja_query_result {
	enum daraja_outcome outcome;	/* ACCEPTED: result_code and result_desc hold the decision */
	long long result_code;
	const char *result_desc;	/* "" when absent */
	long http_code;			/* 0 without an HTTP answer */
};

typedef void (*daraja_query_cb)(const struct daraja_query_result *r, void *arg);

void daraja_stk_query(struct daraja *d, const char *checkout_request_id, daraja_query_cb cb, void *arg);

/* ---- the initiator APIs (asynchronous: the Result comes later) ---- */

/* The synchronous answer of B2C, Transaction Status, Account Balance and
 * Reversal: only "queued" (ACCEPTED); the outcome is the Result posted to
 * the ResultURL (or the QueueTimeOutURL), daraja_result_parse.  REFUSED is
 * an answer Daraja gave that it did not queue the request (an errorCode,
 * or a non-zero ResponseCode): not processed.  An answer that is neither
 * (a 5xx without an errorCode from a gateway, an unreadable 200) is
 * UNANSWERED: it may have been queued. */
struct daraja_ack {
	enum daraja_outcome outcome;
	const char *conversation_id;	/* ACCEPTED: ConversationID, or NULL */
	const char *originator_id;	/* ACCEPTED: OriginatorConversationID, or NULL */
	const char *error_code;		/* REFUSED: errorCode or the non-zero ResponseCode, or NULL */
	const char *detail;		/* otherwise: "HTTP <code> <errorMessage>" or the transport error */
	long http_code;			/* 0 without an HTTP answer */
};

typedef void (*daraja_ack_cb)(const struct daraja_ack *a, void *arg);

/* B2C payment (PROTOCOLS.md 4.7): PartyA [mpesa] b2c_shortcode (default:
 * shortcode), InitiatorName, SecurityCredential, CommandID from [mpesa].
 * Sent on a fresh connection (httpc once): it moves money.  An amount
 * that is not whole shillings is a bug (asserted); one above [mpesa]
 * max_payout is not sent (UNSENT, "over max_payout"). */
struct daraja_b2c_req {
	const char *originator_id;	/* OriginatorConversationID: ours, unique per payment attempt */
	const char *phone;		/* "+2547..." or digits: PartyB */
	const char *remarks, *occasion;	/* Remarks (required by Daraja), Occasion (or NULL) */
	const char *result_url, *timeout_url;
	long long amount_cents;		/* whole shillings, > 0 */
};

void daraja_b2c(struct daraja *d, const struct daraja_b2c_req *r, daraja_ack_cb cb, void *arg);

/* Transaction Status query (PROTOCOLS.md 4.8): by TransactionID (the
 * receipt) when known, else by the original request's
 * OriginatorConversationID.  The query has its own originator id: sent as
 * OriginatorConversationID when the receipt is known (the field names the
 * transaction asked about otherwise).  The Result comes back with the
 * query's ConversationID (the ack's): match it by that. */
struct daraja_status_req {
	const char *originator_id;		/* ours, for this query */
	const char *transaction_id;		/* the receipt, or NULL */
	const char *original_originator_id;	/* the B2C's OriginatorConversationID when no receipt is known, or NULL */
	const char *result_url, *timeout_url;
	const char *remarks, *occasion;		/* or NULL */
};

void daraja_txn_status(struct daraja *d, const struct daraja_status_req *r, daraja_ack_cb cb, void *arg);

/* Account Balance query (PROTOCOLS.md 4.9) of PartyA [mpesa] b2c_shortcode. */
void daraja_account_balance(struct daraja *d, const char *originator_id, const char *result_url,
			    const char *timeout_url, daraja_ack_cb cb, void *arg);

/* Reversal of a transaction to our shortcode (PROTOCOLS.md 4.9).  Sent on
 * a fresh connection (httpc once): it moves money. */
struct daraja_reversal_req {
	const char *originator_id;	/* ours */
	const char *transaction_id;	/* the receipt to reverse */
	long long amount_cents;		/* whole shillings, > 0 */
	const char *receiver_party;	/* ReceiverParty: our shortcode; NULL = [mpesa] shortcode */
	const char *result_url, *timeout_url;
	const char *remarks, *occasion;	/* or NULL */
};

void daraja_reversal(struct daraja *d, const struct daraja_reversal_req *r, daraja_ack_cb cb, void *arg);

/* ---- Pull Transactions: the organisation's statement (synchronous) ---- */

struct daraja_pull_txn {
	const char *transaction_id;	/* transactionId: the receipt */
	const char *trx_date;		/* trxDate, as Daraja wrote it */
	const char *msisdn;		/* msisdn, or "" */
	const char *transaction_type;	/* transactiontype, or "" */
	const char *bill_ref;		/* billreference, or "" */
	long long amount_cents;		/* amount (exact, at most 2 decimals), -1 when unreadable */
};

struct daraja_pull_result {
	enum daraja_outcome outcome;	/* ACCEPTED: ResponseCode 1000 (txns, n may be 0) */
	const struct daraja_pull_txn *txns;	/* entries without a transactionId are left out */
	size_t n;
	const char *error_code;		/* REFUSED: ResponseCode or errorCode, or NULL */
	const char *detail;
	long http_code;
};

typedef void (*daraja_pull_cb)(const struct daraja_pull_result *r, void *arg);

/* POST /pulltransactions/v1/query {ShortCode ([mpesa] shortcode),
 * StartDate, EndDate ("YYYY-MM-DD HH:MM:SS"), OffSetValue}. */
void daraja_pull_transactions(struct daraja *d, const char *start, const char *end, long offset, daraja_pull_cb cb,
			      void *arg);

/* ---- what Daraja posts to us ---- */

/* The STK callback (POST to the push's CallBackURL), Body.stkCallback. */
struct daraja_stk_callback {
	char checkout[72];	/* CheckoutRequestID, at most 64 characters */
	long long result_code;	/* 0: paid */
	char desc[300];		/* ResultDesc, "" when absent */
	char receipt[40];	/* MpesaReceiptNumber, "" when absent */
	char phone[24];		/* "+" and PhoneNumber (a 64-bit integer, exact), "" when absent */
	long long amount_cents;	/* Amount of a success (ResultCode 0), -1 when absent or not whole shillings */
};

/* 0, or -1 when body is not an STK callback (no Body.stkCallback with a
 * CheckoutRequestID of at most 64 characters and an integer ResultCode). */
int daraja_stk_callback_parse(const char *body, size_t len, struct daraja_stk_callback *out);

/* A paybill payment, as the C2B validation and confirmation post it.  The
 * strings are owned (daraja_c2b_clear), NULL when absent. */
struct daraja_c2b {
	char *trans_id;		/* TransID: the M-Pesa receipt */
	char *bill_ref;		/* BillRefNumber: the account the payer typed */
	char *first_name;	/* FirstName */
	char *msisdn;		/* MSISDN */
	char *shortcode;	/* BusinessShortCode (a string or a number on the wire) */
	long long amount_cents;	/* TransAmount, -1 unless whole shillings ("500" or "500.00") */
};

/* Reads what it can; never fails (an unusable body leaves NULLs and -1). */
void daraja_c2b_parse(const char *body, size_t len, struct daraja_c2b *out);
void daraja_c2b_clear(struct daraja_c2b *c);

/* The asynchronous Result (PROTOCOLS.md 4.7-4.9) posted to a ResultURL or
 * a QueueTimeOutURL: B2C, Transaction Status, Account Balance, Reversal.
 * Result.* and its ResultParameters.ResultParameter Key/Value items;
 * Values are numbers or strings alike (a number is read as its JSON text,
 * never through a double).  Strings are owned (daraja_result_clear), NULL
 * when absent.  A Key given twice (or two names of one field) makes the
 * Result unreadable: it cannot say two things. */
struct daraja_result {
	long long result_type;		/* ResultType, 0 when absent */
	long long result_code;		/* ResultCode: 0 = success */
	char *desc;			/* ResultDesc */
	char *originator_id;		/* OriginatorConversationID */
	char *conversation_id;		/* ConversationID */
	char *transaction_id;		/* TransactionID */
	long long amount_cents;		/* TransactionAmount or Amount: -1 when absent or not whole shillings */
	char *receipt;			/* TransactionReceipt or ReceiptNo */
	char *status;			/* TransactionStatus ("Completed") */
	char *debit_party;		/* DebitPartyName or DebitPartyPublicName */
	char *credit_party;		/* CreditPartyName, ReceiverPartyPublicName or CreditPartyPublicName */
	char *reason;			/* TransactionReason (a C2B payment's BillRefNumber) */
	char *completed;		/* TransactionCompletedDateTime, FinalisedTime or TransCompletedTime */
	char *original_transaction_id;	/* OriginalTransactionID (a reversal's) */
	long long working_funds_cents;	/* B2CWorkingAccountAvailableFunds (exact, cents allowed), -1 */
	char *account_balance;		/* AccountBalance, the raw text (daraja_balance_cents) */
};

/* 0, or -1 when body is not a Result (no Result object, no integer
 * ResultCode, a nesting or type error in the parameters, a duplicate).
 * out is always initialised: daraja_result_clear it either way. */
int daraja_result_parse(const char *body, size_t len, struct daraja_result *out);
void daraja_result_clear(struct daraja_result *r);

/* The balance of account_name in an AccountBalance text ("Working
 * Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|...": the
 * third field of the group), in cents; -1 when absent, ambiguous (named
 * twice) or unreadable. */
long long daraja_balance_cents(const char *account_balance, const char *account_name);

/* The answers Daraja expects (application/json). */
#define DARAJA_STK_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"
#define DARAJA_C2B_ACCEPT "{\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"}"
#define DARAJA_C2B_REJECT "{\"ResultCode\":\"C2B00013\",\"ResultDesc\":\"Rejected\"}"
#define DARAJA_C2B_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Success\"}"
#define DARAJA_RESULT_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"

#endif
