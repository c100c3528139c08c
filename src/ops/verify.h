/*
 * verify: `chamad verify-ledger` (see verify.c).  A command-line tool with
 * blocking libpq; never called inside the daemon.
 */
#ifndef CHAMAD_VERIFY_H
#define CHAMAD_VERIFY_H

#include <stdio.h>

struct config;

/* Returns 0 when the books hold, 1 when they do not, 2 when it cannot check. */
int verify_ledger(const struct config *cfg, FILE *out, FILE *err);

#endif
