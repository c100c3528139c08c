/*
 * outbox: see outbox.h.
 */
#include "ops/outbox.h"
#include "base/config.h"
#include "base/menu.h"
#include "base/util.h"
#include "dom/notify.h"
#include "ussd/ussd.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

/* Statuses whose body is the text that went out. */
static bool went_out(const char *status)
{
	return !strcmp(status, "sent") || !strcmp(status, "delivered") || !strcmp(status, "read") ||
	       !strcmp(status, "undeliverable");
}

static void print_row(FILE *out, const char *id, const char *status, const char *key, const char *val)
{
	json_t *o = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)atoll(id), "status", status, key, val);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	fprintf(out, "%s\n", s ? s : "{}");
	free(s);
	json_decref(o);
}

int outbox_text(const struct config *cfg, int nids, char **ids, FILE *out, FILE *err)
{
	struct menu_set *m;
	struct buf list, text;
	PGconn *pg;
	PGresult *r;
	const char *param;
	char why[512];
	int rc = 0;

	for (int i = 0; i < nids; i++) {
		if (!*ids[i] || strspn(ids[i], "0123456789") != strlen(ids[i]) || strlen(ids[i]) > 18) {
			fprintf(err, "outbox-text: \"%s\" is not a row id\n", ids[i]);
			return 2;
		}
	}
	m = ussd_menus_load(cfg, why, sizeof(why));
	if (!m) {
		fprintf(err, "outbox-text: menus: %s\n", why);
		return 2;
	}
	buf_init(&list, 1 << 20);
	buf_puts(&list, "{");
	for (int i = 0; i < nids; i++)
		buf_printf(&list, "%s%s", i ? "," : "", ids[i]);
	buf_puts(&list, "}");
	pg = PQconnectdb(cfg->database_url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(err, "outbox-text: %s", PQerrorMessage(pg));
		PQfinish(pg);
		buf_free(&list);
		menu_set_unref(m);
		return 2;
	}
	param = list.data;
	r = PQexecParams(pg, dom_outbox_rows.sql, 1, NULL, &param, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(err, "outbox-text: %s", PQresultErrorMessage(r));
		rc = 2;
		goto out;
	}
	buf_init(&text, 8192);
	for (int i = 0; i < nids; i++) {
		int row = -1;

		for (int k = 0; k < PQntuples(r) && row < 0; k++)
			if (!strcmp(PQgetvalue(r, k, 0), ids[i]))
				row = k;
		if (row < 0) {
			print_row(out, ids[i], "", "error", "no such outbox row");
			rc = 1;
			continue;
		}
		const char *status = PQgetvalue(r, row, 1);

		if (PQgetisnull(r, row, 3) || (went_out(status) && !PQgetisnull(r, row, 2))) {
			print_row(out, ids[i], status, "text", PQgetvalue(r, row, 2));
		} else {
			enum menu_lang lang = LANG_EN;

			menu_lang_parse(PQgetvalue(r, row, 5), &lang);
			if (menu_sms_render(m, PQgetvalue(r, row, 3), lang, PQgetisnull(r, row, 4) ? NULL : PQgetvalue(r, row, 4),
					    &text, why, sizeof(why)) == 0) {
				print_row(out, ids[i], status, "text", text.data ? text.data : "");
			} else {
				print_row(out, ids[i], status, "error", why);
				rc = 1;
			}
		}
	}
	buf_free(&text);
out:
	PQclear(r);
	PQfinish(pg);
	buf_free(&list);
	menu_set_unref(m);
	return rc;
}
