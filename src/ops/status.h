/*
 * status: the operator endpoints, GET /healthz and GET /metrics.
 */
#ifndef CHAMAD_STATUS_H
#define CHAMAD_STATUS_H

#include "net/httpd.h"

/* GET /healthz and GET /metrics (NULL path ends it), registered by main.c. */
extern const struct http_route status_routes[];

#endif
