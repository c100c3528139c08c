/*
 * act_auth: sign-up with a one-time code and a PIN, log-in, lock-out and
 * PIN reset.
 *
 * One-time codes: 6 random digits (libsodium), kept in Redis only as a
 * keyed digest with a try counter, valid [auth] otp_ttl_s, voided after
 * otp_max_tries wrong entries, at most otp_max_per_hour per number.  The
 * SMS carrying the code is an outbox row (sms_otp, dom/notify.h) the SMS
 * rail renders and sends.
 * PINs are hashed and checked on the auth workers (auth.h), never here.
 */
#include "ussd/act.h"
#include "app.h"
#include "dom/auth.h"
#include "base/config.h"
#include "base/log.h"
#include "dom/notify.h"
#include "dom/pin.h"
#include "dom/user.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* KEYS: rate, code.  ARGV: max per hour, digest, ttl.  -> sends this hour, or -1 */
static const char LUA_OTP_ISSUE[] =
	"local n = redis.call('INCR', KEYS[1]) "
	"if n == 1 then redis.call('EXPIRE', KEYS[1], 3600) end "
	"if n > tonumber(ARGV[1]) then return -1 end "
	"redis.call('SET', KEYS[2], ARGV[2] .. ':0', 'EX', ARGV[3]) "
	"return n";
/* KEYS: code.  ARGV: digest, max tries.  -> 0 right, -1 none, -2 voided, n tries left */
static const char LUA_OTP_CHECK[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if not v then return -1 end "
	"local h, t = string.match(v, '^(%x+):(%d+)$') "
	"if h == ARGV[1] then redis.call('DEL', KEYS[1]) return 0 end "
	"t = tonumber(t) + 1 "
	"if t >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) return -2 end "
	"redis.call('SET', KEYS[1], h .. ':' .. t, 'KEEPTTL') "
	"return tonumber(ARGV[2]) - t";

static const struct config *cfg_of(struct ussd_hop *hop)
{
	return hop_app(hop)->cfg;
}

/* ---- one-time codes --------------------------------------------------- */

/* purpose is "signup" or "reset"; the code's SMS (its variables, JSON) is
 * queued by queue_sms */
struct otp_issue {
	const char *purpose;
	void (*queue_sms)(struct ussd_hop *hop, const char *vars);
};

static void otp_key(struct ussd_hop *hop, const char *purpose, char *out, size_t n)
{
	snprintf(out, n, "otp:%s:%s", purpose, hop_phone(hop));
}

static void otp_issued(struct ussd_hop *hop, const redisReply *r);

static const struct otp_issue *issuing(struct ussd_hop *hop);

static void otp_issue(struct ussd_hop *hop, const struct otp_issue *how)
{
	char code[8], digest[65], rate[64], key[80], max[16], ttl[16];
	const char *argv[9];

	snprintf(code, sizeof(code), "%06u", (unsigned)randombytes_uniform(1000000));
	auth_digest(hop_app(hop)->auth, how->purpose, hop_phone(hop), code, digest);
	snprintf(rate, sizeof(rate), "otp:rate:%s", hop_phone(hop));
	otp_key(hop, how->purpose, key, sizeof(key));
	snprintf(max, sizeof(max), "%d", cfg_of(hop)->auth_otp_max_per_hour);
	snprintf(ttl, sizeof(ttl), "%d", cfg_of(hop)->auth_otp_ttl_s);
	/* the code itself lives only in the SMS's variables until it is queued */
	hop_set_var(hop, "otp", code);
	hop_set_var(hop, "otp_purpose", how->purpose);
	argv[0] = "EVAL";
	argv[1] = LUA_OTP_ISSUE;
	argv[2] = "2";
	argv[3] = rate;
	argv[4] = key;
	argv[5] = max;
	argv[6] = digest;
	argv[7] = ttl;
	act_redis(hop, 8, argv, otp_issued);
	sodium_memzero(code, sizeof(code));
}

static void otp_issued(struct ussd_hop *hop, const redisReply *r)
{
	const struct otp_issue *how = issuing(hop);
	char mins[16], *vars;

	if (r->type != REDIS_REPLY_INTEGER) {
		hop_del_var(hop, "otp");
		hop_unavailable(hop, "unexpected reply issuing a code");
		return;
	}
	if (r->integer < 0) {
		hop_del_var(hop, "otp");
		hop_end(hop, "end_otp_rate");
		return;
	}
	snprintf(mins, sizeof(mins), "%d", cfg_of(hop)->auth_otp_ttl_s / 60);
	vars = notify_vars("code", hop_var(hop, "otp"), "minutes", mins, NULL);
	hop_del_var(hop, "otp");
	how->queue_sms(hop, vars);
	free(vars);
}

static void verified_marked(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	hop_done(hop, NULL);
}

static void otp_checked(struct ussd_hop *hop, const redisReply *r)
{
	long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
	const char *purpose = hop_var(hop, "otp_purpose");

	if (n == 0 && purpose && !strcmp(purpose, "reset")) {
		hop_set_var(hop, "reset_ok", "1");
		hop_done(hop, NULL);
	} else if (n == 0) {
		const char *p[3];

		hop_set_var(hop, "otp_ok", "1");
		hop_audit_params(hop, p);
		act_run(hop, &user_signup_verified, p, verified_marked);
	} else if (n == -1) {
		hop_end(hop, "end_otp_expired");
	} else if (n == -2) {
		hop_end(hop, "end_otp_voided");
	} else if (n > 0) {
		hop_set_varf(hop, "tries", "%lld", n);
		hop_fail(hop, "err_otp_wrong");
	} else {
		hop_unavailable(hop, "unexpected reply checking a code");
	}
}

static void otp_check(struct ussd_hop *hop, const char *purpose)
{
	char digest[65], key[80], max[16];
	const char *argv[6];

	if (!hop_secret(hop)) {
		hop_fail(hop, "err_otp_format");
		return;
	}
	hop_set_var(hop, "otp_purpose", purpose);
	auth_digest(hop_app(hop)->auth, purpose, hop_phone(hop), hop_secret(hop), digest);
	otp_key(hop, purpose, key, sizeof(key));
	snprintf(max, sizeof(max), "%d", cfg_of(hop)->auth_otp_max_tries);
	argv[0] = "EVAL";
	argv[1] = LUA_OTP_CHECK;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = digest;
	argv[5] = max;
	act_redis(hop, 6, argv, otp_checked);
}

/* ---- sign-up ---------------------------------------------------------- */

static void sms_queued(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	hop_done(hop, "ok_code_sent");
}

/* The sign-up row (signup_sessions, one live per phone) and the code's SMS
 * in one statement. */
static void signup_queue_sms(struct ussd_hop *hop, const char *vars)
{
	char ttl[16], nonce[17];
	const char *p[8];

	hop_audit_params(hop, p);
	snprintf(ttl, sizeof(ttl), "%d", cfg_of(hop)->auth_otp_ttl_s);
	util_random_hex(nonce, 8);
	p[3] = hop_var(hop, "full_name");
	p[4] = menu_lang_code(hop_lang(hop));
	p[5] = ttl;
	p[6] = vars;
	p[7] = nonce;
	act_run(hop, &user_signup_start, p, sms_queued);
}

static void reset_queue_sms(struct ussd_hop *hop, const char *vars)
{
	char nonce[17], key[96];
	const char *p[8] = { hop_phone(hop), menu_lang_code(hop_lang(hop)), "otp", "sms_otp", vars, "0", key, NULL };

	util_random_hex(nonce, 8);
	snprintf(key, sizeof(key), "otp:reset:%s:%s", hop_phone(hop), nonce);
	act_run(hop, &dom_notify, p, sms_queued);
}

static const struct otp_issue signup_issue = { "signup", signup_queue_sms };
static const struct otp_issue reset_issue = { "reset", reset_queue_sms };

static const struct otp_issue *issuing(struct ussd_hop *hop)
{
	const char *p = hop_var(hop, "otp_purpose");

	return p && !strcmp(p, "reset") ? &reset_issue : &signup_issue;
}

static void act_signup_send_otp(struct ussd_hop *hop)
{
	otp_issue(hop, &signup_issue);
}

static void act_signup_check_otp(struct ussd_hop *hop)
{
	otp_check(hop, "signup");
}

/* First entry of a new PIN: only its keyed digest waits for the second. */
static void act_pin_first(struct ussd_hop *hop)
{
	char digest[65];

	auth_digest(hop_app(hop)->auth, "pin1", hop_session_id(hop), hop_secret(hop), digest);
	hop_set_var(hop, "pin1", digest);
	hop_done(hop, NULL);
}

/* Both entries agree?  Otherwise back to the first entry. */
static bool second_pin_matches(struct ussd_hop *hop, const char *first_screen)
{
	char digest[65];
	const char *first = hop_var(hop, "pin1");

	auth_digest(hop_app(hop)->auth, "pin1", hop_session_id(hop), hop_secret(hop), digest);
	if (!first || sodium_memcmp(first, digest, 64) != 0) {
		hop_del_var(hop, "pin1");
		hop_goto(hop, first_screen, "err_pin_mismatch");
		return false;
	}
	hop_del_var(hop, "pin1");
	return true;
}

static void signed_up(struct ussd_hop *hop, const struct db_result *r)
{
	if (r->status == DB_ERROR && r->sqlstate && !strcmp(r->sqlstate, "23505")) {
		hop_end(hop, "end_already_registered");
		return;
	}
	if (act_db_failed(hop, r))
		return;
	hop_login(hop, PQgetvalue(r->res, 0, 0));
	hop_del_var(hop, "otp_ok");
	hop_done(hop, "ok_welcome");
}

static void signup_hashed(void *arg, enum auth_status st, char *hash)
{
	struct ussd_hop *hop = arg;
	const char *p[6];

	if (st != AUTH_OK) {
		hop_unavailable(hop, "PIN hashing failed or busy");
		return;
	}
	hop_audit_params(hop, p);
	p[3] = hop_var(hop, "full_name");
	p[4] = menu_lang_code(hop_lang(hop));
	p[5] = hash;
	act_run(hop, &user_signup_finish, p, signed_up);
	free(hash);
}

static void act_signup_finish(struct ussd_hop *hop)
{
	const char *ok = hop_var(hop, "otp_ok");

	if (!ok || strcmp(ok, "1")) {	/* the code step was skipped somehow */
		hop_end(hop, "expired");
		return;
	}
	if (!second_pin_matches(hop, "signup_pin"))
		return;
	auth_pin_hash(hop_app(hop)->auth, hop_secret(hop), hop_deadline_ms(hop), signup_hashed, hop);
}

/* ---- log-in ----------------------------------------------------------- */

static void lookup_user(struct ussd_hop *hop, act_db_fn fn)
{
	const char *p[2] = { hop_phone(hop), hop_app(hop)->cfg->ussd_timezone };

	act_run(hop, &user_by_phone, p, fn);
}

static bool user_usable(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return false;
	if (PQntuples(r->res) != 1) {	/* deleted meanwhile */
		hop_end(hop, "expired");
		return false;
	}
	if (!strcmp(PQgetvalue(r->res, 0, USER_LOCKED), "t")) {
		hop_set_var(hop, "until", PQgetvalue(r->res, 0, USER_UNTIL));
		hop_end(hop, "end_locked");
		return false;
	}
	return true;
}

static void login_started(struct ussd_hop *hop, const struct db_result *r)
{
	if (!user_usable(hop, r))
		return;
	hop_set_var(hop, "name", PQgetvalue(r->res, 0, USER_NAME));
	if (!strcmp(PQgetvalue(r->res, 0, USER_NO_PIN), "t")) {	/* registered by an official: no PIN yet */
		hop_goto(hop, "pin_setup", NULL);
		return;
	}
	hop_done(hop, NULL);
}

static void act_login_start(struct ussd_hop *hop)
{
	bool no_pin, locked;
	const char *until;

	if (!hop_dial_user(hop, &no_pin, &locked, &until)) {
		lookup_user(hop, login_started);
		return;
	}
	/* the engine read the row on this very hop: login_started's checks */
	if (locked) {
		hop_set_var(hop, "until", until);
		hop_end(hop, "end_locked");
	} else if (no_pin) {
		hop_goto(hop, "pin_setup", NULL);
	} else {
		hop_done(hop, NULL);
	}
}

static void pin_checked(const struct pin_result *r, void *arg)
{
	struct ussd_hop *hop = arg;

	/* a member an official added has no PIN yet: they make one */
	if (r->outcome == PIN_NO_PIN) {
		hop_goto(hop, "pin_setup", NULL);
		return;
	}
	if (!act_pin_ok(hop, r))
		return;
	hop_login(hop, r->user_id);
	if (r->chamas)
		hop_prefetch(hop, "chamas", r->chamas);
	hop_done(hop, NULL);
}

/* The shared PIN path (pin.c): lock-out and its SMS alert included. */
static void act_login_check(struct ussd_hop *hop)
{
	act_pin_check(hop, pin_checked);
}

/* ---- PIN reset ("Forgot PIN", and first PIN for members an official added) */

static void act_reset_send_otp(struct ussd_hop *hop)
{
	otp_issue(hop, &reset_issue);
}

static void act_reset_check_otp(struct ussd_hop *hop)
{
	otp_check(hop, "reset");
}

static void reset_done(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	if (PQntuples(r->res) != 1) {
		hop_end(hop, "expired");
		return;
	}
	hop_login(hop, PQgetvalue(r->res, 0, 0));
	hop_del_var(hop, "reset_ok");
	hop_done(hop, "ok_pin_changed");
}

static void reset_hashed(void *arg, enum auth_status st, char *hash)
{
	struct ussd_hop *hop = arg;
	const char *p[4];

	if (st != AUTH_OK) {
		hop_unavailable(hop, "PIN hashing failed or busy");
		return;
	}
	hop_audit_params(hop, p);
	p[3] = hash;
	act_run(hop, &user_pin_reset, p, reset_done);
	free(hash);
}

static void act_reset_finish(struct ussd_hop *hop)
{
	const char *ok = hop_var(hop, "reset_ok");

	if (!ok || strcmp(ok, "1")) {
		hop_end(hop, "expired");
		return;
	}
	if (!second_pin_matches(hop, "reset_pin"))
		return;
	auth_pin_hash(hop_app(hop)->auth, hop_secret(hop), hop_deadline_ms(hop), reset_hashed, hop);
}

/* ---- language --------------------------------------------------------- */

static void lang_saved(struct ussd_hop *hop, const struct db_result *r)
{
	if (act_db_failed(hop, r))
		return;
	hop_done(hop, "ok_lang");
}

static void act_lang_save(struct ussd_hop *hop)
{
	const char *p[4];

	hop_audit_params(hop, p);
	p[3] = menu_lang_code(hop_lang(hop));
	act_run(hop, &user_set_language, p, lang_saved);
}

/* The actions the menus name (menus/NN_x.json), registered by main.c. */
const struct ussd_action act_auth_actions[] = {
	{ "signup_send_otp", act_signup_send_otp },
	{ "signup_check_otp", act_signup_check_otp },
	{ "pin_first", act_pin_first },
	{ "signup_finish", act_signup_finish },
	{ "login_start", act_login_start, ACT_NO_EFFECT },
	{ "login_check", act_login_check },
	{ "reset_send_otp", act_reset_send_otp },
	{ "reset_check_otp", act_reset_check_otp },
	{ "reset_finish", act_reset_finish },
	{ "lang_save", act_lang_save },
	{ NULL, NULL },
};
