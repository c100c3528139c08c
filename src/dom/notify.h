/*
 * notify: messages by key.  Every outbox row is written by the SQL function
 * notify() (to a user) or notify_phone() (to a number that may not be a
 * user yet), schema/60_notify.sql: a template key, its variables as JSON, a
 * priority and an idempotency key naming the event (the same key is the
 * same row).  Nobody formats a message: the sender renders the row when it
 * sends (menu_sms_render), in the recipient's language at that moment, and
 * stores the text it sent in body.
 *
 * A statement that writes something and must queue its message in the same
 * transaction (a sign-up and its code, an invitation, a lock-out and its
 * alert) calls notify() inside it.  A message on its own (an SMS reply, a
 * PIN-reset code) is dom_notify.
 *
 * Variables are text (amounts already formatted, e.g. "1,500"), integers,
 * {"template": "sms_x", "vars": {...}} for a part that is itself translated
 * (a word, a line), or an array of those, one per line (BAL, STMT).  One
 * placeholder syntax everywhere: {name}.
 */
#ifndef CHAMAD_NOTIFY_H
#define CHAMAD_NOTIFY_H

#include "base/menu.h"
#include "net/db.h"

/* Every template the code writes, with the variables its writer supplies
 * ({NULL}-terminated).  The menu loader refuses menus where one is missing
 * or declares a variable its writer does not fill (menu_opts.sms_needed). */
extern const struct menu_sms_need notify_templates[];

/* Queues one SMS: $1 phone (E.164), $2 language code used when the number
 * is not a live user's ("en"/"sw"; a user's own preference wins), $3 kind
 * (notifications.kind), $4 template key, $5 vars (JSON object text),
 * $6 priority (0 codes .. 9 bulk), $7 idempotency key, $8 chama id or NULL.
 * One row, one column: the outbox row's id (the existing one for a key
 * seen before). */
extern const struct db_stmt dom_notify;

/* For `chamad outbox-text`: $1 ids as a bigint[] literal ("{1,2}").  Rows
 * (id, status, body, template, vars, language) as outbox_claim. */
extern const struct db_stmt dom_outbox_rows;

/* One run of the reminder job: $1 "now" (clock_p_at), $2 time zone,
 * $3 lead days.  One row: messages queued, or -1 when another run holds
 * the job. */
extern const struct db_stmt dom_send_reminders;

/* {"n1": "v1", ...} as JSON text from name/value pairs ending with NULL (a
 * NULL value leaves its name out).  The caller frees it. */
char *notify_vars(const char *name, ...) __attribute__((sentinel));

#endif
