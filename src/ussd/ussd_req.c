/*
 * ussd_req: the request struct every adapter fills, its destructor and
 * the session id rule.
 */
#include "ussd/ussd.h"

#include <stdlib.h>
#include <string.h>

void ussd_req_clear(struct ussd_req *r)
{
	free(r->session_id);
	free(r->phone);
	free(r->service_code);
	free(r->network);
	free(r->text);
	free(r->hop_key);
	free(r->client_state);
	memset(r, 0, sizeof(*r));
}

/* Session ids are opaque but become part of Redis keys and log lines. */
bool ussd_session_id_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == n;
}
