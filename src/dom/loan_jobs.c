/*
 * loan_jobs: see loan_jobs.h.
 */
#include "dom/loan_jobs.h"

DB_STMT(loan_jobs_penalties, 3, "SELECT loan_penalties_run($1::timestamptz, $2, nullif($3, ''))");

DB_STMT(loan_jobs_reminders, 3, "SELECT loan_reminders_run($1::timestamptz, $2, nullif($3, ''))");

DB_STMT(loan_jobs_defaults, 3, "SELECT loan_defaults_run($1::timestamptz, $2, nullif($3, ''))");
