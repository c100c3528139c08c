#include "t.h"
#include "base/config.h"

#include <stdlib.h>
#include <unistd.h>

void test_config_defaults(void);
void test_config_file(void);
void test_config_env_override(void);
void test_config_errors(void);
void test_config_reload(void);
void test_config_fail_closed(void);

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/chamad-conf-XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	fputs(text, f);
	fclose(f);
	return path;
}

void test_config_defaults(void)
{
	struct config *c = config_new();

	T_STREQ(c->http_listen, "127.0.0.1:8080");
	T_CHECK(c->http_max_body == 8192);
	T_STREQ(c->redis_url, "redis://127.0.0.1:6379/0");
	T_CHECK(c->database_pool_size == 4);
	config_free(c);
}

void test_config_file(void)
{
	/* (a non-loopback listen needs a guarded USSD aggregator: test_config_fail_closed) */
	char *p = write_tmp("# comment\n[http]\nlisten = 0.0.0.0:9000\nmax_body= 4096\n\n[database]\n"
			    "url = postgresql://u@127.0.0.1:5/db\npool_size=7\n[log]\nformat = json\n"
			    "[ussd]\nallow_ips = africastalking:196.201.214.0/24\n");
	struct config *c = config_new();
	char err[256] = "";

	T_CHECK(config_load(c, p, true, err, sizeof(err)) == 0);
	T_STREQ(c->http_listen, "0.0.0.0:9000");
	T_CHECK(c->http_max_body == 4096);
	T_STREQ(c->database_url, "postgresql://u@127.0.0.1:5/db");
	T_CHECK(c->database_pool_size == 7);
	T_STREQ(c->log_format, "json");
	config_free(c);
	unlink(p);
	free(p);
	/* a missing optional file is fine, a missing required one is not */
	c = config_new();
	T_CHECK(config_load(c, "/nonexistent/chamad.conf", false, err, sizeof(err)) == 0);
	T_CHECK(config_load(c, "/nonexistent/chamad.conf", true, err, sizeof(err)) == -1);
	config_free(c);
}

void test_config_env_override(void)
{
	char *p = write_tmp("[http]\nlisten = 0.0.0.0:9000\n");
	struct config *c = config_new();
	char err[256] = "";

	setenv("CHAMAD_HTTP_LISTEN", "127.0.0.1:7000", 1);
	setenv("CHAMAD_DATABASE_URL", "host=/tmp dbname=x", 1);
	setenv("CHAMAD_REDIS_URL", "unix:///tmp/r.sock", 1);
	setenv("CHAMAD_DATABASE_POOL_SIZE", "2", 1);
	T_CHECK(config_load(c, p, true, err, sizeof(err)) == 0);
	T_STREQ(c->http_listen, "127.0.0.1:7000");
	T_STREQ(c->database_url, "host=/tmp dbname=x");
	T_STREQ(c->redis_url, "unix:///tmp/r.sock");
	T_CHECK(c->database_pool_size == 2);
	config_free(c);
	/* a bad environment value is named by its variable */
	setenv("CHAMAD_DATABASE_POOL_SIZE", "zero", 1);
	c = config_new();
	T_CHECK(config_load(c, p, true, err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "CHAMAD_DATABASE_POOL_SIZE") != NULL);
	config_free(c);
	unsetenv("CHAMAD_HTTP_LISTEN");
	unsetenv("CHAMAD_DATABASE_URL");
	unsetenv("CHAMAD_REDIS_URL");
	unsetenv("CHAMAD_DATABASE_POOL_SIZE");
	unlink(p);
	free(p);
}

static int load_text(const char *text, char *err, size_t n)
{
	char *p = write_tmp(text);
	struct config *c = config_new();
	int rc = config_load(c, p, true, err, n);

	config_free(c);
	unlink(p);
	free(p);
	return rc;
}

void test_config_errors(void)
{
	char err[256];

	T_CHECK(load_text("[http]\nlisten = nonsense\n", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "[http] listen") != NULL && strstr(err, ":2:") != NULL);
	T_CHECK(load_text("[http]\nmax_body = 10\n", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "max_body") != NULL);
	T_CHECK(load_text("[http]\nno_such_key = 1\n", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "unknown key [http] no_such_key") != NULL);
	T_CHECK(load_text("listen = 1.2.3.4:5\n", err, sizeof(err)) == -1);
	T_CHECK(load_text("[redis]\nurl = http://nope\n", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "[redis] url") != NULL);
	T_CHECK(load_text("[database]\nurl = host='unterminated\n", err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "[database] url") != NULL);
	T_CHECK(load_text("[log]\nlevel = loud\n", err, sizeof(err)) == -1);
	T_CHECK(load_text("[http\n", err, sizeof(err)) == -1);
	T_CHECK(load_text("[redis]\nreconnect_min_ms = 9000\nreconnect_max_ms = 100\n", err, sizeof(err)) == -1);
}

void test_config_reload(void)
{
	struct config *cur = config_new(), *next = config_new();
	char *cur_listen = strdup(cur->http_listen);

	free(next->http_listen);
	next->http_listen = strdup("0.0.0.0:1");	/* needs a restart */
	next->http_request_timeout_ms = 1234;		/* reloadable */
	free(next->log_level);
	next->log_level = strdup("debug");
	T_CHECK(config_apply_reload(cur, next) == 2);
	T_STREQ(cur->http_listen, cur_listen);
	T_CHECK(cur->http_request_timeout_ms == 1234);
	T_STREQ(cur->log_level, "debug");
	free(cur_listen);
	config_free(cur);
	config_free(next);
}

/* Who may call the callbacks: each configuration, refused (naming the key)
 * or accepted.  S32 is a good secret (32 characters of [A-Za-z0-9_-]). */
#define S32 "abcdefghijklmnopqrstuvwxyz012-_9"
#define MPESA "[mpesa]\nconsumer_key = ck\n"
#define OPEN "[http]\nlisten = 0.0.0.0:8080\n"
#define USSD_OK "[ussd]\nallow_ips = africastalking:196.201.214.0/24\n"

void test_config_fail_closed(void)
{
	static const struct {
		const char *text;
		const char *refused;	/* the key named, or NULL: accepted */
	} cases[] = {
		/* M-Pesa off: nothing to guard (no M-Pesa route is served) */
		{ "", NULL },
		{ "[mpesa]\ncallback_secret = short\n", NULL },
		/* M-Pesa on: a long, URL-safe path secret and Safaricom's addresses */
		{ MPESA, "[mpesa] callback_secret" },
		{ MPESA "callback_secret = abcdefghijklmnopqrstuvwxyz01234\nallow_ips = safaricom:1.2.3.4\n",
		  "[mpesa] callback_secret" },	/* 31 characters */
		{ MPESA "callback_secret = abcdefghijklmnopqrstuvwxyz01234+\nallow_ips = safaricom:1.2.3.4\n",
		  "[mpesa] callback_secret" },	/* 32, one outside [A-Za-z0-9_-] */
		{ MPESA "callback_secret = abcdefghijklmnopqrstuvwxyz0123/5\nallow_ips = safaricom:1.2.3.4\n",
		  "[mpesa] callback_secret" },
		{ MPESA "callback_secret = " S32 "\n", "[mpesa] allow_ips" },
		{ MPESA "callback_secret = " S32 "\nallow_ips = kannel:1.2.3.4\n", "[mpesa] allow_ips" },
		{ MPESA "callback_secret = " S32 "\nallow_ips = safaricom:196.201.214.0/24\n", NULL },
		/* ... whatever the listen address */
		{ "[http]\nlisten = 127.0.0.1:1\n" MPESA, "[mpesa] callback_secret" },
		/* loopback listens: USSD and SMS need nothing */
		{ "[http]\nlisten = 127.0.0.1:8080\n[sms]\nprovider = africastalking\nsecrets = africastalking:x\n", NULL },
		{ "[http]\nlisten = 127.9.9.9:8080\n", NULL },
		{ "[http]\nlisten = localhost:8080\n", NULL },
		{ "[http]\nlisten = [::1]:8080\n", NULL },
		/* elsewhere: some USSD aggregator guarded */
		{ OPEN, "[ussd] secrets" },
		{ "[http]\nlisten = [::]:8080\n", "[ussd] secrets" },
		{ "[http]\nlisten = 10.0.0.5:8080\n", "[ussd] secrets" },
		{ OPEN USSD_OK, NULL },
		{ OPEN "[ussd]\nsecrets = hubtel:" S32 "\n", NULL },
		/* every secret long enough */
		{ OPEN "[ussd]\nsecrets = africastalking:short\n", "[ussd] secrets" },
		{ OPEN USSD_OK "secrets = hubtel:abcdefghijklmnopqrstuvwxyz01234\n", "[ussd] secrets" },
		{ OPEN USSD_OK "[sms]\nsecrets = kannel:short\n", "[sms] secrets" },
		/* the SMS provider in use guarded */
		{ OPEN USSD_OK "[sms]\nprovider = africastalking\n", "[sms] secrets" },
		{ OPEN USSD_OK "[sms]\nprovider = kannel\nallow_ips = africastalking:1.2.3.4\n", "[sms] secrets" },
		{ OPEN USSD_OK "[sms]\nprovider = kannel\nallow_ips = kannel:127.0.0.1\n", NULL },
		{ OPEN USSD_OK "[sms]\nprovider = africastalking\nsecrets = africastalking:" S32 "\n", NULL },
		{ OPEN USSD_OK "[sms]\nprovider = none\n", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		int rc = load_text(cases[i].text, err, sizeof(err));

		if (cases[i].refused) {
			T_CHECK(rc == -1);
			T_CHECK(strncmp(err, cases[i].refused, strlen(cases[i].refused)) == 0);
		} else {
			T_CHECK(rc == 0);
		}
		if ((rc == 0) != !cases[i].refused || (cases[i].refused && strncmp(err, cases[i].refused,
									       strlen(cases[i].refused))))
			fprintf(stderr, "    case %zu: %s -> %d %s\n", i, cases[i].text, rc, err);
	}
}
