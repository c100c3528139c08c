/*
 * net/daraja: the parsers of what Daraja posts (the Result of the
 * initiator APIs, the AccountBalance text, the STK callback and C2B
 * bodies), table-driven with the formats of PROTOCOLS.md 4.3-4.9, and the
 * client's initiator calls against an evhttp server on 127.0.0.1 playing
 * Daraja (token, B2C, Transaction Status, Pull Transactions).
 */
#include "t.h"
#include "base/config.h"
#include "base/util.h"
#include "net/daraja.h"

#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

void test_daraja_result_parse(void);
void test_daraja_balance(void);
void test_daraja_callbacks_parse(void);
void test_daraja_initiator_calls(void);

/* ---- the Result ---- */

#define RES(inner) "{\"Result\":{" inner "}}"
#define PARAMS(items) "\"ResultParameters\":{\"ResultParameter\":[" items "]}"
#define KV(k, v) "{\"Key\":\"" k "\",\"Value\":" v "}"

/* PROTOCOLS.md 4.7's B2C result, numbers as Safaricom sends them */
static const char b2c_ok[] =
	RES("\"ResultType\":0,\"ResultCode\":0,\"ResultDesc\":\"The service request is processed successfully.\","
	    "\"OriginatorConversationID\":\"payout:7:1\",\"ConversationID\":\"AG_20170717_00006c6f7f5b8b6b1a62\","
	    "\"TransactionID\":\"LGH3197RIB\"," PARAMS(KV("TransactionAmount", "8000") "," KV("TransactionReceipt",
	    "\"LGH3197RIB\"") "," KV("ReceiverPartyPublicName", "\"254708374149 - John Doe\"") "," KV(
	    "TransactionCompletedDateTime", "\"17.07.2017 10:54:57\"") "," KV("B2CUtilityAccountAvailableFunds",
	    "133568") "," KV("B2CWorkingAccountAvailableFunds", "150000.55") "," KV("B2CRecipientIsRegisteredCustomer",
	    "\"Y\"") "," KV("B2CChargesPaidAccountAvailableFunds", "0")) ","
	    "\"ReferenceData\":{\"ReferenceItem\":{\"Key\":\"QueueTimeoutURL\",\"Value\":\"https://x/t\"}}");

void test_daraja_result_parse(void)
{
	static const struct {
		const char *name, *body;
		int rc;
		long long code, amount, working;
		const char *originator, *receipt, *status, *credit, *reason;
	} cases[] = {
		{ "B2C success (4.7)", b2c_ok, 0, 0, 800000, 15000055, "payout:7:1", "LGH3197RIB", NULL,
		  "254708374149 - John Doe", NULL },
		{ "status result, values as strings (4.8)",
		  RES("\"ResultType\":\"0\",\"ResultCode\":\"0\",\"ResultDesc\":\"ok\",\"OriginatorConversationID\":"
		      "\"st:1:1\",\"ConversationID\":\"AG_1\",\"TransactionID\":\"RKTQDM7W6S\"," PARAMS(KV(
		      "DebitPartyName", "\"254708374149 - John\"") "," KV("CreditPartyName", "\"600638 - Chama\"") ","
		      KV("Amount", "\"500.00\"") "," KV("TransactionStatus", "\"Completed\"") "," KV("ReceiptNo",
		      "\"RKTQDM7W6S\"") "," KV("FinalisedTime", "20191122063845") "," KV("TransactionReason",
		      "\"ACC42\""))),
		  0, 0, 50000, -1, "st:1:1", "RKTQDM7W6S", "Completed", "600638 - Chama", "ACC42" },
		{ "failure without parameters (insufficient funds)",
		  RES("\"ResultType\":0,\"ResultCode\":1,\"ResultDesc\":\"The balance is insufficient\","
		      "\"OriginatorConversationID\":\"payout:8:1\",\"ConversationID\":\"AG_2\",\"TransactionID\":"
		      "\"LGR0000000\""),
		  0, 1, -1, -1, "payout:8:1", NULL, NULL, NULL, NULL },
		{ "not found: ResultCode 2001 as a string", RES("\"ResultCode\":\"2001\",\"ResultDesc\":\"x\""), 0, 2001,
		  -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "a single parameter as an object",
		  RES("\"ResultCode\":0,\"ResultParameters\":{\"ResultParameter\":" KV("Amount", "10") "}"), 0, 0, 1000,
		  -1, NULL, NULL, NULL, NULL, NULL },
		{ "fractional amount: not whole shillings",
		  RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "8000.50"))), 0, 0, -1, -1, NULL, NULL, NULL,
		  NULL, NULL },
		{ "8000.00 is whole", RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "8000.00"))), 0, 0, 800000,
		  -1, NULL, NULL, NULL, NULL, NULL },
		{ "a fraction a double would round away",
		  RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "8000.0000000000000001"))), 0, 0, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "exponent: not an amount", RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "8e3"))), 0, 0, -1,
		  -1, NULL, NULL, NULL, NULL, NULL },
		{ "negative amount", RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "-5"))), 0, 0, -1, -1,
		  NULL, NULL, NULL, NULL, NULL },
		{ "huge amount (past int64)",
		  RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "99999999999999999999999"))), 0, 0, -1, -1,
		  NULL, NULL, NULL, NULL, NULL },
		{ "huge amount as a string",
		  RES("\"ResultCode\":0," PARAMS(KV("TransactionAmount", "\"9223372036854775807\""))), 0, 0, -1, -1,
		  NULL, NULL, NULL, NULL, NULL },
		{ "amount with spaces", RES("\"ResultCode\":0," PARAMS(KV("Amount", "\" 10\""))), 0, 0, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "amount null: absent", RES("\"ResultCode\":0," PARAMS(KV("Amount", "null"))), 0, 0, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "amount missing: absent", RES("\"ResultCode\":0," PARAMS(KV("TransactionReceipt", "\"R1\""))), 0, 0,
		  -1, -1, NULL, "R1", NULL, NULL, NULL },
		{ "huge ResultCode", RES("\"ResultCode\":99999999999999999999"), -1, -1, -1, -1, NULL, NULL, NULL,
		  NULL, NULL },
		{ "ResultCode missing", RES("\"ResultDesc\":\"x\""), -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "ResultCode not an integer", RES("\"ResultCode\":0.5"), -1, -1, -1, -1, NULL, NULL, NULL, NULL,
		  NULL },
		{ "ResultCode an object", RES("\"ResultCode\":{}"), -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "duplicate JSON key", "{\"Result\":{\"ResultCode\":1,\"ResultCode\":0}}", -1, -1, -1, -1, NULL, NULL,
		  NULL, NULL, NULL },
		{ "duplicate parameter Key",
		  RES("\"ResultCode\":0," PARAMS(KV("Amount", "10") "," KV("Amount", "100000"))), -1, -1, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "two names of one field",
		  RES("\"ResultCode\":0," PARAMS(KV("Amount", "10") "," KV("TransactionAmount", "10"))), -1, -1, -1,
		  -1, NULL, NULL, NULL, NULL, NULL },
		{ "Value an object (nesting error)",
		  RES("\"ResultCode\":0," PARAMS(KV("Amount", "{\"v\":10}"))), -1, -1, -1, -1, NULL, NULL, NULL, NULL,
		  NULL },
		{ "Value an array", RES("\"ResultCode\":0," PARAMS(KV("TransactionStatus", "[\"Completed\"]"))), -1,
		  -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "parameter without Key", RES("\"ResultCode\":0," PARAMS("{\"Value\":10}")), -1, -1, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "ResultParameters an array", RES("\"ResultCode\":0,\"ResultParameters\":[]"), -1, -1, -1, -1, NULL,
		  NULL, NULL, NULL, NULL },
		{ "ResultParameter a number",
		  RES("\"ResultCode\":0,\"ResultParameters\":{\"ResultParameter\":5}"), -1, -1, -1, -1, NULL, NULL,
		  NULL, NULL, NULL },
		{ "OriginatorConversationID a number: its text",
		  RES("\"ResultCode\":0,\"OriginatorConversationID\":12345"), 0, 0, -1, -1, "12345", NULL, NULL, NULL,
		  NULL },
		{ "OriginatorConversationID an object", RES("\"ResultCode\":0,\"OriginatorConversationID\":{}"), -1, -1,
		  -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "Result not an object", "{\"Result\":[1]}", -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "no Result", "{\"Body\":{\"stkCallback\":{}}}", -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "unclosed", RES("\"ResultCode\":0") "{", -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "truncated", "{\"Result\":{\"ResultCode\":0", -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "a bad number", RES("\"ResultCode\":01"), -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "two numbers", RES("\"ResultCode\":1 2"), -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "empty", "", -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
		{ "escaped quotes in a string",
		  RES("\"ResultCode\":0,\"ResultDesc\":\"a \\\"q\\\" 12\"," PARAMS(KV("Amount", "7"))), 0, 0, 700, -1,
		  NULL, NULL, NULL, NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct daraja_result r;
		int rc = daraja_result_parse(cases[i].body, strlen(cases[i].body), &r);
		bool ok = rc == cases[i].rc && r.result_code == cases[i].code && r.amount_cents == cases[i].amount &&
			  r.working_funds_cents == cases[i].working;

#define SAME(field, want) ((want) ? (r.field && !strcmp(r.field, (want))) : !r.field)
		ok = ok && SAME(originator_id, cases[i].originator) && SAME(receipt, cases[i].receipt) &&
		     SAME(status, cases[i].status) && SAME(credit_party, cases[i].credit) &&
		     SAME(reason, cases[i].reason);
#undef SAME
		if (!ok)
			fprintf(stderr, "    case \"%s\": rc %d code %lld amount %lld working %lld\n", cases[i].name, rc,
				r.result_code, r.amount_cents, r.working_funds_cents);
		T_CHECK(ok);
		daraja_result_clear(&r);
	}

	/* every field of the B2C result, and clear leaves nothing behind */
	{
		struct daraja_result r;

		T_CHECK(daraja_result_parse(b2c_ok, sizeof(b2c_ok) - 1, &r) == 0);
		T_STREQ(r.conversation_id, "AG_20170717_00006c6f7f5b8b6b1a62");
		T_STREQ(r.transaction_id, "LGH3197RIB");
		T_STREQ(r.completed, "17.07.2017 10:54:57");
		T_STREQ(r.desc, "The service request is processed successfully.");
		T_CHECK(r.result_type == 0 && !r.debit_party && !r.account_balance);
		daraja_result_clear(&r);
		T_CHECK(!r.desc && !r.receipt && r.amount_cents == -1);
	}
	/* the length is the body's: bytes past it are never read */
	{
		struct daraja_result r;
		const char *two = RES("\"ResultCode\":3") "garbage";

		T_CHECK(daraja_result_parse(two, strlen(two) - 7, &r) == 0 && r.result_code == 3);
		daraja_result_clear(&r);
	}
}

void test_daraja_balance(void)
{
	/* PROTOCOLS.md 4.9: name|currency|amount|... groups joined by '&' */
	static const char bal[] = "Working Account|KES|700000.00|700000.00|0.00|0.00&Float Account|KES|0.00|0.00|0.00|"
				  "0.00&Utility Account|KES|228037.5|228037.50|0.00|0.00&Charges Paid Account|KES|-1.00|"
				  "0.00|0.00|0.00&Organization Settlement Account|KES|0.00|0.00|0.00|0.00";
	static const struct {
		const char *text, *name;
		long long cents;
	} cases[] = {
		{ bal, "Working Account", 70000000 },
		{ bal, "Float Account", 0 },
		{ bal, "Utility Account", 22803750 },
		{ bal, "Charges Paid Account", -1 },	/* negative: unreadable */
		{ bal, "Organization Settlement Account", 0 },
		{ bal, "Working", -1 },			/* a prefix is not a name */
		{ bal, "Missing Account", -1 },
		{ bal, "", -1 },
		{ NULL, "Working Account", -1 },
		{ "", "Working Account", -1 },
		{ "Working Account|KES|1.00&Working Account|KES|2.00", "Working Account", -1 },	/* which? */
		{ "Working Account|KES", "Working Account", -1 },
		{ "Working Account|KES|", "Working Account", -1 },
		{ "Working Account|KES|12.345", "Working Account", -1 },
		{ "Working Account|KES|12.3400", "Working Account", 1234 },
		{ "Working Account|KES|99999999999999999999", "Working Account", -1 },
		{ "Working Account|KES|1e5", "Working Account", -1 },
		{ "&&Working Account|KES|5|5&", "Working Account", 500 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long got = daraja_balance_cents(cases[i].text, cases[i].name);

		if (got != cases[i].cents)
			fprintf(stderr, "    balance case %zu (%s): %lld\n", i, cases[i].name, got);
		T_CHECK(got == cases[i].cents);
	}
	/* read out of a parsed Account Balance result */
	{
		const char *body = RES("\"ResultCode\":0,\"OriginatorConversationID\":\"bal:1\"," PARAMS(
			KV("AccountBalance", "\"Working Account|KES|481000.00|481000.00|0.00|0.00\"") ","
			KV("BOCompletedTime", "20200109125710")));
		struct daraja_result r;

		T_CHECK(daraja_result_parse(body, strlen(body), &r) == 0);
		T_CHECK(daraja_balance_cents(r.account_balance, "Working Account") == 48100000);
		daraja_result_clear(&r);
	}
}

void test_daraja_callbacks_parse(void)
{
	/* PROTOCOLS.md 4.3 and 4.5, after the parsers moved to daraja_parse.c */
	static const char stk[] =
		"{\"Body\":{\"stkCallback\":{\"MerchantRequestID\":\"29115-34620561-1\",\"CheckoutRequestID\":"
		"\"ws_CO_191220191020363925\",\"ResultCode\":0,\"ResultDesc\":\"ok\",\"CallbackMetadata\":{\"Item\":["
		"{\"Name\":\"Amount\",\"Value\":1.00},{\"Name\":\"MpesaReceiptNumber\",\"Value\":\"NLJ7RT61SV\"},"
		"{\"Name\":\"TransactionDate\",\"Value\":20191219102115},{\"Name\":\"PhoneNumber\",\"Value\":"
		"254708374149}]}}}}";
	static const struct {
		const char *body;
		long long cents;
	} c2b[] = {
		{ "{\"TransID\":\"RKTQDM7W6S\",\"TransAmount\":\"10\",\"BillRefNumber\":\"A1\"}", 1000 },
		{ "{\"TransID\":\"RKTQDM7W6S\",\"TransAmount\":\"10.00\",\"BillRefNumber\":\"A1\"}", 1000 },
		{ "{\"TransID\":\"RKTQDM7W6S\",\"TransAmount\":\"10.50\",\"BillRefNumber\":\"A1\"}", -1 },
		{ "{\"TransID\":\"RKTQDM7W6S\",\"TransAmount\":\"0\",\"BillRefNumber\":\"A1\"}", -1 },
		{ "{\"TransID\":\"RKTQDM7W6S\",\"TransAmount\":10,\"BillRefNumber\":\"A1\"}", -1 },
		{ "{\"TransID\":\"RKTQDM7W6S\",\"BillRefNumber\":\"A1\"}", -1 },
	};
	struct daraja_stk_callback cb;

	T_CHECK(daraja_stk_callback_parse(stk, sizeof(stk) - 1, &cb) == 0);
	T_STREQ(cb.checkout, "ws_CO_191220191020363925");
	T_STREQ(cb.receipt, "NLJ7RT61SV");
	T_STREQ(cb.phone, "+254708374149");
	T_CHECK(cb.amount_cents == 100 && cb.result_code == 0);
	T_CHECK(daraja_stk_callback_parse("{\"Body\":{}}", 11, &cb) == -1);
	{
		/* no id we ever made: empty, a space, a control character (CI's fuzzing found the empty one) */
		static const char *none[] = {
			"{\"Body\":{\"stkCallback\":{\"CheckoutRequestID\":\"\",\"ResultCode\":0}}}",
			"{\"Body\":{\"stkCallback\":{\"CheckoutRequestID\":\"ws CO\",\"ResultCode\":0}}}",
			"{\"Body\":{\"stkCallback\":{\"CheckoutRequestID\":\"ws\\tCO\",\"ResultCode\":0}}}",
		};

		for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
			T_CHECK(daraja_stk_callback_parse(none[i], strlen(none[i]), &cb) == -1 && !cb.checkout[0]);
	}
	for (size_t i = 0; i < sizeof(c2b) / sizeof(c2b[0]); i++) {
		struct daraja_c2b p;

		daraja_c2b_parse(c2b[i].body, strlen(c2b[i].body), &p);
		T_CHECK(p.amount_cents == c2b[i].cents);
		T_STREQ(p.trans_id, "RKTQDM7W6S");
		daraja_c2b_clear(&p);
	}
}

/* ---- the client's initiator calls against a local Daraja ---- */

struct fake {
	struct event_base *base;
	struct evhttp *http;
	int port;
	int posts, tokens;
	char path[128];
	json_t *body;		/* the last POST's body */
	int code;		/* the answer to a POST */
	const char *answer;
	int stale_tokens;	/* answer 404.001.03 to this many POSTs first */
	bool hang;		/* never answer a POST */
};

static void fake_cb(struct evhttp_request *req, void *arg)
{
	struct fake *f = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req), *out = evbuffer_new();
	size_t n = evbuffer_get_length(in);
	char *text = xcalloc(1, n + 1);

	evbuffer_remove(in, text, n);
	if (!strncmp(uri, "/oauth/v1/generate", 18)) {
		f->tokens++;
		evbuffer_add_printf(out, "{\"access_token\":\"tok%d\",\"expires_in\":\"3599\"}", f->tokens);
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		f->posts++;
		snprintf(f->path, sizeof(f->path), "%s", uri);
		json_decref(f->body);
		f->body = json_loads(text, 0, NULL);
		if (f->stale_tokens > 0) {
			f->stale_tokens--;
			evbuffer_add_printf(out, "{\"errorCode\":\"404.001.03\",\"errorMessage\":\"Invalid Access Token\"}");
			evhttp_send_reply(req, 404, "Not Found", out);
		} else if (f->hang) {
			;	/* the client times out (or is freed) */
		} else {
			evbuffer_add(out, f->answer, strlen(f->answer));
			evhttp_send_reply(req, f->code, "X", out);
		}
	}
	evbuffer_free(out);
	free(text);
}

struct got {
	int calls;
	enum daraja_outcome outcome;
	char conv[64], orig[64], ecode[64];
	size_t n;
	char first_id[32];
	long long first_cents;
};

static void ack_got(const struct daraja_ack *a, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->outcome = a->outcome;
	snprintf(g->conv, sizeof(g->conv), "%s", a->conversation_id ? a->conversation_id : "");
	snprintf(g->orig, sizeof(g->orig), "%s", a->originator_id ? a->originator_id : "");
	snprintf(g->ecode, sizeof(g->ecode), "%s", a->error_code ? a->error_code : "");
}

static void pull_got(const struct daraja_pull_result *r, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->outcome = r->outcome;
	g->n = r->n;
	if (r->n) {
		snprintf(g->first_id, sizeof(g->first_id), "%s", r->txns[0].transaction_id);
		g->first_cents = r->txns[0].amount_cents;
	}
}

static void run_until(struct fake *f, const int *calls, int want)
{
	uint64_t until = util_now_ms() + 3000;

	while (*calls < want && util_now_ms() < until)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "(none)";
}

void test_daraja_initiator_calls(void)
{
	struct fake f = { 0 };
	struct evhttp_bound_socket *sock;
	struct config *cfg = config_new();
	char conf[512], err[256] = "", *path = strdup("/tmp/chamad-daraja-XXXXXX");
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");
	struct daraja *d;
	struct got g = { 0 };
	struct daraja_b2c_req b2c = { "payout:7:1", "+254712345678", "Loan 42", "loan", "https://h/b2c/result/s",
				      "https://h/b2c/timeout/s", 100000 };
	struct daraja_status_req st = { "st:3:1", NULL, "payout:7:1", "https://h/st/result/s", "https://h/st/t/s",
					NULL, NULL };

	f.base = event_base_new();
	f.http = evhttp_new(f.base);
	evhttp_set_gencb(f.http, fake_cb, &f);
	sock = evhttp_bind_socket_with_handle(f.http, "127.0.0.1", 0);
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl);
		f.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	snprintf(conf, sizeof(conf),
		 "[mpesa]\nbase_url = http://127.0.0.1:%d\nconsumer_key = k\nconsumer_secret = s\nshortcode = 600638\n"
		 "b2c_shortcode = 600996\ninitiator_name = testapi\nsecurity_credential = Q1JFRA==\nmax_payout = 5000\n"
		 "timeout_ms = 400\ncallback_secret = unit-test-secret-of-32-characters\n"
		 "allow_ips = safaricom:127.0.0.1\n",
		 f.port);
	fputs(conf, fp);
	fclose(fp);
	T_CHECK(config_load(cfg, path, true, err, sizeof(err)) == 0);
	d = daraja_new(f.base, cfg);

	/* B2C accepted: the wire body of PROTOCOLS.md 4.7 */
	f.code = 200;
	f.answer = "{\"ConversationID\":\"AG_1\",\"OriginatorConversationID\":\"payout:7:1\",\"ResponseCode\":\"0\","
		   "\"ResponseDescription\":\"Accept the service request successfully.\"}";
	daraja_b2c(d, &b2c, ack_got, &g);
	T_CHECK(g.calls == 0);	/* never inside the call */
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_ACCEPTED);
	T_STREQ(g.conv, "AG_1");
	T_STREQ(g.orig, "payout:7:1");
	T_STREQ(f.path, "/mpesa/b2c/v3/paymentrequest");
	T_STREQ(jstr(f.body, "OriginatorConversationID"), "payout:7:1");
	T_STREQ(jstr(f.body, "InitiatorName"), "testapi");
	T_STREQ(jstr(f.body, "SecurityCredential"), "Q1JFRA==");
	T_STREQ(jstr(f.body, "CommandID"), "BusinessPayment");
	T_STREQ(jstr(f.body, "PartyA"), "600996");
	T_STREQ(jstr(f.body, "PartyB"), "254712345678");
	T_STREQ(jstr(f.body, "ResultURL"), "https://h/b2c/result/s");
	T_STREQ(jstr(f.body, "QueueTimeOutURL"), "https://h/b2c/timeout/s");
	T_CHECK(json_integer_value(json_object_get(f.body, "Amount")) == 1000);
	T_CHECK(!json_object_get(f.body, "Password"));

	/* Daraja's refusal: REFUSED with its errorCode */
	g.calls = 0;
	f.code = 500;
	f.answer = "{\"requestId\":\"1\",\"errorCode\":\"500.003.02\",\"errorMessage\":\"System is busy\"}";
	daraja_b2c(d, &b2c, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_REFUSED);
	T_STREQ(g.ecode, "500.003.02");

	/* a gateway's 502 without a Daraja body: it may have been queued */
	g.calls = 0;
	f.code = 502;
	f.answer = "<html>Bad Gateway</html>";
	daraja_b2c(d, &b2c, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_UNANSWERED);

	/* no answer: UNANSWERED, and sent exactly once (never retried) */
	g.calls = 0;
	f.posts = 0;
	f.hang = true;
	daraja_b2c(d, &b2c, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_UNANSWERED && f.posts == 1);
	/* the hung request is never answered: the client closed it, and
	 * evhttp frees it with the connection */
	f.hang = false;

	/* a stale token: sent again once with a fresh one (not processed) */
	g.calls = 0;
	f.posts = 0;
	f.code = 200;
	f.stale_tokens = 1;
	f.answer = "{\"ConversationID\":\"AG_2\",\"OriginatorConversationID\":\"payout:7:1\",\"ResponseCode\":\"0\"}";
	daraja_b2c(d, &b2c, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_ACCEPTED && f.posts == 2);

	/* above max_payout: never sent, and not answered inside the call */
	g.calls = 0;
	f.posts = 0;
	b2c.amount_cents = 500100;
	daraja_b2c(d, &b2c, ack_got, &g);
	T_CHECK(g.calls == 0);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_UNSENT && f.posts == 0);

	/* Transaction Status by the B2C's OriginatorConversationID (PROTOCOLS.md 4.8) */
	g.calls = 0;
	f.answer = "{\"ConversationID\":\"AG_3\",\"OriginatorConversationID\":\"x\",\"ResponseCode\":0}";
	daraja_txn_status(d, &st, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_ACCEPTED);	/* ResponseCode as a number too */
	T_STREQ(g.conv, "AG_3");
	T_STREQ(f.path, "/mpesa/transactionstatus/v1/query");
	T_STREQ(jstr(f.body, "CommandID"), "TransactionStatusQuery");
	T_STREQ(jstr(f.body, "Initiator"), "testapi");
	T_STREQ(jstr(f.body, "OriginatorConversationID"), "payout:7:1");
	T_STREQ(jstr(f.body, "TransactionID"), "");
	T_STREQ(jstr(f.body, "IdentifierType"), "4");
	T_STREQ(jstr(f.body, "PartyA"), "600996");
	T_STREQ(jstr(f.body, "ResultURL"), "https://h/st/result/s");
	/* ... and by receipt: the query's own originator id goes with it */
	g.calls = 0;
	st.transaction_id = "RKTQDM7W6S";
	daraja_txn_status(d, &st, ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_STREQ(jstr(f.body, "TransactionID"), "RKTQDM7W6S");
	T_STREQ(jstr(f.body, "OriginatorConversationID"), "st:3:1");

	/* a non-zero ResponseCode is a refusal */
	g.calls = 0;
	f.answer = "{\"ResponseCode\":\"1\",\"ResponseDescription\":\"no\"}";
	daraja_account_balance(d, "bal:1", "https://h/b/r", "https://h/b/t", ack_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_REFUSED);
	T_STREQ(f.path, "/mpesa/accountbalance/v1/query");
	T_STREQ(jstr(f.body, "CommandID"), "AccountBalance");

	/* the statement: both shapes of Response, amounts exact */
	g.calls = 0;
	f.answer = "{\"ResponseRefID\":\"r\",\"ResponseCode\":\"1000\",\"ResponseMessage\":\"Success\",\"Response\":[["
		   "{\"transactionId\":\"RKT1\",\"trxDate\":\"2024-01-02T10:00:00\",\"msisdn\":254712345678,"
		   "\"transactiontype\":\"c2b-pay-bill-debit\",\"billreference\":\"A1\",\"amount\":\"500.0\"},"
		   "{\"transactionId\":\"RKT2\",\"amount\":20}]]}";
	daraja_pull_transactions(d, "2024-01-01 00:00:00", "2024-01-02 00:00:00", 0, pull_got, &g);
	run_until(&f, &g.calls, 1);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_ACCEPTED && g.n == 2);
	T_STREQ(g.first_id, "RKT1");
	T_CHECK(g.first_cents == 50000);
	T_STREQ(f.path, "/pulltransactions/v1/query");
	T_STREQ(jstr(f.body, "StartDate"), "2024-01-01 00:00:00");
	T_STREQ(jstr(f.body, "OffSetValue"), "0");
	T_STREQ(jstr(f.body, "ShortCode"), "600638");

	/* freed with a call in flight: CANCELLED, once */
	g.calls = 0;
	f.hang = true;
	daraja_reversal(d,
			&(struct daraja_reversal_req){ "rev:1", "RKT1", 50000, NULL, "https://h/r/r", "https://h/r/t",
						       NULL, NULL },
			ack_got, &g);
	run_until(&f, &f.posts, f.posts + 1);
	T_STREQ(jstr(f.body, "RecieverIdentifierType"), "11");
	T_STREQ(jstr(f.body, "ReceiverParty"), "600638");
	daraja_free(d);
	T_CHECK(g.calls == 1 && g.outcome == DARAJA_CANCELLED);
	json_decref(f.body);
	evhttp_free(f.http);
	event_base_free(f.base);
	config_free(cfg);
	unlink(path);
	free(path);
}
