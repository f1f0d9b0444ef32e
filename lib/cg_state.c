/* cg_state: the activity state machine as one const table. */
#include "config.h"

#include <string.h>

#include "cg_state.h"

/* Bit i of a row's `to` lets that state move to states[i]. */
#define S_ACTIVE (1u << 0)
#define S_INVESTIGATING (1u << 1)
#define S_MITIGATING (1u << 2)
#define S_APPROVED (1u << 3)
#define S_REJECTED (1u << 4)
#define S_DISMISSED (1u << 5)
#define S_RESOLVED (1u << 6)

typedef struct state_row {
	const char *name;
	int final;
	unsigned to; /* states this one may move to */
} state_row;

/* THE state machine. Rows are in bit order (row i is bit i). Final states
 * have no way out. resolved is reached only through PUT /update (no action
 * targets it). */
static const state_row states[CG_STATE_COUNT] = {
	{ "active", 0,
	  S_INVESTIGATING | S_MITIGATING | S_APPROVED | S_REJECTED | S_DISMISSED | S_RESOLVED },
	{ "investigating", 0,
	  S_ACTIVE | S_INVESTIGATING | S_MITIGATING | S_APPROVED | S_REJECTED | S_DISMISSED |
		  S_RESOLVED },
	{ "mitigating", 0,
	  S_ACTIVE | S_INVESTIGATING | S_MITIGATING | S_APPROVED | S_REJECTED | S_RESOLVED },
	{ "approved", 0, S_INVESTIGATING | S_MITIGATING | S_RESOLVED },
	{ "rejected", 1, 0 },
	{ "dismissed", 1, 0 },
	{ "resolved", 1, 0 },
};

/* The five actions and the state each leads to. */
static const struct {
	const char *name;
	const char *target;
} actions[CG_ACTION_COUNT] = {
	{ "inspect", "investigating" },
	{ "mitigate", "mitigating" },
	{ "approve", "approved" },
	{ "reject", "rejected" },
	{ "dismiss", "dismissed" },
};

/* Row index of state `name`, or -1. */
static int state_index(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = 0; i < CG_STATE_COUNT; i++)
		if (strcmp(states[i].name, name) == 0)
			return i;
	return -1;
}

int cg_state_valid(const char *name)
{
	return state_index(name) >= 0;
}

int cg_state_is_final(const char *name)
{
	int i = state_index(name);

	return i >= 0 && states[i].final;
}

int cg_state_move_allowed(const char *from, const char *to)
{
	int f = state_index(from), t = state_index(to);

	if (f < 0 || t < 0 || states[f].final)
		return 0;
	return (states[f].to & (1u << t)) != 0;
}

const char *cg_action_target(const char *action_type)
{
	size_t i;

	if (action_type == NULL)
		return NULL;
	for (i = 0; i < CG_ACTION_COUNT; i++)
		if (strcmp(actions[i].name, action_type) == 0)
			return actions[i].target;
	return NULL;
}

const char *cg_state_name(size_t i)
{
	return i < CG_STATE_COUNT ? states[i].name : NULL;
}

const char *cg_action_name(size_t i)
{
	return i < CG_ACTION_COUNT ? actions[i].name : NULL;
}
