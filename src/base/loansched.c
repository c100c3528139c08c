/*
 * loansched: loan schedules to the cent (see loansched.h, and
 * tests/data/loan_schedules/README.md for the rules in one place).
 *
 * No floating point anywhere: DOMAIN.md 2.1 (floats make parts that do not
 * sum to the whole) and 2.3 (Fineract evaluates its annuity in double).
 * The per-period rate is kept as an exact fraction rp/rq, and each value a
 * rule rounds is computed as an exact quotient of integers, rounded once
 * (HALF_EVEN, DOMAIN.md 2.1).  The annuity needs (1 + r)^m exactly, a
 * number of up to ~12,000 bits for 520 weekly instalments, so this file
 * carries a small unsigned big integer (multiply, subtract, compare, shift,
 * and a quotient known to fit in 63 bits).
 */
#include "base/loansched.h"
#include "base/log.h"

#include <stdint.h>
#include <string.h>

/* ---- exact integers ---------------------------------------------------- */

/* (rq + rp)^m with rq + rp < 2^23 (rq <= 10000 * 520, rp <= 100000 after
 * the limits) and m <= 520 is under 11,960 bits; times P * rp (< 2^65) and
 * shifted by 63 in the division: under 12,100.  420 limbs = 13,440 bits. */
#define BIG_LIMBS 420

struct big {
	int n;			/* limbs in use; no leading zero limb; 0 is n = 0 */
	uint32_t d[BIG_LIMBS];	/* least significant first */
};

static void big_trim(struct big *x)
{
	while (x->n > 0 && x->d[x->n - 1] == 0)
		x->n--;
}

static void big_set(struct big *x, uint64_t v)
{
	x->d[0] = (uint32_t)v;
	x->d[1] = (uint32_t)(v >> 32);
	x->n = 2;
	big_trim(x);
}

static void big_mul_u32(struct big *x, uint32_t m)
{
	uint64_t carry = 0;

	for (int i = 0; i < x->n; i++) {
		uint64_t t = (uint64_t)x->d[i] * m + carry;

		x->d[i] = (uint32_t)t;
		carry = t >> 32;
	}
	if (carry) {
		xassert(x->n < BIG_LIMBS);
		x->d[x->n++] = (uint32_t)carry;
	}
	big_trim(x);
}

/* x *= m, as x * lo + (x * hi) << 32. */
static void big_mul_u64(struct big *x, uint64_t m)
{
	struct big hi = *x;
	uint64_t carry = 0;

	big_mul_u32(x, (uint32_t)m);
	big_mul_u32(&hi, (uint32_t)(m >> 32));
	if (hi.n == 0)
		return;
	xassert(hi.n + 1 < BIG_LIMBS);
	while (x->n < hi.n + 2)
		x->d[x->n++] = 0;
	for (int i = 0; i < x->n; i++) {
		uint64_t t = (uint64_t)x->d[i] + carry + (i >= 1 && i - 1 < hi.n ? hi.d[i - 1] : 0);

		x->d[i] = (uint32_t)t;
		carry = t >> 32;
	}
	xassert(carry == 0);
	big_trim(x);
}

static int big_cmp(const struct big *a, const struct big *b)
{
	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	for (int i = a->n - 1; i >= 0; i--)
		if (a->d[i] != b->d[i])
			return a->d[i] < b->d[i] ? -1 : 1;
	return 0;
}

/* a -= b; requires a >= b. */
static void big_sub(struct big *a, const struct big *b)
{
	int64_t borrow = 0;

	xassert(big_cmp(a, b) >= 0);
	for (int i = 0; i < a->n; i++) {
		int64_t t = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;

		borrow = t < 0;
		a->d[i] = (uint32_t)(t + (borrow ? (int64_t)1 << 32 : 0));
	}
	big_trim(a);
}

/* out = a << bits (bits < 64). */
static void big_shl(struct big *out, const struct big *a, int bits)
{
	int limbs = bits / 32, s = bits % 32;

	out->n = a->n + limbs + 1;
	xassert(out->n <= BIG_LIMBS);
	memset(out->d, 0, sizeof(out->d[0]) * (size_t)out->n);
	for (int i = 0; i < a->n; i++) {
		uint64_t t = (uint64_t)a->d[i] << s;

		out->d[i + limbs] |= (uint32_t)t;
		out->d[i + limbs + 1] |= (uint32_t)(t >> 32);
	}
	big_trim(out);
}

/* num / den rounded HALF_EVEN (half_even) or down.  The caller's limits
 * keep the quotient below 2^63: checked, as a bug if not. */
static long long big_quot(const struct big *num, const struct big *den, bool half_even)
{
	struct big r = *num, t;
	uint64_t q = 0;
	int c;

	xassert(den->n > 0);
	big_shl(&t, den, 63);
	xassert(big_cmp(&t, num) > 0);
	for (int i = 62; i >= 0; i--) {
		big_shl(&t, den, i);
		if (big_cmp(&t, &r) <= 0) {
			big_sub(&r, &t);
			q |= (uint64_t)1 << i;
		}
	}
	if (half_even) {
		big_shl(&t, &r, 1);
		c = big_cmp(&t, den);
		if (c > 0 || (c == 0 && (q & 1)))
			q++;
	}
	xassert(q < (uint64_t)1 << 63);
	return (long long)q;
}

/* a * b * c / d, rounded HALF_EVEN. */
static long long round_ratio(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	struct big num, den;

	big_set(&num, a);
	big_mul_u64(&num, b);
	big_mul_u64(&num, c);
	big_set(&den, d);
	return big_quot(&num, &den, true);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* ---- dates --------------------------------------------------------------- */

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && leap(y) ? 29 : days[m - 1];
}

bool loansched_date_valid(struct loansched_date d)
{
	return d.y >= 1 && d.y <= 9999 && d.m >= 1 && d.m <= 12 && d.d >= 1 && d.d <= month_days(d.y, d.m);
}

/* Days since 1970-01-01 and back, proleptic Gregorian (the civil-days
 * algorithm: years of 400 = 146,097 days, March-based so the leap day is
 * last). */
static long days_from_civil(struct loansched_date d)
{
	int y = d.y - (d.m <= 2);
	long era = (y >= 0 ? y : y - 399) / 400;
	long yoe = y - era * 400;
	long doy = (153 * (d.m + (d.m > 2 ? -3 : 9)) + 2) / 5 + d.d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static struct loansched_date civil_from_days(long z)
{
	struct loansched_date d;
	long era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d.d = (int)(doy - (153 * mp + 2) / 5 + 1);
	d.m = (int)(mp < 10 ? mp + 3 : mp - 9);
	d.y = (int)(yoe + era * 400 + (d.m <= 2));
	return d;
}

/* Instalment k's due date: k periods after the start.  Monthly counts k
 * calendar months from the start itself (not from the previous due date,
 * so 31 Jan -> 28 Feb -> 31 Mar, never -> 28 Mar), clamped to the month's
 * last day; weekly and biweekly are 7k and 14k days. */
static struct loansched_date due_date(struct loansched_date s, enum loansched_freq f, int k)
{
	struct loansched_date d;
	int months;

	if (f != LOANSCHED_MONTHLY)
		return civil_from_days(days_from_civil(s) + (long)k * (f == LOANSCHED_WEEKLY ? 7 : 14));
	months = s.y * 12 + (s.m - 1) + k;
	d.y = months / 12;
	d.m = months % 12 + 1;
	d.d = s.d <= month_days(d.y, d.m) ? s.d : month_days(d.y, d.m);
	return d;
}

/* ---- the schedule ---------------------------------------------------------- */

/* The per-period rate r = *rp / *rq exactly (README "Per-period rate"):
 * a monthly rate becomes weekly as x12/52 and biweekly as x12/26, a yearly
 * one is /12, /26, /52 (Fineract's periods per year: 52 weeks, not 365/7);
 * a rate per term is spread evenly over all n instalments, grace
 * included, so a flat loan's interest over the term is that rate. */
static void period_rate(const struct loansched_terms *t, uint64_t *rp, uint64_t *rq)
{
	static const uint64_t a_year[] = { [LOANSCHED_WEEKLY] = 52, [LOANSCHED_BIWEEKLY] = 26, [LOANSCHED_MONTHLY] = 12 };
	uint64_t g;

	*rp = (uint64_t)t->rate_bp;
	*rq = 10000;
	if (t->per == LOANSCHED_PER_TERM) {
		*rq *= (uint64_t)t->term;
	} else if (t->per == LOANSCHED_PER_YEAR) {
		*rq *= a_year[t->freq];
	} else {
		*rp *= 12;
		*rq *= a_year[t->freq];
	}
	g = gcd(*rp, *rq);	/* smaller powers in the annuity; r = 0 gives 0/1 */
	*rp /= g;
	*rq /= g;
}

/* Interest for one period on a balance: round(B * r) (DOMAIN 2.3/2.4). */
static long long period_interest(long long balance, uint64_t rp, uint64_t rq)
{
	return round_ratio((uint64_t)balance, rp, 1, rq);
}

/* The equal instalment, DOMAIN 2.3: A = P r / (1 - (1 + r)^-m), rounded
 * once.  With r = p/q that is P p (q+p)^m / (q ((q+p)^m - q^m)), an exact
 * quotient of integers; r = 0 is A = P / m. */
static long long annuity(long long principal, uint64_t rp, uint64_t rq, int m)
{
	struct big x, y, num, den;

	if (rp == 0)
		return round_ratio((uint64_t)principal, 1, 1, (uint64_t)m);
	big_set(&x, 1);
	big_set(&y, 1);
	for (int i = 0; i < m; i++) {
		big_mul_u32(&x, (uint32_t)(rq + rp));
		big_mul_u32(&y, (uint32_t)rq);
	}
	num = x;
	big_mul_u64(&num, (uint64_t)principal);
	big_mul_u64(&num, rp);
	den = x;
	big_sub(&den, &y);
	big_mul_u64(&den, rq);
	return big_quot(&num, &den, true);
}

static long rate_limit(enum loansched_per per)
{
	return per == LOANSCHED_PER_MONTH ? 10000 : per == LOANSCHED_PER_YEAR ? 120000 : 100000;
}

static enum loansched_err check(const struct loansched_terms *t)
{
	if ((unsigned)t->method > LOANSCHED_EQUAL_PRINCIPAL || (unsigned)t->per > LOANSCHED_PER_TERM ||
	    (unsigned)t->freq > LOANSCHED_MONTHLY || (unsigned)t->grace_kind > LOANSCHED_GRACE_INTEREST_FREE)
		return LOANSCHED_E_ARG;
	if (t->principal_cents < 1 || t->principal_cents > LOANSCHED_MAX_CENTS)
		return LOANSCHED_E_PRINCIPAL;
	if (t->term < 1 || t->term > LOANSCHED_MAX_TERM)
		return LOANSCHED_E_TERM;
	if (t->rate_bp < 0 || t->rate_bp > rate_limit(t->per))
		return LOANSCHED_E_RATE;
	if (t->grace < 0 || t->grace >= t->term)
		return LOANSCHED_E_GRACE;
	if (!loansched_date_valid(t->start) || t->start.y < 1970 || t->start.y > 2999)
		return LOANSCHED_E_START;
	if (t->grace > 0 && t->grace_kind == LOANSCHED_GRACE_NONE)
		return LOANSCHED_E_GRACE;
	return LOANSCHED_OK;
}

/* Flat (DOMAIN 2.2): the interest on the original principal over the c
 * interest-bearing instalments (all n, or only the m after an
 * interest-free grace, whose instalments carry nothing), rounded once:
 * I_total = round(P r c).  Splits of a whole use floor with the residue on
 * the last instalment (2.5; DOMAIN's 1,666 x 5 + 1,670), so no part is
 * negative however small the loan. */
static void build_flat(const struct loansched_terms *t, uint64_t rp, uint64_t rq, struct loansched_row *rows)
{
	int n = t->term, g = t->grace, m = n - g;
	int first = g > 0 && t->grace_kind == LOANSCHED_GRACE_INTEREST_FREE ? g : 0, c = n - first;
	long long total = round_ratio((uint64_t)t->principal_cents, rp, (uint64_t)c, rq);
	long long share = total / c, pshare = t->principal_cents / m;

	for (int i = first; i < n; i++)
		rows[i].interest_cents = i == n - 1 ? total - share * (c - 1) : share;
	for (int i = g; i < n; i++)
		rows[i].principal_cents = i == n - 1 ? t->principal_cents - pshare * (m - 1) : pshare;
}

/* Reducing balance (DOMAIN 2.3 equal instalments, 2.4 equal principal):
 * each period's interest is round(B r) on the balance before it.  Grace
 * instalments (2.6) repay no principal; of kind principal they pay
 * round(P r), of kind interest_free nothing (the interest is waived).  The
 * principal is then repaid over the m instalments left: equal instalments
 * A (principal A - interest, never more than the balance: a tiny loan's
 * rounded A could repay more than is owed) or equal parts floor(P / m);
 * the last repays the whole balance left, so it carries every residue. */
static void build_reducing(const struct loansched_terms *t, uint64_t rp, uint64_t rq, struct loansched_row *rows)
{
	int n = t->term, g = t->grace, m = n - g;
	long long balance = t->principal_cents, a = 0, pshare = 0;

	for (int i = 0; i < g; i++)
		rows[i].interest_cents =
			t->grace_kind == LOANSCHED_GRACE_PRINCIPAL ? period_interest(balance, rp, rq) : 0;
	if (t->method == LOANSCHED_REDUCING)
		a = annuity(balance, rp, rq, m);
	else
		pshare = balance / m;
	for (int i = g; i < n; i++) {
		long long interest = period_interest(balance, rp, rq), principal;

		if (i == n - 1) {
			principal = balance;
		} else if (t->method == LOANSCHED_REDUCING) {
			/* A > P r >= B r exactly and rounding keeps the order, so
			 * round(B r) <= A while B <= P */
			xassert(a >= interest);
			principal = a - interest < balance ? a - interest : balance;
		} else {
			principal = pshare;
		}
		rows[i].interest_cents = interest;
		rows[i].principal_cents = principal;
		balance -= principal;
	}
}

enum loansched_err loansched_build(const struct loansched_terms *t, struct loansched_row *rows)
{
	enum loansched_err e = check(t);
	long long balance = t->principal_cents, sum_principal = 0;
	uint64_t rp, rq;

	if (e != LOANSCHED_OK)
		return e;
	period_rate(t, &rp, &rq);
	for (int i = 0; i < t->term; i++) {
		memset(&rows[i], 0, sizeof(rows[i]));
		rows[i].n = i + 1;
		rows[i].due = due_date(t->start, t->freq, i + 1);
	}
	if (t->method == LOANSCHED_FLAT)
		build_flat(t, rp, rq, rows);
	else
		build_reducing(t, rp, rq, rows);
	for (int i = 0; i < t->term; i++) {
		balance -= rows[i].principal_cents;
		sum_principal += rows[i].principal_cents;
		rows[i].instalment_cents = rows[i].principal_cents + rows[i].interest_cents;
		rows[i].balance_cents = balance;
		xassert(rows[i].principal_cents >= 0 && rows[i].interest_cents >= 0 && balance >= 0);
	}
	xassert(balance == 0 && sum_principal == t->principal_cents);
	return LOANSCHED_OK;
}

/* ---- names ------------------------------------------------------------- */

const char *loansched_err_name(enum loansched_err e)
{
	switch (e) {
	case LOANSCHED_OK: return "ok";
	case LOANSCHED_E_PRINCIPAL: return "principal";
	case LOANSCHED_E_TERM: return "term";
	case LOANSCHED_E_RATE: return "rate";
	case LOANSCHED_E_GRACE: return "grace";
	case LOANSCHED_E_START: return "start";
	case LOANSCHED_E_ARG: break;
	}
	return "argument";
}

const char *loansched_err_text(enum loansched_err e)
{
	switch (e) {
	case LOANSCHED_OK: return "accepted";
	case LOANSCHED_E_PRINCIPAL: return "the principal is KES 0.01 to 100,000,000,000.00";
	case LOANSCHED_E_TERM: return "the term is 1 to 520 instalments";
	case LOANSCHED_E_RATE:
		return "the rate is 0 to 10000 basis points per month, 120000 per year, 100000 per term";
	case LOANSCHED_E_GRACE: return "the grace is 0 to term - 1 instalments, with a kind when not 0";
	case LOANSCHED_E_START: return "the start is a calendar date from 1970-01-01 to 2999-12-31";
	case LOANSCHED_E_ARG: break;
	}
	return "a method, rate basis, frequency or grace kind out of range";
}

struct word { const char *s; int v; };

static int parse_word(const struct word *w, const char *s, int *out)
{
	for (; s && w->s; w++)
		if (!strcmp(w->s, s)) {
			*out = w->v;
			return 0;
		}
	return -1;
}

int loansched_parse_method(const char *s, enum loansched_method *out)
{
	static const struct word w[] = {
		{ "flat", LOANSCHED_FLAT }, { "reducing", LOANSCHED_REDUCING },
		{ "equal_principal", LOANSCHED_EQUAL_PRINCIPAL }, { NULL, 0 },
	};
	int v;

	if (parse_word(w, s, &v) < 0)
		return -1;
	*out = (enum loansched_method)v;
	return 0;
}

int loansched_parse_per(const char *s, enum loansched_per *out)
{
	static const struct word w[] = {
		{ "month", LOANSCHED_PER_MONTH }, { "year", LOANSCHED_PER_YEAR }, { "term", LOANSCHED_PER_TERM },
		{ NULL, 0 },
	};
	int v;

	if (parse_word(w, s, &v) < 0)
		return -1;
	*out = (enum loansched_per)v;
	return 0;
}

int loansched_parse_freq(const char *s, enum loansched_freq *out)
{
	static const struct word w[] = {
		{ "weekly", LOANSCHED_WEEKLY }, { "biweekly", LOANSCHED_BIWEEKLY }, { "monthly", LOANSCHED_MONTHLY },
		{ NULL, 0 },
	};
	int v;

	if (parse_word(w, s, &v) < 0)
		return -1;
	*out = (enum loansched_freq)v;
	return 0;
}

int loansched_parse_grace_kind(const char *s, enum loansched_grace *out)
{
	static const struct word w[] = {
		{ "none", LOANSCHED_GRACE_NONE }, { "principal", LOANSCHED_GRACE_PRINCIPAL },
		{ "interest_free", LOANSCHED_GRACE_INTEREST_FREE }, { NULL, 0 },
	};
	int v;

	if (parse_word(w, s, &v) < 0)
		return -1;
	*out = (enum loansched_grace)v;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int loansched_parse_kes(const char *s, long long *cents)
{
	long long whole = 0, frac = 0;
	int digits = 0, fdigits = 0;

	if (!s)
		return -1;
	for (; is_digit(*s); s++, digits++) {
		if (digits == 15)
			return -1;
		whole = whole * 10 + (*s - '0');
	}
	if (digits == 0)
		return -1;
	if (*s == '.') {
		for (s++; is_digit(*s); s++, fdigits++) {
			if (fdigits == 2)
				return -1;
			frac = frac * 10 + (*s - '0');
		}
		if (fdigits == 0)
			return -1;
		if (fdigits == 1)
			frac *= 10;
	}
	if (*s)
		return -1;
	*cents = whole * 100 + frac;
	return 0;
}

int loansched_parse_date(const char *s, struct loansched_date *out)
{
	static const char shape[] = "dddd-dd-dd";

	if (!s || strlen(s) != sizeof(shape) - 1)
		return -1;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != '-')
			return -1;
	out->y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	out->m = (s[5] - '0') * 10 + (s[6] - '0');
	out->d = (s[8] - '0') * 10 + (s[9] - '0');
	return 0;
}
