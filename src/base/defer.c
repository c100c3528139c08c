/*
 * defer: a FIFO of intrusive nodes and one event made active when the FIFO
 * is not empty.
 */
#include "base/defer.h"

#include <stddef.h>
#include <event2/event.h>

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
	defer_flush(arg);
}

void defer_init(struct defer_queue *q, struct event_base *base)
{
	q->head = q->tail = NULL;
	q->ev = event_new(base, -1, 0, defer_cb, q);
}

void defer_push(struct defer_queue *q, struct defer_node *n, defer_fn fn)
{
	n->fn = fn;
	n->next = NULL;
	if (q->tail)
		q->tail->next = n;
	else
		q->head = n;
	q->tail = n;
	event_active(q->ev, EV_TIMEOUT, 0);
}

void defer_flush(struct defer_queue *q)
{
	struct defer_node *n;

	while ((n = q->head) != NULL) {
		q->head = n->next;
		if (!q->head)
			q->tail = NULL;
		n->next = NULL;
		n->fn(n);
	}
}

void defer_free(struct defer_queue *q)
{
	defer_flush(q);
	if (q->ev)
		event_free(q->ev);
	q->ev = NULL;
}
