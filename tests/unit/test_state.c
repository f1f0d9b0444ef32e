/* test_state: the activity state machine, every (from, to) cell and every action from every state. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_state.h"
#include "tap.h"

/* The binding table (issue 4), written out here independently of
 * lib/cg_state.c: row = from, column = to, in this order; 'y' = allowed. */
static const char *const names[CG_STATE_COUNT] = {
	"active", "investigating", "mitigating", "approved", "rejected", "dismissed", "resolved",
};

static const struct {
	const char *from;
	const char *to; /* one char per names[] column */
	int final;
} moves[CG_STATE_COUNT] = {
	/*                  act inv mit app rej dis res */
	{ "active",        "-yyyyyy", 0 },
	{ "investigating", "yyyyyyy", 0 },
	{ "mitigating",    "yyyyy-y", 0 },
	{ "approved",      "-yy---y", 0 },
	{ "rejected",      "-------", 1 },
	{ "dismissed",     "-------", 1 },
	{ "resolved",      "-------", 1 },
};

static const struct {
	const char *action;
	const char *target;
} action_targets[] = {
	{ "inspect", "investigating" },
	{ "mitigate", "mitigating" },
	{ "approve", "approved" },
	{ "reject", "rejected" },
	{ "dismiss", "dismissed" },
};
#define N_ACTIONS (sizeof action_targets / sizeof action_targets[0])

static int expected_move(const char *from, const char *to)
{
	size_t f, t;

	for (f = 0; f < CG_STATE_COUNT; f++) {
		if (strcmp(moves[f].from, from) != 0)
			continue;
		for (t = 0; t < CG_STATE_COUNT; t++)
			if (strcmp(names[t], to) == 0)
				return moves[f].to[t] == 'y';
	}
	return -1;
}

static void check_states(void)
{
	static const char *const not_states[] = { "", "Active", "ACTIVE", "open", "closed",
						  "active ", "resolve", "mitigate" };
	size_t i;

	for (i = 0; i < CG_STATE_COUNT; i++) {
		ok(cg_state_valid(moves[i].from), "%s is a state", moves[i].from);
		is_int(cg_state_is_final(moves[i].from), moves[i].final, "%s is %sfinal",
		       moves[i].from, moves[i].final ? "" : "not ");
	}
	for (i = 0; i < sizeof not_states / sizeof not_states[0]; i++) {
		ok(!cg_state_valid(not_states[i]), "\"%s\" is not a state", not_states[i]);
		ok(!cg_state_is_final(not_states[i]), "\"%s\" is not final", not_states[i]);
	}
	ok(!cg_state_valid(NULL) && !cg_state_is_final(NULL), "NULL is neither a state nor final");
	/* The lib's listing has exactly the seven states. */
	for (i = 0; i < CG_STATE_COUNT; i++)
		ok(cg_state_name(i) != NULL && expected_move(cg_state_name(i), "active") >= 0,
		   "cg_state_name(%zu) = %s is one of the seven", i,
		   cg_state_name(i) ? cg_state_name(i) : "(null)");
	ok(cg_state_name(CG_STATE_COUNT) == NULL, "cg_state_name past the end is NULL");
}

/* All 49 (from, to) pairs. */
static void check_moves(void)
{
	size_t f, t;
	int cells = 0;

	for (f = 0; f < CG_STATE_COUNT; f++) {
		for (t = 0; t < CG_STATE_COUNT; t++) {
			int want = moves[f].to[t] == 'y';

			is_int(cg_state_move_allowed(moves[f].from, names[t]), want, "%s -> %s is %s",
			       moves[f].from, names[t], want ? "allowed" : "forbidden");
			cells++;
		}
	}
	is_int(cells, 49, "the whole 7 x 7 table was checked");
	ok(!cg_state_move_allowed("active", "closed"), "a move to an unknown state is forbidden");
	ok(!cg_state_move_allowed("closed", "active"), "a move from an unknown state is forbidden");
	ok(!cg_state_move_allowed(NULL, "active") && !cg_state_move_allowed("active", NULL),
	   "NULL states are forbidden");
}

/* Every action from every state: allowed exactly when the table allows
 * the move to the action's target. */
static void check_actions(void)
{
	static const char *const not_actions[] = { "", "Inspect", "resolve", "investigating",
						   "approve ", "delete" };
	size_t a, s;

	for (a = 0; a < N_ACTIONS; a++) {
		const char *target = cg_action_target(action_targets[a].action);

		is_str(target, action_targets[a].target, "%s leads to %s", action_targets[a].action,
		       action_targets[a].target);
		ok(cg_action_name(a) != NULL && cg_action_target(cg_action_name(a)) != NULL,
		   "cg_action_name(%zu) = %s is an action", a,
		   cg_action_name(a) ? cg_action_name(a) : "(null)");
		for (s = 0; s < CG_STATE_COUNT; s++) {
			int want = expected_move(names[s], action_targets[a].target);

			is_int(target != NULL && cg_state_move_allowed(names[s], target), want,
			       "%s on a %s activity is %s", action_targets[a].action, names[s],
			       want ? "allowed" : "refused");
		}
	}
	ok(cg_action_name(CG_ACTION_COUNT) == NULL, "cg_action_name past the end is NULL");
	for (a = 0; a < sizeof not_actions / sizeof not_actions[0]; a++)
		ok(cg_action_target(not_actions[a]) == NULL, "\"%s\" is not an action", not_actions[a]);
	ok(cg_action_target(NULL) == NULL, "NULL is not an action");
	/* resolved is reachable only through PUT /update */
	for (a = 0; a < CG_ACTION_COUNT; a++)
		ok(cg_action_target(cg_action_name(a)) == NULL ||
			   strcmp(cg_action_target(cg_action_name(a)), "resolved") != 0,
		   "%s does not lead to resolved", cg_action_name(a) ? cg_action_name(a) : "(null)");
}

int main(void)
{
	check_states();
	check_moves();
	check_actions();
	return done_testing();
}
