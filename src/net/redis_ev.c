/*
 * redis_ev: one persistent event per context whose flags follow hiredis'
 * addRead/delRead/addWrite/delWrite requests.
 */
#include "net/redis_ev.h"
#include "base/util.h"

#include <stdlib.h>

#include <event2/event.h>
#include <hiredis/async.h>

#define RE_ENTERED 0x01
#define RE_DELETED 0x02

struct redis_ev {
	redisAsyncContext *ac;	/* borrowed; invalid once RE_DELETED is set */
	struct event_base *base;
	struct event *ev;
	short want;		/* EV_READ | EV_WRITE */
	int state;
};

static void re_destroy(struct redis_ev *e)
{
	if (e->ev)
		event_free(e->ev);
	free(e);
}

static void re_handler(evutil_socket_t fd, short what, void *arg)
{
	struct redis_ev *e = arg;

	e->state |= RE_ENTERED;
	if ((what & EV_READ) && !(e->state & RE_DELETED))
		redisAsyncHandleRead(e->ac);
	if ((what & EV_WRITE) && !(e->state & RE_DELETED))
		redisAsyncHandleWrite(e->ac);
	if (e->state & RE_DELETED) {
		/* hiredis freed the context while we were inside it */
		re_destroy(e);
		return;
	}
	e->state &= ~RE_ENTERED;
}

static void re_update(struct redis_ev *e, short flag, int add)
{
	short want = add ? (short)(e->want | flag) : (short)(e->want & ~flag);

	if (want == e->want)
		return;
	e->want = want;
	if (e->ev) {
		event_free(e->ev);
		e->ev = NULL;
	}
	if (want) {
		e->ev = event_new(e->base, e->ac->c.fd, want | EV_PERSIST, re_handler, e);
		event_add(e->ev, NULL);
	}
}

static void re_add_read(void *p) { re_update(p, EV_READ, 1); }
static void re_del_read(void *p) { re_update(p, EV_READ, 0); }
static void re_add_write(void *p) { re_update(p, EV_WRITE, 1); }
static void re_del_write(void *p) { re_update(p, EV_WRITE, 0); }

static void re_cleanup(void *p)
{
	struct redis_ev *e = p;

	if (e->ev) {
		event_free(e->ev);
		e->ev = NULL;
	}
	e->want = 0;
	if (e->state & RE_ENTERED)
		e->state |= RE_DELETED;
	else
		re_destroy(e);
}

int redis_ev_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct redis_ev *e;

	if (ac->ev.data)
		return -1;
	e = xcalloc(1, sizeof(*e));
	e->ac = ac;
	e->base = base;
	ac->ev.data = e;
	ac->ev.addRead = re_add_read;
	ac->ev.delRead = re_del_read;
	ac->ev.addWrite = re_add_write;
	ac->ev.delWrite = re_del_write;
	ac->ev.cleanup = re_cleanup;
	return 0;
}
