/*
 * mpesa: money in by M-Pesa: the STK push job (claimed rows), its callback
 * and the status-query job, and paybill (C2B) payments (see mpesa.c; the
 * Daraja client is net/daraja, the statements dom/payment).
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
/* For app->mpesa_requested (main.c wires it): a request row was written,
 * due [mpesa] push_delay_ms from now; this daemon's push job wakes then
 * (the row carries push_at; any daemon may push it).  No-op when off. */
void mpesa_push_soon(struct app *app);
/* On SIGTERM: claim nothing new; mpesa_unrecorded() is the work in flight
 * whose outcome PostgreSQL does not have yet. */
void mpesa_quiesce(struct mpesa *m);
int mpesa_unrecorded(const struct mpesa *m);
/* Runs the status-query job now (tests and the timer). */
void mpesa_query_now(struct mpesa *m);
/* The module's routes, into out (at most max; returns how many): POST
 * /mpesa/stk/callback[/<secret>], /payments/c2b/validation[/<secret>] and
 * /payments/c2b/confirmation[/<secret>]. */
size_t mpesa_routes(const struct config *cfg, struct http_route *out, size_t max);
void mpesa_metrics(struct mpesa *m, struct buf *out);

#endif
