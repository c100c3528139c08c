/*
 * loan: see loan.h.
 */
#include "dom/loan.h"
#include "dom/audit.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

DB_STMT(loan_products_list, 1,
	"SELECT p ->> 'key', p ->> 'name_en', p ->> 'name_sw', p ->> 'max_term', p ->> 'frequency' "
	"FROM loan_products($1::bigint) p");

DB_STMT(loan_quote_stmt, 7,
	"SELECT q.outcome, q.terms ->> 'key', q.terms ->> 'rate_bp', q.terms ->> 'per', q.terms ->> 'method', "
	"q.terms ->> 'frequency', q.terms ->> 'grace', q.terms ->> 'grace_kind', q.terms ->> 'fee_cents', "
	"to_char(q.start_date, 'YYYY-MM-DD'), q.limit_cents, q.self_cover_cents, q.terms ->> 'max_term' "
	"FROM loan_quote($1::bigint, $2::bigint, nullif($3, ''), $4::bigint, $5::int, $6::timestamptz, $7) q");

/* the channel is the caller's ($4): 'ussd' or 'sms' */
DB_STMT(loan_apply_stmt, 12,
	AUDIT_CTE("$4")
	"SELECT r.outcome, r.loan_id, r.cover_needed_cents, r.queue_place FROM audit_ctx, "
	"loan_apply($5::bigint, nullif($3, '')::bigint, $6, $7::bigint, $8::int, $9::jsonb, $10, $4, "
	"$11::timestamptz, $12) r");

#define LIMIT_COLUMNS                                                                                    \
	"SELECT l.outcome, l.limit_cents, l.savings_cents, l.owed_cents, l.open_loans, l.open_max, "     \
	"l.self_cover_cents, l.guarantors_min, l.guarantors_max, l.arrears_cents, l.min_days, c.name, c.id "

DB_STMT(loan_limit_stmt, 4,
	LIMIT_COLUMNS
	"FROM chamas c CROSS JOIN LATERAL member_loan_limit(c.id, $1::bigint, $3::timestamptz, NULL, $4) l "
	"WHERE c.id = $2::bigint");

DB_STMT(loan_limits_all, 3,
	LIMIT_COLUMNS
	"FROM memberships m JOIN chamas c ON c.id = m.chama_id "
	"CROSS JOIN LATERAL member_loan_limit(c.id, m.user_id, $2::timestamptz, NULL, $3) l "
	"WHERE m.user_id = $1::bigint AND m.status = 'active' ORDER BY c.name, c.id LIMIT 5");

DB_STMT(loan_member_chamas, 1,
	"SELECT c.id, c.name FROM memberships m JOIN chamas c ON c.id = m.chama_id "
	"WHERE m.user_id = $1::bigint AND m.status = 'active' ORDER BY c.id LIMIT 2");

/* A whole number within [lo, hi] written in decimal, nothing else. */
static int read_int(const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

void loan_quote_terms(const PGresult *res, int row, struct loan_terms_text *out)
{
	out->rate_bp = PQgetvalue(res, row, LOAN_Q_RATE_BP);
	out->per = PQgetvalue(res, row, LOAN_Q_PER);
	out->method = PQgetvalue(res, row, LOAN_Q_METHOD);
	out->frequency = PQgetvalue(res, row, LOAN_Q_FREQUENCY);
	out->grace = PQgetvalue(res, row, LOAN_Q_GRACE);
	out->grace_kind = PQgetvalue(res, row, LOAN_Q_GRACE_KIND);
	out->fee_cents = PQgetvalue(res, row, LOAN_Q_FEE_CENTS);
	out->start = PQgetvalue(res, row, LOAN_Q_START);
}

int loan_plan_build(const struct loan_terms_text *t, long long principal_cents, int term, struct loan_plan *out)
{
	struct loansched_terms lt;
	long long rate, grace, fee;

	memset(&lt, 0, sizeof(lt));
	if (read_int(t->rate_bp, 0, 1000000, &rate) || read_int(t->grace, 0, LOANSCHED_MAX_TERM, &grace) ||
	    read_int(t->fee_cents, 0, LOANSCHED_MAX_CENTS, &fee) || loansched_parse_per(t->per, &lt.per) ||
	    loansched_parse_method(t->method, &lt.method) || loansched_parse_freq(t->frequency, &lt.freq) ||
	    loansched_parse_grace_kind(t->grace_kind ? t->grace_kind : "none", &lt.grace_kind) ||
	    loansched_parse_date(t->start, &lt.start))
		return -1;
	lt.principal_cents = principal_cents;
	lt.rate_bp = (long)rate;
	lt.term = term;
	lt.grace = (int)grace;
	if (lt.grace == 0)
		lt.grace_kind = LOANSCHED_GRACE_NONE;
	if (loansched_build(&lt, out->rows) != LOANSCHED_OK)
		return -1;
	out->n = term;
	out->principal_cents = principal_cents;
	out->fee_cents = fee;
	out->interest_cents = 0;
	for (int i = 0; i < term; i++)
		out->interest_cents += out->rows[i].interest_cents;
	/* the fee is due with the first instalment (024: loans.fees_cents) */
	out->first_cents = out->rows[0].instalment_cents + fee;
	out->total_cents = principal_cents + out->interest_cents + fee;
	return 0;
}

char *loan_plan_json(const struct loan_plan *p)
{
	json_t *a = json_array();
	char due[16], *s;

	for (int i = 0; i < p->n; i++) {
		const struct loansched_row *r = &p->rows[i];

		snprintf(due, sizeof(due), "%04d-%02d-%02d", r->due.y, r->due.m, r->due.d);
		json_array_append_new(a, json_pack("{s:i, s:s, s:I, s:I, s:I}", "n", r->n, "due", due, "principal",
						   (json_int_t)r->principal_cents, "interest",
						   (json_int_t)r->interest_cents, "fee",
						   (json_int_t)(i == 0 ? p->fee_cents : 0)));
	}
	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (!s)
		abort();	/* out of memory, as xmalloc */
	return s;
}
