/*
 * sms_at: Africa's Talking's SMS API.  POST {base}/version1/messaging,
 * form-encoded (username, to, message, from, enqueue), header apiKey;
 * success is 201 with SMSMessageData.Recipients[]: statusCode 100-102 sent,
 * 401-409 refused for good (invalid number, blacklisted, no balance...),
 * 500-502 and anything unexpected retried.  AT takes no idempotency key:
 * a send repeated after a lost answer can reach the phone twice.
 */
#include "sms/sms.h"
#include "app.h"
#include "base/config.h"
#include "net/httpc.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

struct at_send {
	struct sms_sender *s;
	struct sms_msg *m;
};

static void at_answered(const struct httpc_response *r, void *arg)
{
	struct at_send *a = arg;
	struct sms_outcome o = { SMS_RETRY, NULL, NULL, NULL };
	char why[256];
	json_t *doc = NULL, *rcp;

	if (r->status != HTTPC_OK) {
		snprintf(why, sizeof(why), "africastalking: %s", r->error ? r->error : "transport error");
		o.error = why;
	} else if (r->code != 201) {
		snprintf(why, sizeof(why), "africastalking: HTTP %ld: %.120s", r->code, r->body);
		o.error = why;
	} else if (!(doc = json_loadb(r->body, r->body_len, 0, NULL)) ||
		   !(rcp = json_array_get(json_object_get(json_object_get(doc, "SMSMessageData"), "Recipients"), 0))) {
		snprintf(why, sizeof(why), "africastalking: 201 without a recipient: %.120s", r->body);
		o.error = why;
	} else {
		json_int_t code = json_integer_value(json_object_get(rcp, "statusCode"));
		const char *status = json_string_value(json_object_get(rcp, "status"));

		if (code >= 100 && code <= 102) {
			o.verdict = SMS_SENT;
			o.provider_id = json_string_value(json_object_get(rcp, "messageId"));
			o.cost = json_string_value(json_object_get(rcp, "cost"));
			if (!o.provider_id) {
				o.verdict = SMS_RETRY;
				o.error = "africastalking: sent without a messageId";
			}
		} else {
			o.verdict = code >= 401 && code <= 409 ? SMS_FAILED : SMS_RETRY;
			snprintf(why, sizeof(why), "africastalking: %lld %s", (long long)code, status ? status : "");
			o.error = why;
		}
	}
	sms_sent(a->s, a->m, &o);
	json_decref(doc);
	free(a);
}

static void at_send(struct sms_sender *s, struct sms_msg *m)
{
	const struct config *cfg = sms_sender_app(s)->cfg;
	struct at_send *a = xcalloc(1, sizeof(*a));
	struct buf body, url, key;
	const char *headers[4] = { NULL, "Accept: application/json", "Content-Type: application/x-www-form-urlencoded",
				   NULL };
	struct httpc_request req = { "POST", NULL, headers, NULL, 0, 0 };

	a->s = s;
	a->m = m;
	buf_init(&body, 64 * 1024);
	buf_init(&url, 4096);
	buf_init(&key, 1024);
	buf_puts(&body, "username=");
	buf_urlencode(&body, cfg->sms_at_username);
	buf_puts(&body, "&to=");
	buf_urlencode(&body, m->to);
	buf_puts(&body, "&message=");
	buf_urlencode(&body, m->body);
	if (*cfg->sms_sender_id) {
		buf_puts(&body, "&from=");
		buf_urlencode(&body, cfg->sms_sender_id);
	}
	buf_puts(&body, "&enqueue=1");
	buf_printf(&url, "%s/version1/messaging", cfg->sms_at_base_url);
	buf_printf(&key, "apiKey: %s", cfg->sms_at_api_key);
	headers[0] = key.data;
	req.url = url.data;
	req.body = body.data;
	req.body_len = body.len;
	httpc_request(sms_sender_http(s), &req, at_answered, a);
	buf_free(&body);
	buf_free(&url);
	buf_free(&key);
}

const struct sms_provider sms_provider_at = { "africastalking", at_send };
