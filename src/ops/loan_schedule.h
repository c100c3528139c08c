/*
 * loan_schedule: `chamad loan-schedule`, a loan's repayment schedule as
 * CSV, from the terms on the command line.  For officials who want to see
 * what a product costs before offering it, and for anyone who wants to
 * check the arithmetic (base/loansched.c; its rules in
 * tests/data/loan_schedules/README.md).  Needs no configuration, database
 * or network; never part of the daemon.
 */
#ifndef CHAMAD_LOAN_SCHEDULE_H
#define CHAMAD_LOAN_SCHEDULE_H

#include <stdio.h>

/* argv[0] is "loan-schedule"; the rest its options (see the usage text).
 * Prints "n,due_date,principal_cents,interest_cents,instalment_cents,
 * balance_cents" and one line per instalment on out.  Returns 0; 2 with
 * one line on err naming the option at fault; 1 when out cannot be
 * written. */
int loan_schedule_cli(int argc, char **argv, FILE *out, FILE *err);

#endif
