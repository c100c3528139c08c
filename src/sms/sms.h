/*
 * sms: the outbox sender.  Rows of notifications with channel 'sms' are the
 * outbox: whoever causes a message queues its row (notify(), dom/notify.h)
 * in the same transaction as the event, with an idempotency key naming the
 * event.  A row holds a template key and its variables: the sender renders
 * it when it sends, from the menus' SMS templates in the recipient's
 * language at that moment (GSM-7, as the menus enforce), and records the
 * text it sent in body; a row it cannot render (unknown template, a
 * variable missing) is failed with the reason, never sent with a hole.  A
 * row with no template carries its text (operators, older daemons).  The
 * sender claims due rows (FOR UPDATE SKIP LOCKED, so several daemons share one
 * database; priority first, so one-time codes overtake bulk reminders)
 * under a lease, hands them to the configured provider within
 * [sms] rate_per_sec, and records the outcome: sent (provider id, cost),
 * retry (exponential backoff with jitter, up to max_attempts) or failed
 * (the provider said the number or account cannot be served); outcomes
 * go to PostgreSQL in batches, one statement each, retried until recorded.  A row whose
 * daemon died mid-send is claimed again when its lease ends, so delivery to
 * the provider is at-least-once.  A NOTIFY on chamad_sms wakes the sender
 * when a row is queued; a poll timer is the fallback.
 *
 * A provider is one file with a struct sms_provider and one entry in
 * sms_providers[] (sms.c).
 */
#ifndef CHAMAD_SMS_H
#define CHAMAD_SMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;
struct httpc;
struct sms_sender;
struct buf;

enum sms_coding { SMS_GSM7, SMS_UCS2 };

/* One message being sent; owned by the sender. */
struct sms_msg {
	char id[24];		/* notifications.id */
	char *to;		/* E.164 */
	char *body;		/* the row's own text, or the template rendered now */
	char *idempotency_key;
	enum sms_coding coding;
	int segments;
	bool rendered;		/* body came from the row's template, in lang */
	bool unrendered;	/* the template could not be rendered: failed, never sent */
	char lang[4];
};

enum sms_verdict { SMS_SENT, SMS_RETRY, SMS_FAILED };

struct sms_outcome {
	enum sms_verdict verdict;
	const char *provider_id;	/* SMS_SENT: the provider's message id */
	const char *cost;		/* SMS_SENT: e.g. "KES 0.8000", or NULL */
	const char *error;		/* otherwise: why */
};

struct sms_provider {
	const char *name;
	/* Sends m; calls sms_sent(s, m, outcome) exactly once, later. */
	void (*send)(struct sms_sender *s, struct sms_msg *m);
};

extern const struct sms_provider sms_provider_at;
extern const struct sms_provider sms_provider_kannel;
const struct sms_provider *sms_provider_find(const char *name);
/* [sms] provider's check (main.c adds it to the configuration): a known
 * provider or "none"; else -1 with the names in err. */
int sms_provider_check(const char *name, char *err, size_t errlen);

/* Starts the sender for [sms] provider; NULL (and no error) for "none".
 * Registers the NOTIFY listener: call before the loop runs. */
struct sms_sender *sms_sender_new(struct app *app, char *err, size_t errlen);
/* On SIGTERM: stops claiming; what was claimed is still sent and its
 * outcome recorded.  sms_sender_unrecorded() is what is left to record. */
void sms_sender_quiesce(struct sms_sender *s);
int sms_sender_unrecorded(const struct sms_sender *s);
/* Stops claiming; sends in flight are abandoned (their rows are claimed
 * again after the lease).  Must not be called from a callback. */
void sms_sender_free(struct sms_sender *s);
void sms_sender_wake(struct sms_sender *s);
/* This daemon queued SMS rows: look for due rows shortly (coalesced).  Only
 * urgent rows (priority <= 2: codes, replies, alerts) NOTIFY every daemon;
 * a NOTIFY serialises the commits of every transaction that sends one. */
void sms_sender_wake_soon(struct sms_sender *s);
void sms_sent(struct sms_sender *s, struct sms_msg *m, const struct sms_outcome *o);
struct app *sms_sender_app(struct sms_sender *s);
struct httpc *sms_sender_http(struct sms_sender *s);
void sms_metrics(struct sms_sender *s, struct buf *out);

/* Segments of body and its coding: GSM-7 160 per message, 153 per part;
 * UCS-2 70 and 67 (in UTF-16 code units). */
int sms_segments(const char *body, enum sms_coding *coding);

#endif
