/* idempotency: the Idempotency-Key of POST and PUT requests, stored durably
 * in PostgreSQL (table idempotency_keys, one row per tenant, actor and key).
 *
 * request_hash = hex SHA-256 of method "\n" path "\n" body. Inside the
 * request's tenant transaction, before the effect, cg_idem_claim inserts the
 * key (ON CONFLICT DO NOTHING). A concurrent first request holding the same
 * key makes that INSERT wait until it commits or rolls back (unique index),
 * so two concurrent requests produce one effect: the second then replays.
 * An existing row with the same hash, younger than 24 h and with an answer
 * is replayed (status and body, no second effect); another hash is a 422
 * "idempotency_key_reused"; a row older than 24 h is reset and the request
 * proceeds. After the effect, cg_idem_store records the answer in the same
 * transaction. When the effect fails, the transaction rolls back and the
 * key is free again. */
#ifndef CG_CGI_IDEMPOTENCY_H
#define CG_CGI_IDEMPOTENCY_H

#include <stddef.h>

#include "cg_auth.h"
#include "cg_db.h"
#include "request.h"

#define CG_IDEM_KEY_MAX 255
/* Stored answers longer than this are not replayed (the key is then only
 * a guard against a second effect: see cg_idem_store). */
#define CG_IDEM_BODY_MAX (1024 * 1024)

typedef struct cg_idem {
	int present;                 /* the request carried a valid key */
	char key[CG_IDEM_KEY_MAX + 1];
	char hash[65];               /* hex SHA-256 of method, path, body */
	/* set by cg_idem_claim on CG_IDEM_REPLAY */
	int replay_status;
	char *replay_body;           /* owned; cg_idem_clear frees it */
} cg_idem;

enum {
	CG_IDEM_PROCEED = 0, /* the key is ours until COMMIT: do the effect */
	CG_IDEM_REPLAY = 1,  /* answer replay_status / replay_body, no effect */
	CG_IDEM_REUSED = 2,  /* same key, another request: 422 */
};

/* Reads the Idempotency-Key header of `req` (1..255 printable ASCII) and
 * hashes the request. Returns 0 (absent: out->present = 0), 1 (present), or
 * -1 after answering 422 validation_failed with field "Idempotency-Key". */
int cg_idem_from_request(cg_req *req, const char *body, size_t len, cg_idem *out);

/* Claims the key inside the open tenant transaction of `who`. Returns a
 * CG_IDEM_* value, or a negative CG_DB_* code (the transaction is then
 * unusable: roll back). Not to be called when !idem->present. */
int cg_idem_claim(cg_db *db, const cg_principal *who, cg_req *req, cg_idem *idem);

/* Records the answer of the effect (same transaction). */
int cg_idem_store(cg_db *db, const cg_principal *who, const cg_idem *idem, int status,
		  const char *body);

void cg_idem_clear(cg_idem *idem);

#endif
