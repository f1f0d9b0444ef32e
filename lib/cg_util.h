/* cg_util: small helpers every program needs: ids, time, base64url, a
 * bounded growable buffer. */
#ifndef CG_UTIL_H
#define CG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Fills buf with n bytes from the kernel RNG. Returns 0 or -1. */
int cg_random_bytes(unsigned char *buf, size_t n);

/* Writes a random (v4) lowercase UUID, 36 chars + NUL, into out[37].
 * Returns 0, or -1 when the system RNG fails. */
int cg_uuid4(char out[37]);

/* Writes "<prefix><24 random hex digits>" (e.g. "act_3f…"). out must hold
 * strlen(prefix) + 25 bytes. Returns 0 or -1. */
int cg_random_id(const char *prefix, char *out, size_t outlen);

/* A UUID-shaped lowercase id derived from SHA-256 of `data` (deterministic;
 * version nibble 5, RFC 4122 variant). */
void cg_uuid_from_hash(const void *data, size_t len, char out[37]);

/* RFC 3339 UTC with seconds ("2025-11-16T10:30:00Z") into out[21]. */
void cg_time_rfc3339(time_t t, char out[21]);

/* Seconds since the epoch / monotonic milliseconds. */
time_t cg_now(void);
/* The wall clock in milliseconds since the epoch. */
int64_t cg_now_ms(void);
int64_t cg_monotonic_ms(void);

/* base64url without padding. Encode: returns the length written (excluding
 * the NUL) or -1 when out is too small (needs 4*ceil(n/3)+1). Decode accepts
 * padded or unpadded input; returns the byte count or -1. */
long cg_b64url_encode(const void *in, size_t n, char *out, size_t outlen);
long cg_b64url_decode(const char *in, size_t n, void *out, size_t outlen);

/* Percent-decodes in[0..len) into out, which may be `in` itself and needs
 * len + 1 bytes: "%XX" escapes, and '+' as a space when plus_space. Returns
 * the decoded length (out NUL-terminated; a decoded NUL byte is kept, so a
 * caller that forbids it compares with strlen) or -1 for a malformed escape. */
long cg_pct_decode(const char *in, size_t len, int plus_space, char *out);

/* Formats a reason into err[errlen] (nothing when err is NULL): the
 * caller's-buffer error habit of every module. */
void cg_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A well-mixed 64-bit hash of a string (FNV-1a then a 64-bit finaliser),
 * for in-memory tables; not for anything an attacker must not predict. */
uint64_t cg_hash64(const char *s);

/* Ids that we accept from clients: 1..255 bytes of [A-Za-z0-9_.:-]. */
int cg_id_valid(const char *s);

/* Growable byte buffer with a hard cap (curl's dynbuf habit). */
typedef struct cg_buf {
	char *data;   /* NUL-terminated when len > 0 */
	size_t len;
	size_t cap;   /* allocated */
	size_t max;   /* never grows past this */
} cg_buf;

void cg_buf_init(cg_buf *b, size_t max);
/* Appends; returns 0, or -1 when it would pass `max` or memory runs out
 * (the buffer is unchanged then). */
int cg_buf_append(cg_buf *b, const void *p, size_t n);
int cg_buf_appendf(cg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cg_buf_reset(cg_buf *b);
void cg_buf_free(cg_buf *b);

#endif
