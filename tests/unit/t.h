/*
 * t.h: the unit-test harness (Redis testhelp.h style).  A test file defines
 * functions registered in tests/unit/main.c; T_CHECK records one assertion
 * and keeps going, so one run reports every failure.
 */
#ifndef CHAMAD_T_H
#define CHAMAD_T_H

#include <stdio.h>
#include <string.h>

extern int t_checks, t_failed_checks;

#define T_CHECK(cond) do { \
	t_checks++; \
	if (!(cond)) { \
		t_failed_checks++; \
		fprintf(stderr, "    FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define T_STREQ(a, b) T_CHECK((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0)

typedef void (*t_fn)(void);

#endif
