/*
 * redis: one async connection to Redis (hiredis) on the event loop, with
 * reconnect and backoff, per-command timeouts and fail-fast when down.
 *
 * Contract: the callback of redis_cmd is called exactly once, never from
 * inside redis_cmd itself, including on redis_free (REDIS_S_CANCELLED).
 * The reply is borrowed for the duration of the callback.
 *
 * A command that is not answered within [redis] command_timeout_ms fails
 * with REDIS_S_TIMEOUT and the connection is dropped and re-made: hiredis
 * 0.14 has no timeouts, and a Redis that stopped answering one command will
 * not answer the next.  While the connection is not up every command fails
 * at once with REDIS_S_UNAVAILABLE.
 */
#ifndef CHAMAD_REDIS_H
#define CHAMAD_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "base/redis_url.h"

struct event_base;
struct config;
struct redis_client;

enum redis_status {
	REDIS_S_OK,
	REDIS_S_ERROR,		/* Redis answered with an error reply */
	REDIS_S_UNAVAILABLE,	/* not connected, or the connection was lost */
	REDIS_S_BUSY,		/* max_pending commands already in flight */
	REDIS_S_TIMEOUT,
	REDIS_S_CANCELLED,	/* shutting down */
};

struct redis_result {
	enum redis_status status;
	redisReply *reply;	/* borrowed; NULL unless Redis answered */
	const char *error;	/* borrowed; NULL on REDIS_S_OK */
};

typedef void (*redis_cb)(const struct redis_result *r, void *arg);

struct redis_stats {
	bool up;
	int pending;
	uint64_t reconnects;
	uint64_t commands;
	uint64_t timeouts;
};

/* Returns NULL with err filled if the URL's host cannot be resolved. */
struct redis_client *redis_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen);
/* Fails pending commands with REDIS_S_CANCELLED and frees everything.
 * Must not be called from a redis callback. */
void redis_free(struct redis_client *r);
void redis_set_config(struct redis_client *r, const struct config *cfg);
void redis_get_stats(const struct redis_client *r, struct redis_stats *out);
const char *redis_status_name(enum redis_status s);

/* Sends one command given as arguments (binary-safe; argvlen may be NULL
 * for NUL-terminated strings).  Arguments are copied. */
void redis_cmd(struct redis_client *r, redis_cb cb, void *arg, int argc, const char **argv, const size_t *argvlen);

#endif
