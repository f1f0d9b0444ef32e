/* connlimit: per-user connection counts and per-address attempt windows for capsule-wsd. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_util.h"
#include "connlimit.h"

#define CTAB_MIN_SLOTS 16
#define LIMITS_WINDOW_MS 60000
#define LIMITS_USER_KEY_MAX 520   /* two claims of < 256 bytes and a separator */

struct wsd_ctab_ent {
	char *key;      /* NULL: empty slot */
	uint64_t hash;
	long cur;       /* users: connections; addrs: attempts in window `win` */
	long prev;      /* addrs: attempts in window `win` - 1 */
	int64_t win;    /* addrs: minute index of `cur` */
};

/* An entry worth keeping at a rebuild. */
typedef int (*ctab_live_fn)(const struct wsd_ctab_ent *e, int64_t now_win);

static size_t
ctab_find(const wsd_ctab *t, const char *key, uint64_t hash)
{
	size_t mask = t->nslots - 1;
	size_t i = (size_t)hash & mask;

	while (t->ents[i].key != NULL &&
	       (t->ents[i].hash != hash || strcmp(t->ents[i].key, key) != 0))
		i = (i + 1) & mask;
	return i;
}

/* Looks `key` up; NULL when absent (or the table is empty). */
static struct wsd_ctab_ent *
ctab_get(const wsd_ctab *t, const char *key)
{
	size_t i;

	if (t->nslots == 0)
		return NULL;
	i = ctab_find(t, key, cg_hash64(key));
	return t->ents[i].key != NULL ? &t->ents[i] : NULL;
}

/* Moves the live entries into a table sized for them plus `extra` at a load
 * of at most one half; frees the others. Returns 0 or -1 (unchanged). */
static int
ctab_rebuild(wsd_ctab *t, ctab_live_fn live, int64_t now_win, size_t extra)
{
	struct wsd_ctab_ent *ents;
	size_t i, n = 0, nslots = CTAB_MIN_SLOTS;

	for (i = 0; i < t->nslots; i++) {
		if (t->ents[i].key != NULL && live(&t->ents[i], now_win))
			n++;
	}
	while (nslots < 2 * (n + extra))
		nslots *= 2;
	ents = calloc(nslots, sizeof *ents);
	if (ents == NULL)
		return -1;
	for (i = 0; i < t->nslots; i++) {
		struct wsd_ctab_ent *e = &t->ents[i];
		size_t j;

		if (e->key == NULL)
			continue;
		if (!live(e, now_win)) {
			free(e->key);
			continue;
		}
		for (j = (size_t)e->hash & (nslots - 1); ents[j].key != NULL; j = (j + 1) & (nslots - 1))
			;
		ents[j] = *e;
	}
	free(t->ents);
	t->ents = ents;
	t->nslots = nslots;
	t->used = n;
	return 0;
}

/* Finds or adds `key`. A new entry is zeroed. NULL when the table holds
 * `cap` live entries already or memory runs out. */
static struct wsd_ctab_ent *
ctab_upsert(wsd_ctab *t, const char *key, ctab_live_fn live, int64_t now_win)
{
	uint64_t hash = cg_hash64(key);
	struct wsd_ctab_ent *e;
	size_t i;

	if (t->nslots > 0) {
		i = ctab_find(t, key, hash);
		if (t->ents[i].key != NULL)
			return &t->ents[i];
	}
	if (t->used >= t->cap && t->full_win == now_win + 1)
		return NULL; /* no room this window: do not rebuild per attempt */
	if ((t->used + 1) * 2 > t->nslots || t->used >= t->cap) {
		/* Half full, or at the cap: drop dead entries, grow if needed. */
		if (ctab_rebuild(t, live, now_win, 1) < 0)
			return NULL;
	}
	if (t->used >= t->cap) {
		t->full_win = now_win + 1;
		return NULL;
	}
	i = ctab_find(t, key, hash);
	e = &t->ents[i];
	e->key = strdup(key);
	if (e->key == NULL)
		return NULL;
	e->hash = hash;
	e->cur = 0;
	e->prev = 0;
	e->win = now_win;
	t->used++;
	return e;
}

static void
ctab_free(wsd_ctab *t)
{
	size_t i;

	for (i = 0; i < t->nslots; i++)
		free(t->ents[i].key);
	free(t->ents);
	memset(t, 0, sizeof *t);
}

/* users: a user with connections. */
static int
user_live(const struct wsd_ctab_ent *e, int64_t now_win)
{
	(void)now_win;
	return e->cur > 0;
}

/* addrs: an address whose attempts still count (this or the last minute). */
static int
addr_live(const struct wsd_ctab_ent *e, int64_t now_win)
{
	return now_win - e->win <= 1;
}

void
wsd_limits_init(wsd_limits *l)
{
	memset(l, 0, sizeof *l);
	l->users.cap = (size_t)-1 / 4 / sizeof(struct wsd_ctab_ent);
	l->addrs.cap = WSD_LIMITS_ADDRS_MAX;
}

void
wsd_limits_free(wsd_limits *l)
{
	ctab_free(&l->users);
	ctab_free(&l->addrs);
}

long
wsd_limits_attempt(wsd_limits *l, const char *addr, int64_t now_ms)
{
	int64_t win = now_ms / LIMITS_WINDOW_MS;
	int64_t into = now_ms % LIMITS_WINDOW_MS;
	struct wsd_ctab_ent *e = ctab_upsert(&l->addrs, addr, addr_live, win);

	if (e == NULL)
		return 0;
	if (e->win != win) {
		e->prev = e->win == win - 1 ? e->cur : 0;
		e->cur = 0;
		e->win = win;
	}
	e->cur++;
	/* The previous minute counts for the part of it still inside the last 60 s. */
	return e->cur + (long)(e->prev * (LIMITS_WINDOW_MS - into) / LIMITS_WINDOW_MS);
}

static int
user_key(char *buf, size_t len, const char *tenant, const char *sub)
{
	int n = snprintf(buf, len, "%s\x1f%s", tenant, sub);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

long
wsd_limits_user_count(const wsd_limits *l, const char *tenant, const char *sub)
{
	char key[LIMITS_USER_KEY_MAX];
	const struct wsd_ctab_ent *e;

	if (user_key(key, sizeof key, tenant, sub) < 0)
		return 0;
	e = ctab_get(&l->users, key);
	return e != NULL ? e->cur : 0;
}

int
wsd_limits_user_add(wsd_limits *l, const char *tenant, const char *sub, int delta)
{
	char key[LIMITS_USER_KEY_MAX];
	struct wsd_ctab_ent *e;

	if (user_key(key, sizeof key, tenant, sub) < 0)
		return -1;
	if (delta < 0) {
		e = ctab_get(&l->users, key);
		if (e != NULL && e->cur > 0)
			e->cur += delta;
		return 0;
	}
	e = ctab_upsert(&l->users, key, user_live, 0);
	if (e == NULL)
		return -1;
	e->cur += delta;
	return 0;
}

size_t
wsd_limits_addrs(const wsd_limits *l)
{
	return l->addrs.used;
}
