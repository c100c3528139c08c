/*
 * log: one line per event, plain text or JSON lines, with a level and,
 * for lines about a request, its request id.
 */
#ifndef CHAMAD_LOG_H
#define CHAMAD_LOG_H

#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

/* Set where lines go (default stderr), the minimum level and the format. */
void log_setup(FILE *out, enum log_level min, enum log_format fmt);
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level l);

/* Writes one line; reqid may be NULL for lines not about a request. */
void log_msg(enum log_level l, const char *reqid, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)

/* An invariant: when it does not hold, logs the expression and where, then
 * aborts (a bug, never a business refusal or bad input).  Always compiled
 * in: every build, the sanitizer one included, runs with them on. */
#define xassert(cond)                                                                        \
	do {                                                                                 \
		if (__builtin_expect(!(cond), 0))                                            \
			log_assert_failed(#cond, __FILE__, __LINE__, __func__);              \
	} while (0)
void log_assert_failed(const char *expr, const char *file, int line, const char *func)
	__attribute__((noreturn));

#endif
