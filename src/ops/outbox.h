/*
 * outbox: `chamad outbox-text ID...`, what outbox rows say.  A row holds a
 * template key and its variables until it is sent (then its body holds the
 * text that went out): this prints, one JSON object per line,
 *   {"id": N, "status": "...", "text": "..."}
 * with the text a sent row went out as, or the text a row not sent yet
 * would go out as now (rendered by the sender's renderer, from the menus
 * of [ussd] menus_dir, in the recipient's language now), or
 *   {"id": N, "status": "...", "error": "..."}
 * for a row that cannot be rendered (the sender fails it with that reason)
 * or does not exist.  A command-line tool with blocking libpq; never part
 * of the daemon.
 */
#ifndef CHAMAD_OUTBOX_H
#define CHAMAD_OUTBOX_H

#include <stdio.h>

struct config;

/* ids: decimal row ids.  Returns 0 when every row has a text, 1 when one
 * has none, 2 when it cannot look (database, menus, a bad id). */
int outbox_text(const struct config *cfg, int nids, char **ids, FILE *out, FILE *err);

#endif
