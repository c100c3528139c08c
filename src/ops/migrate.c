/*
 * migrate: `chamad migrate`, in two steps under one advisory lock.
 *
 * 1. Versioned migrations, [database] migrations_dir/NNN_name.sql: tables,
 *    constraints, indexes, backfills.  Each is applied once, in version
 *    order, and never edited afterwards: the runner refuses to go on when
 *    an applied file was edited, two files share a version, or a new file
 *    is older than what was applied.
 * 2. Repeatable schema files, [database] schema_dir/NN_name.sql: functions,
 *    trigger functions, views, all CREATE OR REPLACE.  Each is applied, in
 *    file-name order, when its SHA-256 differs from the one recorded, and
 *    every one of them after a run that applied a migration (a migration may
 *    drop a view that stands in the way of an ALTER; running an unchanged
 *    file again changes nothing).
 *
 * Flyway's model: the meaning of a migration must not depend on when it
 * ran, so no migration calls a schema function (tests/integration/
 * test_schema.py holds that rule).  Each file runs in its own transaction:
 * a failure rolls back that file, names it and stops with exit 1.  Two
 * runners at once are safe: the second waits on the lock, then finds
 * nothing to do.  This file reads the files and decides; the SQL is in
 * dom/schema_log.c.
 */
#include "ops/migrate.h"
#include "base/config.h"
#include "base/util.h"
#include "dom/schema_log.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct sqlfile {
	int version;	/* the number the name starts with */
	char *name;	/* file name, without the folder */
	char *sql;
	char sum[crypto_hash_sha256_BYTES * 2 + 1];
	bool recorded;	/* the database has a row for it */
	bool done;	/* recorded with this checksum */
};

struct sqldir {
	const char *key;	/* "migrations_dir" or "schema_dir", for messages */
	const char *path;
	int digits;		/* 3 for migrations, 2 for schema files */
	struct sqlfile *files;
	int n;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct sqlfile *)a)->name, ((const struct sqlfile *)b)->name);
}

/* <digits>_name.sql with a lower-case name: anything else in the folder is
 * ignored, so editors' backup files cannot become migrations. */
static int parse_name(const char *n, int digits, int *version)
{
	size_t len = strlen(n);
	int v = 0;

	if (len < (size_t)digits + 6 || strcmp(n + len - 4, ".sql"))
		return -1;
	for (int i = 0; i < digits; i++) {
		if (n[i] < '0' || n[i] > '9')
			return -1;
		v = v * 10 + (n[i] - '0');
	}
	if (n[digits] != '_')
		return -1;
	for (size_t i = (size_t)digits + 1; i < len - 4; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
			return -1;
	*version = v;
	return 0;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[8192];
	size_t n;

	if (!f)
		return NULL;
	buf_init(&b, 64u << 20);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n) < 0) {
			buf_free(&b);
			fclose(f);
			errno = EFBIG;
			return NULL;
		}
	}
	fclose(f);
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

static void free_dir(struct sqldir *d)
{
	for (int i = 0; i < d->n; i++) {
		free(d->files[i].name);
		free(d->files[i].sql);
	}
	free(d->files);
	d->files = NULL;
	d->n = 0;
}

/* Reads every well-named file of d->path with its checksum, sorted by name
 * (so by number: the numbers are fixed-width). */
static int load_dir(struct sqldir *d, FILE *err)
{
	DIR *dir = opendir(d->path);
	struct dirent *de;

	if (!dir) {
		fprintf(err, "migrate: cannot open [database] %s \"%s\": %s\n", d->key, d->path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		int v;
		size_t len;
		char *path, *sql;
		unsigned char h[crypto_hash_sha256_BYTES];
		struct sqlfile *f;

		if (parse_name(de->d_name, d->digits, &v) < 0)
			continue;
		path = xasprintf("%s/%s", d->path, de->d_name);
		sql = read_file(path, &len);
		if (!sql) {
			fprintf(err, "migrate: cannot read %s: %s\n", path, strerror(errno));
			free(path);
			closedir(dir);
			free_dir(d);
			return -1;
		}
		free(path);
		d->files = xrealloc(d->files, sizeof(*d->files) * (size_t)(d->n + 1));
		f = &d->files[d->n++];
		f->version = v;
		f->name = xstrdup(de->d_name);
		f->sql = sql;
		f->recorded = f->done = false;
		crypto_hash_sha256(h, (const unsigned char *)sql, len);
		sodium_bin2hex(f->sum, sizeof(f->sum), h, sizeof(h));
	}
	closedir(dir);
	if (d->n)
		qsort(d->files, (size_t)d->n, sizeof(*d->files), by_name);
	return 0;
}

/* Step 1.  *applied counts the migrations applied now. */
static int run_migrations(struct schema_log *log, struct sqldir *d, int *applied, FILE *out, FILE *err)
{
	struct schema_log_row *rows;
	int nrows, max_applied = 0;
	char msg[4096];

	*applied = 0;
	for (int i = 1; i < d->n; i++) {
		if (d->files[i].version == d->files[i - 1].version) {
			fprintf(err, "migrate: %s and %s share version %03d\n", d->files[i - 1].name, d->files[i].name,
				d->files[i].version);
			return -1;
		}
	}
	if (schema_log_migrations(log, &rows, &nrows, msg, sizeof(msg)) < 0) {
		fprintf(err, "migrate: schema_migrations: %s\n", msg);
		return -1;
	}
	/* every applied file is checked before anything is applied */
	for (int i = 0; i < nrows; i++) {
		bool found = false;

		if (rows[i].version > max_applied)
			max_applied = rows[i].version;
		for (int k = 0; k < d->n; k++) {
			if (d->files[k].version != rows[i].version)
				continue;
			found = true;
			if (strcmp(d->files[k].sum, rows[i].checksum)) {
				fprintf(err, "migrate: %s/%s was edited after it was applied (checksum %.12s..., applied "
					     "%.12s...); write a new migration instead\n",
					d->path, d->files[k].name, d->files[k].sum, rows[i].checksum);
				schema_log_rows_free(rows, nrows);
				return -1;
			}
			d->files[k].done = true;
		}
		if (!found)
			fprintf(err, "migrate: warning: applied migration %03d (%s) has no file\n", rows[i].version,
				rows[i].name);
	}
	schema_log_rows_free(rows, nrows);
	for (int k = 0; k < d->n; k++) {
		struct sqlfile *f = &d->files[k];

		if (f->done)
			continue;
		if (f->version < max_applied) {
			fprintf(err, "migrate: %s is older than applied version %03d; renumber it\n", f->name,
				max_applied);
			return -1;
		}
		if (schema_log_apply_migration(log, f->version, f->name, f->sum, f->sql, msg, sizeof(msg)) < 0) {
			fprintf(err, "migrate: %s: %s\n", f->name, msg);
			fprintf(err, "migrate: %s was rolled back; nothing of it was applied\n", f->name);
			return -1;
		}
		f->done = true;
		fprintf(out, "migrate: applied %s\n", f->name);
		(*applied)++;
	}
	fprintf(out, "migrate: %d applied, %d already up to date\n", *applied, d->n - *applied);
	return 0;
}

/* Step 2.  after_migrations: this run applied a migration, so every file
 * runs again. */
static int run_schema_files(struct schema_log *log, struct sqldir *d, bool after_migrations, FILE *out, FILE *err)
{
	struct schema_log_row *rows;
	int nrows, applied = 0;
	char msg[4096];

	if (schema_log_files(log, &rows, &nrows, msg, sizeof(msg)) < 0) {
		fprintf(err, "migrate: schema_files: %s\n", msg);
		return -1;
	}
	for (int i = 0; i < nrows; i++) {
		bool found = false;

		for (int k = 0; k < d->n; k++) {
			if (strcmp(d->files[k].name, rows[i].name))
				continue;
			found = true;
			d->files[k].recorded = true;
			d->files[k].done = !strcmp(d->files[k].sum, rows[i].checksum);
		}
		/* what it defined stays: only a migration drops a table's
		 * function or a view, and says so */
		if (!found)
			fprintf(err, "migrate: warning: applied schema file %s has no file; what it defined stays\n",
				rows[i].name);
	}
	schema_log_rows_free(rows, nrows);
	for (int k = 0; k < d->n; k++) {
		struct sqlfile *f = &d->files[k];
		const char *why = !f->recorded ? "new" : !f->done ? "changed" : "again, after new migrations";

		if (f->done && !after_migrations)
			continue;
		if (schema_log_apply_file(log, f->name, f->sum, f->sql, msg, sizeof(msg)) < 0) {
			fprintf(err, "migrate: %s/%s: %s\n", d->path, f->name, msg);
			fprintf(err, "migrate: schema file %s/%s was rolled back; nothing of it was applied\n", d->path,
				f->name);
			return -1;
		}
		f->done = true;
		fprintf(out, "migrate: applied schema file %s (%s)\n", f->name, why);
		applied++;
	}
	fprintf(out, "migrate: schema files: %d applied, %d already up to date\n", applied, d->n - applied);
	return 0;
}

int migrate_run(const struct config *cfg, FILE *out, FILE *err)
{
	struct sqldir mig = { "migrations_dir", cfg->database_migrations_dir, 3, NULL, 0 };
	struct sqldir sch = { "schema_dir", cfg->database_schema_dir, 2, NULL, 0 };
	struct schema_log *log = NULL;
	char msg[4096];
	int rc = 1, applied;

	/* both folders are read before the database is touched */
	if (load_dir(&mig, err) < 0 || load_dir(&sch, err) < 0)
		goto out;
	log = schema_log_open(cfg->database_url, msg, sizeof(msg));
	if (!log) {
		fprintf(err, "migrate: cannot connect to [database] url or take the migration lock: %s\n", msg);
		goto out;
	}
	if (run_migrations(log, &mig, &applied, out, err) < 0 || run_schema_files(log, &sch, applied > 0, out, err) < 0)
		goto out;
	rc = 0;
out:
	schema_log_close(log);
	free_dir(&mig);
	free_dir(&sch);
	return rc;
}
