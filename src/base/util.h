/*
 * util: small helpers shared by every module: clocks, a bounded growable
 * buffer, string and address parsing.  Nothing here touches the event loop.
 */
#ifndef CHAMAD_UTIL_H
#define CHAMAD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Milliseconds on the monotonic clock (for timeouts and latency). */
uint64_t util_now_ms(void);
/* Microseconds on the monotonic clock. */
uint64_t util_now_us(void);

/* xmalloc family: allocation failure is fatal (logged, then abort), as in
 * Redis' zmalloc: a daemon that cannot allocate 100 bytes cannot go on. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a new string printed like printf; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A growable byte buffer with a hard maximum (curl's dynbuf idea): every
 * append past `max` fails and leaves the buffer as it was, so no input can
 * make us grow without bound.  Always NUL-terminated when len > 0.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};
void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s %-encoded for a URL query or a form body (RFC 3986 unreserved
 * characters kept). */
int buf_urlencode(struct buf *b, const char *s);
/* Appends s as the inside of a JSON string (quotes not included). */
int buf_json_escape(struct buf *b, const char *s);

/* Parses "host:port" or "[v6]:port" into host (new string) and port. */
int util_parse_hostport(const char *s, char **host, int *port);
/* host (an address or "localhost") names this machine only: 127.0.0.0/8,
 * ::1 (also as ::ffff:127.x.y.z) or localhost.  Anything else, 0.0.0.0
 * and :: included, can be reached from the network. */
bool util_host_is_loopback(const char *host);
/* The value of `name` in a "name:value name2:value2" list ([ussd] secrets,
 * [mpesa] allow_ips...), copied into out (truncated to outlen).  Returns
 * whether the list has a non-empty entry for name. */
bool util_list_entry(const char *list, const char *name, char *out, size_t outlen);
/* Strict decimal parse of a whole string into a long long in [min, max]. */
int util_parse_ll(const char *s, long long min, long long max, long long *out);
bool util_parse_bool(const char *s, bool *out);
/* Trims ASCII whitespace in place; returns s. */
char *util_trim(char *s);
/*
 * Resolves host to one numeric address (new string, caller frees) with a
 * blocking getaddrinfo: call it only before the event loop runs.  Returns
 * NULL and writes the reason into err.
 */
char *util_resolve_host(const char *host, char *err, size_t errlen);
/* Reconnect delay after `failures` failed attempts: min doubled per
 * failure up to max, minus up to 25% jitter so clients do not retry in step. */
int util_backoff_ms(int min_ms, int max_ms, int failures);

/* Hex-encodes n random bytes (libsodium) into out (2n+1 bytes). */
void util_random_hex(char *out, size_t nbytes);
/* Money for people: cents as "1,500" or "1,500.50" (no currency). */
void util_format_cents(long long cents, char *out, size_t outlen);
/* len random characters from an unambiguous upper-case alphabet, + NUL. */
void util_random_code(char *out, size_t len);

#endif
