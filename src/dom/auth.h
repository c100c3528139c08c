/*
 * auth: PINs and one-time codes.
 *
 * A PIN is stored as argon2id (libsodium crypto_pwhash_str) of a keyed
 * digest of the PIN, the key being derived from [auth] pin_pepper, so a
 * stolen users table cannot be brute-forced without the daemon's
 * configuration.  Hashing and checking cost tens of milliseconds of one
 * core, so they run on the workpool, never on the loop; the loop only ever
 * computes the cheap keyed digests (one-time codes, the first entry of a
 * new PIN while the second is awaited).
 */
#ifndef CHAMAD_AUTH_H
#define CHAMAD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct auth;
struct workpool_stats;

enum auth_status {
	AUTH_OK,	/* hashed, or the PIN matches */
	AUTH_MISMATCH,	/* wrong PIN */
	AUTH_BUSY,	/* the workers cannot answer by the deadline (nothing was computed) */
	AUTH_ERROR,	/* out of memory, a malformed stored hash, shutting down */
};

/* hash: a new string (caller frees) on AUTH_OK, else NULL. */
typedef void (*auth_hash_cb)(void *arg, enum auth_status st, char *hash);

/* Returns NULL with err filled when the worker threads cannot start. */
struct auth *auth_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen);
void auth_free(struct auth *a);
/* Picks up new cost parameters (the pepper cannot change while running). */
void auth_set_config(struct auth *a, const struct config *cfg);
void auth_stats(struct auth *a, struct workpool_stats *out);

/*
 * deadline_ms: the monotonic millisecond (util_now_ms) by which the answer
 * is still of use (a USSD hop's, see hop_deadline_ms), or 0 for the default,
 * [http] request_timeout_ms from now.  Work that the workers cannot finish
 * by then is refused with AUTH_BUSY before any hashing (workpool.h).
 */
/* Hashes pin with the current cost parameters. */
void auth_pin_hash(struct auth *a, const char *pin, uint64_t deadline_ms, auth_hash_cb cb, void *arg);
/*
 * Checks pin against stored.  On AUTH_OK, hash is a fresh hash with the
 * current parameters when stored was made with older ones (store it), else
 * NULL.
 */
void auth_pin_verify(struct auth *a, const char *pin, const char *stored, uint64_t deadline_ms, auth_hash_cb cb,
		     void *arg);
/* Would a check with this deadline be admitted now?  Lets a caller refuse
 * before its own work (the user lookup). */
bool auth_admits(struct auth *a, uint64_t deadline_ms);

/* Keyed digest (hex, 64 chars + NUL) of the parts joined by ':'.  Cheap. */
void auth_digest(const struct auth *a, const char *p1, const char *p2, const char *p3, char out[65]);

/* True for PINs too easy to guess: all one digit, runs up or down
 * (1234, 9876, 0123), and a few favourites (1122, 1212, 2580, 1004). */
bool auth_pin_trivial(const char *pin);

/* Synchronous hash for the `chamad hash-pin` command (never on the loop).
 * Returns a new string or NULL. */
char *auth_pin_hash_now(const struct config *cfg, const char *pin);

#endif
