/*
 * sms_http: the SMS providers' callbacks (delivery reports, inbound
 * messages) and the SMS commands members send (sms_cmd.c).
 */
#ifndef CHAMAD_SMS_HTTP_H
#define CHAMAD_SMS_HTTP_H

#include <stddef.h>

#include "net/httpd.h"
#include "sms/sms_parse.h"

/* The request's parameters (sms_params_parse of its query and body). */
int sms_params_read(struct http_ctx *ctx, struct sms_params *p);

/* The SMS routes (NULL path ends it), registered by main.c. */
extern const struct http_route sms_routes[];

/* Serves one inbound message from `provider`, already read and checked
 * (sms_in_read; borrowed) (sms_cmd.c). */
void sms_inbound(struct http_ctx *ctx, const char *provider, const struct sms_in *in);

#endif
