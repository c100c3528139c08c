/*
 * policy: who may do each protected action (the rows of policy_actions,
 * migration 017; the SQL side is schema/15_policy.sql).
 *
 * How the three checks share one source, without the loop ever waiting:
 *   SQL    every statement that does a protected action calls
 *          policy_allows(user, chama, action) itself, in the same
 *          statement, so a role taken away a second ago decides nothing.
 *   C      the actions the member's role may do come back, as text, in the
 *          statement that gives the role: whenever a chama is picked (the
 *          log-in statement's chama list, the chama list, the pick, a new
 *          chama), policy_allowed(role) rides along, and the channel keeps
 *          it with the role (the USSD session variable "allowed").  No
 *          start-up load, no cache to refresh, no query of its own: the
 *          answer is as fresh as the role it goes with, and a policy change
 *          reaches every daemon at the member's next pick.
 *   menus  a screen or option names its action ("policy":
 *          "money.cash_record"); the USSD engine asks policy_in() with the
 *          session's list and hides what is not allowed, and a menu left
 *          with nothing to offer is hidden in turn (base/menu).
 * The C check only spares a round trip and hides options; it never allows
 * anything the SQL check refuses.
 */
#ifndef CHAMAD_POLICY_H
#define CHAMAD_POLICY_H

#include <stdbool.h>

/* Whether action is one of allowed: the space-separated list
 * policy_allowed() returns (NULL or "" allows nothing). */
bool policy_in(const char *allowed, const char *action);

/*
 * A list screen for the holders of one action, checked in the same
 * statement: $1 user, $2 chama, $3 time zone; sql is the list itself over
 * those parameters, returning (value, label).  Columns: allowed ('t'/'f'),
 * then value and label (both NULL on the one row of a refusal or an empty
 * list).  action must be a string literal.
 */
#define POLICY_LIST(action, sql)                                                                          \
	"SELECT ok.allowed, x.* FROM (SELECT policy_allows($1::bigint, $2::bigint, '" action "') "         \
	"AND $3::text IS NOT NULL) ok (allowed) LEFT JOIN LATERAL (" sql ") x ON ok.allowed"

#endif
