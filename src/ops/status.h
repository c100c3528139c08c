/*
 * status: the operator endpoints, GET /healthz and GET /metrics.
 */
#ifndef CHAMAD_STATUS_H
#define CHAMAD_STATUS_H

struct http_ctx;

void status_healthz(struct http_ctx *ctx);
void status_metrics(struct http_ctx *ctx);

#endif
