/*
 * loan_jobs: the loans' scheduled work, run by the jobs timer
 * (src/ops/jobs.c) at every tick, each one statement calling one function
 * of schema/75_loan_penalties.sql.  Each takes a transaction advisory lock
 * (another daemon's run answers 0 at once) and keys everything it does,
 * so any number of daemons may run them, any number of times.
 *
 * Parameters of each: $1 p_at (the domain clock), $2 the chamas' time
 * zone ([ussd] timezone: the day a due date falls on), $3 the paybill the
 * notices name ([mpesa] shortcode; "" for none).  One row, one column:
 * the count below.
 */
#ifndef CHAMAD_LOAN_JOBS_H
#define CHAMAD_LOAN_JOBS_H

#include "net/db.h"

/* Late penalties: every penalty period begun of every instalment unpaid
 * past its grace -> the penalties levied. */
extern const struct db_stmt loan_jobs_penalties;

/* Reminders 3 days and 1 day before each due date, and once overdue ->
 * the messages queued. */
extern const struct db_stmt loan_jobs_reminders;

/* Active loans overdue more than their default_days put in default, the
 * borrower and the officials told -> the loans defaulted. */
extern const struct db_stmt loan_jobs_defaults;

#endif
