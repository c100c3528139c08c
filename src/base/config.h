/*
 * config: one table of keys (pgbouncer's CfKey idea).  Each key lives in an
 * INI section of etc/chamad.conf and can be overridden by the environment
 * variable CHAMAD_<SECTION>_<KEY> (for example [database] url is
 * CHAMAD_DATABASE_URL).  The same table drives parsing, validation,
 * defaults, --help and SIGHUP reload.
 */
#ifndef CHAMAD_CONFIG_H
#define CHAMAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config {
	/* [http] */
	char *http_listen;
	int http_max_body;
	int http_request_timeout_ms;
	int http_idle_timeout_s;
	/* [database] */
	char *database_url;
	int database_pool_size;
	int database_queue_max;
	int database_background_pool_size;
	int database_background_queue_max;
	int database_connect_timeout_ms;
	int database_query_timeout_ms;
	int database_reconnect_min_ms;
	int database_reconnect_max_ms;
	char *database_migrations_dir;
	char *database_schema_dir;
	/* [redis] */
	char *redis_url;
	int redis_connect_timeout_ms;
	int redis_command_timeout_ms;
	int redis_max_pending;
	int redis_reconnect_min_ms;
	int redis_reconnect_max_ms;
	/* [log] */
	char *log_level;
	char *log_format;
	/* [daemon] */
	int daemon_shutdown_timeout_ms;
	/* [ussd] */
	char *ussd_menus_dir;
	int ussd_session_ttl_s;
	int ussd_screen_max;
	char *ussd_country_code;
	char *ussd_service_code;
	char *ussd_timezone;
	int ussd_hop_timeout_ms;
	int ussd_busy_hold_ms;
	char *ussd_secrets;
	char *ussd_allow_ips;
	/* [auth] */
	char *auth_pin_pepper;
	int auth_pin_opslimit;
	int auth_pin_memlimit_kib;
	int auth_workers;
	int auth_queue_max;
	int auth_pin_max_attempts;
	int auth_pin_lock_minutes;
	int auth_otp_ttl_s;
	int auth_otp_max_tries;
	int auth_otp_max_per_hour;
	/* [sms] */
	char *sms_provider;
	int sms_rate_per_sec;
	int sms_batch;
	int sms_max_attempts;
	int sms_retry_min_s;
	int sms_retry_max_s;
	int sms_lease_s;
	int sms_poll_ms;
	int sms_max_segments;
	int sms_timeout_ms;
	char *sms_sender_id;
	char *sms_at_base_url;
	char *sms_at_username;
	char *sms_at_api_key;
	char *sms_kannel_url;
	char *sms_kannel_user;
	char *sms_kannel_password;
	char *sms_public_url;
	int sms_inbound_per_hour;
	char *sms_secrets;
	char *sms_allow_ips;
	/* [mpesa] */
	char *mpesa_base_url;
	char *mpesa_consumer_key;
	char *mpesa_consumer_secret;
	char *mpesa_shortcode;
	char *mpesa_passkey;
	char *mpesa_transaction_type;
	char *mpesa_public_url;
	char *mpesa_callback_secret;
	int mpesa_min_amount;
	int mpesa_max_amount;
	int mpesa_daily_limit;
	int mpesa_push_delay_ms;
	int mpesa_query_after_s;
	int mpesa_query_every_s;
	int mpesa_query_max_attempts;
	int mpesa_timeout_ms;
	int mpesa_unknown_close_s;
	char *mpesa_allow_ips;
	int mpesa_verify_flag_after_s;	/* issue 10: an unverified paybill payment is flagged after this */
	/* [mpesa] the initiator APIs and the Transaction Status rail (issue 10, part C) */
	char *mpesa_b2c_shortcode;
	char *mpesa_initiator_name;
	char *mpesa_security_credential;
	char *mpesa_b2c_command_id;
	int mpesa_max_payout;
	int mpesa_status_timeout_s;
	int mpesa_status_max_attempts;
	/* [mpesa] payouts (issue 10, part F) */
	int mpesa_b2c_result_timeout_s;
	/* [mpesa] reconciliation (issue 10 part 6: src/mpesa/reconcile.c) */
	int mpesa_reconcile_every_s;
	char *mpesa_reconcile_float_account;
	int mpesa_reconcile_balance_wait_s;
	/* [jobs] */
	int jobs_every_s;
	int jobs_reminder_lead_days;
	char *jobs_now;
	/* [approvals] (issue 10, dual control) */
	int approvals_expire_hours;
};

/* Returns a new config holding every default; free with config_free. */
/* A validator writes a reason into err and returns -1 for a bad value. */
typedef int (*config_check_fn)(const char *value, char *err, size_t errlen);
/*
 * Adds a module's check to the string key [section] name: a value the
 * module cannot serve (an SMS provider it has no code for) is refused like
 * any bad value, by config_load, on reload and by --check-config, without
 * base knowing the module.  Register before the first config_new.  Returns
 * -1 for a key that is not a string key of the table.
 */
int config_add_check(const char *section, const char *name, config_check_fn fn);

struct config *config_new(void);
void config_free(struct config *c);

/*
 * Reads `path` (if not NULL) then the environment into c.  A missing file is
 * an error only if `required`.  On error returns -1 and writes a message
 * naming the file, line and key (or the environment variable) into err.
 */
int config_load(struct config *c, const char *path, bool required, char *err, size_t errlen);

/*
 * The rules that span keys, run by config_load after every value is read
 * (so start-up, --check-config and SIGHUP all refuse the same): callbacks
 * that could move money or speak for a member must be guarded.  When
 * [mpesa] consumer_key is set, [mpesa] callback_secret has at least 32
 * characters of [A-Za-z0-9_-] and [mpesa] allow_ips a "safaricom:" entry.
 * When [http] listen is not loopback (127.0.0.0/8, ::1, localhost), every
 * secret in [ussd]/[sms] secrets has at least 32 characters, some USSD
 * aggregator has a secret or an allow-list, and so does the SMS provider in
 * use ([sms] provider, unless none).  Returns -1 with the key named first
 * in err.
 */
int config_validate(const struct config *c, char *err, size_t errlen);

/*
 * Copies the reloadable keys of `next` into `cur` and logs each one that
 * changed; keys that need a restart and differ are logged as ignored.
 * Returns the number of keys applied.
 */
int config_apply_reload(struct config *cur, const struct config *next);

/* Prints the key table (section, key, environment variable, default). */
void config_print_keys(FILE *out);

#endif
