/*
 * ticket — signed, expiring redirect tickets and the keyring that signs and
 * checks them.
 *
 * The design is simple: a ticket is a small binary record (big-endian
 * integers, each string behind its length, a version byte first) followed
 * by HMAC-SHA256 of the record, all in base64url. Binary rather than JSON
 * because every field then has one encoding and a bound known before any
 * byte is read: the decoder reads into a fixed struct ticket and allocates
 * nothing. The HMAC covers the key id, so a ticket cannot be moved to
 * another key, and it is checked (in constant time) before anything the
 * ticket says is believed: an attacker learns "bad signature", never
 * whether a guessed path or server would have passed.
 *
 * A keyring holds a few keys, the current one first. The balancer makes a
 * new random key each time it starts and keeps the one before it, retired,
 * valid for one ticket lifetime after the restart, so that tickets issued
 * just before a crash still open their file; the keys travel to file
 * servers in WELCOME over mTLS and are replaced there on every
 * registration. Each key is prepared once for HMAC (hmac.h: OpenSSL's
 * one-shot HMAC fetches and keys a MAC on every call). The keyring's mutex
 * is held while the keys are replaced and while one MAC is computed (a
 * fraction of a microsecond), so a key is never freed under a thread
 * using it.
 */
#include "convoy/ticket.h"

#include "convoy/b64.h"
#include "convoy/frame.h"
#include "convoy/hmac.h"
#include "convoy/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define TICKET_MAC_LEN HMAC_LEN
/* version, key id, transfer, expiry, method, the three length prefixes */
#define TICKET_FIXED_LEN (1 + 4 + 8 + 8 + 1 + 1 + 1 + 2)
#define TICKET_BIN_MAX                                                                             \
    (TICKET_FIXED_LEN + TICKET_SERVER_MAX + TICKET_USER_MAX + TICKET_PATH_MAX + TICKET_MAC_LEN)

struct ticket_keyring {
    pthread_mutex_t lock;
    struct ticket_keyset set;         /* key[0] is current when its valid_until is 0 */
    hmac_key_t *mac[TICKET_KEYS_MAX]; /* mac[i]: set.key[i] prepared */
};

static const char *const ticket_errs[] = {
    [TICKET_EMISSING - TICKET_EMISSING] = "missing ticket",
    [TICKET_EMALFORMED - TICKET_EMISSING] = "malformed ticket",
    [TICKET_EKEY - TICKET_EMISSING] = "ticket signed by an unknown key",
    [TICKET_ERETIRED - TICKET_EMISSING] = "ticket signed by a retired key",
    [TICKET_ESIG - TICKET_EMISSING] = "bad ticket signature",
    [TICKET_EEXPIRED - TICKET_EMISSING] = "expired ticket",
    [TICKET_ESERVER - TICKET_EMISSING] = "ticket for another server",
    [TICKET_EPATH - TICKET_EMISSING] = "ticket for another path",
    [TICKET_EMETHOD - TICKET_EMISSING] = "ticket for another method",
};

const char *ticket_strerror(int code)
{
    if (code < TICKET_EMISSING || code > TICKET_EMETHOD)
        return "unknown ticket error";
    return ticket_errs[code - TICKET_EMISSING];
}

int ticket_keyring_new(ticket_keyring_t **out)
{
    ticket_keyring_t *kr = calloc(1, sizeof *kr);
    if (kr == NULL)
        return -ENOMEM;
    pthread_mutex_init(&kr->lock, NULL);
    *out = kr;
    return 0;
}

void ticket_keyring_free(ticket_keyring_t *kr)
{
    if (kr == NULL)
        return;
    OPENSSL_cleanse(&kr->set, sizeof kr->set);
    for (uint32_t i = 0; i < TICKET_KEYS_MAX; i++)
        hmac_key_free(kr->mac[i]);
    pthread_mutex_destroy(&kr->lock);
    free(kr);
}

static void ticket_macs_free(hmac_key_t **mac)
{
    for (uint32_t i = 0; i < TICKET_KEYS_MAX; i++) {
        hmac_key_free(mac[i]);
        mac[i] = NULL;
    }
}

/* Makes set the keyring's keys, each prepared first. 0, or hmac_key_new's
 * error with the keyring unchanged. */
static int ticket_replace(ticket_keyring_t *kr, const struct ticket_keyset *set)
{
    hmac_key_t *mac[TICKET_KEYS_MAX] = {0};
    for (uint32_t i = 0; i < set->n; i++) {
        int rc = hmac_key_new(set->key[i].secret, sizeof set->key[i].secret, &mac[i]);
        if (rc < 0) {
            ticket_macs_free(mac);
            return rc;
        }
    }
    pthread_mutex_lock(&kr->lock);
    kr->set = *set;
    for (uint32_t i = 0; i < TICKET_KEYS_MAX; i++) {
        hmac_key_t *old = kr->mac[i];
        kr->mac[i] = mac[i];
        mac[i] = old;
    }
    pthread_mutex_unlock(&kr->lock);
    ticket_macs_free(mac); /* the keys replaced: no thread uses them outside the lock */
    return 0;
}

void ticket_keyring_save(ticket_keyring_t *kr, struct ticket_keyset *out)
{
    pthread_mutex_lock(&kr->lock);
    *out = kr->set;
    pthread_mutex_unlock(&kr->lock);
}

/* Whether one of the first n keys of k has this id. */
static bool ticket_has_id(const struct ticket_key *k, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (k[i].id == id)
            return true;
    return false;
}

/* n in range, ids non-zero and distinct, pads zero, and a current key (if
 * any) only in key[0]. */
static bool ticket_keyset_ok(const struct ticket_keyset *s)
{
    if (s->n > TICKET_KEYS_MAX || s->pad != 0)
        return false;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct ticket_key *k = &s->key[i];
        if (k->id == 0 || k->pad != 0 || ticket_has_id(s->key, i, k->id) ||
            (i > 0 && k->valid_until == 0))
            return false;
    }
    return true;
}

/* Appends k to s unless past its time at now or s is full. */
static void ticket_keep(struct ticket_keyset *s, const struct ticket_key *k, uint64_t now)
{
    if (s->n < TICKET_KEYS_MAX && (k->valid_until == 0 || k->valid_until >= now))
        s->key[s->n++] = *k;
}

/* Sorts retired keys newest (latest valid_until) first, so that when the
 * ring is full the one that expires first is dropped. */
static void ticket_sort_retired(struct ticket_key *k, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && k[j].valid_until > k[j - 1].valid_until; j--) {
            struct ticket_key t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
}

/* A fresh random key whose id (non-zero) is none of the n others'. */
static int ticket_key_make(const struct ticket_key *others, uint32_t n, struct ticket_key *k)
{
    memset(k, 0, sizeof *k);
    do {
        if (RAND_bytes((unsigned char *)&k->id, sizeof k->id) != 1)
            return -EIO;
    } while (k->id == 0 || ticket_has_id(others, n, k->id));
    return RAND_bytes(k->secret, sizeof k->secret) == 1 ? 0 : -EIO;
}

int ticket_keyring_rotate(ticket_keyring_t *kr, const struct ticket_keyset *prev, uint64_t now,
                          uint32_t ttl_s)
{
    struct ticket_keyset old = {0}, next = {0};
    int rc = 0;
    if (prev != NULL && !ticket_keyset_ok(prev))
        return -EINVAL;
    if (prev != NULL)
        old = *prev;
    for (uint32_t i = 0; i < old.n; i++)
        if (old.key[i].valid_until == 0)
            old.key[i].valid_until = now + ttl_s;
    ticket_sort_retired(old.key, old.n);
    next.n = 1;
    for (uint32_t i = 0; i < old.n && next.n < TICKET_KEYS_MAX; i++)
        ticket_keep(&next, &old.key[i], now);
    rc = ticket_key_make(next.key + 1, next.n - 1, &next.key[0]);
    if (rc == 0)
        rc = ticket_replace(kr, &next);
    OPENSSL_cleanse(&old, sizeof old);
    OPENSSL_cleanse(&next, sizeof next);
    return rc;
}

/* The slot of the key with this id (the current key if current), or -1.
 * Under kr->lock. */
static int ticket_slot(const ticket_keyring_t *kr, uint32_t id, bool current)
{
    for (uint32_t i = 0; i < kr->set.n; i++) {
        const struct ticket_key *k = &kr->set.key[i];
        if (current ? k->valid_until == 0 : k->id == id)
            return (int)i;
    }
    return -1;
}

static uint8_t *ticket_put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *ticket_put_str(uint8_t *p, const char *s, size_t len, int lenbytes)
{
    p = ticket_put(p, len, lenbytes);
    memcpy(p, s, len);
    return p + len;
}

/* A string field's length: 1..max bytes before its NUL, else -1. */
static long ticket_str_len(const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);
    return len == 0 || len > max ? -1 : (long)len;
}

/* The record of t (without the MAC) into buf. Returns its length, or
 * -EINVAL for a field out of bounds. */
static long ticket_pack(const struct ticket *t, uint8_t *buf)
{
    long ls = ticket_str_len(t->server, TICKET_SERVER_MAX);
    long lu = ticket_str_len(t->user, TICKET_USER_MAX);
    long lp = ticket_str_len(t->path, TICKET_PATH_MAX);
    if (ls < 0 || lu < 0 || lp < 0 || (t->method != TICKET_GET && t->method != TICKET_HEAD))
        return -EINVAL;
    uint8_t *p = buf;
    p = ticket_put(p, TICKET_VERSION, 1);
    p = ticket_put(p, t->key_id, 4);
    p = ticket_put(p, t->transfer, 8);
    p = ticket_put(p, t->expires, 8);
    p = ticket_put(p, (uint64_t)t->method, 1);
    p = ticket_put_str(p, t->server, (size_t)ls, 1);
    p = ticket_put_str(p, t->user, (size_t)lu, 1);
    p = ticket_put_str(p, t->path, (size_t)lp, 2);
    return p - buf;
}

int ticket_sign(ticket_keyring_t *kr, struct ticket *t, char *out, size_t cap)
{
    uint8_t buf[TICKET_BIN_MAX];
    long n = -ENOKEY;
    pthread_mutex_lock(&kr->lock);
    int i = ticket_slot(kr, 0, true);
    if (i >= 0) {
        t->key_id = kr->set.key[i].id;
        n = ticket_pack(t, buf);
    }
    int rc = n < 0 ? (int)n : hmac_sha256(kr->mac[i], buf, (size_t)n, buf + n);
    pthread_mutex_unlock(&kr->lock);
    if (rc == 0)
        rc = b64_encode(buf, (size_t)n + TICKET_MAC_LEN, B64_URL, out, cap);
    return rc;
}

/* A cursor over the decoded bytes: every read checks what is left first. */
struct ticket_rd {
    const uint8_t *p;
    size_t left;
};

static bool ticket_get(struct ticket_rd *r, int bytes, uint64_t *v)
{
    if (r->left < (size_t)bytes)
        return false;
    *v = 0;
    for (int i = 0; i < bytes; i++)
        *v = *v << 8 | *r->p++;
    r->left -= (size_t)bytes;
    return true;
}

/* A length-prefixed string of 1..max bytes without NUL into dst. */
static bool ticket_get_str(struct ticket_rd *r, int lenbytes, size_t max, char *dst)
{
    uint64_t len;
    if (!ticket_get(r, lenbytes, &len) || len == 0 || len > max || len > r->left ||
        memchr(r->p, '\0', len) != NULL)
        return false;
    memcpy(dst, r->p, len);
    dst[len] = '\0';
    r->p += len;
    r->left -= len;
    return true;
}

/* The record (without the MAC) into t; every byte must be used. */
static bool ticket_unpack(const uint8_t *buf, size_t len, struct ticket *t)
{
    struct ticket_rd r = {buf, len};
    uint64_t version, id, method;
    if (!ticket_get(&r, 1, &version) || version != TICKET_VERSION || !ticket_get(&r, 4, &id) ||
        !ticket_get(&r, 8, &t->transfer) || !ticket_get(&r, 8, &t->expires) ||
        !ticket_get(&r, 1, &method) || (method != TICKET_GET && method != TICKET_HEAD) ||
        !ticket_get_str(&r, 1, TICKET_SERVER_MAX, t->server) ||
        !ticket_get_str(&r, 1, TICKET_USER_MAX, t->user) ||
        !ticket_get_str(&r, 2, TICKET_PATH_MAX, t->path) || r.left != 0)
        return false;
    t->key_id = (uint32_t)id;
    t->method = (enum ticket_method)method;
    return true;
}

static int ticket_why(char *why, size_t whylen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the detail (escaped: it may quote ticket fields) and returns code. */
static int ticket_why(char *why, size_t whylen, int code, const char *fmt, ...)
{
    char raw[TICKET_PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    if (why != NULL && whylen > 0)
        log_escape(why, whylen, raw, n < 0 ? 0 : strnlen(raw, sizeof raw));
    return code;
}

static const char *ticket_method_str(enum ticket_method m)
{
    return m == TICKET_HEAD ? "HEAD" : "GET";
}

/* The MAC of the len bytes of data under key id into mac, with the key's
 * retirement (0: current) into *valid_until. 0, TICKET_EKEY, or -EIO. */
static int ticket_mac_of(ticket_keyring_t *kr, uint32_t id, const uint8_t *data, size_t len,
                         uint8_t mac[TICKET_MAC_LEN], uint64_t *valid_until)
{
    int rc = TICKET_EKEY;
    pthread_mutex_lock(&kr->lock);
    int i = ticket_slot(kr, id, false);
    if (i >= 0) {
        *valid_until = kr->set.key[i].valid_until;
        rc = hmac_sha256(kr->mac[i], data, len, mac);
    }
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

/* Decodes text and checks its key and HMAC: the ticket is then genuine. */
static int ticket_open(ticket_keyring_t *kr, const char *text, size_t len, uint64_t now,
                       struct ticket *t, char *why, size_t whylen)
{
    uint8_t buf[TICKET_TEXT_MAX / 4 * 3], mac[TICKET_MAC_LEN];
    uint64_t valid_until = 0;
    if (text == NULL || len == 0)
        return ticket_why(why, whylen, TICKET_EMISSING, "no ticket (?t=)");
    if (len > TICKET_TEXT_MAX)
        return ticket_why(why, whylen, TICKET_EMALFORMED, "longer than %d characters",
                          TICKET_TEXT_MAX);
    int n = b64_decode(text, len, B64_URL, buf, sizeof buf);
    if (n < 0)
        return ticket_why(why, whylen, TICKET_EMALFORMED, "not base64url");
    if (n <= TICKET_MAC_LEN || !ticket_unpack(buf, (size_t)n - TICKET_MAC_LEN, t))
        return ticket_why(why, whylen, TICKET_EMALFORMED, "bad fields");
    int rc = ticket_mac_of(kr, t->key_id, buf, (size_t)n - TICKET_MAC_LEN, mac, &valid_until);
    if (rc == TICKET_EKEY)
        return ticket_why(why, whylen, TICKET_EKEY, "key %u unknown", t->key_id);
    if (valid_until != 0 && now > valid_until)
        return ticket_why(why, whylen, TICKET_ERETIRED, "key %u retired %llu s ago", t->key_id,
                          (unsigned long long)(now - valid_until));
    if (rc != 0)
        return ticket_why(why, whylen, TICKET_ESIG, "HMAC failed");
    if (CRYPTO_memcmp(mac, buf + n - TICKET_MAC_LEN, TICKET_MAC_LEN) != 0)
        return ticket_why(why, whylen, TICKET_ESIG, "signature does not match key %u", t->key_id);
    return 0;
}

int ticket_verify(ticket_keyring_t *kr, const char *text, size_t len, uint64_t now,
                  const char *expect_server, const char *expect_path,
                  enum ticket_method expect_method, struct ticket *out, char *why, size_t whylen)
{
    struct ticket t;
    int rc = ticket_open(kr, text, len, now, &t, why, whylen);
    if (rc != 0)
        return rc;
    if (now > t.expires)
        return ticket_why(why, whylen, TICKET_EEXPIRED, "expired %llu s ago",
                          (unsigned long long)(now - t.expires));
    if (strcmp(t.server, expect_server) != 0)
        return ticket_why(why, whylen, TICKET_ESERVER, "ticket is for server '%s'", t.server);
    if (strcmp(t.path, expect_path) != 0)
        return ticket_why(why, whylen, TICKET_EPATH, "ticket is for path '%s'", t.path);
    if (t.method != expect_method)
        return ticket_why(why, whylen, TICKET_EMETHOD, "ticket is for %s",
                          ticket_method_str(t.method));
    if (out != NULL)
        *out = t;
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    return 0;
}

/* {"id": …, "key": …, "valid_until": …} for one key. */
static cJSON *ticket_key_json(const struct ticket_key *k)
{
    char text[TICKET_KEY_LEN * 2];
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL && b64_encode(k->secret, sizeof k->secret, B64_URL, text, sizeof text) > 0 &&
             cJSON_AddNumberToObject(o, "id", k->id) != NULL &&
             cJSON_AddStringToObject(o, "key", text) != NULL &&
             cJSON_AddNumberToObject(o, "valid_until", (double)k->valid_until) != NULL;
    OPENSSL_cleanse(text, sizeof text);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int ticket_keyring_to_json(ticket_keyring_t *kr, cJSON *meta)
{
    struct ticket_keyset s;
    int rc = -ENOMEM;
    ticket_keyring_save(kr, &s);
    cJSON *arr = cJSON_CreateArray();
    for (uint32_t i = 0; arr != NULL && i < s.n; i++) {
        cJSON *o = ticket_key_json(&s.key[i]);
        if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            goto fail;
        }
    }
    if (arr != NULL && cJSON_AddItemToObject(meta, TICKET_WELCOME_FIELD, arr)) {
        arr = NULL;
        rc = 0;
    }
fail:
    cJSON_Delete(arr);
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

static int ticket_json_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ticket_json_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why != NULL && whylen > 0)
        vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* One element of the WELCOME array into k. */
static int ticket_key_read(const cJSON *o, size_t i, struct ticket_key *k, char *why, size_t whylen)
{
    static const struct frame_field fields[] = {
        {"id", FF_U32, true}, {"key", FF_STRING, true}, {"valid_until", FF_UINT, true}};
    char reason[128];
    if (frame_meta_check(o, fields, 3, reason, sizeof reason) != 0)
        return ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD "[%zu]: %s", i, reason);
    const char *text = cJSON_GetObjectItemCaseSensitive(o, "key")->valuestring;
    memset(k, 0, sizeof *k);
    k->id = (uint32_t)cJSON_GetObjectItemCaseSensitive(o, "id")->valuedouble;
    k->valid_until = (uint64_t)cJSON_GetObjectItemCaseSensitive(o, "valid_until")->valuedouble;
    if (k->id == 0)
        return ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD "[%zu]: id 0", i);
    if (b64_decode(text, strnlen(text, TICKET_KEY_LEN * 2), B64_URL, k->secret, sizeof k->secret) !=
        TICKET_KEY_LEN)
        return ticket_json_fail(why, whylen,
                                TICKET_WELCOME_FIELD "[%zu]: key is not 32 bytes of base64url", i);
    return 0;
}

/* Reads the array into s (current key first, expired ones dropped). */
static int ticket_keys_read(const cJSON *arr, uint64_t now, struct ticket_keyset *s, char *why,
                            size_t whylen)
{
    struct ticket_keyset all = {0};
    const cJSON *o;
    int rc = 0, ncur = 0;
    cJSON_ArrayForEach(o, arr)
    {
        struct ticket_key *k = &all.key[all.n];
        if ((rc = ticket_key_read(o, all.n, k, why, whylen)) != 0)
            goto fail;
        if (ticket_has_id(all.key, all.n, k->id)) {
            rc = ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD "[%u]: id %u repeated", all.n,
                                  k->id);
            goto fail;
        }
        ncur += k->valid_until == 0;
        all.n++;
    }
    if (ncur > 1) {
        rc = ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD ": %d current keys", ncur);
        goto fail;
    }
    for (int pass = 0; pass < 2; pass++) /* the current key first */
        for (uint32_t i = 0; i < all.n; i++)
            if ((all.key[i].valid_until == 0) == (pass == 0))
                ticket_keep(s, &all.key[i], now);
fail:
    OPENSSL_cleanse(&all, sizeof all);
    return rc;
}

int ticket_keyring_from_json(ticket_keyring_t *kr, const cJSON *meta, uint64_t now, char *why,
                             size_t whylen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(meta, TICKET_WELCOME_FIELD);
    struct ticket_keyset s = {0};
    if (!cJSON_IsArray(arr))
        return ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD ": missing or not an array");
    int n = cJSON_GetArraySize(arr);
    if (n < 1 || n > TICKET_KEYS_MAX)
        return ticket_json_fail(why, whylen, TICKET_WELCOME_FIELD ": %d keys, expected 1 to %d", n,
                                TICKET_KEYS_MAX);
    int rc = ticket_keys_read(arr, now, &s, why, whylen);
    if (rc == 0 && (rc = ticket_replace(kr, &s)) < 0)
        ticket_json_fail(why, whylen, "cannot prepare the keys: %s", strerror(-rc));
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}
