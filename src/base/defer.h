/*
 * defer: run callbacks on the next loop pass instead of now.
 *
 * The db and redis clients promise never to call a completion callback from
 * inside the call that started the work (a caller would otherwise see its
 * callback run before its own call returned).  Failures known at once (queue
 * full, server down) are parked here and delivered from the loop.  Nodes are
 * intrusive: the owner embeds a struct defer_node and recovers itself in fn.
 */
#ifndef CHAMAD_DEFER_H
#define CHAMAD_DEFER_H

struct event_base;
struct event;
struct defer_node;

typedef void (*defer_fn)(struct defer_node *n);

struct defer_node {
	struct defer_node *next;
	defer_fn fn;
};

struct defer_queue {
	struct defer_node *head, *tail;
	struct event *ev;
};

void defer_init(struct defer_queue *q, struct event_base *base);
/* Queues n; fn(n) runs on a later loop pass (or in defer_flush). */
void defer_push(struct defer_queue *q, struct defer_node *n, defer_fn fn);
/* Runs everything queued, including what the callbacks queue meanwhile. */
void defer_flush(struct defer_queue *q);
/* Flushes, then releases the event. */
void defer_free(struct defer_queue *q);

#endif
