/*
 * fuzz_mpesa_cb: the M-Pesa callback scanner (net/daraja_parse.c): the STK
 * callback and the C2B validation/confirmation bodies.
 *
 * Input: an HTTP body, any bytes (an exact-size copy: a read past it is an
 * ASan report).
 * Invariants:
 *   - daraja_stk_callback_parse returns 0 or -1; on 0 the body is JSON
 *     jansson accepts, checkout is 1..64 bytes, every buffer is
 *     NUL-terminated within its size, phone is "" or "+" and digits (no
 *     sign), amount_cents is -1 or whole shillings (a multiple of 100, not
 *     negative), and -1 for any result other than success; on -1 nothing
 *     is filled in;
 *   - daraja_c2b_parse never fails; amount_cents is -1 or positive whole
 *     shillings; every string it fills is one jansson also reads from the
 *     body; daraja_c2b_clear frees all (LeakSanitizer);
 *   - both parse the same body the same way twice.
 */
#include "fuzz_common.h"
#include "net/daraja.h"

#include <jansson.h>

static void check_stk(const char *body, size_t len)
{
	struct daraja_stk_callback a, b;
	int rc = daraja_stk_callback_parse(body, len, &a);

	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(daraja_stk_callback_parse(body, len, &b) == rc && !memcmp(&a, &b, sizeof(a)));
	FUZZ_CHECK(memchr(a.checkout, 0, sizeof(a.checkout)) && memchr(a.desc, 0, sizeof(a.desc)) &&
		   memchr(a.receipt, 0, sizeof(a.receipt)) && memchr(a.phone, 0, sizeof(a.phone)));
	if (rc < 0) {
		FUZZ_CHECK(!a.checkout[0] && !a.receipt[0] && !a.phone[0]);
		return;
	}
	{
		json_t *doc = json_loadb(body, len, 0, NULL);

		FUZZ_CHECK(doc != NULL);
		json_decref(doc);
	}
	FUZZ_CHECK(a.checkout[0] && strlen(a.checkout) <= 64);
	FUZZ_CHECKF(a.amount_cents == -1 || (a.amount_cents >= 0 && a.amount_cents % 100 == 0), "%lld",
		    a.amount_cents);
	FUZZ_CHECK(a.result_code == 0 || a.amount_cents == -1);
	if (a.phone[0]) {
		FUZZ_CHECK(a.phone[0] == '+' && a.phone[1]);
		for (const char *p = a.phone + 1; *p; p++)
			FUZZ_CHECK(*p >= '0' && *p <= '9');
	}
}

static bool same(const char *x, const char *y)
{
	return (!x && !y) || (x && y && !strcmp(x, y));
}

static void check_c2b(const char *body, size_t len)
{
	struct daraja_c2b a, b;
	json_t *doc = json_loadb(body, len, 0, NULL);

	daraja_c2b_parse(body, len, &a);
	daraja_c2b_parse(body, len, &b);
	FUZZ_CHECK(a.amount_cents == b.amount_cents && same(a.trans_id, b.trans_id) && same(a.bill_ref, b.bill_ref) &&
		   same(a.first_name, b.first_name) && same(a.msisdn, b.msisdn));
	FUZZ_CHECKF(a.amount_cents == -1 || (a.amount_cents > 0 && a.amount_cents % 100 == 0), "%lld", a.amount_cents);
	FUZZ_CHECK(same(a.trans_id, json_string_value(json_object_get(doc, "TransID"))));
	FUZZ_CHECK(same(a.bill_ref, json_string_value(json_object_get(doc, "BillRefNumber"))));
	FUZZ_CHECK(!doc ? !a.trans_id && !a.bill_ref && !a.msisdn && a.amount_cents == -1 : true);
	json_decref(doc);
	daraja_c2b_clear(&a);
	daraja_c2b_clear(&b);
	FUZZ_CHECK(!a.trans_id && !a.bill_ref && !a.first_name && !a.msisdn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = fuzz_copy(data, size);

	check_stk(body, size);
	check_c2b(body, size);
	free(body);
	return 0;
}
