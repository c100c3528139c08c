#include "t.h"
#include "base/util.h"
#include "base/log.h"
#include "net/redis.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void test_buf_bounds(void);
void test_json_escape(void);
void test_parse_helpers(void);
void test_redis_url(void);
void test_log_lines(void);
void test_xassert_aborts(void);

void test_buf_bounds(void)
{
	struct buf b;

	buf_init(&b, 10);
	T_CHECK(buf_puts(&b, "0123456789") == 0);
	T_CHECK(b.len == 10);
	/* one byte past the maximum fails and leaves the buffer intact */
	T_CHECK(buf_puts(&b, "x") == -1);
	T_CHECK(b.len == 10);
	T_STREQ(b.data, "0123456789");
	T_CHECK(buf_printf(&b, "%d", 1) == -1);
	buf_reset(&b);
	T_CHECK(buf_printf(&b, "%s-%d", "ab", 42) == 0);
	T_STREQ(b.data, "ab-42");
	buf_free(&b);
}

void test_json_escape(void)
{
	struct buf b;

	buf_init(&b, 100);
	buf_json_escape(&b, "a\"b\\c\nd\x01");
	T_STREQ(b.data, "a\\\"b\\\\c\\nd\\u0001");
	buf_free(&b);
}

void test_parse_helpers(void)
{
	char *host = NULL;
	int port = 0;
	long long v;
	bool bv;

	T_CHECK(util_parse_hostport("127.0.0.1:8080", &host, &port) == 0);
	T_STREQ(host, "127.0.0.1");
	T_CHECK(port == 8080);
	free(host);
	T_CHECK(util_parse_hostport("[::1]:99", &host, &port) == 0);
	T_STREQ(host, "::1");
	free(host);
	T_CHECK(util_parse_hostport("nohost", &host, &port) == -1);
	T_CHECK(util_parse_hostport(":80", &host, &port) == -1);
	T_CHECK(util_parse_hostport("h:0", &host, &port) == -1);
	T_CHECK(util_parse_hostport("h:70000", &host, &port) == -1);
	T_CHECK(util_parse_ll("42", 0, 100, &v) == 0 && v == 42);
	T_CHECK(util_parse_ll("4x", 0, 100, &v) == -1);
	T_CHECK(util_parse_ll("", 0, 100, &v) == -1);
	T_CHECK(util_parse_ll(" 4", 0, 100, &v) == -1);
	T_CHECK(util_parse_ll("101", 0, 100, &v) == -1);
	T_CHECK(util_parse_ll("99999999999999999999", 0, 100, &v) == -1);
	T_CHECK(util_parse_bool("yes", &bv) && bv);
	T_CHECK(util_parse_bool("off", &bv) && !bv);
	T_CHECK(!util_parse_bool("maybe", &bv));
}

void test_redis_url(void)
{
	struct redis_url u;
	char err[128];

	T_CHECK(redis_url_parse("redis://127.0.0.1:6380/2", &u, err, sizeof(err)) == 0);
	T_STREQ(u.host, "127.0.0.1");
	T_CHECK(u.port == 6380 && u.db == 2 && !u.path && !u.password);
	redis_url_free(&u);
	T_CHECK(redis_url_parse("redis://:s3cret@cache", &u, err, sizeof(err)) == 0);
	T_STREQ(u.host, "cache");
	T_STREQ(u.password, "s3cret");
	T_CHECK(u.port == 6379 && u.db == 0);
	redis_url_free(&u);
	T_CHECK(redis_url_parse("unix:///run/redis.sock?db=3", &u, err, sizeof(err)) == 0);
	T_STREQ(u.path, "/run/redis.sock");
	T_CHECK(u.db == 3 && !u.host);
	redis_url_free(&u);
	T_CHECK(redis_url_parse("http://x", &u, err, sizeof(err)) == -1);
	T_CHECK(redis_url_parse("redis://h:notaport/0", &u, err, sizeof(err)) == -1);
	T_CHECK(redis_url_parse("redis://h/99", &u, err, sizeof(err)) == -1);
	T_CHECK(redis_url_parse("unix://relative", &u, err, sizeof(err)) == -1);
}

void test_log_lines(void)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);

	log_setup(f, LOG_INFO, LOG_FMT_JSON);
	log_msg(LOG_DEBUG, NULL, "hidden");
	log_msg(LOG_WARN, "req-1", "two\nlines \"quoted\"");
	fflush(f);
	T_CHECK(strstr(mem, "hidden") == NULL);
	T_CHECK(strstr(mem, "\"level\":\"warn\"") != NULL);
	T_CHECK(strstr(mem, "\"req\":\"req-1\"") != NULL);
	T_CHECK(strstr(mem, "\"msg\":\"two\\nlines \\\"quoted\\\"\"") != NULL);
	/* exactly one line per event */
	T_CHECK(strchr(mem, '\n') == mem + len - 1);
	log_setup(f, LOG_INFO, LOG_FMT_TEXT);
	log_msg(LOG_INFO, "abc", "x\ny");
	fflush(f);
	T_CHECK(strstr(mem, "info  req=abc x\\ny\n") != NULL);
	log_setup(stderr, LOG_ERROR, LOG_FMT_TEXT);
	fclose(f);
	free(mem);
}

/* xassert: a holding invariant costs nothing; a broken one logs what and
 * where, then aborts (in a child here, so the run goes on). */
void test_xassert_aborts(void)
{
	int fds[2], status = 0;
	char out[512] = "";
	ssize_t n;
	pid_t pid;

	xassert(1 + 1 == 2);
	T_CHECK(pipe(fds) == 0);
	pid = fork();
	if (pid == 0) {
		FILE *f = fdopen(fds[1], "w");

		close(fds[0]);
		signal(SIGABRT, SIG_DFL);
		log_setup(f, LOG_INFO, LOG_FMT_TEXT);
		xassert(2 + 2 == 5);
		_exit(0);	/* not reached */
	}
	close(fds[1]);
	n = read(fds[0], out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	T_CHECK(waitpid(pid, &status, 0) == pid);
	T_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	T_CHECK(strstr(out, "assertion failed: 2 + 2 == 5") != NULL);
	T_CHECK(strstr(out, "test_util.c") != NULL);
}
