/*
 * outbox: the SMS outbox's statements (the rows of notifications with
 * channel 'sms'): the sender claims due rows under a lease and records
 * what the provider said, and delivery reports move sent rows on.  The
 * sender itself (sms/sms.c) is the channel; what a row means lives here.
 */
#ifndef CHAMAD_OUTBOX_H
#define CHAMAD_OUTBOX_H

#include "net/db.h"

/* The language a row is rendered in: the recipient's preference now, so a
 * change made after the row was queued applies to it. */
#define OUTBOX_LANG "coalesce((SELECT u.preferred_language FROM users u WHERE u.id = n.user_id), n.language)"

/*
 * Claims up to $2 due rows (queued or retry and due, or sending with its
 * lease run out), priority first, for the sender $1 (claimed_by) under a
 * lease of $3 seconds; FOR UPDATE SKIP LOCKED, so daemons share the work.
 * With a template, body is NULL until sent (the sender renders it).
 */
extern const struct db_stmt outbox_claim;
enum {
	OUTBOX_CLAIM_ID,
	OUTBOX_CLAIM_RECIPIENT,	/* E.164 */
	OUTBOX_CLAIM_BODY,
	OUTBOX_CLAIM_KEY,	/* idempotency key */
	OUTBOX_CLAIM_TEMPLATE,	/* the template key, or NULL for a row that carries its text */
	OUTBOX_CLAIM_VARS,	/* its variables (JSON object) */
	OUTBOX_CLAIM_LANG,	/* the recipient's preference now (the user's, else the row's) */
};

/*
 * Records a batch of outcomes, one statement whatever its size: $1 a JSON
 * array of {id, ok, verdict ("retry" | "failed"), provider_id, cost,
 * cost_cents, segments, coding, error, body, lang} (body and lang: the
 * text rendered and its language, when one was), $2 [sms] max_attempts, $3 the
 * provider's name, $4 / $5 [sms] retry_min_s / retry_max_s, $6 the sender
 * that claimed them (a row claimed again by another since is left alone).
 * A row a delivery report already made final keeps that state and gets the
 * send's details (provider, its id, cost, sent_at).  Harmless when repeated.
 */
extern const struct db_stmt outbox_record;

/*
 * A delivery report: $1 provider, $2 the message's id, $3 the provider's
 * status text, $4 "delivered", "undeliverable" or "" (not final: only the
 * delivery status changes), $5 the failure reason or NULL.  Rows already
 * delivered or undeliverable keep their state (repeated and out-of-order
 * reports are harmless); no row changed means an unknown or late report.
 * By the provider's message id (Africa's Talking), or by our row id (the
 * dlr-url we gave Kannel; the row may not be marked sent yet).
 */
extern const struct db_stmt outbox_dlr_provider_id;
extern const struct db_stmt outbox_dlr_row;

#endif
