/*
 * sms_kannel: Kannel's sendsms interface on smsbox, for operators with
 * their own SMPP link.  GET {kannel_url}?username&password&to&text&from
 * &coding&charset&dlr-mask&dlr-url; 202 "0: Accepted for delivery" or
 * "3: Queued for later delivery" is sent; 400 (a message Kannel refuses)
 * is final; anything else (403 for a wrong user, 503, no answer) is retried.
 * Kannel returns no message id: our row id travels in the dlr-url, and the
 * delivery report comes back to /sms/kannel/dlr with Kannel's %d status.
 */
#include "sms/sms.h"
#include "app.h"
#include "base/config.h"
#include "net/httpc.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kannel_send {
	struct sms_sender *s;
	struct sms_msg *m;
};

static void kannel_answered(const struct httpc_response *r, void *arg)
{
	struct kannel_send *k = arg;
	struct sms_outcome o = { SMS_RETRY, NULL, NULL, NULL };
	char why[256], id[40];

	if (r->status != HTTPC_OK) {
		snprintf(why, sizeof(why), "kannel: %s", r->error ? r->error : "transport error");
		o.error = why;
	} else if (r->code == 202 || r->code == 200) {
		snprintf(id, sizeof(id), "%s", k->m->id);
		o.verdict = SMS_SENT;
		o.provider_id = id;
	} else {
		o.verdict = r->code == 400 ? SMS_FAILED : SMS_RETRY;
		snprintf(why, sizeof(why), "kannel: HTTP %ld: %.120s", r->code, r->body);
		o.error = why;
	}
	sms_sent(k->s, k->m, &o);
	free(k);
}

static void param(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "%s%s=", strchr(b->data ? b->data : "", '?') ? "&" : "?", name);
	buf_urlencode(b, value);
}

static void kannel_send(struct sms_sender *s, struct sms_msg *m)
{
	const struct config *cfg = sms_sender_app(s)->cfg;
	struct kannel_send *k = xcalloc(1, sizeof(*k));
	struct buf url, dlr;
	struct httpc_request req = { "GET", NULL, NULL, NULL, 0, 0 };

	k->s = s;
	k->m = m;
	buf_init(&url, 64 * 1024);
	buf_init(&dlr, 4096);
	/* Kannel fills %d with the report type (1 delivered, 2 failed, 4
	 * buffered, 8 at the SMSC, 16 rejected by the SMSC) */
	buf_printf(&dlr, "%s/sms/kannel/dlr?id=%s&status=%%d", cfg->sms_public_url, m->id);
	buf_puts(&url, cfg->sms_kannel_url);
	param(&url, "username", cfg->sms_kannel_user);
	param(&url, "password", cfg->sms_kannel_password);
	param(&url, "to", m->to);
	param(&url, "text", m->body);
	if (*cfg->sms_sender_id)
		param(&url, "from", cfg->sms_sender_id);
	param(&url, "coding", m->coding == SMS_GSM7 ? "0" : "2");
	param(&url, "charset", "UTF-8");
	param(&url, "dlr-mask", "31");
	param(&url, "dlr-url", dlr.data);
	req.url = url.data;
	httpc_request(sms_sender_http(s), &req, kannel_answered, k);
	buf_free(&url);
	buf_free(&dlr);
}

const struct sms_provider sms_provider_kannel = { "kannel", kannel_send };
