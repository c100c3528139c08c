/*
 * money_check: `chamad money-to-check [--json]`, every M-Pesa payment
 * chamad has not credited: paybill payments unverified (waiting for their
 * Transaction Status result) or flagged (it disagreed, M-Pesa did not know
 * them, or they never verified within [mpesa] verify_flag_after_s), STK
 * requests contradicted (the callback said paid, the STK push query said
 * otherwise) or flagged (past the limit).  Oldest first, with ids, amounts,
 * receipts and age.  A command-line tool with blocking libpq; never part
 * of the daemon.
 */
#ifndef CHAMAD_MONEY_CHECK_H
#define CHAMAD_MONEY_CHECK_H

#include <stdbool.h>
#include <stdio.h>

struct config;

/* Prints a table (or one JSON object per line with json).  Returns 0 when
 * nothing is left to check, 1 when something is, 2 when it cannot look. */
int money_check(const struct config *cfg, bool json, FILE *out, FILE *err);

#endif
