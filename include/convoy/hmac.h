/*
 * hmac — HMAC-SHA256 under a key prepared once.
 *
 * OpenSSL 3's one-shot HMAC() fetches the MAC and the digest from the
 * provider store, keys a new context and frees it all again on every
 * call: about 1.2 µs, most of it the fetches. A prepared key holds a
 * context fetched and keyed once, and working contexts it hands out and
 * takes back: a MAC is then about 0.25 µs. One key serves any number of
 * threads at once.
 */
#ifndef CONVOY_HMAC_H
#define CONVOY_HMAC_H

#include <stddef.h>
#include <stdint.h>

#define HMAC_LEN 32 /* bytes of an HMAC-SHA256 */

typedef struct hmac_key hmac_key_t;

/* Prepares key (len bytes, copied). 0, -EINVAL for an empty key, -ENOMEM,
 * or -EIO when OpenSSL refuses. The caller frees *out with hmac_key_free. */
int hmac_key_new(const uint8_t *key, size_t len, hmac_key_t **out);

/* Frees k and wipes its key; NULL is a no-op. No hmac_sha256 may be running
 * with k. */
void hmac_key_free(hmac_key_t *k);

/* HMAC-SHA256 of the len bytes of data under k into out. Thread-safe: k's
 * own lock is held only to take and give back a working context. 0,
 * -ENOMEM, or -EIO. */
int hmac_sha256(hmac_key_t *k, const void *data, size_t len, uint8_t out[HMAC_LEN]);

#endif
