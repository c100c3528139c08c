/*
 * Loan schedules to the cent: every case in tests/data/loan_schedules/
 * (expected rows computed by gen.py there, with Python fractions from the
 * rules, never from this code), the refusals, the option parsers, and the
 * invariants over a seeded sweep of random terms.
 */
#include "t.h"
#include "base/loansched.h"
#include "base/util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>

void test_loansched_cases(void);
void test_loansched_refusals(void);
void test_loansched_parse(void);
void test_loansched_sweep(void);

#define CASES_DIR "tests/data/loan_schedules"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[4096];
	size_t n;

	if (!f)
		return NULL;
	buf_init(&b, 1 << 20);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_append(&b, "", 1);
	return b.data;
}

/* One .in file into terms.  Returns 0, or -1 when a line does not parse
 * (a bad case file, reported as a failure). */
static int read_terms(const char *text, struct loansched_terms *t)
{
	char line[256];
	long long v;
	int seen = 0;

	memset(t, 0, sizeof(*t));
	for (const char *p = text; *p;) {
		size_t len = strcspn(p, "\n");
		char *eq;
		int ok = 0;

		if (len >= sizeof(line))
			return -1;
		memcpy(line, p, len);
		line[len] = '\0';
		p += len + (p[len] == '\n');
		if (!(eq = strchr(line, '=')))
			return -1;
		*eq++ = '\0';
		if (!strcmp(line, "principal"))
			ok = loansched_parse_kes(eq, &t->principal_cents);
		else if (!strcmp(line, "rate_bp") && !(ok = util_parse_ll(eq, -1000000, 1000000, &v)))
			t->rate_bp = (long)v;
		else if (!strcmp(line, "per"))
			ok = loansched_parse_per(eq, &t->per);
		else if (!strcmp(line, "method"))
			ok = loansched_parse_method(eq, &t->method);
		else if (!strcmp(line, "term") && !(ok = util_parse_ll(eq, -1000, 100000, &v)))
			t->term = (int)v;
		else if (!strcmp(line, "frequency"))
			ok = loansched_parse_freq(eq, &t->freq);
		else if (!strcmp(line, "grace") && !(ok = util_parse_ll(eq, -1000, 100000, &v)))
			t->grace = (int)v;
		else if (!strcmp(line, "grace_kind"))
			ok = loansched_parse_grace_kind(eq, &t->grace_kind);
		else if (!strcmp(line, "start"))
			ok = loansched_parse_date(eq, &t->start);
		else if (strcmp(line, "rate_bp") && strcmp(line, "term") && strcmp(line, "grace"))
			return -1;
		if (ok < 0)
			return -1;
		seen++;
	}
	return seen == 9 ? 0 : -1;
}

/* The CSV chamad loan-schedule prints (ops/loan_schedule.c writes the
 * same format; the integration test holds it to the files too). */
static void csv(struct buf *b, const struct loansched_row *rows, int n)
{
	buf_puts(b, "n,due_date,principal_cents,interest_cents,instalment_cents,balance_cents\n");
	for (int i = 0; i < n; i++)
		buf_printf(b, "%d,%04d-%02d-%02d,%lld,%lld,%lld,%lld\n", rows[i].n, rows[i].due.y, rows[i].due.m,
			   rows[i].due.d, rows[i].principal_cents, rows[i].interest_cents, rows[i].instalment_cents,
			   rows[i].balance_cents);
}

/* Prints the first line where the two differ, to find a failure fast. */
static void first_difference(const char *name, const char *want, const char *have)
{
	int line = 1;

	while (*want && *want == *have) {
		line += *want == '\n';
		want++;
		have++;
	}
	while (line > 1 && want[-1] != '\n') {
		want--;
		have--;
	}
	fprintf(stderr, "    %s line %d: want \"%.*s\" have \"%.*s\"\n", name, line, (int)strcspn(want, "\n"), want,
		(int)strcspn(have, "\n"), have);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void test_loansched_cases(void)
{
	static struct loansched_row rows[LOANSCHED_MAX_TERM];
	DIR *d = opendir(CASES_DIR);
	struct dirent *de;
	char *names[256];
	int count = 0, schedules = 0, refusals = 0;

	T_CHECK(d != NULL);
	if (!d)
		return;
	while ((de = readdir(d)) && count < 256) {
		size_t len = strlen(de->d_name);

		if (len > 3 && !strcmp(de->d_name + len - 3, ".in"))
			names[count++] = xstrndup(de->d_name, len - 3);
	}
	closedir(d);
	qsort(names, (size_t)count, sizeof(names[0]), by_name);
	for (int i = 0; i < count; i++) {
		char path[512];
		char *in, *want_csv, *want_err;
		struct loansched_terms t;
		enum loansched_err e;

		snprintf(path, sizeof(path), "%s/%s.in", CASES_DIR, names[i]);
		in = slurp(path);
		snprintf(path, sizeof(path), "%s/%s.csv", CASES_DIR, names[i]);
		want_csv = slurp(path);
		snprintf(path, sizeof(path), "%s/%s.err", CASES_DIR, names[i]);
		want_err = slurp(path);
		T_CHECK(in && read_terms(in, &t) == 0 && (want_csv != NULL) != (want_err != NULL));
		if (in && read_terms(in, &t) == 0 && (want_csv != NULL) != (want_err != NULL)) {
			e = loansched_build(&t, rows);
			if (want_csv) {
				struct buf have;

				buf_init(&have, 1 << 20);
				T_CHECK(e == LOANSCHED_OK);
				if (e == LOANSCHED_OK)
					csv(&have, rows, t.term);
				T_STREQ(have.data ? have.data : "", want_csv);
				if (strcmp(have.data ? have.data : "", want_csv))
					first_difference(names[i], want_csv, have.data ? have.data : "");
				buf_free(&have);
				schedules++;
			} else {
				want_err[strcspn(want_err, "\n")] = '\0';
				T_STREQ(loansched_err_name(e), want_err);
				if (strcmp(loansched_err_name(e), want_err))
					fprintf(stderr, "    %s: want refusal %s, have %s\n", names[i], want_err,
						loansched_err_name(e));
				refusals++;
			}
		} else {
			fprintf(stderr, "    %s: unreadable case\n", names[i]);
		}
		free(in);
		free(want_csv);
		free(want_err);
		free(names[i]);
	}
	/* issue 11: at least 30 schedules, besides the refusals */
	T_CHECK(schedules >= 30);
	T_CHECK(refusals >= 5);
}

static struct loansched_terms base_terms(void)
{
	struct loansched_terms t = {
		.principal_cents = 1000000, .rate_bp = 200, .per = LOANSCHED_PER_MONTH, .method = LOANSCHED_REDUCING,
		.term = 6, .freq = LOANSCHED_MONTHLY, .grace = 0, .grace_kind = LOANSCHED_GRACE_NONE,
		.start = { 2025, 1, 31 },
	};
	return t;
}

void test_loansched_refusals(void)
{
	static struct loansched_row rows[LOANSCHED_MAX_TERM];
	struct loansched_terms t;

#define REFUSED(field, value, err) do { \
		t = base_terms(); \
		t.field = value; \
		rows[0].n = -7; \
		T_CHECK(loansched_build(&t, rows) == (err)); \
		T_CHECK(rows[0].n == -7); /* untouched */ \
	} while (0)
	REFUSED(principal_cents, 0, LOANSCHED_E_PRINCIPAL);
	REFUSED(principal_cents, -100, LOANSCHED_E_PRINCIPAL);
	REFUSED(principal_cents, LOANSCHED_MAX_CENTS + 1, LOANSCHED_E_PRINCIPAL);
	REFUSED(term, 0, LOANSCHED_E_TERM);
	REFUSED(term, -3, LOANSCHED_E_TERM);
	REFUSED(term, LOANSCHED_MAX_TERM + 1, LOANSCHED_E_TERM);
	REFUSED(rate_bp, -1, LOANSCHED_E_RATE);
	REFUSED(rate_bp, 10001, LOANSCHED_E_RATE);
	REFUSED(grace, 6, LOANSCHED_E_GRACE);
	REFUSED(grace, -1, LOANSCHED_E_GRACE);
	REFUSED(grace, 2, LOANSCHED_E_GRACE);	/* a grace without a kind */
	REFUSED(start.d, 32, LOANSCHED_E_START);
	REFUSED(start.y, 1969, LOANSCHED_E_START);
	REFUSED(start.y, 3000, LOANSCHED_E_START);
	REFUSED(method, (enum loansched_method)7, LOANSCHED_E_ARG);
	REFUSED(freq, (enum loansched_freq)-1, LOANSCHED_E_ARG);
#undef REFUSED
	/* the limit follows what the rate is quoted per */
	t = base_terms();
	t.per = LOANSCHED_PER_YEAR;
	t.rate_bp = 120000;
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_OK);
	t.rate_bp = 120001;
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_E_RATE);
	t.per = LOANSCHED_PER_TERM;
	t.rate_bp = 100000;
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_OK);
	t.rate_bp = 100001;
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_E_RATE);
	/* 29 Feb exists in 2028 only */
	t = base_terms();
	t.start = (struct loansched_date){ 2028, 2, 29 };
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_OK);
	t.start.y = 2027;
	T_CHECK(loansched_build(&t, rows) == LOANSCHED_E_START);
	T_STREQ(loansched_err_name(LOANSCHED_E_GRACE), "grace");
	T_CHECK(strstr(loansched_err_text(LOANSCHED_E_TERM), "520") != NULL);
}

void test_loansched_parse(void)
{
	long long c = -1;
	struct loansched_date d;
	enum loansched_method m;
	enum loansched_grace g;

	T_CHECK(loansched_parse_kes("2500", &c) == 0 && c == 250000);
	T_CHECK(loansched_parse_kes("0.07", &c) == 0 && c == 7);
	T_CHECK(loansched_parse_kes("7500.5", &c) == 0 && c == 750050);
	T_CHECK(loansched_parse_kes("100000000000.00", &c) == 0 && c == LOANSCHED_MAX_CENTS);
	T_CHECK(loansched_parse_kes("0", &c) == 0 && c == 0);	/* the build refuses it */
	T_CHECK(loansched_parse_kes("1.234", &c) < 0);
	T_CHECK(loansched_parse_kes("-5", &c) < 0);
	T_CHECK(loansched_parse_kes("1,000", &c) < 0);
	T_CHECK(loansched_parse_kes("1.", &c) < 0);
	T_CHECK(loansched_parse_kes(".5", &c) < 0);
	T_CHECK(loansched_parse_kes("", &c) < 0);
	T_CHECK(loansched_parse_kes("1e5", &c) < 0);
	T_CHECK(loansched_parse_kes("9999999999999999", &c) < 0);
	T_CHECK(loansched_parse_date("2025-01-31", &d) == 0 && d.y == 2025 && d.m == 1 && d.d == 31);
	T_CHECK(loansched_parse_date("2025-1-31", &d) < 0);
	T_CHECK(loansched_parse_date("2025-01-31x", &d) < 0);
	T_CHECK(loansched_parse_date("2025/01/31", &d) < 0);
	T_CHECK(loansched_parse_method("equal_principal", &m) == 0 && m == LOANSCHED_EQUAL_PRINCIPAL);
	T_CHECK(loansched_parse_method("annuity", &m) < 0);
	T_CHECK(loansched_parse_grace_kind("interest_free", &g) == 0 && g == LOANSCHED_GRACE_INTEREST_FREE);
	T_CHECK(loansched_parse_grace_kind("Principal", &g) < 0);
}

/* splitmix64: a fixed seed, so a failure is the same on every run. */
static uint64_t rng_state = 0x11c4a5e5c0ffeeULL;

static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static long long rnd_range(long long lo, long long hi)
{
	return lo + (long long)(rnd64() % (uint64_t)(hi - lo + 1));
}

static long days_of(struct loansched_date d)
{
	/* strictly increasing is all the sweep needs: a monotone key */
	return (long)d.y * 372 + d.m * 31 + d.d;
}

/* The invariants of one schedule; returns how many failed (0 = holds). */
static int invariants(const struct loansched_terms *t, const struct loansched_row *rows)
{
	long long sum_p = 0, sum_i = 0, sum_inst = 0, before = t->principal_cents;
	int bad = 0, n = t->term, g = t->grace, last_due_ok = 1;
	long long first_inst = -1, first_prin = -1, first_int = -1;

	for (int i = 0; i < n; i++) {
		const struct loansched_row *r = &rows[i];

		sum_p += r->principal_cents;
		sum_i += r->interest_cents;
		sum_inst += r->instalment_cents;
		bad += r->n != i + 1;
		bad += r->principal_cents < 0 || r->interest_cents < 0 || r->balance_cents < 0;
		bad += r->instalment_cents != r->principal_cents + r->interest_cents;
		bad += r->balance_cents != before - r->principal_cents;
		bad += !loansched_date_valid(r->due);
		if (i > 0 && days_of(r->due) <= days_of(rows[i - 1].due))
			last_due_ok = 0;
		if (i < g) {
			/* grace: no principal; interest-free grace: nothing at all */
			bad += r->principal_cents != 0;
			bad += t->grace_kind == LOANSCHED_GRACE_INTEREST_FREE && r->interest_cents != 0;
		} else if (i < n - 1) {
			/* the method's equal part, the residue left to the last */
			if (t->method == LOANSCHED_REDUCING && r->principal_cents < before) {
				if (first_inst < 0)
					first_inst = r->instalment_cents;
				bad += r->instalment_cents != first_inst;
			}
			if (t->method == LOANSCHED_EQUAL_PRINCIPAL) {
				if (first_prin < 0)
					first_prin = r->principal_cents;
				bad += r->principal_cents != first_prin;
			}
			if (t->method == LOANSCHED_FLAT) {
				if (first_prin < 0)
					first_prin = r->principal_cents;
				bad += r->principal_cents != first_prin;
				if (first_int < 0)
					first_int = r->interest_cents;
				bad += r->interest_cents != first_int;
			}
			/* on a reducing balance interest never rises */
			if (t->method != LOANSCHED_FLAT && i > g)
				bad += r->interest_cents > rows[i - 1].interest_cents;
		} else if (t->method == LOANSCHED_EQUAL_PRINCIPAL || t->method == LOANSCHED_FLAT) {
			/* floor splits: the last part is never the smaller */
			bad += first_prin >= 0 && r->principal_cents < first_prin;
			bad += t->method == LOANSCHED_FLAT && first_int >= 0 && r->interest_cents < first_int;
		}
		before = r->balance_cents;
	}
	bad += !last_due_ok;
	bad += sum_p != t->principal_cents;
	bad += sum_inst != t->principal_cents + sum_i;
	bad += rows[n - 1].balance_cents != 0;
	if (t->rate_bp == 0)
		bad += sum_i != 0;
	return bad;
}

void test_loansched_sweep(void)
{
	static struct loansched_row rows[LOANSCHED_MAX_TERM];
	static const long long scale[] = { 100, 10000, 1000000, 100000000, 10000000000LL, LOANSCHED_MAX_CENTS };
	int failures = 0, runs = 0;

	for (int k = 0; k < 3000; k++) {
		struct loansched_terms t;
		long limit;

		memset(&t, 0, sizeof(t));
		t.principal_cents = rnd_range(1, scale[rnd64() % 6]);
		t.method = (enum loansched_method)(rnd64() % 3);
		t.per = (enum loansched_per)(rnd64() % 3);
		t.freq = (enum loansched_freq)(rnd64() % 3);
		/* mostly short terms (the usual chama loan), some to the limit */
		t.term = rnd64() % 10 ? (int)rnd_range(1, 36) : (int)rnd_range(1, LOANSCHED_MAX_TERM);
		limit = t.per == LOANSCHED_PER_MONTH ? 10000 : t.per == LOANSCHED_PER_YEAR ? 120000 : 100000;
		t.rate_bp = rnd64() % 8 == 0 ? 0 : rnd64() % 8 == 0 ? limit : (long)rnd_range(1, limit / 10);
		t.grace = rnd64() % 3 == 0 ? (int)rnd_range(0, t.term - 1) : 0;
		t.grace_kind = t.grace ? (enum loansched_grace)rnd_range(1, 2) : LOANSCHED_GRACE_NONE;
		t.start = (struct loansched_date){ (int)rnd_range(1970, 2999), (int)rnd_range(1, 12), 1 };
		t.start.d = (int)rnd_range(28, 31);
		while (!loansched_date_valid(t.start))
			t.start.d--;
		if (loansched_build(&t, rows) != LOANSCHED_OK) {
			failures++;
			continue;
		}
		runs++;
		if (invariants(&t, rows)) {
			if (failures++ < 5)
				fprintf(stderr,
					"    sweep %d: P=%lld bp=%ld per=%d method=%d term=%d freq=%d grace=%d/%d\n", k,
					t.principal_cents, t.rate_bp, t.per, t.method, t.term, t.freq, t.grace,
					t.grace_kind);
		}
	}
	T_CHECK(failures == 0);
	T_CHECK(runs == 3000);
}
