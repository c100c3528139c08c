/*
 * loginlog: the audit trail of successful log-ins, written in batches.
 *
 * A log-in that changes nothing on the user's row (pin.c) writes nothing
 * itself: it adds an event here, and the events go to audit_logs (action
 * "user.login", the member as actor and entity, with channel, MSISDN and
 * request id) in ONE multi-row INSERT every LOGINLOG_FLUSH_MS or every
 * LOGINLOG_BATCH events, so many log-ins share one commit and its WAL
 * flush.  The batch is in memory: a crash loses at most the events of the
 * last second; a failed INSERT is retried with the next batch (at most
 * LOGINLOG_MAX events are kept, the oldest dropped and counted).  Lock-outs
 * and failed attempts never come here: pin.c writes them synchronously.
 */
#ifndef CHAMAD_LOGINLOG_H
#define CHAMAD_LOGINLOG_H

#include <stdint.h>

struct event_base;
struct db_pool;
struct loginlog;

#define LOGINLOG_FLUSH_MS 1000
#define LOGINLOG_BATCH 256
#define LOGINLOG_MAX 20000

struct loginlog_stats {
	int pending;		/* events not yet written (in flight included) */
	uint64_t written, dropped;
};

/* db is borrowed and must outlive the log's last query: free the log
 * after the pool (the pool's cancelled callbacks still reach it). */
struct loginlog *loginlog_new(struct event_base *base, struct db_pool *db);
void loginlog_free(struct loginlog *l);
/* Strings are copied.  channel is an audit_logs channel ("ussd", "sms"). */
void loginlog_add(struct loginlog *l, const char *user_id, const char *channel, const char *msisdn,
		  const char *request_id);
/* Starts writing what is pending now (for shutdown); returns the events
 * not yet written, 0 when everything is in audit_logs. */
int loginlog_drain(struct loginlog *l);
void loginlog_stats(const struct loginlog *l, struct loginlog_stats *out);

#endif
