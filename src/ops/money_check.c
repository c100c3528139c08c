/*
 * money_check: see money_check.h.
 */
#include "ops/money_check.h"
#include "base/config.h"
#include "dom/payment.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

static void print_json(FILE *out, const PGresult *r, int i)
{
	const char *chama = PQgetvalue(r, i, CHECK_CHAMA);
	json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:s, s:s, s:s, s:I, s:s}", "kind", PQgetvalue(r, i, CHECK_KIND),
			      "id", (json_int_t)atoll(PQgetvalue(r, i, CHECK_ID)), "status",
			      PQgetvalue(r, i, CHECK_STATUS), "amount_cents",
			      (json_int_t)atoll(PQgetvalue(r, i, CHECK_CENTS)), "receipt", PQgetvalue(r, i, CHECK_RECEIPT),
			      "reason", PQgetvalue(r, i, CHECK_REASON), "account", PQgetvalue(r, i, CHECK_ACCOUNT),
			      "age_s", (json_int_t)atoll(PQgetvalue(r, i, CHECK_AGE)), "at", PQgetvalue(r, i, CHECK_AT));
	char *s;

	if (o)
		json_object_set_new(o, "chama", *chama ? json_integer(atoll(chama)) : json_null());
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	fprintf(out, "%s\n", s ? s : "{}");
	free(s);
	json_decref(o);
}

static void print_age(FILE *out, long long s)
{
	if (s < 3600)
		fprintf(out, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		fprintf(out, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		fprintf(out, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

int money_check(const struct config *cfg, bool json, FILE *out, FILE *err)
{
	PGconn *pg = PQconnectdb(cfg->database_url);
	PGresult *r;
	int n, rc;

	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "money-to-check: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 2;
	}
	r = PQexecParams(pg, payment_money_to_check.sql, 0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "money-to-check: %s", PQresultErrorMessage(r));
		PQclear(r);
		PQfinish(pg);
		return 2;
	}
	n = PQntuples(r);
	if (!json)
		fprintf(out, "%-4s %8s %-12s %12s %-22s %6s %-12s %-14s %s\n", "KIND", "ID", "STATUS", "KES", "RECEIPT",
			"CHAMA", "REASON", "ACCOUNT", "AGE");
	for (int i = 0; i < n; i++) {
		long long cents = atoll(PQgetvalue(r, i, CHECK_CENTS));

		if (json) {
			print_json(out, r, i);
			continue;
		}
		fprintf(out, "%-4s %8s %-12s %9lld.%02lld %-22s %6s %-12s %-14.14s ", PQgetvalue(r, i, CHECK_KIND),
			PQgetvalue(r, i, CHECK_ID), PQgetvalue(r, i, CHECK_STATUS), cents / 100, cents % 100,
			PQgetvalue(r, i, CHECK_RECEIPT), *PQgetvalue(r, i, CHECK_CHAMA) ? PQgetvalue(r, i, CHECK_CHAMA) : "-",
			PQgetvalue(r, i, CHECK_REASON), PQgetvalue(r, i, CHECK_ACCOUNT));
		print_age(out, atoll(PQgetvalue(r, i, CHECK_AGE)));
		fputc('\n', out);
	}
	if (!json)
		fprintf(out, "%d not credited\n", n);
	rc = n ? 1 : 0;
	PQclear(r);
	PQfinish(pg);
	return rc;
}
