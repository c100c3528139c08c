/*
 * Unit-test runner: runs every registered test, prints one line each and
 * the summary line "N passed, N failed".  Tests need no services.
 */
#include "t.h"
#include "base/log.h"

#include <stdlib.h>
#include <unistd.h>

extern char **environ;

/* The tests set CHAMAD_* themselves; inherited ones would override them. */
static void clear_chamad_env(void)
{
	char name[256];

	for (size_t i = 0; environ[i];) {
		const char *eq = strchr(environ[i], '=');

		if (!strncmp(environ[i], "CHAMAD_", 7) && eq && (size_t)(eq - environ[i]) < sizeof(name)) {
			memcpy(name, environ[i], (size_t)(eq - environ[i]));
			name[eq - environ[i]] = '\0';
			unsetenv(name);
			continue;
		}
		i++;
	}
}

int t_checks, t_failed_checks;

#define TESTS(X) \
	X(test_buf_bounds) X(test_json_escape) X(test_parse_helpers) \
	X(test_config_defaults) X(test_config_file) X(test_config_env_override) X(test_config_errors) \
	X(test_config_reload) X(test_config_fail_closed) X(test_redis_url) X(test_log_lines) X(test_xassert_aborts) \
	X(test_phone_normalise) X(test_gsm7) X(test_at_parse) X(test_hubtel_parse) X(test_menu_validation) \
	X(test_menu_render_limits) X(test_real_menus) X(test_trivial_pins) \
	X(test_sms_template_validation) X(test_sms_render) X(test_sms_real_templates) \
	X(test_httpc_get_post) X(test_httpc_http_500) X(test_httpc_refused) X(test_httpc_timeout) \
	X(test_httpc_max_body) X(test_httpc_keepalive_reuse) X(test_httpc_concurrent) \
	X(test_httpc_free_cancels) X(test_httpc_callback_requests) \
	X(test_admit_estimator) X(test_workpool_admission) \
	X(test_daraja_result_parse) X(test_daraja_balance) X(test_daraja_callbacks_parse) \
	X(test_daraja_initiator_calls) \
	X(test_loansched_cases) X(test_loansched_refusals) X(test_loansched_parse) X(test_loansched_sweep) \
	X(test_loan_plan) X(test_loan_plan_refusals)

#define DECL(fn) void fn(void);
TESTS(DECL)

int main(void)
{
	static const struct { const char *name; t_fn fn; } tests[] = {
#define ENTRY(fn) { #fn, fn },
		TESTS(ENTRY)
	};
	int passed = 0, failed = 0;

	clear_chamad_env();
	log_setup(stderr, LOG_ERROR, LOG_FMT_TEXT);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = t_failed_checks, checks = t_checks;

		tests[i].fn();
		if (t_failed_checks == before && t_checks > checks) {
			passed++;
			printf("ok   unit/%s\n", tests[i].name);
		} else {
			failed++;
			printf("FAIL unit/%s%s\n", tests[i].name, t_checks == checks ? " (asserted nothing)" : "");
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
