/*
 * sms_http: the SMS providers' callbacks (delivery reports, inbound
 * messages) and the SMS commands members send (sms_cmd.c).
 */
#ifndef CHAMAD_SMS_HTTP_H
#define CHAMAD_SMS_HTTP_H

#include <stddef.h>

struct http_ctx;
struct http_route;

#define SMS_PARAMS_MAX 32

/* Parameters of a callback: the query string, then a form body. */
struct sms_params {
	char *key[SMS_PARAMS_MAX], *val[SMS_PARAMS_MAX];
	size_t n;
};

int sms_params_read(struct http_ctx *ctx, struct sms_params *p);
const char *sms_param(const struct sms_params *p, const char *key);
void sms_params_free(struct sms_params *p);

/* Fills out with the SMS routes (at most max); returns how many. */
size_t sms_http_routes(struct http_route *out, size_t max);

/* Serves one inbound message from `provider` (sms_cmd.c). */
void sms_inbound(struct http_ctx *ctx, const char *provider);

#endif
