/*
 * redis_url: the [redis] url syntax, parsed without touching the network,
 * so that the configuration can refuse a bad one (base/config.c) and the
 * client can connect to a good one (net/redis.c).
 */
#ifndef CHAMAD_REDIS_URL_H
#define CHAMAD_REDIS_URL_H

#include <stddef.h>

/* A parsed [redis] url: redis://[:password@]host[:port][/db] or
 * unix:///path[?db=N].  Strings are owned by the struct. */
struct redis_url {
	char *host;		/* NULL for unix sockets */
	int port;
	char *path;		/* unix socket path, or NULL */
	int db;
	char *password;		/* or NULL */
};
int redis_url_parse(const char *s, struct redis_url *out, char *err, size_t errlen);
void redis_url_free(struct redis_url *u);
/* Validates a URL without keeping it (used by the config table). */
int redis_url_check(const char *url, char *err, size_t errlen);

#endif
