/*
 * workpool: pthreads, a job queue admitted by deadline (admit.h) and a
 * completion queue drained on the loop when the wake-up pipe is readable.
 */
#include "base/workpool.h"
#include "base/admit.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

struct job {
	struct job *next;
	work_fn work;
	work_done_fn done;
	void *arg;
	uint64_t deadline_ms;
	enum work_status status;
};

struct jobq {
	struct job *head, *tail;
	int n;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct jobq todo, finished;	/* both under lock */
	int queue_max, running, budget_ms;
	bool stopping;
	struct admit admit;	/* under lock */
	uint64_t done, rejected, expired;
	pthread_t *threads;
	int nthreads;
	int pipefd[2];
	struct event *ev;
};

static void q_push(struct jobq *q, struct job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
}

static struct job *q_pop(struct jobq *q)
{
	struct job *j = q->head;

	if (j) {
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->n--;
	}
	return j;
}

/* Called with the lock held. */
static void finish_locked(struct workpool *p, struct job *j, enum work_status st)
{
	char one = 1;

	j->status = st;
	q_push(&p->finished, j);
	/* a full pipe already holds a wake-up: EAGAIN is fine */
	if (write(p->pipefd[1], &one, 1) < 0 && errno != EAGAIN)
		log_error("workpool: wake-up write failed: %s", strerror(errno));
}

static void *worker(void *arg)
{
	struct workpool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j;
		uint64_t t0, t1;

		while (!p->stopping && !p->todo.head)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping)
			break;
		j = q_pop(&p->todo);
		t0 = util_now_us();
		if (t0 / 1000 >= j->deadline_ms) {
			/* its answer would come too late: spend nothing on it */
			p->rejected++;
			p->expired++;
			finish_locked(p, j, WORK_BUSY);
			continue;
		}
		p->running++;
		pthread_mutex_unlock(&p->lock);
		j->work(j->arg);
		t1 = util_now_us();
		pthread_mutex_lock(&p->lock);
		admit_observe(&p->admit, (double)(t1 - t0) / 1000.0);
		p->running--;
		p->done++;
		finish_locked(p, j, WORK_OK);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Delivers finished jobs on the loop, outside the lock. */
static void drain(struct workpool *p)
{
	struct jobq got;
	struct job *j;

	pthread_mutex_lock(&p->lock);
	got = p->finished;
	memset(&p->finished, 0, sizeof(p->finished));
	pthread_mutex_unlock(&p->lock);
	while ((j = q_pop(&got))) {
		j->done(j->arg, j->status);
		free(j);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	char sink[64];

	(void)what;
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	drain(arg);
}

struct workpool *workpool_new(struct event_base *base, int threads, int queue_max, int default_budget_ms, char *err,
			      size_t errlen)
{
	struct workpool *p = xcalloc(1, sizeof(*p));

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->queue_max = queue_max;
	p->budget_ms = default_budget_ms;
	admit_init(&p->admit);
	if (pipe2(p->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, errlen, "workpool: pipe: %s", strerror(errno));
		free(p);
		return NULL;
	}
	p->ev = event_new(base, p->pipefd[0], EV_READ | EV_PERSIST, on_wake, p);
	event_add(p->ev, NULL);
	p->threads = xcalloc((size_t)threads, sizeof(*p->threads));
	for (; p->nthreads < threads; p->nthreads++) {
		int rc = pthread_create(&p->threads[p->nthreads], NULL, worker, p);

		if (rc) {
			snprintf(err, errlen, "workpool: cannot start a thread: %s", strerror(rc));
			workpool_free(p);
			return NULL;
		}
	}
	return p;
}

void workpool_set_budget(struct workpool *p, int default_budget_ms)
{
	pthread_mutex_lock(&p->lock);
	p->budget_ms = default_budget_ms;
	pthread_mutex_unlock(&p->lock);
}

/* Called with the lock held. */
static bool admits_locked(struct workpool *p, uint64_t now, uint64_t deadline_ms)
{
	return p->todo.n < p->queue_max &&
	       admit_ok(&p->admit, p->todo.n, p->running, p->nthreads, now, deadline_ms);
}

bool workpool_admits(struct workpool *p, uint64_t deadline_ms)
{
	uint64_t now = util_now_ms();
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = !p->stopping && admits_locked(p, now, deadline_ms ? deadline_ms : now + (uint64_t)p->budget_ms);
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void workpool_submit(struct workpool *p, work_fn work, work_done_fn done, void *arg, uint64_t deadline_ms)
{
	struct job *j = xcalloc(1, sizeof(*j));
	uint64_t now = util_now_ms();

	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&p->lock);
	j->deadline_ms = deadline_ms ? deadline_ms : now + (uint64_t)p->budget_ms;
	if (p->stopping || !admits_locked(p, now, j->deadline_ms)) {
		p->rejected++;
		finish_locked(p, j, p->stopping ? WORK_CANCELLED : WORK_BUSY);
	} else {
		q_push(&p->todo, j);
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

void workpool_stats(struct workpool *p, struct workpool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	out->threads = p->nthreads;
	out->queued = p->todo.n;
	out->running = p->running;
	out->done = p->done;
	out->rejected = p->rejected;
	out->expired = p->expired;
	out->service_ms = p->admit.service_ms;
	pthread_mutex_unlock(&p->lock);
}

void workpool_free(struct workpool *p)
{
	struct job *j;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	while ((j = q_pop(&p->todo)))
		finish_locked(p, j, WORK_CANCELLED);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	/* running jobs finish their work first */
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	drain(p);
	event_free(p->ev);
	close(p->pipefd[0]);
	close(p->pipefd[1]);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}
