/* queue: a small mutex-protected FIFO of pointers with a hard cap, used to
 * hand jobs and results between the worker and sender threads. */
#ifndef PUSHD_QUEUE_H
#define PUSHD_QUEUE_H

#include <stddef.h>

typedef struct pushd_queue pushd_queue;

/* A queue holding at most `cap` (>= 1) items. NULL when memory runs out. */
pushd_queue *pushd_queue_new(size_t cap);

/* Frees the queue. Items still inside are NOT freed: drain it first. */
void pushd_queue_free(pushd_queue *q);

/* Appends `item` (not NULL). The queue does not own it; the consumer that
 * pops it does. Returns 0, or -1 when the queue is full (nothing changes). */
int pushd_queue_push(pushd_queue *q, void *item);

/* Removes and returns the oldest item, NULL when empty. */
void *pushd_queue_pop(pushd_queue *q);

/* Like pushd_queue_pop, but waits up to `timeout_ms` for an item. */
void *pushd_queue_pop_wait(pushd_queue *q, int timeout_ms);

size_t pushd_queue_len(pushd_queue *q);

#endif
