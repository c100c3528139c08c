/*
 * user: members' own rows (users) and sign-up (signup_sessions): looking a
 * number up, creating the user once the code and PIN are in, a PIN reset,
 * the language.  Writes carry the audit context (dom/audit.h): their first
 * three parameters are MSISDN, request id and actor.  PIN hashes are made
 * and checked on the auth workers (dom/auth.h), never in SQL.
 */
#ifndef CHAMAD_USER_H
#define CHAMAD_USER_H

#include "net/db.h"

/*
 * The live user with phone $1 (E.164), with what a log-in screen needs;
 * no row for a number that is not a user.  $2 time zone (for the lock's end).
 */
extern const struct db_stmt user_by_phone;
enum {
	USER_ID,
	USER_LANG,	/* preferred language code */
	USER_NAME,
	USER_NO_PIN,	/* "t": registered by an official, no PIN yet */
	USER_LOCKED,	/* "t": locked out now */
	USER_UNTIL,	/* the lock's end, "HH24:MI" in $2, or "" */
};

/* Sign-up: the code sent to $1 was right; the live sign-up row is
 * verified.  $1 MSISDN, $2 request id, $3 actor (""). */
extern const struct db_stmt user_signup_verified;

/*
 * Sign-up done: the user ($1 phone, $4 full name, $5 language code, $6 PIN
 * hash) with a verified phone, and their sign-up row completed, in one
 * statement.  $2 request id, $3 actor ("").  Returns the new user's id; a
 * phone that is a user already fails with SQLSTATE 23505.
 */
extern const struct db_stmt user_signup_finish;

/*
 * A new PIN after a one-time code ($4 its hash): clears the failed count
 * and any lock, verifies the phone.  $1 the phone (MSISDN), $2 request id,
 * $3 actor.  Returns the user's id; no row when the number is no user.
 */
extern const struct db_stmt user_pin_reset;

/* A sign-up starts (or starts again): the one live signup_sessions row of
 * the phone and the code's SMS (sms_otp, $7 its vars: code, minutes) in
 * one statement.  $1 MSISDN, $2 request id, $3 actor (the audit context),
 * $4 full name, $5 language code, $6 the code's lifetime in seconds, $8 a
 * nonce for the message's key (each code its own SMS).  One row per
 * message queued. */
extern const struct db_stmt user_signup_start;

/* The user's language: $3 the user (also the actor), $4 language code.
 * $1 MSISDN, $2 request id. */
extern const struct db_stmt user_set_language;

#endif
