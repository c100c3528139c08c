/*
 * migrate: reads [database] migrations_dir, keeps schema_migrations
 * (version, name, checksum, applied_at) and refuses to go on when an
 * applied file was edited, two files share a version, or a new file is
 * older than what was applied.  Two runners at once are safe: the second
 * waits on the advisory lock and then finds nothing to do.
 */
#include "ops/migrate.h"
#include "base/config.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

/* Arbitrary but fixed: every chamad migrate takes this advisory lock. */
#define MIGRATE_LOCK_KEY "727100001"

struct mfile {
	int version;
	char *name;	/* file name */
	char *sql;
	char sum[crypto_hash_sha256_BYTES * 2 + 1];
};

static int by_version(const void *a, const void *b)
{
	return ((const struct mfile *)a)->version - ((const struct mfile *)b)->version;
}

/* NNN_name.sql with a lower-case name: anything else in the folder is
 * ignored, so editors' backup files cannot become migrations. */
static int parse_name(const char *n, int *version)
{
	size_t len = strlen(n);

	if (len < 9 || strcmp(n + len - 4, ".sql"))
		return -1;
	for (int i = 0; i < 3; i++)
		if (n[i] < '0' || n[i] > '9')
			return -1;
	if (n[3] != '_')
		return -1;
	for (size_t i = 4; i < len - 4; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
			return -1;
	*version = (n[0] - '0') * 100 + (n[1] - '0') * 10 + (n[2] - '0');
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

static int load_files(const char *dir, struct mfile **out, int *count, FILE *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct mfile *files = NULL;
	int n = 0;

	if (!d) {
		fprintf(err, "migrate: cannot open [database] migrations_dir \"%s\": %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		int v;
		size_t len;
		char *path, *sql;
		unsigned char h[crypto_hash_sha256_BYTES];

		if (parse_name(de->d_name, &v) < 0)
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		sql = read_file(path, &len);
		if (!sql) {
			fprintf(err, "migrate: cannot read %s: %s\n", path, strerror(errno));
			free(path);
			closedir(d);
			goto fail;
		}
		free(path);
		files = xrealloc(files, sizeof(*files) * (size_t)(n + 1));
		files[n].version = v;
		files[n].name = xstrdup(de->d_name);
		files[n].sql = sql;
		crypto_hash_sha256(h, (const unsigned char *)sql, len);
		sodium_bin2hex(files[n].sum, sizeof(files[n].sum), h, sizeof(h));
		n++;
	}
	closedir(d);
	if (n)
		qsort(files, (size_t)n, sizeof(*files), by_version);
	for (int i = 1; i < n; i++) {
		if (files[i].version == files[i - 1].version) {
			fprintf(err, "migrate: %s and %s share version %03d\n", files[i - 1].name, files[i].name,
				files[i].version);
			*out = files;
			*count = n;
			return -1;
		}
	}
	*out = files;
	*count = n;
	return 0;
fail:
	for (int i = 0; i < n; i++) {
		free(files[i].name);
		free(files[i].sql);
	}
	free(files);
	*out = NULL;
	*count = 0;
	return -1;
}

static bool exec_ok(PGconn *pg, PGresult *r, FILE *err, const char *what)
{
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(r);
		return true;
	}
	fprintf(err, "migrate: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
	PQclear(r);
	return false;
}

static int apply_one(PGconn *pg, const struct mfile *m, FILE *out, FILE *err)
{
	char ver[16];
	const char *params[3] = { ver, m->name, m->sum };

	snprintf(ver, sizeof(ver), "%d", m->version);
	if (!exec_ok(pg, PQexec(pg, "BEGIN"), err, m->name))
		return -1;
	if (!exec_ok(pg, PQexec(pg, m->sql), err, m->name) ||
	    !exec_ok(pg, PQexecParams(pg, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
				      3, NULL, params, NULL, NULL, 0), err, m->name) ||
	    !exec_ok(pg, PQexec(pg, "COMMIT"), err, m->name)) {
		PQclear(PQexec(pg, "ROLLBACK"));
		fprintf(err, "migrate: %s was rolled back; nothing of it was applied\n", m->name);
		return -1;
	}
	fprintf(out, "migrate: applied %s\n", m->name);
	return 0;
}

int migrate_run(const struct config *cfg, FILE *out, FILE *err)
{
	PGconn *pg = NULL;
	PGresult *r;
	struct mfile *files = NULL;
	int nfiles = 0, rc = 1, applied = 0, max_applied = 0;
	const char *lockp[1] = { MIGRATE_LOCK_KEY };

	if (load_files(cfg->database_migrations_dir, &files, &nfiles, err) < 0)
		goto out_files;
	pg = PQconnectdb(cfg->database_url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "migrate: cannot connect to [database] url: %s", PQerrorMessage(pg));
		goto out;
	}
	PQclear(PQexec(pg, "SET client_min_messages = warning"));
	if (!exec_ok(pg, PQexecParams(pg, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, lockp, NULL, NULL, 0), err,
		     "advisory lock"))
		goto out;
	if (!exec_ok(pg, PQexec(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
				    " version integer PRIMARY KEY CHECK (version > 0),"
				    " name text NOT NULL,"
				    " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
				    " applied_at timestamptz NOT NULL DEFAULT now())"),
		     err, "schema_migrations"))
		goto out;
	r = PQexec(pg, "SELECT version, name, checksum FROM schema_migrations ORDER BY version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		exec_ok(pg, r, err, "schema_migrations");
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int v = atoi(PQgetvalue(r, i, 0));
		bool found = false;

		if (v > max_applied)
			max_applied = v;
		for (int k = 0; k < nfiles; k++) {
			if (files[k].version != v)
				continue;
			found = true;
			if (strcmp(files[k].sum, PQgetvalue(r, i, 2))) {
				fprintf(err, "migrate: %s/%s was edited after it was applied (checksum %.12s..., applied "
					     "%.12s...); write a new migration instead\n",
					cfg->database_migrations_dir, files[k].name, files[k].sum, PQgetvalue(r, i, 2));
				PQclear(r);
				goto out;
			}
			files[k].version = -v;	/* mark as done */
		}
		if (!found)
			fprintf(err, "migrate: warning: applied migration %03d (%s) has no file\n", v, PQgetvalue(r, i, 1));
	}
	PQclear(r);
	for (int k = 0; k < nfiles; k++) {
		if (files[k].version < 0)
			continue;
		if (files[k].version < max_applied) {
			fprintf(err, "migrate: %s is older than applied version %03d; renumber it\n", files[k].name,
				max_applied);
			goto out;
		}
		if (apply_one(pg, &files[k], out, err) < 0)
			goto out;
		applied++;
	}
	fprintf(out, "migrate: %d applied, %d already up to date\n", applied, nfiles - applied);
	rc = 0;
out:
	PQfinish(pg);
out_files:
	for (int i = 0; i < nfiles; i++) {
		free(files[i].name);
		free(files[i].sql);
	}
	free(files);
	return rc;
}
