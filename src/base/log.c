/*
 * log: formats each event as one line and writes it with a single fwrite,
 * so lines from one process never interleave.  Messages are sanitised:
 * a newline inside a message (for example a libpq error) is escaped, so
 * one event stays one line in both formats.
 */
#include "base/log.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static FILE *log_out;
static enum log_level log_min = LOG_INFO;
static enum log_format log_fmt = LOG_FMT_TEXT;

static const char *const level_names[] = { "debug", "info", "warn", "error", "fatal" };

void log_setup(FILE *out, enum log_level min, enum log_format fmt)
{
	log_out = out;
	log_min = min;
	log_fmt = fmt;
}

const char *log_level_name(enum log_level l)
{
	return level_names[l];
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
	if (!strcasecmp(s, "text"))
		*out = LOG_FMT_TEXT;
	else if (!strcasecmp(s, "json"))
		*out = LOG_FMT_JSON;
	else
		return -1;
	return 0;
}

void log_msg(enum log_level l, const char *reqid, const char *fmt, ...)
{
	char ts[64], msg[2048];
	struct timeval tv;
	struct tm tm;
	struct buf line;
	FILE *out = log_out ? log_out : stderr;
	va_list ap;

	if (l < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

	buf_init(&line, 8192);
	if (log_fmt == LOG_FMT_JSON) {
		buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[l]);
		if (reqid) {
			buf_puts(&line, ",\"req\":\"");
			buf_json_escape(&line, reqid);
			buf_puts(&line, "\"");
		}
		buf_puts(&line, ",\"msg\":\"");
		buf_json_escape(&line, msg);
		buf_puts(&line, "\"}\n");
	} else {
		buf_printf(&line, "%s %-5s ", ts, level_names[l]);
		if (reqid)
			buf_printf(&line, "req=%s ", reqid);
		for (const char *p = msg; *p; p++) {
			if (*p == '\n')
				buf_puts(&line, "\\n");
			else if (*p != '\r')
				buf_append(&line, p, 1);
		}
		buf_puts(&line, "\n");
	}
	if (line.len) {
		fwrite(line.data, 1, line.len, out);
		fflush(out);
	}
	buf_free(&line);
}

void log_assert_failed(const char *expr, const char *file, int line, const char *func)
{
	log_msg(LOG_FATAL, NULL, "assertion failed: %s (%s:%d, %s)", expr, file, line, func);
	fflush(NULL);
	abort();
}
