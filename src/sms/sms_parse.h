/*
 * sms_parse: what the SMS providers and members send, read without I/O
 * (so the fuzz targets run it as the routes do): the parameters of a
 * callback, a delivery report of Africa's Talking or Kannel, an inbound
 * message, and a member's command words.
 *
 * Every reader checks the values it hands on with base/input (encoding,
 * lengths, numbers) and returns -1 with the reason for anything PostgreSQL
 * could not store: such a request is answered at once, never with 503.
 */
#ifndef CHAMAD_SMS_PARSE_H
#define CHAMAD_SMS_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define SMS_PARAMS_MAX 32

/* Parameters of a callback: the query string, then a form body (the first
 * of a repeated name wins).  Values may hold NUL bytes (len says). */
struct sms_params {
	char *key[SMS_PARAMS_MAX], *val[SMS_PARAMS_MAX];
	size_t len[SMS_PARAMS_MAX];
	size_t n;
};

/* Returns -1 (p emptied) for a malformed query or body. */
int sms_params_parse(struct sms_params *p, const char *query, size_t qlen, const char *body, size_t blen);
const char *sms_param(const struct sms_params *p, const char *key);
/* base/input's input_get_fn over struct sms_params. */
const char *sms_param_get(const void *p, const char *key, size_t *len);
void sms_params_free(struct sms_params *p);

/* A delivery report: which row, and what it says now. */
struct sms_dlr {
	const char *id;		/* AT's messageId, or our row id (Kannel); borrowed from the params */
	const char *raw;	/* the status as reported (delivery_status) */
	const char *state;	/* "delivered", "undeliverable" or "" (not final) */
	const char *reason;	/* failure reason, or NULL */
	char rawbuf[24];
};

/* Returns 0, or -1 with why. */
int sms_dlr_at(const struct sms_params *p, struct sms_dlr *out, char *why, size_t whylen);
int sms_dlr_kannel(const struct sms_params *p, struct sms_dlr *out, char *why, size_t whylen);

/* An inbound message. */
struct sms_in {
	char phone[20];		/* the sender in E.164 */
	char *text;		/* UTF-8 (recoded from a declared charset), owned */
	char id[130];		/* the provider's message id, "" when none */
};

enum sms_in_result {
	SMS_IN_OK,
	SMS_IN_MISSING,		/* no from or no text: not a message at all */
	SMS_IN_BAD,		/* a message we can never store: bad bytes, length, number */
};

/* Reads from, text (in charset= when given: Kannel's %C), id. */
enum sms_in_result sms_in_read(const struct sms_params *p, const char *country_code, struct sms_in *out, char *why,
			       size_t whylen);
void sms_in_clear(struct sms_in *in);

/* "bal 4821": the command word and a 4-digit PIN after it; "approve K7PM2X
 * 4821": the command word, its argument and the PIN. */
struct sms_words {
	char word[16];		/* the first word, "" when longer than 15 bytes */
	char arg[16];		/* the second word when it is not the PIN and the third is, or is
				 * absent ("" when longer than 15 bytes) */
	char pin[5];		/* the second word when it is exactly 4 digits, else the third
				 * when it is (after an argument), else "" */
	char *masked;		/* the text with the PIN written as **** where it stands; owned */
};

void sms_words_split(const char *text, struct sms_words *out);
void sms_words_clear(struct sms_words *w);

#endif
