/*
 * loginlog: see loginlog.h.  Events are kept as a jansson array and sent as
 * one JSON parameter that jsonb_to_recordset() turns into rows, so the
 * INSERT stays parameterised whatever the batch size.
 */
#include "dom/loginlog.h"
#include "net/db.h"
#include "base/log.h"
#include "base/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/time.h>

#include <event2/event.h>
#include <jansson.h>

struct loginlog {
	struct db_pool *db;
	struct event *timer;
	json_t *pending;	/* events not sent yet */
	json_t *inflight;	/* events of the INSERT in flight, or NULL */
	uint64_t written, dropped;
};

static const char INSERT_SQL[] =
	"INSERT INTO audit_logs (occurred_at, actor_user_id, action, entity_type, entity_id, channel, msisdn, request_id) "
	"SELECT to_timestamp(e.at), e.uid, 'user.login', 'users', e.uid, e.ch, "
	"CASE WHEN e.msisdn ~ '^\\+[1-9][0-9]{7,14}$' THEN e.msisdn END, left(e.req, 64) "
	"FROM jsonb_to_recordset($1::jsonb) AS e(at double precision, uid bigint, ch text, msisdn text, req text) "
	"JOIN users u ON u.id = e.uid";

static void flush(struct loginlog *l);

/* Keeps at most LOGINLOG_MAX events, dropping the oldest. */
static void cap(struct loginlog *l)
{
	size_t n = json_array_size(l->pending);

	if (n <= LOGINLOG_MAX)
		return;
	l->dropped += n - LOGINLOG_MAX;
	log_warn("loginlog: %zu log-in events dropped (audit store unavailable)", n - LOGINLOG_MAX);
	for (size_t i = 0; i < n - LOGINLOG_MAX; i++)
		json_array_remove(l->pending, 0);
}

static void flushed(const struct db_result *r, void *arg)
{
	struct loginlog *l = arg;
	json_t *sent = l->inflight;

	l->inflight = NULL;
	if (r->status == DB_OK) {
		l->written += json_array_size(sent);
		json_decref(sent);
		return;
	}
	/* keep them, in order, for the next batch */
	log_warn("loginlog: %zu log-in events not written yet: %s", json_array_size(sent),
		 r->error ? r->error : db_status_name(r->status));
	json_array_extend(sent, l->pending);
	json_decref(l->pending);
	l->pending = sent;
	cap(l);
}

static void flush(struct loginlog *l)
{
	char *body;
	const char *p[1];

	if (l->inflight || json_array_size(l->pending) == 0)
		return;
	l->inflight = l->pending;
	l->pending = json_array();
	body = json_dumps(l->inflight, JSON_COMPACT);
	p[0] = body;
	db_query(l->db, INSERT_SQL, 1, p, flushed, l);
	free(body);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush(arg);
}

struct loginlog *loginlog_new(struct event_base *base, struct db_pool *db)
{
	struct loginlog *l = xcalloc(1, sizeof(*l));
	struct timeval tv = { LOGINLOG_FLUSH_MS / 1000, (LOGINLOG_FLUSH_MS % 1000) * 1000 };

	l->db = db;
	l->pending = json_array();
	l->timer = event_new(base, -1, EV_PERSIST, on_tick, l);
	event_add(l->timer, &tv);
	return l;
}

void loginlog_free(struct loginlog *l)
{
	int left;

	if (!l)
		return;
	left = (int)json_array_size(l->pending) + (int)json_array_size(l->inflight);
	if (left)
		log_warn("loginlog: %d log-in events not written at shutdown", left);
	event_free(l->timer);
	json_decref(l->pending);
	json_decref(l->inflight);
	free(l);
}

void loginlog_add(struct loginlog *l, const char *user_id, const char *channel, const char *msisdn,
		  const char *request_id)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	json_array_append_new(l->pending,
			      json_pack("{s:f, s:s, s:s, s:s, s:s}", "at", (double)now.tv_sec + now.tv_usec / 1e6,
					"uid", user_id, "ch", channel, "msisdn", msisdn ? msisdn : "", "req",
					request_id ? request_id : ""));
	cap(l);
	if (json_array_size(l->pending) >= LOGINLOG_BATCH)
		flush(l);
}

int loginlog_drain(struct loginlog *l)
{
	if (!l)
		return 0;
	flush(l);
	return (int)(json_array_size(l->pending) + json_array_size(l->inflight));
}

void loginlog_stats(const struct loginlog *l, struct loginlog_stats *out)
{
	out->pending = (int)(json_array_size(l->pending) + json_array_size(l->inflight));
	out->written = l->written;
	out->dropped = l->dropped;
}
