/*
 * reconcile: `chamad reconcile [--from YYYY-MM-DD --to YYYY-MM-DD] [--wait]`.
 *
 * Asks for a reconcile run of those days (inclusive, in [ussd] timezone;
 * default: yesterday, on the domain clock): a reconcile_runs row and a
 * NOTIFY.  A running daemon with M-Pesa configured takes it (see
 * src/mpesa/reconcile.c): this command never talks to Daraja itself.
 * With --wait it waits for that daemon to finish the run and prints the
 * report: a summary line, then each difference on a line of its own.
 * A command-line tool with blocking libpq; never part of the daemon.
 */
#ifndef CHAMAD_OPS_RECONCILE_H
#define CHAMAD_OPS_RECONCILE_H

#include <stdbool.h>
#include <stdio.h>

struct config;

/* from, to: "YYYY-MM-DD" or NULL.  Returns 0 when the run was asked for
 * (without --wait) or found no difference, 1 when it found some, 2 when it
 * failed, no daemon took it in time, or the request was refused. */
int reconcile_cli(const struct config *cfg, const char *from, const char *to, bool wait, FILE *out, FILE *err);

#endif
