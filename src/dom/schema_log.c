/*
 * schema_log: see schema_log.h.  Blocking libpq on purpose: `chamad
 * migrate` is a command-line tool and never runs on the event loop.
 */
#include "dom/schema_log.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

struct schema_log {
	PGconn *pg;
};

/* Arbitrary but fixed: every chamad migrate, of every release, takes this
 * session lock before it looks at anything. */
static const char LOCK_SQL[] = "SELECT pg_advisory_lock(727100001)";

/* The same table the runner has always made (releases before schema/ had
 * only this one), so an old database and a new one look alike. */
static const char MIGRATIONS_TABLE_SQL[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version integer PRIMARY KEY CHECK (version > 0),"
	" name text NOT NULL,"
	" checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
	" applied_at timestamptz NOT NULL DEFAULT now())";

static const char FILES_TABLE_SQL[] =
	"CREATE TABLE IF NOT EXISTS schema_files ("
	" name text PRIMARY KEY CHECK (name ~ '^[0-9]{2}_[a-z0-9_]+[.]sql$'),"
	" checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
	" applied_at timestamptz NOT NULL DEFAULT now())";

static const char MIGRATIONS_SQL[] = "SELECT version, name, checksum FROM schema_migrations ORDER BY version";
static const char FILES_SQL[] = "SELECT 0, name, checksum FROM schema_files ORDER BY name";

static const char RECORD_MIGRATION_SQL[] =
	"INSERT INTO schema_migrations (version, name, checksum) VALUES ($1::integer, $2, $3)";
static const char RECORD_FILE_SQL[] =
	"INSERT INTO schema_files (name, checksum) VALUES ($1, $2) "
	"ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()";

/* libpq's messages end in a newline; the caller ends the line itself. */
static void set_err(char *err, size_t errlen, const char *m)
{
	size_t n;

	snprintf(err, errlen, "%s", m && *m ? m : "unknown error");
	n = strlen(err);
	if (n && err[n - 1] == '\n')
		err[n - 1] = '\0';
}

/* Takes r (frees it); false with the server's message in err unless the
 * statement succeeded.  A file of comments only is an empty query, which
 * is fine. */
static bool ok(struct schema_log *l, PGresult *r, char *err, size_t errlen)
{
	ExecStatusType st = PQresultStatus(r);
	bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;

	if (!good)
		set_err(err, errlen, r ? PQresultErrorMessage(r) : PQerrorMessage(l->pg));
	PQclear(r);
	return good;
}

struct schema_log *schema_log_open(const char *conninfo, char *err, size_t errlen)
{
	struct schema_log *l = xcalloc(1, sizeof(*l));

	l->pg = PQconnectdb(conninfo);
	if (PQstatus(l->pg) != CONNECTION_OK) {
		set_err(err, errlen, PQerrorMessage(l->pg));
		goto fail;
	}
	/* CREATE TABLE IF NOT EXISTS and friends say "skipping" as NOTICEs */
	if (!ok(l, PQexec(l->pg, "SET client_min_messages = warning"), err, errlen) ||
	    !ok(l, PQexec(l->pg, LOCK_SQL), err, errlen) || !ok(l, PQexec(l->pg, MIGRATIONS_TABLE_SQL), err, errlen) ||
	    !ok(l, PQexec(l->pg, FILES_TABLE_SQL), err, errlen))
		goto fail;
	return l;
fail:
	schema_log_close(l);
	return NULL;
}

void schema_log_close(struct schema_log *l)
{
	if (!l)
		return;
	PQfinish(l->pg);
	free(l);
}

static int rows_of(struct schema_log *l, const char *sql, struct schema_log_row **rows, int *n, char *err,
		   size_t errlen)
{
	PGresult *r = PQexec(l->pg, sql);
	struct schema_log_row *out;
	int count;

	*rows = NULL;
	*n = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		ok(l, r, err, errlen);
		return -1;
	}
	count = PQntuples(r);
	out = xcalloc((size_t)count + 1, sizeof(*out));
	for (int i = 0; i < count; i++) {
		out[i].version = atoi(PQgetvalue(r, i, 0));
		out[i].name = xstrdup(PQgetvalue(r, i, 1));
		snprintf(out[i].checksum, sizeof(out[i].checksum), "%s", PQgetvalue(r, i, 2));
	}
	PQclear(r);
	*rows = out;
	*n = count;
	return 0;
}

int schema_log_migrations(struct schema_log *l, struct schema_log_row **rows, int *n, char *err, size_t errlen)
{
	return rows_of(l, MIGRATIONS_SQL, rows, n, err, errlen);
}

int schema_log_files(struct schema_log *l, struct schema_log_row **rows, int *n, char *err, size_t errlen)
{
	return rows_of(l, FILES_SQL, rows, n, err, errlen);
}

void schema_log_rows_free(struct schema_log_row *rows, int n)
{
	for (int i = 0; i < n; i++)
		free(rows[i].name);
	free(rows);
}

/* BEGIN, the file, its record, COMMIT; ROLLBACK after any failure. */
static int apply(struct schema_log *l, const char *sql, const char *record, int nparams, const char *const *params,
		 char *err, size_t errlen)
{
	if (!ok(l, PQexec(l->pg, "BEGIN"), err, errlen))
		return -1;
	if (ok(l, PQexec(l->pg, sql), err, errlen) &&
	    ok(l, PQexecParams(l->pg, record, nparams, NULL, params, NULL, NULL, 0), err, errlen) &&
	    ok(l, PQexec(l->pg, "COMMIT"), err, errlen))
		return 0;
	/* a failed COMMIT has already ended the transaction */
	if (PQtransactionStatus(l->pg) != PQTRANS_IDLE)
		PQclear(PQexec(l->pg, "ROLLBACK"));
	return -1;
}

int schema_log_apply_migration(struct schema_log *l, int version, const char *name, const char *checksum,
			       const char *sql, char *err, size_t errlen)
{
	char ver[16];
	const char *params[3] = { ver, name, checksum };

	snprintf(ver, sizeof(ver), "%d", version);
	return apply(l, sql, RECORD_MIGRATION_SQL, 3, params, err, errlen);
}

int schema_log_apply_file(struct schema_log *l, const char *name, const char *checksum, const char *sql, char *err,
			  size_t errlen)
{
	const char *params[2] = { name, checksum };

	return apply(l, sql, RECORD_FILE_SQL, 2, params, err, errlen);
}
