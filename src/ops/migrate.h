/*
 * migrate: `chamad migrate`, the schema migration runner.
 *
 * This is a command-line tool that runs instead of the daemon, never on
 * its event loop, so it uses libpq's plain blocking calls.
 */
#ifndef CHAMAD_MIGRATE_H
#define CHAMAD_MIGRATE_H

#include <stdio.h>

struct config;

/* Applies every migrations/NNN_name.sql not yet applied, each in its own
 * transaction, under an advisory lock.  Returns 0, or 1 after printing why
 * to err. */
int migrate_run(const struct config *cfg, FILE *out, FILE *err);

#endif
