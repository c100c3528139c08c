/*
 * verify: `chamad verify-ledger`, a command-line check of the books (it
 * runs blocking libpq, never inside the daemon):
 *
 *   1. every journal entry has two lines or more and its debits equal its
 *      credits;
 *   2. every account's balance equals the sum of its lines;
 *   3. the financial audit chains verify: each chama's chain (015) in its
 *      order (chama_seq 1, 2, ... without gaps), each row's prev_hash the
 *      row before's row_hash (the first's, the chain's genesis), row_hash =
 *      SHA-256(prev_hash || canonical content) recomputed here with
 *      libsodium, and the last row equal to the chama's head
 *      (audit_chain_heads), so rows taken from the end show; likewise the
 *      legacy global chain (chain_seq) of the rows from before 015, whose
 *      last hash every chain of a chama that existed then starts from;
 *   4. the domain tables agree with the ledger: members' savings, welfare
 *      and share accounts equal their confirmed contributions (less what
 *      was paid out of them, plus or minus what loans moved), and every
 *      confirmed contribution has its entry (a reversed one, its reversal);
 *   5. the loans agree with the ledger: each member's loans_receivable is
 *      what their loans owe (loan_balance_cents written out), each loan
 *      owes what its own entries say (the balance members are shown), its
 *      schedule adds up to its columns (principal, interest, fees,
 *      penalties, repaid, fees paid), each repayment's allocations add up
 *      to its parts and each instalment's paid parts to the allocations of
 *      the repayments that stand, and each repayment has its entry.
 *
 * Prints what it checked and every problem (the first ones of each kind);
 * exits 0 when the books hold, 1 when they do not, 2 when it cannot check.
 */
#include "ops/verify.h"
#include "base/config.h"
#include "dom/ledger_check.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#define SHOW 10

/* Runs a query whose every row is a problem (with one text parameter $1
 * when param is not NULL); prints the first SHOW rows with `what` and
 * returns the number of rows (-1 on a query error). */
static long problems(PGconn *pg, FILE *out, FILE *err, const char *what, const char *sql, const char *param)
{
	PGresult *r = PQexecParams(pg, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
	long n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "verify-ledger: %s: %s", what, PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	n = PQntuples(r);
	for (long i = 0; i < n && i < SHOW; i++) {
		fprintf(out, "  BAD %s:", what);
		for (int f = 0; f < PQnfields(r); f++)
			fprintf(out, " %s=%s", PQfname(r, f), PQgetvalue(r, (int)i, f));
		fprintf(out, "\n");
	}
	PQclear(r);
	return n;
}

/* Decodes a row's prev_hash and row_hash (hex from the database) into prev
 * and got, and tells whether got = SHA-256(prev || canon); -1 when either
 * hash is malformed. */
static int link_hash(const char *prev_hex, const char *got_hex, const char *canon, unsigned char prev[32],
		     unsigned char got[32], bool *content_ok)
{
	unsigned char calc[32];
	crypto_hash_sha256_state st;

	if (strlen(prev_hex) != 64 || sodium_hex2bin(prev, 32, prev_hex, 64, NULL, NULL, NULL) != 0 ||
	    strlen(got_hex) != 64 || sodium_hex2bin(got, 32, got_hex, 64, NULL, NULL, NULL) != 0)
		return -1;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, prev, 32);
	crypto_hash_sha256_update(&st, (const unsigned char *)canon, strlen(canon));
	crypto_hash_sha256_final(&st, calc);
	*content_ok = sodium_memcmp(calc, got, 32) == 0;
	return 0;
}

/* Walks the legacy global chain (the rows written before 015, chain_seq
 * order) and leaves its last hash in tip (zeros when it is empty).  Rows
 * with no hash are allowed only from before any chain existed. */
static long check_legacy_chain(PGconn *pg, FILE *out, FILE *err, long *rows, unsigned char tip[32])
{
	PGresult *r = PQexec(pg, ledger_legacy_chain.sql);
	unsigned char prev[32], got[32];
	long bad = 0;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "verify-ledger: audit chain: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	memset(tip, 0, 32);
	*rows = PQntuples(r);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *id = PQgetvalue(r, i, 0);
		bool content_ok;

		if (PQgetisnull(r, i, 3)) {
			if (!strcmp(PQgetvalue(r, i, 4), "t") && bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s has no hash after the chain began\n", id);
			continue;	/* rows from before the chain existed */
		}
		if (link_hash(PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 1), prev, got,
			      &content_ok) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s has a malformed hash\n", id);
			continue;
		}
		if (sodium_memcmp(prev, tip, 32) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s does not follow the row before it\n", id);
		} else if (!content_ok) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s content does not match its hash\n", id);
		}
		memcpy(tip, got, 32);
	}
	PQclear(r);
	return bad;
}

/* Ends one chama's walk: the head must be exactly where the chain ends
 * (seq and hash), so rows taken from its end show. */
static void chain_end(FILE *out, long *bad, const char *chama, long last_seq, const unsigned char last[32],
		      const char *head_seq, const char *head_hex)
{
	unsigned char head[32];

	if (atol(head_seq) == last_seq && strlen(head_hex) == 64 &&
	    sodium_hex2bin(head, 32, head_hex, 64, NULL, NULL, NULL) == 0 && sodium_memcmp(head, last, 32) == 0)
		return;
	if ((*bad)++ < SHOW)
		fprintf(out, "  BAD audit chain of chama %s: the chain ends at row %ld but its head is at row %s "
			"(rows missing from its end?)\n", chama, last_seq, head_seq);
}

/* Walks every chama's chain in chama_seq order against its head: each row
 * in its place (1, 2, ... without gaps), linked to the row before (the
 * first to the chain's genesis), its content matching its hash, and the
 * last row equal to the head.  The geneses are the legacy chain's tip (the
 * chamas that existed when the chains began) or zeros (chamas created
 * since). */
static long check_chama_chains(PGconn *pg, FILE *out, FILE *err, long *rows, long *chains,
			       const unsigned char tip[32])
{
	/* one row per chama-chain row, plus one per head with no such rows */
	PGresult *r = PQexec(pg, ledger_chama_chains.sql);
	static const unsigned char zeros[32];
	unsigned char want_prev[32], prev[32], got[32];
	char chama[24] = "";
	long bad = 0, want_seq = 0;
	int n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "verify-ledger: audit chains: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	n = PQntuples(r);
	*rows = *chains = 0;
	for (int i = 0; i < n; i++) {
		const char *c = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
		bool no_head = PQgetisnull(r, i, 6), content_ok;
		long seq;

		if (strcmp(c, chama) != 0) {	/* the first row of a chama's chain */
			unsigned char genesis[32];

			snprintf(chama, sizeof(chama), "%s", c);
			(*chains)++;
			want_seq = 1;
			memset(want_prev, 0, 32);
			if (no_head) {
				if (bad++ < SHOW)
					fprintf(out, "  BAD audit chain of chama %s: it has rows but no head\n", chama);
			} else if (strlen(PQgetvalue(r, i, 8)) != 64 ||
				   sodium_hex2bin(genesis, 32, PQgetvalue(r, i, 8), 64, NULL, NULL, NULL) != 0) {
				if (bad++ < SHOW)
					fprintf(out, "  BAD audit chain of chama %s: its head is malformed\n", chama);
			} else {
				memcpy(want_prev, genesis, 32);
				if (sodium_memcmp(genesis, zeros, 32) != 0 && sodium_memcmp(genesis, tip, 32) != 0 &&
				    bad++ < SHOW)
					fprintf(out, "  BAD audit chain of chama %s: it does not start from the end of "
						"the legacy chain (rows missing from its end?)\n", chama);
			}
		}
		if (PQgetisnull(r, i, 1)) {	/* a head without rows */
			if (!no_head)
				chain_end(out, &bad, chama, 0, want_prev, PQgetvalue(r, i, 6), PQgetvalue(r, i, 7));
			continue;
		}
		(*rows)++;
		seq = atol(PQgetvalue(r, i, 2));
		if (seq != want_seq && bad++ < SHOW)
			fprintf(out, "  BAD audit chain of chama %s: row %s is at place %ld, expected %ld "
				"(rows missing)\n", chama, id, seq, want_seq);
		want_seq = seq + 1;
		if (link_hash(PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 3), prev, got,
			      &content_ok) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain of chama %s: row %s has a malformed hash\n", chama, id);
			memset(got, 0, 32);
		} else if (sodium_memcmp(prev, want_prev, 32) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain of chama %s: row %s does not follow the row before it\n",
					chama, id);
		} else if (!content_ok) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain of chama %s: row %s content does not match its hash\n",
					chama, id);
		}
		memcpy(want_prev, got, 32);
		if (!no_head && (i + 1 == n || strcmp(PQgetvalue(r, i + 1, 0), chama) != 0))
			chain_end(out, &bad, chama, seq, got, PQgetvalue(r, i, 6), PQgetvalue(r, i, 7));
	}
	PQclear(r);
	return bad;
}

int verify_ledger(const struct config *cfg, FILE *out, FILE *err)
{
	PGconn *pg = PQconnectdb(cfg->database_url);
	long bad = 0, n, rows = 0, legacy = 0, chains = 0;
	unsigned char tip[32];
	char tip_hex[65];
	PGresult *counts;
	bool ok;
	int rc;

	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "verify-ledger: cannot connect: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 2;
	}
	/* one snapshot for every check, so a posting in between cannot show
	 * as a false mismatch */
	PQclear(PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
	for (const struct ledger_check *c = ledger_checks; c->stmt; c++) {
		if ((n = problems(pg, out, err, c->what, c->stmt->sql, NULL)) < 0) {
			PQfinish(pg);
			return 2;
		}
		bad += n;
	}
	if ((n = check_legacy_chain(pg, out, err, &legacy, tip)) < 0) {
		PQfinish(pg);
		return 2;
	}
	bad += n;
	sodium_bin2hex(tip_hex, sizeof(tip_hex), tip, 32);
	/* the chains of the chamas that posted on the legacy chain continue it */
	if ((n = problems(pg, out, err, "audit chain sealing the legacy chain", ledger_legacy_sealed.sql,
			  tip_hex)) < 0) {
		PQfinish(pg);
		return 2;
	}
	bad += n;
	if ((n = check_chama_chains(pg, out, err, &rows, &chains, tip)) < 0) {
		PQfinish(pg);
		return 2;
	}
	bad += n;
	counts = PQexec(pg, ledger_counts.sql);
	ok = PQresultStatus(counts) == PGRES_TUPLES_OK && PQntuples(counts) == 1;
	fprintf(out, "verify-ledger: %ld entries, %ld lines, %ld accounts, %ld audit rows checked (%ld in %ld chama "
		"chain%s, %ld legacy): %s (%ld problem%s)\n",
		ok ? atol(PQgetvalue(counts, 0, 0)) : -1, ok ? atol(PQgetvalue(counts, 0, 1)) : -1,
		ok ? atol(PQgetvalue(counts, 0, 2)) : -1, rows + legacy, rows, chains, chains == 1 ? "" : "s",
		legacy, bad ? "BOOKS DO NOT HOLD" : "ok", bad, bad == 1 ? "" : "s");
	PQclear(counts);
	rc = bad ? 1 : 0;
	PQclear(PQexec(pg, "COMMIT"));
	PQfinish(pg);
	return rc;
}
