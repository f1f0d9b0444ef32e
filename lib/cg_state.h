/* cg_state: the activity state machine -- the seven states, which of them
 * are final, the moves allowed between them and the state each action leads
 * to -- kept as ONE const table in cg_state.c (doc/api.md shows the same
 * table for people).
 *
 * Every function takes names as clients send them ("investigating",
 * "mitigate"); an unknown name is never valid, never final, never allowed.
 * No function allocates or fails otherwise; all are thread-safe. */
#ifndef CG_STATE_H
#define CG_STATE_H

#include <stddef.h>

/* Number of states and of actions in the table. */
#define CG_STATE_COUNT 7
#define CG_ACTION_COUNT 5

/* 1 when `name` is one of the seven states (NULL: 0). */
int cg_state_valid(const char *name);

/* 1 when `name` is a final state (rejected, dismissed, resolved): nothing
 * may change such an activity any more. */
int cg_state_is_final(const char *name);

/* 1 when an activity in state `from` may move to state `to` (the table's
 * cell; from == to is a cell like any other: investigating -> investigating
 * is allowed, active -> active is not). Never 1 when `from` is final. A
 * caller that does not move (PUT /update repeating the current state of an
 * activity that is not final) does not ask. */
int cg_state_move_allowed(const char *from, const char *to);

/* The state action `action_type` moves an activity to ("inspect" ->
 * "investigating"), or NULL when it is not one of the five actions. The
 * pointer is a static string. */
const char *cg_action_target(const char *action_type);

/* The i-th state / action in table order (for listings and tests), or NULL
 * past the end. Static strings. */
const char *cg_state_name(size_t i);
const char *cg_action_name(size_t i);

#endif
