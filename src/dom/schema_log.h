/*
 * schema_log: what `chamad migrate` applied, recorded in the database it
 * migrates, and the statements that apply one file and record it.
 *
 *   schema_migrations (version, name, checksum, applied_at)
 *       versioned migrations/NNN_name.sql, each applied once, never edited;
 *   schema_files (name, checksum, applied_at)
 *       repeatable schema/NN_name.sql, applied again whenever its checksum
 *       changes.
 *
 * ops/migrate.c decides what to apply (files, checksums, order) and says
 * what happened; this file holds the SQL.  It uses libpq's plain blocking
 * calls: its only user is `chamad migrate`, a command-line tool that runs
 * instead of the daemon and never on its event loop.
 *
 * Errors are returned as text in err (the server's message, which names
 * the statement and line); the caller adds which file it was.
 */
#ifndef CHAMAD_SCHEMA_LOG_H
#define CHAMAD_SCHEMA_LOG_H

#include <stddef.h>

struct schema_log;

/* One recorded file: a row of schema_migrations (version > 0) or of
 * schema_files (version 0). */
struct schema_log_row {
	int version;
	char *name;
	char checksum[65];	/* SHA-256, lower-case hex */
};

/*
 * Connects to conninfo, waits for the runners' advisory lock (one fixed
 * key; it is held until schema_log_close, so two runners at once take
 * turns) and creates both tables if they are missing.  Returns NULL with
 * the reason in err.
 */
struct schema_log *schema_log_open(const char *conninfo, char *err, size_t errlen);
/* Disconnects, which releases the lock.  NULL is fine. */
void schema_log_close(struct schema_log *l);

/* The applied migrations in version order, or the applied schema files in
 * name order: *rows is a new array of *n rows (free with
 * schema_log_rows_free).  Returns 0, or -1 with the reason in err. */
int schema_log_migrations(struct schema_log *l, struct schema_log_row **rows, int *n, char *err, size_t errlen);
int schema_log_files(struct schema_log *l, struct schema_log_row **rows, int *n, char *err, size_t errlen);
void schema_log_rows_free(struct schema_log_row *rows, int n);

/*
 * Runs sql (a whole file, any number of statements, no BEGIN/COMMIT of its
 * own) and records it with its checksum, in one transaction: all of it or,
 * after a failure (-1, the server's message in err), nothing of it.
 * A schema file already recorded gets its new checksum and time.
 */
int schema_log_apply_migration(struct schema_log *l, int version, const char *name, const char *checksum,
			       const char *sql, char *err, size_t errlen);
int schema_log_apply_file(struct schema_log *l, const char *name, const char *checksum, const char *sql, char *err,
			  size_t errlen);

#endif
