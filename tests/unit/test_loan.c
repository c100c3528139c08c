/*
 * test_loan: dom/loan's pure part: the quote's text terms to a loansched
 * schedule and the figures the confirmation screen shows, and the rows as
 * loan_schedule_record reads them.  The figures are DOMAIN.md 2.2's worked
 * example (flat) and 2.4's (equal principal), in cents.
 */
#include "t.h"
#include "dom/loan.h"

#include <stdlib.h>

void test_loan_plan(void);
void test_loan_plan_refusals(void);

static struct loan_terms_text terms(const char *rate, const char *per, const char *method, const char *fee)
{
	struct loan_terms_text t = { rate, per, method, "monthly", "0", "none", fee, "2027-01-31" };

	return t;
}

void test_loan_plan(void)
{
	static struct loan_plan p;
	struct loan_terms_text t = terms("200", "month", "flat", "0");
	char *json;

	/* KES 10,000 at 2 % a month flat over 6 months: 1,200 interest;
	 * 5 x 1,866.66 + 1,866.70 principal-and-interest in cents */
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == 0);
	T_CHECK(p.n == 6 && p.interest_cents == 120000 && p.total_cents == 1120000);
	T_CHECK(p.rows[0].principal_cents == 166666 && p.rows[0].interest_cents == 20000);
	T_CHECK(p.first_cents == 186666);
	/* due dates: calendar months from the start, clamped to the month's end */
	T_CHECK(p.rows[0].due.m == 2 && p.rows[0].due.d == 28 && p.rows[1].due.m == 3 && p.rows[1].due.d == 31);
	json = loan_plan_json(&p);
	{
		const char *head = "[{\"n\":1,\"due\":\"2027-02-28\",\"principal\":166666,\"interest\":20000,\"fee\":0},";

		T_CHECK(!strncmp(json, head, strlen(head)));
	}
	T_CHECK(strstr(json, "{\"n\":6,\"due\":\"2027-07-31\",\"principal\":166670,\"interest\":20000,\"fee\":0}]") != NULL);
	free(json);

	/* a fee: due with the first instalment, in the total */
	t = terms("100", "month", "equal_principal", "25000");
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == 0);
	/* DOMAIN 2.4: first instalment 1,766.66 (1,666.66 + 100) plus the fee */
	T_CHECK(p.rows[0].instalment_cents == 176666 && p.first_cents == 176666 + 25000);
	T_CHECK(p.total_cents == 1000000 + p.interest_cents + 25000);
	json = loan_plan_json(&p);
	T_CHECK(strstr(json, "\"n\":1,\"due\":\"2027-02-28\",\"principal\":166666,\"interest\":10000,\"fee\":25000}") != NULL);
	T_CHECK(strstr(json, "\"n\":2,\"due\":\"2027-03-31\",\"principal\":166666,\"interest\":8333,\"fee\":0}") != NULL);
	free(json);
}

void test_loan_plan_refusals(void)
{
	static struct loan_plan p;
	struct loan_terms_text t = terms("200", "month", "flat", "0");

	/* words loansched does not know, numbers that are not numbers, terms it refuses */
	t.method = "balloon";
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t = terms("2x", "month", "flat", "0");
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t = terms("-5", "month", "flat", "0");
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t = terms("200", "fortnight", "flat", "0");
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t = terms("200", "month", "flat", "0");
	t.start = "2027-02-30";
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t = terms("200", "month", "flat", "0");
	T_CHECK(loan_plan_build(&t, 1000000, 0, &p) == -1);
	T_CHECK(loan_plan_build(&t, 0, 6, &p) == -1);
	/* a grace with no kind */
	t.grace = "2";
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == -1);
	t.grace_kind = "principal";
	T_CHECK(loan_plan_build(&t, 1000000, 6, &p) == 0 && p.rows[0].principal_cents == 0 &&
		p.rows[2].principal_cents == 250000);
}
