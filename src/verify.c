/*
 * verify: `chamad verify-ledger`, a command-line check of the books (it
 * runs blocking libpq, never inside the daemon):
 *
 *   1. every journal entry has two lines or more and its debits equal its
 *      credits;
 *   2. every account's balance equals the sum of its lines;
 *   3. the financial audit chain verifies: in chain order, each row's
 *      prev_hash is the row before's row_hash, and row_hash = SHA-256(prev_hash || canonical
 *      content), recomputed here with libsodium;
 *   4. the domain tables agree with the ledger: members' savings, welfare
 *      and share accounts equal their confirmed contributions, and every
 *      confirmed contribution has its entry (a reversed one, its reversal).
 *
 * Prints what it checked and every problem (the first ones of each kind);
 * exits 0 when the books hold, 1 when they do not, 2 when it cannot check.
 */
#include "verify.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#define SHOW 10

/* Runs a query whose every row is a problem; prints the first SHOW rows
 * with `what` and returns the number of rows (-1 on a query error). */
static long problems(PGconn *pg, FILE *out, FILE *err, const char *what, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
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

/* Walks the audit chain in its own order (chain_seq). */
static long check_chain(PGconn *pg, FILE *out, FILE *err, long *rows)
{
	PGresult *r = PQexec(pg, "SELECT id, financial_audit_canonical(f), encode(prev_hash, 'hex'), "
				 "encode(row_hash, 'hex') FROM financial_audit_logs f ORDER BY chain_seq NULLS FIRST, id");
	unsigned char prev[32], want_prev[32], got[32], calc[32];
	bool started = false;
	long bad = 0;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "verify-ledger: audit chain: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	memset(want_prev, 0, sizeof(want_prev));
	*rows = PQntuples(r);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *id = PQgetvalue(r, i, 0), *canon = PQgetvalue(r, i, 1);
		crypto_hash_sha256_state st;

		if (PQgetisnull(r, i, 3)) {
			if (started && bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s has no hash after the chain began\n", id);
			continue;	/* rows from before the chain existed */
		}
		started = true;
		if (sodium_hex2bin(prev, 32, PQgetvalue(r, i, 2), 64, NULL, NULL, NULL) != 0 ||
		    sodium_hex2bin(got, 32, PQgetvalue(r, i, 3), 64, NULL, NULL, NULL) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s has a malformed hash\n", id);
			continue;
		}
		crypto_hash_sha256_init(&st);
		crypto_hash_sha256_update(&st, prev, 32);
		crypto_hash_sha256_update(&st, (const unsigned char *)canon, strlen(canon));
		crypto_hash_sha256_final(&st, calc);
		if (sodium_memcmp(prev, want_prev, 32) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s does not follow the row before it\n", id);
		} else if (sodium_memcmp(calc, got, 32) != 0) {
			if (bad++ < SHOW)
				fprintf(out, "  BAD audit chain: row %s content does not match its hash\n", id);
		}
		memcpy(want_prev, got, 32);
	}
	PQclear(r);
	return bad;
}

static long count(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;

	PQclear(r);
	return n;
}

int verify_ledger(const struct config *cfg, FILE *out, FILE *err)
{
	static const struct {
		const char *what, *sql;
	} checks[] = {
		{ "unbalanced entry",
		  "SELECT e.id AS entry, coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'debit'), 0) AS debits, "
		  "coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'credit'), 0) AS credits, count(l.id) AS lines "
		  "FROM journal_entries e LEFT JOIN journal_lines l ON l.entry_id = e.id GROUP BY e.id "
		  "HAVING coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'debit'), 0) <> "
		  "coalesce(sum(l.amount_cents) FILTER (WHERE l.side = 'credit'), 0) OR count(l.id) < 2 ORDER BY e.id" },
		{ "account balance",
		  "SELECT a.id AS account, a.kind, a.balance_cents AS stored, coalesce(sum(CASE WHEN l.side = a.normal_side "
		  "THEN l.amount_cents ELSE -l.amount_cents END), 0) AS lines FROM ledger_accounts a "
		  "LEFT JOIN journal_lines l ON l.account_id = a.id GROUP BY a.id "
		  "HAVING a.balance_cents <> coalesce(sum(CASE WHEN l.side = a.normal_side THEN l.amount_cents "
		  "ELSE -l.amount_cents END), 0) ORDER BY a.id" },
		{ "member account vs contributions",
		  "WITH k AS (SELECT chama_id, user_id, CASE purpose WHEN 'welfare' THEN 'member_welfare' "
		  "WHEN 'shares' THEN 'member_shares' ELSE 'member_savings' END AS kind, sum(amount_cents) AS cents "
		  "FROM contributions WHERE status = 'confirmed' AND deleted_at IS NULL GROUP BY 1, 2, 3), "
		  "a AS (SELECT chama_id, user_id, kind, balance_cents FROM ledger_accounts "
		  "WHERE kind IN ('member_savings', 'member_welfare', 'member_shares')) "
		  "SELECT coalesce(a.chama_id, k.chama_id) AS chama, coalesce(a.user_id, k.user_id) AS member, "
		  "coalesce(a.kind, k.kind) AS kind, coalesce(a.balance_cents, 0) AS ledger, coalesce(k.cents, 0) AS domain "
		  "FROM a FULL JOIN k ON a.chama_id = k.chama_id AND a.user_id = k.user_id AND a.kind = k.kind "
		  "WHERE coalesce(a.balance_cents, 0) <> coalesce(k.cents, 0) ORDER BY 1, 2, 3" },
		{ "contribution without its entries",
		  "SELECT k.id AS contribution, k.status FROM contributions k WHERE k.status IN ('confirmed', 'reversed') "
		  "AND k.deleted_at IS NULL AND (NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.ref_table = "
		  "'contributions' AND e.ref_id = k.id AND e.kind = 'contribution') OR (k.status = 'reversed') <> "
		  "EXISTS (SELECT 1 FROM journal_entries e WHERE e.ref_table = 'contributions' AND e.ref_id = k.id "
		  "AND e.kind = 'contribution_reversal')) ORDER BY k.id" },
	};
	PGconn *pg = PQconnectdb(cfg->database_url);
	long bad = 0, n, rows = 0;
	int rc;

	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "verify-ledger: cannot connect: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 2;
	}
	/* one snapshot for every check, so a posting in between cannot show
	 * as a false mismatch */
	PQclear(PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		if ((n = problems(pg, out, err, checks[i].what, checks[i].sql)) < 0) {
			PQfinish(pg);
			return 2;
		}
		bad += n;
	}
	if ((n = check_chain(pg, out, err, &rows)) < 0) {
		PQfinish(pg);
		return 2;
	}
	bad += n;
	fprintf(out, "verify-ledger: %ld entries, %ld lines, %ld accounts, %ld audit rows checked: %s (%ld problem%s)\n",
		count(pg, "SELECT count(*) FROM journal_entries"), count(pg, "SELECT count(*) FROM journal_lines"),
		count(pg, "SELECT count(*) FROM ledger_accounts"), rows, bad ? "BOOKS DO NOT HOLD" : "ok", bad,
		bad == 1 ? "" : "s");
	rc = bad ? 1 : 0;
	PQclear(PQexec(pg, "COMMIT"));
	PQfinish(pg);
	return rc;
}
