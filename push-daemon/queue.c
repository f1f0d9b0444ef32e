/* queue: capped, mutex-protected FIFO of pointers (a ring buffer). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "queue.h"

struct pushd_queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	void **items; /* ring of cap slots */
	size_t cap, head, len;
};

pushd_queue *pushd_queue_new(size_t cap)
{
	pushd_queue *q;
	pthread_condattr_t ca;

	if (cap == 0)
		return NULL;
	q = calloc(1, sizeof *q);
	if (q == NULL)
		return NULL;
	q->items = calloc(cap, sizeof *q->items);
	if (q->items == NULL) {
		free(q);
		return NULL;
	}
	q->cap = cap;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

void pushd_queue_free(pushd_queue *q)
{
	if (q == NULL)
		return;
	pthread_cond_destroy(&q->nonempty);
	pthread_mutex_destroy(&q->lock);
	free(q->items);
	free(q);
}

int pushd_queue_push(pushd_queue *q, void *item)
{
	int rc = -1;

	pthread_mutex_lock(&q->lock);
	if (q->len < q->cap) {
		q->items[(q->head + q->len) % q->cap] = item;
		q->len++;
		rc = 0;
		pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* Pops with the lock held. */
static void *pop_locked(pushd_queue *q)
{
	void *item;

	if (q->len == 0)
		return NULL;
	item = q->items[q->head];
	q->items[q->head] = NULL;
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return item;
}

void *pushd_queue_pop(pushd_queue *q)
{
	void *item;

	pthread_mutex_lock(&q->lock);
	item = pop_locked(q);
	pthread_mutex_unlock(&q->lock);
	return item;
}

void *pushd_queue_pop_wait(pushd_queue *q, int timeout_ms)
{
	struct timespec deadline;
	void *item;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	while (q->len == 0) {
		if (pthread_cond_timedwait(&q->nonempty, &q->lock, &deadline) == ETIMEDOUT)
			break;
	}
	item = pop_locked(q);
	pthread_mutex_unlock(&q->lock);
	return item;
}

size_t pushd_queue_len(pushd_queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}
