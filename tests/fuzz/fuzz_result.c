/*
 * fuzz_result: the asynchronous Result parser (daraja_result_parse) and
 * the AccountBalance reader (daraja_balance_cents) of net/daraja_parse.c.
 *
 * Input: an HTTP body, any bytes (an exact-size copy).
 * Invariants:
 *   - parse returns 0 or -1, and the same twice; on -1 every string is
 *     NULL and both amounts -1 (nothing half-read reaches a caller);
 *   - on 0: amount_cents is -1 or whole shillings (>= 0, a multiple of
 *     100, at most 12 digits of shillings), working_funds_cents -1 or
 *     >= 0, every string valid UTF-8 without a NUL (what PostgreSQL
 *     takes as text);
 *   - daraja_balance_cents of the parsed AccountBalance, and of the raw
 *     input split at its first '\n' into a name and a text, is -1 or
 *     >= 0 and the same twice;
 *   - daraja_result_clear frees everything (LeakSanitizer).
 */
#include "fuzz_common.h"
#include "base/gsm7.h"
#include "net/daraja.h"

#define MAX_CENTS 99999999999999LL	/* 12 digits of shillings, in cents */

static void check_text(const char *s)
{
	if (s)
		FUZZ_CHECK(utf8_valid(s, strlen(s)));
}

static bool same(const char *x, const char *y)
{
	return (!x && !y) || (x && y && !strcmp(x, y));
}

static void check_balance(const char *text, const char *name)
{
	long long v = daraja_balance_cents(text, name);

	FUZZ_CHECKF(v == -1 || (v >= 0 && v <= MAX_CENTS), "%lld", v);
	FUZZ_CHECK(daraja_balance_cents(text, name) == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = fuzz_copy(data, size);
	struct daraja_result a, b;
	int rc = daraja_result_parse(body, size, &a);

	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(daraja_result_parse(body, size, &b) == rc);
	FUZZ_CHECK(a.result_code == b.result_code && a.amount_cents == b.amount_cents && same(a.desc, b.desc) &&
		   same(a.originator_id, b.originator_id) && same(a.receipt, b.receipt) &&
		   same(a.account_balance, b.account_balance));
	if (rc < 0) {
		FUZZ_CHECK(!a.desc && !a.originator_id && !a.conversation_id && !a.transaction_id && !a.receipt &&
			   !a.status && !a.debit_party && !a.credit_party && !a.reason && !a.completed &&
			   !a.original_transaction_id && !a.account_balance);
		FUZZ_CHECK(a.amount_cents == -1 && a.working_funds_cents == -1);
	} else {
		FUZZ_CHECKF(a.amount_cents == -1 || (a.amount_cents >= 0 && a.amount_cents % 100 == 0 &&
						      a.amount_cents <= MAX_CENTS),
			    "%lld", a.amount_cents);
		FUZZ_CHECKF(a.working_funds_cents == -1 || (a.working_funds_cents >= 0 &&
							     a.working_funds_cents <= MAX_CENTS),
			    "%lld", a.working_funds_cents);
		check_text(a.desc);
		check_text(a.originator_id);
		check_text(a.conversation_id);
		check_text(a.receipt);
		check_text(a.status);
		check_text(a.reason);
		check_text(a.account_balance);
		check_balance(a.account_balance, "Working Account");
	}
	daraja_result_clear(&a);
	daraja_result_clear(&b);
	{
		char *text = fuzz_cstr(data, size);
		char *nl = memchr(text, '\n', size);

		if (nl) {
			*nl = '\0';
			check_balance(nl + 1, text);
		} else {
			check_balance(text, "Working Account");
		}
		free(text);
	}
	free(body);
	return 0;
}
