/*
 * sms_http: the SMS providers' callbacks (delivery reports, inbound
 * messages) and the SMS commands members send (sms_cmd.c).
 */
#ifndef CHAMAD_SMS_HTTP_H
#define CHAMAD_SMS_HTTP_H

#include <stddef.h>

#include "net/httpd.h"


#define SMS_PARAMS_MAX 32

/* Parameters of a callback: the query string, then a form body. */
struct sms_params {
	char *key[SMS_PARAMS_MAX], *val[SMS_PARAMS_MAX];
	size_t n;
};

int sms_params_read(struct http_ctx *ctx, struct sms_params *p);
const char *sms_param(const struct sms_params *p, const char *key);
void sms_params_free(struct sms_params *p);

/* The SMS routes (NULL path ends it), registered by main.c. */
extern const struct http_route sms_routes[];

/* Serves one inbound message from `provider` (sms_cmd.c). */
void sms_inbound(struct http_ctx *ctx, const char *provider);

#endif
