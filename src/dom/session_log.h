/*
 * session_log: how USSD sessions ended, as the aggregator reports it
 * (ussd_session_events), once per session.
 */
#ifndef CHAMAD_SESSION_LOG_H
#define CHAMAD_SESSION_LOG_H

#include "net/db.h"

/*
 * Records one end-of-session report; a repeated one changes nothing.
 * $1 aggregator, $2 its session id, $3 the phone (E.164) or NULL, $4
 * service code, $5 network code, $6 status (success, incomplete, failed),
 * $7 duration in ms or NULL, $8 hops or NULL, $9 the last response, $10 the
 * aggregator's error message, $11 its cost text.  Long texts are cut to
 * their columns.
 */
extern const struct db_stmt session_log_record;

#endif
