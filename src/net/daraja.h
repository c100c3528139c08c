/*
 * daraja: the Safaricom Daraja API client on the loop (M-Pesa Express).
 *
 * The wire side of M-Pesa and nothing else: the OAuth token (cached until
 * a minute before it expires, one fetch shared by every call waiting for
 * it), the STK push and its status query with their Password/Timestamp,
 * and the formats of what Daraja posts back (the STK callback, the paybill
 * C2B validation and confirmation) and of the answers it expects.  It knows
 * nothing of chamas, members or the database: src/mpesa/ decides what a
 * push or a callback means.
 *
 * Amounts cross the boundary as whole shillings: a push takes cents that
 * must be whole shillings, and an amount Daraja reports is read from the
 * JSON text as digits (never through a double) into cents, -1 when it is
 * absent or not whole shillings.  Phone numbers are "+2547..." here and
 * digits on the wire.
 *
 * Contract (httpc's): the callback of daraja_stk_push / daraja_stk_query is
 * called exactly once, never from inside the call itself, including when
 * the client is freed (DARAJA_CANCELLED, or DARAJA_UNSENT for a call that
 * was still waiting for its token).  The result is borrowed for the
 * duration of the callback.
 */
#ifndef CHAMAD_DARAJA_H
#define CHAMAD_DARAJA_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct config;
struct daraja;

/* cfg is borrowed and read at each call ([mpesa] base_url, consumer_key,
 * consumer_secret, shortcode, passkey, transaction_type; timeout_ms once). */
struct daraja *daraja_new(struct event_base *base, const struct config *cfg);
/* Ends every call in flight (see the contract), then frees.  Must not be
 * called from a daraja callback. */
void daraja_free(struct daraja *d);

enum daraja_outcome {
	DARAJA_ACCEPTED,	/* push: accepted (ResponseCode 0); query: decided (a ResultCode) */
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

/* The answers Daraja expects (application/json). */
#define DARAJA_STK_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"
#define DARAJA_C2B_ACCEPT "{\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"}"
#define DARAJA_C2B_REJECT "{\"ResultCode\":\"C2B00013\",\"ResultDesc\":\"Rejected\"}"
#define DARAJA_C2B_ACK "{\"ResultCode\":0,\"ResultDesc\":\"Success\"}"

#endif
