/*
 * pin: checking a member's PIN, the one path for every channel (USSD log-in,
 * SMS commands): look the user up, refuse while locked, check the hash on
 * the auth workers, then record the outcome: a miss counts, and the miss
 * that reaches [auth] pin_max_attempts locks the account for
 * pin_lock_minutes and queues an SMS alert (sms_pin_locked, notify()), in
 * one synchronous statement.
 * A success writes the user's row only when something there changes (a
 * count or lock to clear, a re-made hash after the cost parameters
 * changed); the log-in itself goes to the audit trail in batches
 * (loginlog.h).  Every write carries the channel, MSISDN and request id
 * into the audit trail.
 */
#ifndef CHAMAD_PIN_H
#define CHAMAD_PIN_H

#include <stdbool.h>

#include <stdint.h>

struct db_pool;
struct auth;
struct loginlog;
struct config;

enum pin_outcome {
	PIN_OK,
	PIN_WRONG,		/* tries_left > 0 */
	PIN_LOCKED,		/* locked now or already; until is set */
	PIN_NO_USER,		/* no live user with that phone */
	PIN_NO_PIN,		/* the user has no PIN yet */
	PIN_UNAVAILABLE,	/* PostgreSQL or the PIN workers could not serve */
};

struct pin_result {
	enum pin_outcome outcome;
	const char *user_id;	/* decimal; "" unless a user was found */
	const char *full_name;
	const char *lang;	/* the user's preferred language code */
	int tries_left;
	const char *until;	/* "HH:MM" in [ussd] timezone when locked */
	const char *error;	/* PIN_UNAVAILABLE: why */
	bool overloaded;	/* PIN_UNAVAILABLE for want of capacity (queue full or too slow) */
	const char *chamas;	/* PIN_OK: the user's active chamas, JSON [["id", name, role, allowed], ...] (allowed: policy.h), or NULL */
};

/* Strings are borrowed for the duration of the callback. */
typedef void (*pin_cb)(const struct pin_result *r, void *arg);

struct pin_check_args {
	const char *phone;	/* E.164 */
	const char *pin;
	const char *channel;	/* audit channel: "ussd", "sms" */
	const char *request_id;	/* audit request id */
	uint64_t deadline_ms;	/* by when the answer is of use (util_now_ms), 0 = the default */
};

/* What the check uses, borrowed: each must outlive every check in flight
 * (the daemon's interactive pool, its PIN workers, its log-in log, which
 * may be NULL, and its configuration). */
struct pin_env {
	struct db_pool *db;
	struct auth *auth;
	struct loginlog *logins;
	const struct config *cfg;
};

/* Everything in a and env is copied; cb runs exactly once, never inside
 * the call. */
void pin_check(const struct pin_env *env, const struct pin_check_args *a, pin_cb cb, void *arg);

#endif
