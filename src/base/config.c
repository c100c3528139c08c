/*
 * config: parser and validators for the key table.
 */
#include "base/config.h"
#include "base/log.h"
#include "base/redis_url.h"
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

enum cf_type { CF_STR, CF_INT };

/* A validator writes a reason into err and returns -1 for a bad value. */
typedef config_check_fn cf_check_fn;

struct cf_key {
	const char *section;
	const char *name;
	enum cf_type type;
	size_t offset;
	const char *def;
	long long min, max;	/* CF_INT bounds */
	bool reloadable;
	cf_check_fn check;
	const char *help;
};

static int check_listen(const char *v, char *err, size_t errlen);
static int check_dburl(const char *v, char *err, size_t errlen);
static int check_redisurl(const char *v, char *err, size_t errlen);
static int check_level(const char *v, char *err, size_t errlen);
static int check_format(const char *v, char *err, size_t errlen);
static int check_country(const char *v, char *err, size_t errlen);
static int check_agg_list(const char *v, char *err, size_t errlen);
static int check_b2c_command(const char *v, char *err, size_t errlen);

#define STR(sec, key, def, reload, chk, help) \
	{ #sec, #key, CF_STR, offsetof(struct config, sec##_##key), def, 0, 0, reload, chk, help }
#define INT(sec, key, def, lo, hi, reload, help) \
	{ #sec, #key, CF_INT, offsetof(struct config, sec##_##key), def, lo, hi, reload, NULL, help }

static const struct cf_key cf_keys[] = {
	STR(http, listen, "127.0.0.1:8080", false, check_listen, "address:port the HTTP front listens on"),
	INT(http, max_body, "8192", 256, 1048576, true, "largest request body in bytes; larger gets 413"),
	INT(http, request_timeout_ms, "8000", 100, 60000, true, "a request not answered by then gets 503"),
	INT(http, idle_timeout_s, "30", 1, 3600, false, "keep-alive and read timeout of a client connection"),
	STR(database, url, "host=127.0.0.1 port=5432 dbname=chamasmart", false, check_dburl,
	    "libpq conninfo string or postgresql:// URI"),
	INT(database, pool_size, "4", 1, 256, false, "connections kept open to PostgreSQL"),
	INT(database, queue_max, "4096", 0, 100000, false,
	    "memory cap on queries waiting for a connection; below it a query waits only if the pool, at its measured "
	    "query time, can answer it by its deadline (the USSD hop's, else query_timeout_ms), else \"busy\" at once"),
	INT(database, background_pool_size, "2", 1, 64, false,
	    "further connections only for background work (SMS sender, M-Pesa jobs and callbacks, reminders)"),
	INT(database, background_queue_max, "100000", 1, 1000000, false,
	    "background statements that may wait; outcomes are retried until recorded, never dropped"),
	INT(database, connect_timeout_ms, "3000", 100, 60000, true, "give up a connection attempt after this"),
	INT(database, query_timeout_ms, "5000", 100, 600000, true,
	    "client-side limit on one query (also sent as statement_timeout)"),
	INT(database, reconnect_min_ms, "100", 10, 60000, true, "first reconnect delay; doubles per failure"),
	INT(database, reconnect_max_ms, "5000", 10, 600000, true, "longest reconnect delay"),
	STR(database, migrations_dir, "migrations", false, NULL, "where chamad migrate finds NNN_name.sql"),
	STR(database, schema_dir, "schema", false, NULL,
	    "where chamad migrate finds NN_name.sql (functions and views, applied again when changed)"),
	STR(redis, url, "redis://127.0.0.1:6379/0", false, check_redisurl,
	    "redis://host:port/db or unix:///path/to/socket?db=N"),
	INT(redis, connect_timeout_ms, "2000", 50, 60000, true, "give up a connection attempt after this"),
	INT(redis, command_timeout_ms, "1000", 10, 60000, true,
	    "a command unanswered by then fails and the connection is dropped"),
	INT(redis, max_pending, "10000", 1, 1000000, false, "commands in flight at once; more fail at once"),
	INT(redis, reconnect_min_ms, "100", 10, 60000, true, "first reconnect delay; doubles per failure"),
	INT(redis, reconnect_max_ms, "5000", 10, 600000, true, "longest reconnect delay"),
	STR(log, level, "info", true, check_level, "debug, info, warn or error"),
	STR(log, format, "text", true, check_format, "text or json (one JSON object per line)"),
	INT(daemon, shutdown_timeout_ms, "10000", 0, 600000, true,
	    "on SIGTERM, how long in-flight requests may take to finish"),
	STR(ussd, menus_dir, "menus", false, NULL, "where the USSD menus (*.json) are; re-read on SIGHUP"),
	INT(ussd, session_ttl_s, "180", 30, 3600, true, "a USSD session left idle this long expires"),
	INT(ussd, screen_max, "160", 64, 182, true, "largest screen in GSM-7 characters (182 is the protocol's limit)"),
	STR(ussd, country_code, "254", true, check_country, "country calling code for numbers written nationally (0712...)"),
	STR(ussd, service_code, "", true, NULL,
	    "our USSD code, e.g. *384*1234#; longer dial strings (*384*1234*3*1#) become pre-filled input"),
	STR(ussd, timezone, "Africa/Nairobi", true, NULL, "time zone of times shown to members (meetings, lock-outs)"),
	INT(ussd, hop_timeout_ms, "4000", 200, 15000, true,
	    "a hop not answered by then gets \"Service busy\" (aggregators allow about 10 s)"),
	INT(ussd, busy_hold_ms, "2000", 0, 15000, true,
	    "a \"Service busy\" for want of capacity is answered this late (within the hop), so redials come slower"),
	STR(ussd, secrets, "", true, check_agg_list,
	    "shared secrets per aggregator, \"africastalking:S1 hubtel:S2\"; sent as X-Chamad-Secret or ?secret=; "
	    "at least 32 characters unless [http] listen is loopback"),
	STR(ussd, allow_ips, "", true, check_agg_list,
	    "IP allow-lists per aggregator, \"africastalking:196.201.214.0/24,127.0.0.1 hubtel:...\"; an aggregator "
	    "with neither a secret nor an allow-list is served only from loopback, and a non-loopback listen needs one"),
	STR(auth, pin_pepper, "", false, NULL,
	    "server-side secret mixed into every PIN hash; set it in production and never change it"),
	INT(auth, pin_opslimit, "2", 1, 20, true, "argon2id passes for new PIN hashes (OWASP minimum: 2)"),
	INT(auth, pin_memlimit_kib, "19456", 64, 1048576, true, "argon2id memory for new PIN hashes in KiB (OWASP minimum: 19456)"),
	INT(auth, workers, "2", 1, 64, false, "threads that hash and check PINs off the event loop"),
	INT(auth, queue_max, "1024", 1, 100000, false,
	    "memory cap on PIN checks waiting for a worker; below it a check waits only if the workers, at their "
	    "measured hashing time, can answer it within the USSD hop, else \"Service busy\" at once"),
	INT(auth, pin_max_attempts, "3", 1, 20, true, "wrong PINs in a row that lock the account"),
	INT(auth, pin_lock_minutes, "30", 1, 10080, true, "how long a locked account stays locked"),
	INT(auth, otp_ttl_s, "300", 30, 3600, true, "a one-time code is valid this long"),
	INT(auth, otp_max_tries, "3", 1, 10, true, "wrong entries that void a one-time code"),
	INT(auth, otp_max_per_hour, "3", 1, 100, true, "one-time codes sent to one number per hour"),
	/* the names are the SMS module's: it adds their check (config_add_check) */
	STR(sms, provider, "none", false, NULL,
	    "africastalking, kannel, or none (messages stay queued in the outbox)"),
	INT(sms, rate_per_sec, "10", 1, 10000, true, "messages sent per second at most (the provider's limit)"),
	INT(sms, batch, "50", 1, 1000, true, "rows claimed from the outbox at once"),
	INT(sms, max_attempts, "8", 1, 100, true, "sends tried before a message is marked failed"),
	INT(sms, retry_min_s, "30", 1, 86400, true, "first retry delay; doubles per attempt, with jitter"),
	INT(sms, retry_max_s, "3600", 1, 604800, true, "longest retry delay"),
	INT(sms, lease_s, "120", 5, 86400, true,
	    "a claimed row not finished by then (its daemon died) is claimed again"),
	INT(sms, poll_ms, "5000", 100, 600000, true, "look for due rows this often even without a NOTIFY"),
	INT(sms, max_segments, "6", 1, 20, true, "longer messages are refused (marked failed)"),
	INT(sms, timeout_ms, "10000", 100, 120000, true, "one send to the provider, connect included"),
	STR(sms, sender_id, "", true, NULL, "sender ID or short code (\"from\"); empty = the provider's default"),
	STR(sms, at_base_url, "https://api.sandbox.africastalking.com", true, NULL,
	    "Africa's Talking API base (live: https://api.africastalking.com)"),
	STR(sms, at_username, "sandbox", true, NULL, "Africa's Talking username"),
	STR(sms, at_api_key, "", true, NULL, "Africa's Talking API key (sent as the apiKey header)"),
	STR(sms, kannel_url, "http://127.0.0.1:13013/cgi-bin/sendsms", true, NULL, "Kannel smsbox sendsms URL"),
	STR(sms, kannel_user, "chamad", true, NULL, "Kannel sendsms-user username"),
	STR(sms, kannel_password, "", true, NULL, "Kannel sendsms-user password"),
	STR(sms, public_url, "http://127.0.0.1:8080", true, NULL,
	    "how Kannel reaches chamad, for the dlr-url of each message"),
	INT(sms, inbound_per_hour, "20", 1, 10000, true, "SMS commands served per number per hour; more are dropped"),
	STR(sms, secrets, "", true, check_agg_list,
	    "shared secrets for the SMS callbacks, \"africastalking:S1 kannel:S2\" (as [ussd] secrets)"),
	STR(sms, allow_ips, "", true, check_agg_list, "IP allow-lists for the SMS callbacks (as [ussd] allow_ips); a non-loopback listen needs a secret or an "
	    "allow-list for [sms] provider"),
	STR(mpesa, base_url, "https://sandbox.safaricom.co.ke", true, NULL,
	    "Daraja API base (live: https://api.safaricom.co.ke)"),
	STR(mpesa, consumer_key, "", true, NULL, "Daraja app consumer key; empty = M-Pesa off (no M-Pesa routes are served)"),
	STR(mpesa, consumer_secret, "", true, NULL, "Daraja app consumer secret"),
	STR(mpesa, shortcode, "174379", true, NULL, "paybill or till number (BusinessShortCode, PartyB)"),
	STR(mpesa, passkey, "", true, NULL, "Lipa na M-Pesa Online passkey (Password = base64(shortcode+passkey+time))"),
	STR(mpesa, transaction_type, "CustomerPayBillOnline", true, NULL,
	    "CustomerPayBillOnline (paybill) or CustomerBuyGoodsOnline (till)"),
	STR(mpesa, public_url, "http://127.0.0.1:8080", true, NULL, "how Safaricom reaches chamad, for the CallBackURL"),
	STR(mpesa, callback_secret, "", false, NULL,
	    "path secret of every M-Pesa callback (/mpesa/stk/callback/<secret>, /payments/c2b/.../<secret>...): "
	    "required with consumer_key, at least 32 characters of A-Z a-z 0-9 _ -"),
	INT(mpesa, min_amount, "10", 1, 150000, true, "smallest contribution by M-Pesa, in whole shillings"),
	INT(mpesa, max_amount, "150000", 1, 250000, true, "largest contribution by M-Pesa, in whole shillings"),
	INT(mpesa, daily_limit, "300000", 1, 1000000, true, "M-Pesa contributions per member per day, in shillings"),
	INT(mpesa, push_delay_ms, "1500", 0, 30000, true,
	    "wait after the USSD session ends before the STK push (the prompt cannot show during a session)"),
	INT(mpesa, query_after_s, "60", 1, 86400, true, "a push with no callback by then is checked with the status query"),
	INT(mpesa, query_every_s, "30", 1, 3600, true, "how often the status query job runs"),
	INT(mpesa, query_max_attempts, "10", 1, 1000, true, "status queries before a push is given up as expired"),
	INT(mpesa, timeout_ms, "10000", 100, 60000, true, "one call to Daraja, connect included"),
	INT(mpesa, unknown_close_s, "600", 10, 86400, true,
	    "a push whose answer was lost, with no callback matched by then, is closed and the member told"),
	INT(jobs, every_s, "3600", 1, 86400, true, "how often the scheduled jobs (reminders, approvals' expiry, loan penalties and defaults) run"),
	INT(jobs, reminder_lead_days, "1", 0, 30, true, "a due-date reminder goes out this many days before"),
	STR(jobs, now, "", true, NULL,
	    "a fixed \"now\" (timestamp) for the domain clock: postings, jobs, arrears; empty = the clock (tests, drills)"),
	STR(mpesa, allow_ips, "", true, check_agg_list, "IP allow-list for the M-Pesa callbacks, \"safaricom:196.201.214.0/24,...\"; required with consumer_key"),
	/* [mpesa] the initiator APIs and the Transaction Status rail (issue 10, part C) */
	STR(mpesa, b2c_shortcode, "", true, NULL, "B2C shortcode (PartyA of payouts and queries); empty = shortcode"),
	STR(mpesa, initiator_name, "", true, NULL, "the API initiator's user name (InitiatorName / Initiator)"),
	STR(mpesa, security_credential, "", true, NULL,
	    "the initiator password encrypted by the Daraja portal (base64); chamad never sees the password"),
	STR(mpesa, b2c_command_id, "BusinessPayment", true, check_b2c_command,
	    "B2C CommandID: BusinessPayment, SalaryPayment or PromotionPayment"),
	INT(mpesa, max_payout, "150000", 1, 250000, true, "largest B2C payout, in whole shillings (never sent above it)"),
	INT(mpesa, status_timeout_s, "120", 1, 86400, true,
	    "a Transaction Status query with no result by then is sent again"),
	INT(mpesa, status_max_attempts, "5", 1, 100, true, "Transaction Status queries sent before the outcome is unknown"),
	/* dual control (issue 10) */
	INT(approvals, expire_hours, "72", 1, 8760, true,
	    "a request officials have not decided by then expires (counted from its opening, or its freeze)"),
	/* [mpesa] payouts (issue 10, part F) */
	INT(mpesa, b2c_result_timeout_s, "300", 10, 86400, true,
	    "a B2C payout with no result by then is resolved with the Transaction Status query"),
	/* reconciliation (issue 10 part 6) */
	INT(mpesa, reconcile_every_s, "86400", 0, 604800, true,
	    "the reconcile job compares each period this long (86400: each day, local midnights); 0 = no job"),
	STR(mpesa, reconcile_float_account, "Utility Account", true, NULL,
	    "the Account Balance account held against the books' M-Pesa float (a paybill collects in Utility Account)"),
	INT(mpesa, reconcile_balance_wait_s, "120", 5, 3600, true,
	    "a reconcile run waits this long for the Account Balance result, then reports the balance unknown"),
	/* issue 10, credit only what we confirmed (helper D) */
	INT(mpesa, verify_flag_after_s, "3600", 1, 604800, true,
	    "a paybill payment the Transaction Status query has not verified by then is flagged, never credited"),
};

static void *slot(struct config *c, const struct cf_key *k)
{
	return (char *)c + k->offset;
}

static const void *cslot(const struct config *c, const struct cf_key *k)
{
	return (const char *)c + k->offset;
}

static void env_name(const struct cf_key *k, char *out, size_t n)
{
	size_t i = 0;

	snprintf(out, n, "CHAMAD_%s_%s", k->section, k->name);
	for (; out[i]; i++)
		out[i] = (char)toupper((unsigned char)out[i]);
}

/* Checks the modules added to string keys (config_add_check). */
static struct {
	const struct cf_key *key;
	config_check_fn fn;
} added[8];
static size_t n_added;

int config_add_check(const char *section, const char *name, config_check_fn fn)
{
	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++) {
		const struct cf_key *k = &cf_keys[i];

		if (strcmp(k->section, section) || strcmp(k->name, name) || k->type != CF_STR)
			continue;
		for (size_t j = 0; j < n_added; j++)
			if (added[j].key == k && added[j].fn == fn)
				return 0;
		xassert(n_added < ARRAY_LEN(added));
		added[n_added].key = k;
		added[n_added++].fn = fn;
		return 0;
	}
	return -1;
}

/* Parses and stores one value; on error fills err with the reason only. */
static int set_value(struct config *c, const struct cf_key *k, const char *v, char *err, size_t errlen)
{
	if (k->type == CF_INT) {
		long long n;

		if (util_parse_ll(v, k->min, k->max, &n) < 0) {
			snprintf(err, errlen, "must be an integer in %lld..%lld, got \"%s\"", k->min, k->max, v);
			return -1;
		}
		*(int *)slot(c, k) = (int)n;
		return 0;
	}
	if (k->check && k->check(v, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n_added; i++)
		if (added[i].key == k && added[i].fn(v, err, errlen) < 0)
			return -1;
	free(*(char **)slot(c, k));
	*(char **)slot(c, k) = xstrdup(v);
	return 0;
}

struct config *config_new(void)
{
	struct config *c = xcalloc(1, sizeof(*c));
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++) {
		if (set_value(c, &cf_keys[i], cf_keys[i].def, err, sizeof(err)) < 0) {
			log_msg(LOG_FATAL, NULL, "bad built-in default for %s: %s", cf_keys[i].name, err);
			abort();
		}
	}
	return c;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++)
		if (cf_keys[i].type == CF_STR)
			free(*(char **)slot(c, &cf_keys[i]));
	free(c);
}

static const struct cf_key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++)
		if (!strcmp(cf_keys[i].section, section) && !strcmp(cf_keys[i].name, name))
			return &cf_keys[i];
	return NULL;
}

static int load_file(struct config *c, const char *path, bool required, char *err, size_t errlen)
{
	char line[4096], section[64] = "", why[256];
	int lineno = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		if (!required && errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *key, *val;
		const struct cf_key *k;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path, lineno);
			goto fail;
		}
		s = util_trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');

			if (!end || end[1] || (size_t)(end - s - 1) >= sizeof(section)) {
				snprintf(err, errlen, "%s:%d: bad section header", path, lineno);
				goto fail;
			}
			*end = '\0';
			snprintf(section, sizeof(section), "%s", util_trim(s + 1));
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = util_trim(s);
		val = util_trim(eq + 1);
		k = find_key(section, key);
		if (!k) {
			snprintf(err, errlen, "%s:%d: unknown key [%s] %s", path, lineno, section, key);
			goto fail;
		}
		if (set_value(c, k, val, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: [%s] %s: %s", path, lineno, section, key, why);
			goto fail;
		}
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	return -1;
}

int config_load(struct config *c, const char *path, bool required, char *err, size_t errlen)
{
	char name[96], why[256];

	if (path && load_file(c, path, required, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++) {
		const char *v;

		env_name(&cf_keys[i], name, sizeof(name));
		v = getenv(name);
		if (!v)
			continue;
		if (set_value(c, &cf_keys[i], v, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: %s", name, why);
			return -1;
		}
	}
	if (c->database_reconnect_min_ms > c->database_reconnect_max_ms) {
		snprintf(err, errlen, "[database] reconnect_min_ms: must not exceed reconnect_max_ms");
		return -1;
	}
	if (c->redis_reconnect_min_ms > c->redis_reconnect_max_ms) {
		snprintf(err, errlen, "[redis] reconnect_min_ms: must not exceed reconnect_max_ms");
		return -1;
	}
	return config_validate(c, err, errlen);
}

/* ---- fail closed: who may call the callbacks (README "Callback secrets
 * and allow-lists"; etc/chamad.conf says the same) ---- */

#define SECRET_MIN 32
#define SECRET_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define SECRET_HOWTO "make one with: head -c 24 /dev/urandom | base64 | tr '+/' '-_'"

/* Every secret in a "name:secret ..." list is long enough to resist guessing. */
static int secrets_long(const char *key, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, " \t");
		const char *colon = memchr(p, ':', n);

		if (colon && (size_t)(p + n - colon - 1) < SECRET_MIN) {
			snprintf(err, errlen, "%s: the secret for %.*s has %zu characters; at least %d are needed when "
				 "[http] listen is not a loopback address (%s)", key, (int)(colon - p), p,
				 (size_t)(p + n - colon - 1), SECRET_MIN, SECRET_HOWTO);
			return -1;
		}
		p += n;
		p += strspn(p, " \t");
	}
	return 0;
}

/* Some entry (any name) in the list. */
static bool list_has_entry(const char *list)
{
	return list[strspn(list, " \t")] != '\0';
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
	char scratch[8], *host = NULL;
	int port;
	bool loopback;

	/* Money: Safaricom signs nothing (PROTOCOLS.md 4.6), so the only
	 * proof a callback is Safaricom's is a path nobody can guess and an
	 * address that is theirs.  Both, always, once M-Pesa is on. */
	if (*c->mpesa_consumer_key) {
		size_t n = strlen(c->mpesa_callback_secret);

		if (n < SECRET_MIN || strspn(c->mpesa_callback_secret, SECRET_CHARS) != n) {
			snprintf(err, errlen, "[mpesa] callback_secret: M-Pesa is configured ([mpesa] consumer_key), so "
				 "every callback path needs a secret of at least %d characters of A-Z a-z 0-9 _ - "
				 "(%s %zu characters%s); %s", SECRET_MIN, n ? "it has" : "it is empty:", n,
				 n && strspn(c->mpesa_callback_secret, SECRET_CHARS) != n ? ", some of them others" : "",
				 SECRET_HOWTO);
			return -1;
		}
		if (!util_list_entry(c->mpesa_allow_ips, "safaricom", scratch, sizeof(scratch))) {
			snprintf(err, errlen, "[mpesa] allow_ips: M-Pesa is configured ([mpesa] consumer_key), so the "
				 "callbacks need an allow-list of Safaricom's addresses, \"safaricom:196.201.214.0/24,...\"");
			return -1;
		}
	}
	/* USSD and SMS: on loopback only this machine reaches us (a proxy in
	 * front does its own checks); anywhere else each caller in use needs a
	 * secret or an allow-list, and callers we know nothing of are shut by
	 * http_guard. */
	if (util_parse_hostport(c->http_listen, &host, &port) < 0)
		return 0;	/* check_listen already refused it */
	loopback = util_host_is_loopback(host);
	free(host);
	if (loopback)
		return 0;
	if (secrets_long("[ussd] secrets", c->ussd_secrets, err, errlen) < 0 ||
	    secrets_long("[sms] secrets", c->sms_secrets, err, errlen) < 0)
		return -1;
	if (!list_has_entry(c->ussd_secrets) && !list_has_entry(c->ussd_allow_ips)) {
		snprintf(err, errlen, "[ussd] secrets: [http] listen %s is not a loopback address, so each USSD aggregator "
			 "in use needs a secret ([ussd] secrets) or an allow-list ([ussd] allow_ips); none has either",
			 c->http_listen);
		return -1;
	}
	if (strcmp(c->sms_provider, "none") &&
	    !util_list_entry(c->sms_secrets, c->sms_provider, scratch, sizeof(scratch)) &&
	    !util_list_entry(c->sms_allow_ips, c->sms_provider, scratch, sizeof(scratch))) {
		snprintf(err, errlen, "[sms] secrets: [http] listen %s is not a loopback address, so the SMS provider "
			 "%s ([sms] provider) needs a secret ([sms] secrets) or an allow-list ([sms] allow_ips) for its "
			 "delivery reports and messages", c->http_listen, c->sms_provider);
		return -1;
	}
	return 0;
}

int config_apply_reload(struct config *cur, const struct config *next)
{
	int applied = 0;

	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++) {
		const struct cf_key *k = &cf_keys[i];
		bool same;

		if (k->type == CF_INT)
			same = *(const int *)cslot(cur, k) == *(const int *)cslot(next, k);
		else
			same = !strcmp(*(char *const *)cslot(cur, k), *(char *const *)cslot(next, k));
		if (same)
			continue;
		if (!k->reloadable) {
			log_warn("reload: [%s] %s changed but needs a restart; keeping the running value",
				 k->section, k->name);
			continue;
		}
		if (k->type == CF_INT) {
			*(int *)slot(cur, k) = *(const int *)cslot(next, k);
		} else {
			free(*(char **)slot(cur, k));
			*(char **)slot(cur, k) = xstrdup(*(char *const *)cslot(next, k));
		}
		log_info("reload: [%s] %s changed", k->section, k->name);
		applied++;
	}
	return applied;
}

void config_print_keys(FILE *out)
{
	char name[96];

	for (size_t i = 0; i < ARRAY_LEN(cf_keys); i++) {
		const struct cf_key *k = &cf_keys[i];

		env_name(k, name, sizeof(name));
		fprintf(out, "  [%s] %-20s %-34s default %s%s\n      %s\n", k->section, k->name, name, k->def,
			k->reloadable ? " (SIGHUP reloads)" : "", k->help);
	}
}

static int check_listen(const char *v, char *err, size_t errlen)
{
	char *host;
	int port;

	if (util_parse_hostport(v, &host, &port) < 0) {
		snprintf(err, errlen, "must be host:port, got \"%s\"", v);
		return -1;
	}
	free(host);
	return 0;
}

static int check_dburl(const char *v, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(v, &perr);

	if (!opts) {
		snprintf(err, errlen, "not a libpq conninfo or URI: %s", perr ? util_trim(perr) : "parse error");
		PQfreemem(perr);
		return -1;
	}
	PQconninfoFree(opts);
	return 0;
}

static int check_redisurl(const char *v, char *err, size_t errlen)
{
	return redis_url_check(v, err, errlen);
}

static int check_level(const char *v, char *err, size_t errlen)
{
	enum log_level l;

	if (log_level_parse(v, &l) < 0 || l == LOG_FATAL) {
		snprintf(err, errlen, "must be debug, info, warn or error, got \"%s\"", v);
		return -1;
	}
	return 0;
}

static int check_format(const char *v, char *err, size_t errlen)
{
	enum log_format f;

	if (log_format_parse(v, &f) < 0) {
		snprintf(err, errlen, "must be text or json, got \"%s\"", v);
		return -1;
	}
	return 0;
}

static int check_country(const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n < 1 || n > 3 || v[0] == '0' || strspn(v, "0123456789") != n) {
		snprintf(err, errlen, "must be 1 to 3 digits without + (e.g. 254), got \"%s\"", v);
		return -1;
	}
	return 0;
}

/* "name:value name2:value2": each entry names an aggregator. */
static int check_agg_list(const char *v, char *err, size_t errlen)
{
	const char *p = v;

	while (*p) {
		size_t n = strcspn(p, " \t");
		const char *colon = memchr(p, ':', n);

		if (n && (!colon || colon == p || colon == p + n - 1)) {
			snprintf(err, errlen, "entries are aggregator:value separated by spaces, got \"%.*s\"", (int)n,
				 p);
			return -1;
		}
		p += n;
		p += strspn(p, " \t");
	}
	return 0;
}

/* [mpesa] b2c_command_id: Daraja's three B2C commands (issue 10, part C) */
static int check_b2c_command(const char *v, char *err, size_t errlen)
{
	if (!strcmp(v, "BusinessPayment") || !strcmp(v, "SalaryPayment") || !strcmp(v, "PromotionPayment"))
		return 0;
	snprintf(err, errlen, "BusinessPayment, SalaryPayment or PromotionPayment, got \"%s\"", v);
	return -1;
}
