/*
 * mpesa_int: what the files of the M-Pesa module share (never included
 * outside src/mpesa/).
 *
 *   mpesa.c  the module's life, the push job (claimed rows), the status
 *            query job and the closers, its routes and metrics
 *   stk.c    the STK callback (stored, then acknowledged) and settling:
 *            stored callbacks and status query answers -> mpesa_settle
 *   c2b.c    paybill validation and confirmation -> c2b_confirm (recorded
 *            unverified; the Transaction Status result credits it), the
 *            flagging of those never verified, and the alert log
 *   status.c the Transaction Status rail: the query job (claimed rows)
 *            and the result routes -> mpesa_status_record
 *   b2c.c    payouts: the B2C job (claimed rows), its answers, the
 *            sweep of unknown outcomes, the Result routes
 *   reconcile.c  the reconcile job, its claimed runs (statement, Account
 *            Balance, comparison) and the balance result routes
 *
 * Daraja itself (token, wire formats) is net/daraja; every statement is in
 * dom/payment (money in) and dom/payout (money out).
 */
#ifndef CHAMAD_MPESA_INT_H
#define CHAMAD_MPESA_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/util.h>

struct app;
struct daraja;
struct event;
struct http_ctx;
struct db_result;
struct buf;
struct recon;

#define CB_MAX_TRIES 10		/* ~5 minutes of waiting for a push's answer */

/* One claiming job (pushes, callbacks): one claim in flight at a time; a
 * wake-up during it, or a full batch, claims again when it ends. */
struct claim {
	bool running, again;
};

/* A row this daemon holds under a lease (a request being pushed, a stored
 * callback being settled), from its claim until its outcome is recorded,
 * kept in the work object and listed in struct mpesa: each claim is
 * released once, and a request handed to Daraja is never claimed again. */
enum held_kind { HELD_PUSH, HELD_CALLBACK, HELD_STATUS, HELD_PAYOUT /* id: the attempt's OriginatorConversationID */ };

struct held {
	struct held *next;
	enum held_kind kind;
	char id[48];
	bool linked;
	bool sent;		/* HELD_PUSH, HELD_PAYOUT: handed to Daraja */
};

/* The kinds of mpesa_alerts (migration 022), in this order. */
#define MPESA_ALERT_KINDS 4
extern const char *const mpesa_alert_kinds[MPESA_ALERT_KINDS];
/* Why a paybill confirmation or validation was refused, in this order. */
enum { IGNORED_SHORTCODE, IGNORED_AMOUNT, IGNORED_MALFORMED, IGNORED_REPLAY, MPESA_IGNORED_WHYS };
extern const char *const mpesa_ignored_whys[MPESA_IGNORED_WHYS];

struct mpesa {
	struct app *app;
	struct daraja *daraja;	/* NULL once stopping */
	struct event *query_ev, *push_ev, *cb_ev;
	uint64_t push_at_ms;	/* when push_ev fires */
	struct claim pushing, settling;
	bool querying, quiescing, stopping;
	int refs;
	int unrecorded;		/* work whose outcome is not in PostgreSQL yet */
	struct held *held;
	char me[64];		/* claimed_by: host:pid:random */
	struct recon *recon;	/* reconcile.c */
	uint64_t pushes, callbacks, queries, unmatched;
	/* issue 10: verification (c2b.c) */
	struct claim alerting;
	bool flagging;
	uint64_t alerts[MPESA_ALERT_KINDS];	/* logged by this daemon, by kind */
	uint64_t ignored[MPESA_IGNORED_WHYS];	/* confirmations and validations refused */
	/* status.c */
	struct event *status_ev;
	uint64_t status_at_ms;	/* when status_ev fires */
	struct claim statusing;
	uint64_t status_sent, status_results, status_unmatched;
	/* b2c.c */
	struct event *payout_ev;
	uint64_t payout_at_ms;	/* when payout_ev fires */
	struct claim paying;
	bool sweeping;
	int b2c_unknown;	/* payouts of unknown outcome, as the last sweep counted */
	uint64_t b2c_sent, b2c_results, b2c_ignored;
};

/* The object lives while anything in flight points at it: mpesa_free
 * drops the first reference, each query or call in flight holds one. */
void mpesa_hold(struct mpesa *m);
void mpesa_unref(struct mpesa *m);
/* One piece of work whose outcome is still to be recorded: counted so a
 * draining daemon waits for it (mpesa_unrecorded); holds a reference. */
void mpesa_work_begin(struct mpesa *m);
void mpesa_work_end(struct mpesa *m);

/* Starts a claim unless one is running (then it runs again after), or
 * the module is quiescing; holds a reference until mpesa_claim_end. */
bool mpesa_claim_start(struct mpesa *m, struct claim *c);
void mpesa_claim_end(struct mpesa *m, struct claim *c, const struct db_result *r, const char *what, int claimed,
		     int batch, void (*soon)(struct mpesa *m, int ms));

/* A row claimed: h (in the work object) joins the list; a request already
 * handed to Daraja must not come back (it is pushed at most once).  A
 * stored callback may come back to the same daemon once its lease is over
 * (settling it again changes nothing).  Released: h must be listed (once). */
void mpesa_held_add(struct mpesa *m, struct held *h, enum held_kind kind, const char *id);
void mpesa_held_release(struct mpesa *m, struct held *h);

/* stk.c */
void mpesa_callbacks_soon(struct mpesa *m, int ms);
void mpesa_callbacks_tick(evutil_socket_t fd, short what, void *arg);
/* The status query decided checkout: settled like a callback. */
void mpesa_settle_queried(struct mpesa *m, const char *checkout, long long code, const char *desc);
void mpesa_stk_callback(struct http_ctx *ctx);

/* status.c: the job's life (with the module's), its wake-ups, its routes.
 * mpesa_status_wake is for chamad's own writers of mpesa_status_open (the
 * NOTIFY is only for writers outside chamad): call it once the statement
 * that opened a question has committed. */
void mpesa_status_start(struct mpesa *m);
void mpesa_status_stop(struct mpesa *m);
void mpesa_status_soon(struct mpesa *m, int ms);
void mpesa_status_tick(evutil_socket_t fd, short what, void *arg);
void mpesa_status_wake(struct app *app);
void mpesa_status_result(struct http_ctx *ctx);
void mpesa_status_timeout(struct http_ctx *ctx);
/* b2c.c */
void mpesa_b2c_start(struct mpesa *m);
void mpesa_b2c_stop(struct mpesa *m);
void mpesa_payouts_soon(struct mpesa *m, int ms);
/* The periodic pass: claims what is due, and sends payouts whose outcome
 * is unknown (no answer, no result in time, a daemon that died) to the
 * status query. */
void mpesa_payouts_sweep(struct mpesa *m);
void mpesa_b2c_result(struct http_ctx *ctx);
void mpesa_b2c_timeout(struct http_ctx *ctx);

/* c2b.c */
void mpesa_c2b_validation(struct http_ctx *ctx);
void mpesa_c2b_confirmation(struct http_ctx *ctx);
/* The periodic pass's verification work: paybill payments unverified past
 * [mpesa] verify_flag_after_s are flagged; then the alerts are logged. */
void mpesa_verify_tick(struct mpesa *m);
/* Logs (LOG_ERROR, with the ids) and counts the alerts no daemon has
 * logged yet, each once. */
void mpesa_alerts_soon(struct mpesa *m);
void mpesa_verify_metrics(const struct mpesa *m, struct buf *out);

/* reconcile.c: started by mpesa_new, stopped by mpesa_free (nothing new
 * claimed; a run waiting for its balance is left to its lease), freed
 * with the module's last reference. */
void mpesa_reconcile_start(struct mpesa *m);
void mpesa_reconcile_stop(struct mpesa *m);
void mpesa_reconcile_free(struct mpesa *m);
void mpesa_reconcile_metrics(struct mpesa *m, struct buf *out);
/* POST /mpesa/balance/result[/<secret>] and /mpesa/balance/timeout[/<secret>] */
void mpesa_balance_result(struct http_ctx *ctx);
void mpesa_balance_timeout(struct http_ctx *ctx);

#endif
