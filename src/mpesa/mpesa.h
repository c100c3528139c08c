/*
 * mpesa: Safaricom Daraja M-Pesa Express (STK push), its callback and the
 * status-query job (see mpesa.c).
 */
#ifndef CHAMAD_MPESA_H
#define CHAMAD_MPESA_H

#include <stddef.h>

struct app;
struct buf;
struct config;
struct http_route;
struct mpesa;

/* NULL when [mpesa] consumer_key is empty (payments off). */
struct mpesa *mpesa_new(struct app *app);
void mpesa_free(struct mpesa *m);
/* A request row was written: the push job runs after [mpesa]
 * push_delay_ms (the row carries push_at; any daemon may push it). */
void mpesa_push_later(struct mpesa *m, const char *request_id);
/* On SIGTERM: claim nothing new; mpesa_unrecorded() is the work in flight
 * whose outcome PostgreSQL does not have yet. */
void mpesa_quiesce(struct mpesa *m);
int mpesa_unrecorded(const struct mpesa *m);
/* Runs the status-query job now (tests and the timer). */
void mpesa_query_now(struct mpesa *m);
/* The callback route: POST /mpesa/stk/callback[/<secret>]. */
size_t mpesa_routes(const struct config *cfg, struct http_route *out, size_t max);
void mpesa_metrics(struct mpesa *m, struct buf *out);

#endif
