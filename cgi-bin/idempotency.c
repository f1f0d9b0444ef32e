/* idempotency: Idempotency-Key claims and stored answers in PostgreSQL. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cg_log.h"
#include "idempotency.h"

/* How many times the claim loop retries when the row vanished between the
 * INSERT and the SELECT (reset or cleaned up by someone else). */
#define CLAIM_ROUNDS 3

static int sha256_hex3(const char *a, const char *b, const char *c, size_t clen, char out[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	int rc = -1;

	if (md == NULL)
		return -1;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, a, strlen(a)) != 1 || EVP_DigestUpdate(md, "\n", 1) != 1 ||
	    EVP_DigestUpdate(md, b, strlen(b)) != 1 || EVP_DigestUpdate(md, "\n", 1) != 1 ||
	    (clen > 0 && EVP_DigestUpdate(md, c, clen) != 1) ||
	    EVP_DigestFinal_ex(md, dig, &n) != 1 || n != 32)
		goto out;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", dig[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

int cg_idem_from_request(cg_req *req, const char *body, size_t len, cg_idem *out)
{
	const char *k = cg_req_header(req, "Idempotency-Key");
	size_t n, i;

	memset(out, 0, sizeof *out);
	if (k == NULL)
		return 0;
	n = strlen(k);
	for (i = 0; i < n && i <= CG_IDEM_KEY_MAX; i++) {
		if (k[i] < 0x21 || k[i] > 0x7e)
			break;
	}
	if (n == 0 || n > CG_IDEM_KEY_MAX || i != n) {
		cg_req_send_error(req, 422, "validation_failed",
				  "Idempotency-Key must be 1..255 printable ASCII characters",
				  "Idempotency-Key");
		return -1;
	}
	if (sha256_hex3(cg_req_method(req), cg_req_path(req), body, len, out->hash) < 0) {
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		return -1;
	}
	memcpy(out->key, k, n + 1);
	out->present = 1;
	return 1;
}

int cg_idem_claim(cg_db *db, const cg_principal *who, cg_req *req, cg_idem *idem)
{
	static const char ins[] =
		"INSERT INTO idempotency_keys (tenant_id, actor, idem_key, method, path, request_hash)"
		" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1";
	/* FOR UPDATE: held until our COMMIT, so a reset below is ours alone. */
	static const char sel[] =
		"SELECT request_hash, status, response_body,"
		" created_at < now() - interval '24 hours'"
		" FROM idempotency_keys WHERE tenant_id = $1 AND actor = $2 AND idem_key = $3"
		" FOR UPDATE";
	static const char reset[] =
		"UPDATE idempotency_keys SET method = $4, path = $5, request_hash = $6,"
		" status = NULL, response_body = NULL, created_at = now()"
		" WHERE tenant_id = $1 AND actor = $2 AND idem_key = $3";
	const char *params[6] = { who->tenant, who->subject, idem->key, cg_req_method(req),
				  cg_req_path(req), idem->hash };
	PGresult *res = NULL;
	int rc = CG_DB_ESQL, round;

	for (round = 0; round < CLAIM_ROUNDS; round++) {
		int stale;

		rc = cg_db_exec(db, &res, ins, 6, params);
		if (rc != CG_DB_OK)
			goto out;
		if (PQntuples(res) == 1) {
			rc = CG_IDEM_PROCEED;
			goto out;
		}
		PQclear(res);
		res = NULL;
		rc = cg_db_exec(db, &res, sel, 3, params);
		if (rc != CG_DB_OK)
			goto out;
		if (PQntuples(res) == 0) {
			PQclear(res);
			res = NULL;
			continue; /* gone again: insert once more */
		}
		stale = strcmp(PQgetvalue(res, 0, 3), "t") == 0 || PQgetisnull(res, 0, 1);
		if (stale) {
			cg_log_info("Idempotency-Key older than 24 h (or without an answer): reset");
			PQclear(res);
			res = NULL;
			rc = cg_db_exec(db, NULL, reset, 6, params);
			if (rc == CG_DB_OK)
				rc = CG_IDEM_PROCEED;
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 0), idem->hash) != 0) {
			rc = CG_IDEM_REUSED;
			goto out;
		}
		idem->replay_status = atoi(PQgetvalue(res, 0, 1));
		idem->replay_body = strdup(PQgetisnull(res, 0, 2) ? "{}" : PQgetvalue(res, 0, 2));
		if (idem->replay_body == NULL || idem->replay_status < 100 ||
		    idem->replay_status > 599) {
			cg_log_error("Idempotency-Key: stored answer unusable");
			rc = CG_DB_ESQL;
			goto out;
		}
		rc = CG_IDEM_REPLAY;
		goto out;
	}
	cg_log_error("Idempotency-Key: could not claim the key after %d rounds", CLAIM_ROUNDS);
	rc = CG_DB_ECONFLICT;
out:
	if (res != NULL)
		PQclear(res);
	return rc;
}

int cg_idem_store(cg_db *db, const cg_principal *who, const cg_idem *idem, int status,
		  const char *body)
{
	static const char sql[] =
		"UPDATE idempotency_keys SET status = $4::integer, response_body = $5"
		" WHERE tenant_id = $1 AND actor = $2 AND idem_key = $3";
	char st[16];
	const char *params[5] = { who->tenant, who->subject, idem->key, st, body };

	snprintf(st, sizeof st, "%d", status);
	if (strlen(body) > CG_IDEM_BODY_MAX)
		params[4] = NULL; /* replayed as "{}": never happens with today's answers */
	return cg_db_exec(db, NULL, sql, 5, params);
}

void cg_idem_clear(cg_idem *idem)
{
	free(idem->replay_body);
	idem->replay_body = NULL;
}
