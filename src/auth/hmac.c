/*
 * hmac — HMAC-SHA256 under a key prepared once.
 *
 * The design is simple: hmac_key_new fetches OpenSSL's HMAC with SHA-256
 * and keys a context with it, once; hmac_sha256 duplicates that context, feeds
 * the data to the copy and frees it. The duplicate is what makes the key
 * shareable: the prepared context is never fed, so it stays the keyed
 * starting state, and EVP_MAC_CTX_dup only reads it.
 */
#include "convoy/hmac.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct hmac_key {
    EVP_MAC_CTX *ctx; /* keyed, never fed: the state every MAC starts from */
};

int hmac_key_new(const uint8_t *key, size_t len, hmac_key_t **out)
{
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (len == 0)
        return -EINVAL;
    hmac_key_t *k = calloc(1, sizeof *k);
    if (k == NULL)
        return -ENOMEM;
    int rc = -EIO;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (mac == NULL || (k->ctx = EVP_MAC_CTX_new(mac)) == NULL ||
        EVP_MAC_init(k->ctx, key, len, params) != 1)
        goto fail;
    EVP_MAC_free(mac); /* the context holds its own reference */
    *out = k;
    return 0;
fail:
    EVP_MAC_free(mac);
    hmac_key_free(k);
    return rc;
}

void hmac_key_free(hmac_key_t *k)
{
    if (k == NULL)
        return;
    EVP_MAC_CTX_free(k->ctx); /* wipes the key it holds */
    free(k);
}

int hmac_sha256(const hmac_key_t *k, const void *data, size_t len, uint8_t out[HMAC_LEN])
{
    size_t n = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->ctx);
    if (c == NULL)
        return -ENOMEM;
    int ok = EVP_MAC_update(c, data, len) == 1 && EVP_MAC_final(c, out, &n, HMAC_LEN) == 1 &&
             n == HMAC_LEN;
    EVP_MAC_CTX_free(c);
    return ok ? 0 : -EIO;
}
