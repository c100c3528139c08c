/*
 * daraja_int: what the files of the Daraja client share (never included
 * outside src/net/daraja*.c).
 *
 *   daraja.c        the client, the OAuth token, one call's life, STK
 *   daraja_org.c    the initiator APIs (B2C, status, balance, reversal)
 *                   and the Pull Transactions statement
 *   daraja_parse.c  what Daraja posts to us (STK callback, C2B, Result)
 */
#ifndef CHAMAD_DARAJA_INT_H
#define CHAMAD_DARAJA_INT_H

#include "base/defer.h"
#include "net/daraja.h"

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct httpc;
struct httpc_response;

struct call;

struct daraja {
	const struct config *cfg;
	struct httpc *http;
	struct defer_queue later;	/* calls ended before they were sent */
	char token[128];
	uint64_t token_expires_ms;
	bool fetching;
	struct call *waiting;	/* calls waiting for the token being fetched */
};

enum call_kind { CALL_PUSH, CALL_QUERY, CALL_ACK, CALL_PULL };

/* One Daraja call with a fresh token and one retry on a stale one. */
struct call {
	struct daraja *d;
	struct call *next;	/* in d->waiting */
	struct defer_node later;
	enum call_kind kind;
	const char *path;
	json_t *body;		/* STK: without Password/Timestamp (added per attempt) */
	bool stk;		/* add Password/Timestamp */
	bool retried;		/* sent again after Daraja refused the token */
	int sends;
	bool once;		/* must never reach Daraja twice (httpc once) */
	const char *unsent_why;	/* ended unsent: why */
	union {
		daraja_push_cb push;
		daraja_query_cb query;
		daraja_ack_cb ack;
		daraja_pull_cb pull;
	} cb;
	void *arg;
};

/* daraja.c */
struct call *daraja_call_new(struct daraja *d, enum call_kind kind, const char *path, json_t *body, void *arg);
/* With the token (fetched when needed), sends c. */
void daraja_call_start(struct call *c);
/* Ends c unsent (why) from a later loop pass: never inside the call. */
void daraja_call_unsent_later(struct call *c, const char *why);

/* daraja_org.c: the end of a CALL_ACK / CALL_PULL call (unsent: why, or NULL). */
void daraja_ack_finish(struct call *c, const struct httpc_response *r, const char *unsent);
void daraja_pull_finish(struct call *c, const struct httpc_response *r, const char *unsent);

/* daraja_parse.c */
/* The JSON document of body with every number replaced by a string of its
 * exact text (so an amount is never read through a double, and a Value is
 * read the same whether Daraja sent 8000 or "8000"); NULL unless body is
 * one JSON value (flags: jansson's, e.g. JSON_REJECT_DUPLICATES). */
json_t *daraja_json_numbers_as_text(const char *body, size_t len, size_t flags);
/* "8000" or "8000.00" -> 800000 (whole shillings only); -1 otherwise. */
long long daraja_kes_whole(const char *s);
/* "8000", "8000.5", "8000.05" -> cents (at most 2 decimals); -1 otherwise. */
long long daraja_kes_exact(const char *s);
/* A decimal integer (sign allowed), exactly; -1 and *ok false otherwise. */
bool daraja_ll(const char *s, long long *out);

#endif
