/*
 * redis_ev: our libevent adapter for hiredis' async API.
 *
 * Debian 12 ships hiredis 0.14.1, whose adapters/libevent.h frees its state
 * from inside its own event handler when a callback disconnects the context
 * (fixed upstream in 1.0, commit 24e6166).  This adapter marks itself
 * ENTERED while it calls into hiredis; a cleanup that arrives meanwhile only
 * marks it DELETED, and the handler frees it after hiredis has returned.
 */
#ifndef CHAMAD_REDIS_EV_H
#define CHAMAD_REDIS_EV_H

struct event_base;
struct redisAsyncContext;

/* Hooks ac's read/write requests to base.  The adapter state belongs to ac
 * and is released through ac's cleanup hook.  Returns 0 or -1. */
int redis_ev_attach(struct redisAsyncContext *ac, struct event_base *base);

#endif
