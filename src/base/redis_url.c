/*
 * redis_url: see redis_url.h.
 */
#include "base/redis_url.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void redis_url_free(struct redis_url *u)
{
	free(u->host);
	free(u->path);
	free(u->password);
	memset(u, 0, sizeof(*u));
}

int redis_url_parse(const char *s, struct redis_url *u, char *err, size_t errlen)
{
	long long n;

	memset(u, 0, sizeof(*u));
	u->port = 6379;
	if (!strncmp(s, "unix://", 7)) {
		const char *q = strchr(s + 7, '?');
		size_t plen = q ? (size_t)(q - (s + 7)) : strlen(s + 7);

		if (plen == 0 || s[7] != '/') {
			snprintf(err, errlen, "unix:// needs an absolute socket path");
			return -1;
		}
		if (q) {
			if (strncmp(q, "?db=", 4) || util_parse_ll(q + 4, 0, 15, &n) < 0) {
				snprintf(err, errlen, "unix:// URL takes only ?db=N (0..15)");
				return -1;
			}
			u->db = (int)n;
		}
		u->path = xstrndup(s + 7, plen);
		return 0;
	}
	if (!strncmp(s, "redis://", 8)) {
		const char *h = s + 8, *at = strchr(h, '@'), *slash, *colon, *hend;

		if (at) {
			const char *pw = memchr(h, ':', (size_t)(at - h));

			if (!pw) {
				snprintf(err, errlen, "credentials must be :password@");
				return -1;
			}
			u->password = xstrndup(pw + 1, (size_t)(at - pw - 1));
			h = at + 1;
		}
		slash = strchr(h, '/');
		hend = slash ? slash : h + strlen(h);
		colon = memchr(h, ':', (size_t)(hend - h));
		if (colon) {
			char port[8];
			size_t plen = (size_t)(hend - colon - 1);

			if (plen == 0 || plen >= sizeof(port)) {
				snprintf(err, errlen, "bad port");
				goto fail;
			}
			memcpy(port, colon + 1, plen);
			port[plen] = '\0';
			if (util_parse_ll(port, 1, 65535, &n) < 0) {
				snprintf(err, errlen, "bad port \"%s\"", port);
				goto fail;
			}
			u->port = (int)n;
			hend = colon;
		}
		if (hend == h) {
			snprintf(err, errlen, "missing host");
			goto fail;
		}
		u->host = xstrndup(h, (size_t)(hend - h));
		if (slash && slash[1]) {
			if (util_parse_ll(slash + 1, 0, 15, &n) < 0) {
				snprintf(err, errlen, "database must be 0..15, got \"%s\"", slash + 1);
				goto fail;
			}
			u->db = (int)n;
		}
		return 0;
	}
	snprintf(err, errlen, "must start with redis:// or unix://");
	return -1;
fail:
	redis_url_free(u);
	return -1;
}

int redis_url_check(const char *url, char *err, size_t errlen)
{
	struct redis_url u;

	if (redis_url_parse(url, &u, err, errlen) < 0)
		return -1;
	redis_url_free(&u);
	return 0;
}

