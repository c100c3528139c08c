/*
 * ussd: the engine.  An aggregator adapter turns its HTTP request into one
 * struct ussd_req; the engine loads the session from Redis, applies the
 * newest input to the screen the user is on, runs the screen's action
 * (asynchronously: actions query PostgreSQL), renders the next screen
 * within the size cap, stores the session with the reply given, and hands
 * a struct ussd_reply back to the adapter to render.
 *
 * Adapters (ussd_at.c, ussd_hubtel.c, ...) know nothing of menus or
 * sessions; a new aggregator is one file with a struct ussd_adapter and one
 * entry in ussd_routes[] (ussd_http.c).
 */
#ifndef CHAMAD_USSD_H
#define CHAMAD_USSD_H

#include <stdbool.h>
#include <stddef.h>

#include "base/form.h"
#include "base/util.h"
#include "net/httpd.h"

enum ussd_req_kind {
	USSD_BEGIN,	/* the first hop of a session (Hubtel Initiation) */
	USSD_CONTINUE,	/* a later hop, or unknown (AT: decided from state) */
	USSD_RELEASE,	/* the aggregator ended the session (Hubtel Release/Timeout) */
};

/* One hop, as every adapter produces it.  Strings are owned by the struct
 * (free with ussd_req_clear). */
struct ussd_req {
	enum ussd_req_kind kind;
	char *session_id;	/* the aggregator's session id (1..64 printable chars) */
	char *phone;		/* as given; the engine normalises it to E.164 */
	char *service_code;	/* e.g. "*384*1234#" (may be empty) */
	char *network;		/* network code or operator name (may be empty) */
	char *text;		/* cumulative: every input joined by '*'; else the newest input */
	bool cumulative;	/* text is the whole path (Africa's Talking) */
	char *hop_key;		/* identifies a hop for de-duplication (AT: text; Hubtel: Sequence) */
	char *client_state;	/* Hubtel ClientState (echoed), or NULL */
};

struct ussd_reply {
	bool end;		/* END (close) rather than CON (wait for input) */
	const char *text;	/* GSM-7, within the cap */
};

struct ussd_adapter {
	const char *name;	/* "africastalking": session keys, config, metrics */
	const char *path;	/* "/ussd/africastalking" */
	/* Parses an HTTP body.  Returns 0, or -1 with a short reason in err
	 * (answered 400).  Must accept any bytes without crashing. */
	int (*parse)(const char *body, size_t len, struct ussd_req *out, char *err, size_t errlen);
	/* Renders rep for req into out; sets *content_type (static string). */
	void (*render)(const struct ussd_req *req, const struct ussd_reply *rep, struct buf *out,
		       const char **content_type);
};

extern const struct ussd_adapter ussd_adapter_at;
extern const struct ussd_adapter ussd_adapter_hubtel;

struct app;
struct config;
struct http_ctx;
struct menu_set;

/* Serves one parsed hop and answers ctx through ad->render; takes over the
 * strings of req (left empty). */
void ussd_serve(struct app *app, const struct ussd_adapter *ad, struct http_ctx *ctx, struct ussd_req *req);
/* Loads and validates [ussd] menus_dir with the engine's handlers, size cap
 * and required screens.  Returns a new set, or NULL with err filled. */
struct menu_set *ussd_menus_load(const struct config *cfg, char *err, size_t errlen);

/* Appends the engine's counters in Prometheus text format. */
void ussd_metrics(struct buf *out);
/* The aggregators' routes (NULL path ends it), registered by main.c. */
extern const struct http_route ussd_routes[];

void ussd_req_clear(struct ussd_req *r);
/* 1..64 characters of [A-Za-z0-9_.:-]: safe in Redis keys and log lines. */
bool ussd_session_id_ok(const char *s);

#endif
