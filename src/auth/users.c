/*
 * users — the users file, credential checks, a cache of verified passwords
 * and brute-force slowing.
 *
 * The design is simple: the file is read once into an array sorted by name
 * (and an index sorted by token hash), which nothing changes afterwards, so
 * lookups need no lock. What does change, the cache and the failure
 * counters, lives in two fixed-size tables under one mutex held for a
 * probe of a few slots; the slow part, scrypt, runs outside it on whatever
 * thread calls users_verify, with everything it needs copied into the
 * request's users_check.
 *
 * Passwords are hashed with scrypt through OpenSSL's EVP_KDF, N = 2^14,
 * r = 8, p = 1 (16 MiB, about 50 ms here), and stored in the PHC string
 * format with their parameters, so that raising them later still verifies
 * old hashes. A user name that does not exist pays the same hash against a
 * dummy, so response time does not tell which names exist. API tokens are
 * 256 random bits: the file keeps only their SHA-256, and a token is looked
 * up by its hash in a sorted index (the hash is public knowledge of no use
 * to an attacker, so a binary search's timing reveals nothing).
 *
 * The cache maps HMAC-SHA256(random per-process key, header value) to the
 * user for USERS_CACHE_S: a header that verified once skips the hash, and
 * the table holds no password nor anything a password could be tested
 * against offline. The throttle counts failures per client address (IPv6 by
 * its /64) and per user name: from the USERS_FREE_FAILURES-th failure on,
 * the key is blocked for 1, 2, 4 … USERS_BLOCK_MAX_S seconds, and checks in
 * flight count as failures until they finish, so parallel guesses cannot
 * slip past the limit. Blocked checks are answered without looking at the
 * password. Both tables are open-addressed with a short probe window keyed
 * by the per-process key, reusing the stalest slot when full: memory is
 * fixed whatever the attacker sends, and a cache hit (an exact header that
 * verified before) is answered before the throttle, so a user whose name
 * is under attack keeps working from the clients already logged in.
 */
#include "convoy/users.h"

#include "convoy/b64.h"
#include "convoy/frame.h"
#include "convoy/hex.h"
#include "convoy/hmac.h"
#include "convoy/pki.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define USERS_LN            14 /* scrypt N = 2^14 for new hashes */
#define USERS_R             8
#define USERS_P             1
#define USERS_SCRYPT_MEM    (256u << 20) /* refuse stored parameters needing more */
#define USERS_SALT_LEN      16
#define USERS_HASH_LEN      32
#define USERS_FILE_MAX      (16u << 20) /* bytes of a users file */
#define USERS_LINE_MAX      4096
#define USERS_PHC_MAX       128
#define USERS_CACHE_SLOTS   1024
#define USERS_THR_SLOTS     4096
#define USERS_PROBE         8       /* slots a key may occupy in either table */
#define USERS_FREE_FAILURES 5       /* failures before a key is blocked */
#define USERS_BLOCK_MAX_S   256     /* the longest block */
#define USERS_FORGET_MS     900000u /* failures are forgotten after 15 quiet minutes */

struct users_entry {
    char name[USERS_NAME_MAX + 1];
    enum users_role role;
    uint8_t ln, r, p;
    uint8_t salt[USERS_SALT_LEN];
    uint8_t hash[USERS_HASH_LEN];
    bool has_token;
    uint8_t token[32]; /* SHA-256 of the token text */
};

struct users_tok {
    uint8_t hash[32];
    uint32_t idx; /* in users.e */
};

struct users_cached {
    uint8_t key[32];
    uint64_t expires_ms; /* 0: free */
    char name[USERS_NAME_MAX + 1];
    enum users_role role;
};

/* A throttle key: a client address or a user name. */
struct users_tkey {
    uint8_t kind; /* 1 address, 2 user */
    uint8_t len;
    uint8_t data[USERS_NAME_MAX + 1];
};

struct users_thr {
    struct users_tkey key;
    uint32_t failures;
    uint32_t pending;    /* checks prepared and not finished */
    uint64_t last_ms;    /* last failure or prepare; 0: free */
    uint64_t blocked_ms; /* no check before this */
};

struct users {
    struct users_entry *e; /* sorted by name */
    size_t n, cap;
    struct users_tok *by_token; /* users with a token, sorted by its hash */
    size_t ntok;
    hmac_key_t *key; /* a random per-process key: cache keys and table slots */
    pthread_mutex_t lock;
    struct users_cached cache[USERS_CACHE_SLOTS];
    struct users_thr thr[USERS_THR_SLOTS];
};

static const char *const users_roles[] = {"read", "submit", "admin"};

const char *users_role_str(enum users_role r)
{
    return (unsigned)r < 3 ? users_roles[r] : "unknown";
}

int users_role_parse(const char *s, enum users_role *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, users_roles[i]) == 0) {
            *out = (enum users_role)i;
            return 0;
        }
    return -EINVAL;
}

bool users_role_allows(enum users_role have, enum users_role need)
{
    return have == need || have == USERS_ADMIN;
}

const char *users_result_str(enum users_result r)
{
    static const char *const s[] = {
        "ok", "pending", "missing credentials", "malformed credentials", "denied", "throttled"};
    return (unsigned)r < sizeof s / sizeof s[0] ? s[r] : "unknown";
}

static int users_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "users: <reason>" into err; returns rc. */
static int users_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return rc;
    int n = snprintf(err, errlen, "users: ");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

/* A user name: the same rule as a node name (pki.h). */
static bool users_name_ok(const char *s, size_t len)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    if (len == 0 || len > USERS_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\0' || strchr(ok, s[i]) == NULL)
            return false;
    return true;
}

/* ---- scrypt and the PHC string ---- */

static int users_scrypt(const char *pw, size_t pwlen, const uint8_t *salt, uint8_t ln, uint8_t r,
                        uint8_t p, uint8_t out[USERS_HASH_LEN])
{
    uint64_t n = (uint64_t)1 << ln, maxmem = 2ull * USERS_SCRYPT_MEM;
    uint32_t r32 = r, p32 = p;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, pwlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, USERS_SALT_LEN),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end()};
    int rc = ctx != NULL && EVP_KDF_derive(ctx, out, USERS_HASH_LEN, params) == 1 ? 0 : -EIO;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* Parameters we are willing to run: memory 128·r·N within the limit. */
static bool users_params_ok(unsigned ln, unsigned r, unsigned p)
{
    return ln >= 10 && ln <= 22 && r >= 1 && r <= 32 && p >= 1 && p <= 16 &&
           128ull * r << ln <= USERS_SCRYPT_MEM;
}

static int users_phc_write(const struct users_entry *e, char *out, size_t cap)
{
    char salt[32], hash[48];
    b64_encode(e->salt, sizeof e->salt, B64_STD_RAW, salt, sizeof salt);
    b64_encode(e->hash, sizeof e->hash, B64_STD_RAW, hash, sizeof hash);
    int n = snprintf(out, cap, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", e->ln, e->r, e->p, salt, hash);
    return n > 0 && (size_t)n < cap ? 0 : -ENOSPC;
}

/* "$scrypt$ln=L,r=R,p=P$salt$hash" into e; only the canonical form (what
 * users_phc_write makes of what it read) is accepted. */
static int users_phc_read(const char *s, struct users_entry *e)
{
    unsigned ln, r, p;
    int off = 0;
    char again[USERS_PHC_MAX];
    if (strlen(s) >= USERS_PHC_MAX ||
        sscanf(s, "$scrypt$ln=%2u,r=%2u,p=%2u$%n", &ln, &r, &p, &off) != 3 || off == 0 ||
        !users_params_ok(ln, r, p))
        return -EINVAL;
    const char *salt = s + off, *dollar = strchr(salt, '$');
    if (dollar == NULL ||
        b64_decode(salt, (size_t)(dollar - salt), B64_STD_RAW, e->salt, sizeof e->salt) !=
            USERS_SALT_LEN ||
        b64_decode(dollar + 1, strlen(dollar + 1), B64_STD_RAW, e->hash, sizeof e->hash) !=
            USERS_HASH_LEN)
        return -EINVAL;
    e->ln = (uint8_t)ln, e->r = (uint8_t)r, e->p = (uint8_t)p;
    if (users_phc_write(e, again, sizeof again) != 0 || strcmp(again, s) != 0)
        return -EINVAL;
    return 0;
}

static int users_hex_read(const char *s, uint8_t out[32])
{
    if (strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64)
        return -EINVAL;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* ---- the database ---- */

int users_new(users_t **out)
{
    uint8_t key[HMAC_LEN];
    users_t *db = calloc(1, sizeof *db);
    if (db == NULL)
        return -ENOMEM;
    int rc = RAND_bytes(key, sizeof key) == 1 ? hmac_key_new(key, sizeof key, &db->key) : -EIO;
    OPENSSL_cleanse(key, sizeof key);
    if (rc < 0) {
        free(db);
        return rc;
    }
    pthread_mutex_init(&db->lock, NULL);
    *out = db;
    return 0;
}

void users_free(users_t *db)
{
    if (db == NULL)
        return;
    if (db->e != NULL)
        OPENSSL_cleanse(db->e, db->cap * sizeof *db->e);
    free(db->e);
    free(db->by_token);
    hmac_key_free(db->key);
    pthread_mutex_destroy(&db->lock);
    OPENSSL_cleanse(db, sizeof *db);
    free(db);
}

size_t users_count(users_t *db)
{
    return db->n;
}

static int users_cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct users_entry *)a)->name, ((const struct users_entry *)b)->name);
}

static struct users_entry *users_find(users_t *db, const char *name)
{
    struct users_entry k;
    if (db->n == 0)
        return NULL; /* db->e may be NULL, which bsearch must not see */
    snprintf(k.name, sizeof k.name, "%s", name);
    return bsearch(&k, db->e, db->n, sizeof *db->e, users_cmp_name);
}

static int users_cmp_token(const void *a, const void *b)
{
    return memcmp(((const struct users_tok *)a)->hash, ((const struct users_tok *)b)->hash, 32);
}

/* Sorts by name and builds the token index; refuses repeated names and
 * tokens. */
static int users_index(users_t *db, char *err, size_t errlen)
{
    if (db->n > 0)
        qsort(db->e, db->n, sizeof *db->e, users_cmp_name);
    free(db->by_token);
    db->ntok = 0;
    db->by_token = calloc(db->n ? db->n : 1, sizeof *db->by_token);
    if (db->by_token == NULL)
        return users_fail(err, errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < db->n; i++) {
        if (i > 0 && strcmp(db->e[i - 1].name, db->e[i].name) == 0)
            return users_fail(err, errlen, -EINVAL, "user '%s' appears twice", db->e[i].name);
        if (!db->e[i].has_token)
            continue;
        memcpy(db->by_token[db->ntok].hash, db->e[i].token, 32);
        db->by_token[db->ntok++].idx = (uint32_t)i;
    }
    qsort(db->by_token, db->ntok, sizeof *db->by_token, users_cmp_token);
    for (size_t i = 1; i < db->ntok; i++)
        if (memcmp(db->by_token[i - 1].hash, db->by_token[i].hash, 32) == 0)
            return users_fail(err, errlen, -EINVAL, "two users share a token");
    return 0;
}

static struct users_entry *users_append(users_t *db)
{
    if (db->n == db->cap) {
        size_t cap = db->cap ? db->cap * 2 : 16;
        struct users_entry *e = realloc(db->e, cap * sizeof *e);
        if (e == NULL)
            return NULL;
        db->e = e;
        db->cap = cap;
    }
    struct users_entry *e = &db->e[db->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* One line of the file, a JSON object, into e. */
static int users_parse_line(const char *line, struct users_entry *e, char *why, size_t whylen)
{
    static const struct frame_field fields[] = {{"user", FF_STRING, true},
                                                {"role", FF_STRING, true},
                                                {"password", FF_STRING, true},
                                                {"token", FF_STRING, false}};
    int rc = -EINVAL;
    cJSON *o = cJSON_Parse(line);
    if (o == NULL) {
        snprintf(why, whylen, "not JSON");
        goto fail;
    }
    if (frame_meta_check(o, fields, 4, why, whylen) != 0)
        goto fail;
    const char *name = cJSON_GetObjectItemCaseSensitive(o, "user")->valuestring;
    const char *role = cJSON_GetObjectItemCaseSensitive(o, "role")->valuestring;
    const char *pw = cJSON_GetObjectItemCaseSensitive(o, "password")->valuestring;
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(o, "token");
    if (!users_name_ok(name, strlen(name)))
        snprintf(why, whylen, "bad user name");
    else if (users_role_parse(role, &e->role) != 0)
        snprintf(why, whylen, "unknown role '%.16s'", role);
    else if (users_phc_read(pw, e) != 0)
        snprintf(why, whylen, "password is not a scrypt hash this version reads");
    else if (token != NULL && users_hex_read(token->valuestring, e->token) != 0)
        snprintf(why, whylen, "token is not 64 hex digits");
    else
        rc = 0;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->has_token = token != NULL;
fail:
    cJSON_Delete(o);
    return rc;
}

/* Splits buf (NUL-terminated) into lines and parses each into db. */
static int users_parse(users_t *db, char *buf, const char *path, char *err, size_t errlen)
{
    char *line = buf;
    for (unsigned no = 1; *line != '\0'; no++) {
        char *nl = strchr(line, '\n'), why[160] = "";
        if (nl == NULL)
            return users_fail(err, errlen, -EINVAL, "%s:%u: no newline at the end", path, no);
        *nl = '\0';
        struct users_entry *e = users_append(db);
        if (e == NULL)
            return users_fail(err, errlen, -ENOMEM, "out of memory");
        if ((size_t)(nl - line) > USERS_LINE_MAX || users_parse_line(line, e, why, sizeof why))
            return users_fail(err, errlen, -EINVAL, "%s:%u: %s", path, no,
                              why[0] ? why : "line too long");
        line = nl + 1;
    }
    return users_index(db, err, errlen);
}

/* The whole file, checked as a secret (mode 0600, ours), NUL-terminated. */
static int users_slurp(const char *path, char **out, char *err, size_t errlen)
{
    char why[512];
    struct stat st;
    char *buf = NULL;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return users_fail(err, errlen, -errno, "open %s: %s", path, strerror(errno));
    if ((rc = pki_check_file(fd, path, true, why, sizeof why)) != 0) {
        users_fail(err, errlen, rc, "%s", why);
        goto fail;
    }
    rc = fstat(fd, &st) != 0 ? -errno : st.st_size > USERS_FILE_MAX ? -EFBIG : 0;
    if (rc == 0 && (buf = malloc((size_t)st.st_size + 1)) == NULL)
        rc = -ENOMEM;
    ssize_t n = rc == 0 ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
    if (rc == 0 && n != st.st_size)
        rc = n < 0 ? -errno : -EIO;
    if (rc != 0) {
        users_fail(err, errlen, rc, "read %s: %s", path, strerror(-rc));
        goto fail;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n) != NULL) {
        rc = users_fail(err, errlen, -EINVAL, "%s: holds a NUL byte", path);
        goto fail;
    }
    *out = buf;
    buf = NULL;
fail:
    free(buf);
    close(fd);
    return rc;
}

int users_load(users_t **out, const char *path, char *err, size_t errlen)
{
    users_t *db = NULL;
    char *buf = NULL;
    int rc = users_slurp(path, &buf, err, errlen);
    if (rc == 0 && (rc = users_new(&db)) != 0)
        users_fail(err, errlen, rc, "out of memory");
    if (rc == 0)
        rc = users_parse(db, buf, path, err, errlen);
    if (buf != NULL)
        OPENSSL_cleanse(buf, strlen(buf));
    free(buf);
    if (rc != 0) {
        users_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void users_each(users_t *db,
                void (*fn)(void *arg, const char *name, enum users_role role, bool has_token),
                void *arg)
{
    for (size_t i = 0; i < db->n; i++)
        fn(arg, db->e[i].name, db->e[i].role, db->e[i].has_token);
}

/* ---- the cache and the throttle ---- */

/* The first slot of a throttle key's probe window: keyed, so a client
 * cannot aim its keys at one window to evict another's entry. Should the
 * HMAC fail (no memory) the window is slot 0's: lookups compare whole keys
 * and stay right, only that spread is lost. */
static size_t users_slot(const users_t *db, const struct users_tkey *k)
{
    uint8_t mac[HMAC_LEN];
    uint64_t v = 0;
    if (hmac_sha256(db->key, k, sizeof *k, mac) == 0)
        memcpy(&v, mac, sizeof v);
    return (size_t)(v % USERS_THR_SLOTS);
}

static struct users_cached *users_cache_find(users_t *db, const uint8_t key[32], uint64_t now_ms,
                                             bool make)
{
    uint64_t v;
    memcpy(&v, key, sizeof v); /* already a keyed hash */
    size_t first = (size_t)(v % USERS_CACHE_SLOTS);
    struct users_cached *stale = NULL;
    for (size_t i = 0; i < USERS_PROBE; i++) {
        struct users_cached *c = &db->cache[(first + i) % USERS_CACHE_SLOTS];
        if (c->expires_ms > now_ms && memcmp(c->key, key, 32) == 0)
            return c;
        if (stale == NULL || c->expires_ms < stale->expires_ms)
            stale = c;
    }
    return make ? stale : NULL;
}

static struct users_thr *users_thr_find(users_t *db, const struct users_tkey *k, uint64_t now_ms,
                                        bool make)
{
    size_t first = users_slot(db, k);
    struct users_thr *stale = NULL;
    for (size_t i = 0; i < USERS_PROBE; i++) {
        struct users_thr *t = &db->thr[(first + i) % USERS_THR_SLOTS];
        if (t->last_ms != 0 && now_ms - t->last_ms > USERS_FORGET_MS && t->pending == 0)
            memset(t, 0, sizeof *t);
        if (t->last_ms != 0 && memcmp(&t->key, k, sizeof *k) == 0)
            return t;
        if (stale == NULL || t->last_ms < stale->last_ms)
            stale = t;
    }
    if (!make)
        return NULL;
    memset(stale, 0, sizeof *stale);
    stale->key = *k;
    stale->last_ms = now_ms;
    return stale;
}

/* Milliseconds until key may try again (0: now). Once a key has failed,
 * checks in flight count as failures, so parallel guesses cannot outrun
 * the count; a key that never failed (a client opening many connections
 * at its first login) is not held back. */
static uint64_t users_thr_wait(users_t *db, const struct users_tkey *k, uint64_t now_ms)
{
    struct users_thr *t = users_thr_find(db, k, now_ms, false);
    if (t == NULL)
        return 0;
    if (t->blocked_ms > now_ms)
        return t->blocked_ms - now_ms;
    if (t->failures > 0 && t->pending > 0 && t->failures + t->pending >= USERS_FREE_FAILURES)
        return 1000; /* earlier guesses are still being checked */
    return 0;
}

/* The outcome of a check for key at now: a failure counts and may block,
 * reset forgets earlier failures; pending_done when the check had been
 * counted as in flight. */
static void users_thr_record(users_t *db, const struct users_tkey *k, bool failed, bool reset,
                             bool pending_done, uint64_t now_ms)
{
    struct users_thr *t = users_thr_find(db, k, now_ms, failed);
    if (t == NULL)
        return;
    if (pending_done && t->pending > 0)
        t->pending--;
    if (reset) {
        t->failures = 0;
        t->blocked_ms = 0;
    }
    if (!failed)
        return;
    t->failures++;
    t->last_ms = now_ms;
    if (t->failures >= USERS_FREE_FAILURES) {
        uint32_t shift = t->failures - USERS_FREE_FAILURES;
        uint64_t s = shift >= 8 ? USERS_BLOCK_MAX_S : 1u << shift;
        t->blocked_ms = now_ms + s * 1000;
    }
}

static void users_thr_pending(users_t *db, const struct users_tkey *k, uint64_t now_ms)
{
    struct users_thr *t = users_thr_find(db, k, now_ms, true);
    t->pending++;
    t->last_ms = now_ms;
}

static void users_tkey_user(struct users_tkey *k, const char *name)
{
    memset(k, 0, sizeof *k);
    k->kind = 2;
    k->len = (uint8_t)strnlen(name, USERS_NAME_MAX);
    memcpy(k->data, name, k->len);
}

static void users_tkey_addr(struct users_tkey *k, const struct users_check *c)
{
    memset(k, 0, sizeof *k);
    k->kind = 1;
    k->len = sizeof c->priv.addr;
    memcpy(k->data, c->priv.addr, sizeof c->priv.addr);
}

/* The client's address for throttling: IPv4 whole, IPv6 by its /64 (one
 * host usually holds the whole prefix). */
static void users_peer(struct users_check *c, const struct net_addr *peer)
{
    c->priv.has_addr = false;
    if (peer == NULL)
        return;
    if (peer->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&peer->ss;
        memcpy(c->priv.addr, &in->sin_addr, 4);
        c->priv.has_addr = true;
    } else if (peer->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&peer->ss;
        memcpy(c->priv.addr, &in6->sin6_addr, 8);
        c->priv.addr[15] = 6;
        c->priv.has_addr = true;
    }
}

/* ---- the checks ---- */

static enum users_result users_set(struct users_check *c, enum users_result r)
{
    c->result = r;
    return r;
}

/* The larger wait of the address and the user, under the lock. */
static uint64_t users_wait(users_t *db, struct users_check *c, const char *name, uint64_t now_ms)
{
    struct users_tkey k;
    uint64_t w = 0;
    if (c->priv.has_addr) {
        users_tkey_addr(&k, c);
        w = users_thr_wait(db, &k, now_ms);
    }
    if (name != NULL) {
        users_tkey_user(&k, name);
        uint64_t wu = users_thr_wait(db, &k, now_ms);
        w = wu > w ? wu : w;
    }
    return w;
}

static enum users_result users_throttled(struct users_check *c, uint64_t wait_ms)
{
    c->retry_after_s = (uint32_t)((wait_ms + 999) / 1000);
    return users_set(c, USERS_THROTTLED);
}

/* Records the outcome for the address and (name != NULL) the user. A
 * success forgets the user's failures, not the address's: an attacker
 * holding one account of its own cannot clear its address's count. */
static void users_record(users_t *db, struct users_check *c, const char *name, bool ok,
                         bool pending, uint64_t now_ms)
{
    struct users_tkey k;
    if (c->priv.has_addr) {
        users_tkey_addr(&k, c);
        users_thr_record(db, &k, !ok, false, pending, now_ms);
    }
    if (name != NULL) {
        users_tkey_user(&k, name);
        users_thr_record(db, &k, !ok, ok, pending, now_ms);
    }
}

/* Whether the len bytes of s (not NUL-terminated: a header slice) are
 * base64url characters. */
static bool users_b64url_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!(s[i] >= 'A' && s[i] <= 'Z') && !(s[i] >= 'a' && s[i] <= 'z') &&
            !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

static enum users_result users_bearer(users_t *db, const char *tok, size_t len,
                                      struct users_check *c, uint64_t now_ms)
{
    uint8_t h[32];
    if (len != USERS_TOKEN_LEN || !users_b64url_ok(tok, len))
        return users_set(c, USERS_MALFORMED);
    EVP_Digest(tok, len, h, NULL, EVP_sha256(), NULL);
    struct users_tok key;
    memcpy(key.hash, h, sizeof h);
    const struct users_tok *t =
        bsearch(&key, db->by_token, db->ntok, sizeof *db->by_token, users_cmp_token);
    if (t != NULL) {
        snprintf(c->user, sizeof c->user, "%s", db->e[t->idx].name);
        c->role = db->e[t->idx].role;
        return users_set(c, USERS_OK);
    }
    pthread_mutex_lock(&db->lock);
    users_record(db, c, NULL, false, false, now_ms);
    pthread_mutex_unlock(&db->lock);
    return users_set(c, USERS_DENIED);
}

/* Wipes the password the check holds: its bytes and NUL, not the whole
 * buffer (OPENSSL_cleanse goes a byte at a time). */
static void users_forget_password(struct users_check *c)
{
    size_t n = c->priv.password_len + 1;
    OPENSSL_cleanse(c->priv.password, n < sizeof c->priv.password ? n : sizeof c->priv.password);
    c->priv.password_len = 0;
}

/* "user:password" from the base64 of Basic into c (name, password). */
static enum users_result users_basic_parse(const char *b64, size_t len, struct users_check *c)
{
    uint8_t buf[USERS_HEADER_MAX];
    int n = b64_decode(b64, len, B64_STD, buf, sizeof buf);
    const uint8_t *colon = n > 0 ? memchr(buf, ':', (size_t)n) : NULL;
    enum users_result r = USERS_MALFORMED;
    if (colon == NULL)
        goto fail;
    size_t ulen = (size_t)(colon - buf), plen = (size_t)n - ulen - 1;
    if (!users_name_ok((const char *)buf, ulen) || plen == 0 || plen > USERS_PASSWORD_MAX ||
        memchr(colon + 1, '\0', plen) != NULL)
        goto fail;
    memcpy(c->user, buf, ulen);
    c->user[ulen] = '\0';
    memcpy(c->priv.password, colon + 1, plen);
    c->priv.password[plen] = '\0';
    c->priv.password_len = plen;
    r = USERS_PENDING;
fail: /* what b64_decode may have written, not all of buf (a byte loop) */
    OPENSSL_cleanse(buf, len / 4 * 3 + 3 < sizeof buf ? len / 4 * 3 + 3 : sizeof buf);
    return r;
}

/* Copies what users_verify needs: the stored hash, or a dummy to pay the
 * same time for a name that does not exist. */
static void users_stage(users_t *db, struct users_check *c)
{
    const struct users_entry *e = users_find(db, c->user);
    c->priv.known = e != NULL;
    if (e != NULL) {
        c->role = e->role;
        c->priv.ln = e->ln, c->priv.r = e->r, c->priv.p = e->p;
        memcpy(c->priv.salt, e->salt, sizeof c->priv.salt);
        memcpy(c->priv.hash, e->hash, sizeof c->priv.hash);
    } else {
        c->priv.ln = USERS_LN, c->priv.r = USERS_R, c->priv.p = USERS_P;
        memset(c->priv.salt, 0x5a, sizeof c->priv.salt);
    }
}

static enum users_result users_basic(users_t *db, const char *header, size_t len, size_t off,
                                     struct users_check *c, uint64_t now_ms)
{
    if (users_basic_parse(header + off, len - off, c) != USERS_PENDING)
        return users_set(c, USERS_MALFORMED);
    c->priv.keyed = hmac_sha256(db->key, header, len, c->priv.key) == 0;
    pthread_mutex_lock(&db->lock);
    const struct users_cached *hit =
        c->priv.keyed ? users_cache_find(db, c->priv.key, now_ms, false) : NULL;
    uint64_t wait = hit != NULL ? 0 : users_wait(db, c, c->user, now_ms);
    if (hit != NULL) {
        c->role = hit->role;
        c->cached = true;
    } else if (wait == 0) {
        struct users_tkey k;
        users_tkey_user(&k, c->user);
        users_thr_pending(db, &k, now_ms);
        if (c->priv.has_addr) {
            users_tkey_addr(&k, c);
            users_thr_pending(db, &k, now_ms);
        }
    }
    pthread_mutex_unlock(&db->lock);
    if (hit != NULL || wait > 0)
        users_forget_password(c);
    if (hit != NULL)
        return users_set(c, USERS_OK);
    if (wait > 0)
        return users_throttled(c, wait);
    users_stage(db, c);
    return users_set(c, USERS_PENDING);
}

/* Case-insensitive scheme ("Basic", "Bearer") and one space. Returns the
 * offset of what follows, or 0. */
static size_t users_scheme(const char *h, size_t len, const char *scheme)
{
    size_t n = strlen(scheme);
    if (len <= n + 1 || strncasecmp(h, scheme, n) != 0 || h[n] != ' ')
        return 0;
    return n + 1;
}

enum users_result users_prepare(users_t *db, const char *header, size_t len,
                                const struct net_addr *peer, uint64_t now_ms, struct users_check *c)
{
    memset(c, 0, sizeof *c);
    users_peer(c, peer);
    if (header == NULL || len == 0)
        return users_set(c, USERS_MISSING);
    if (len > USERS_HEADER_MAX || memchr(header, '\0', len) != NULL)
        return users_set(c, USERS_MALFORMED);
    size_t off = users_scheme(header, len, "Basic");
    if (off != 0)
        return users_basic(db, header, len, off, c, now_ms);
    if ((off = users_scheme(header, len, "Bearer")) == 0)
        return users_set(c, USERS_MALFORMED);
    pthread_mutex_lock(&db->lock);
    uint64_t wait = users_wait(db, c, NULL, now_ms);
    pthread_mutex_unlock(&db->lock);
    if (wait > 0)
        return users_throttled(c, wait);
    return users_bearer(db, header + off, len - off, c, now_ms);
}

void users_verify(struct users_check *c)
{
    uint8_t h[USERS_HASH_LEN];
    if (c->result != USERS_PENDING)
        return;
    c->priv.match = users_scrypt(c->priv.password, c->priv.password_len, c->priv.salt, c->priv.ln,
                                 c->priv.r, c->priv.p, h) == 0 &&
                    CRYPTO_memcmp(h, c->priv.hash, sizeof h) == 0 && c->priv.known;
    OPENSSL_cleanse(h, sizeof h);
}

enum users_result users_finish(users_t *db, struct users_check *c, uint64_t now_ms)
{
    users_forget_password(c);
    if (c->result != USERS_PENDING)
        return c->result;
    bool ok = c->priv.match;
    pthread_mutex_lock(&db->lock);
    users_record(db, c, c->user, ok, true, now_ms);
    if (ok && c->priv.keyed) {
        struct users_cached *slot = users_cache_find(db, c->priv.key, now_ms, true);
        memcpy(slot->key, c->priv.key, sizeof slot->key);
        slot->expires_ms = now_ms + USERS_CACHE_S * 1000ull;
        snprintf(slot->name, sizeof slot->name, "%s", c->user);
        slot->role = c->role;
    }
    pthread_mutex_unlock(&db->lock);
    return users_set(c, ok ? USERS_OK : USERS_DENIED);
}

enum users_result users_check_sync(users_t *db, const char *header, size_t len,
                                   const struct net_addr *peer, uint64_t now_ms,
                                   struct users_check *c)
{
    if (users_prepare(db, header, len, peer, now_ms, c) != USERS_PENDING)
        return c->result;
    users_verify(c);
    return users_finish(db, c, now_ms);
}

/* ---- editing the file ---- */

/* One user as a line of the file. */
static int users_line(const struct users_entry *e, char *out, size_t cap)
{
    char phc[USERS_PHC_MAX], hex[65];
    int rc = users_phc_write(e, phc, sizeof phc);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    if (e->has_token)
        hex_encode(e->token, sizeof e->token, hex);
    bool ok = o != NULL && cJSON_AddStringToObject(o, "user", e->name) &&
              cJSON_AddStringToObject(o, "role", users_role_str(e->role)) &&
              cJSON_AddStringToObject(o, "password", phc) &&
              (!e->has_token || cJSON_AddStringToObject(o, "token", hex));
    rc = ok && cJSON_PrintPreallocated(o, out, (int)cap - 1, false) ? 0 : -ENOMEM;
    if (rc == 0)
        strcat(out, "\n");
    cJSON_Delete(o);
    return rc;
}

static int users_store(users_t *db, const char *path, char *err, size_t errlen)
{
    size_t cap = db->n * USERS_LINE_MAX + 1, len = 0;
    char *buf = malloc(cap), why[512];
    int rc = buf == NULL ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < db->n; i++) {
        rc = users_line(&db->e[i], buf + len, USERS_LINE_MAX);
        len += rc == 0 ? strlen(buf + len) : 0;
    }
    if (rc != 0)
        rc = users_fail(err, errlen, rc, "out of memory");
    else if ((rc = pki_write_atomic(path, buf, len, 0600, why, sizeof why)) != 0)
        users_fail(err, errlen, rc, "%s", why);
    if (buf != NULL)
        OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

/* Locks "<path>.lock" (made 0600 if missing); returns its fd. */
static int users_lock(const char *path, char *err, size_t errlen)
{
    char lock[4096 + 8];
    if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock)
        return users_fail(err, errlen, -ENAMETOOLONG, "path too long: %s", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return users_fail(err, errlen, -errno, "open %s: %s", lock, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int rc = users_fail(err, errlen, -errno, "lock %s: %s", lock, strerror(errno));
            close(fd);
            return rc;
        }
    }
    return fd;
}

/* The edit every file operation makes: lock, read (a missing file is empty
 * when may_create), change with fn, write back. */
static int users_edit(const char *path, bool may_create,
                      int (*fn)(users_t *db, void *arg, char *err, size_t errlen), void *arg,
                      char *err, size_t errlen)
{
    users_t *db = NULL;
    int lock = users_lock(path, err, errlen);
    if (lock < 0)
        return lock;
    int rc = users_load(&db, path, err, errlen);
    if (rc == -ENOENT && may_create && (rc = users_new(&db)) != 0)
        users_fail(err, errlen, rc, "out of memory");
    if (rc == 0)
        rc = fn(db, arg, err, errlen);
    if (rc == 0)
        rc = users_index(db, err, errlen);
    if (rc == 0)
        rc = users_store(db, path, err, errlen);
    users_free(db);
    close(lock);
    return rc;
}

struct users_add_arg {
    const char *name;
    enum users_role role;
    const char *password;
    size_t password_len;
};

static int users_add_fn(users_t *db, void *arg, char *err, size_t errlen)
{
    const struct users_add_arg *a = arg;
    struct users_entry *e = users_find(db, a->name);
    if (e == NULL && (e = users_append(db)) == NULL)
        return users_fail(err, errlen, -ENOMEM, "out of memory");
    snprintf(e->name, sizeof e->name, "%s", a->name);
    e->role = a->role;
    e->ln = USERS_LN, e->r = USERS_R, e->p = USERS_P;
    if (RAND_bytes(e->salt, sizeof e->salt) != 1 ||
        users_scrypt(a->password, a->password_len, e->salt, e->ln, e->r, e->p, e->hash) != 0)
        return users_fail(err, errlen, -EIO, "scrypt failed");
    return 0;
}

int users_file_add(const char *path, const char *name, enum users_role role, const char *password,
                   size_t password_len, char *err, size_t errlen)
{
    struct users_add_arg a = {name, role, password, password_len};
    if (!users_name_ok(name, strlen(name)))
        return users_fail(err, errlen, -EINVAL,
                          "bad user name (1-63 of A-Z a-z 0-9 . _ -, not starting with '.')");
    if ((unsigned)role > USERS_ADMIN)
        return users_fail(err, errlen, -EINVAL, "bad role");
    if (password_len == 0 || password_len > USERS_PASSWORD_MAX ||
        memchr(password, '\0', password_len) != NULL)
        return users_fail(err, errlen, -EINVAL, "a password is 1 to %d bytes, without NUL",
                          USERS_PASSWORD_MAX);
    return users_edit(path, true, users_add_fn, &a, err, errlen);
}

struct users_name_arg {
    const char *path;
    const char *name;
    char *token; /* users_file_token: where the new token goes, or NULL */
};

static struct users_entry *users_need(users_t *db, const char *name, const char *path, char *err,
                                      size_t errlen)
{
    struct users_entry *e = users_find(db, name);
    if (e == NULL)
        users_fail(err, errlen, -ENOENT, "no user '%s' in %s", name, path);
    return e;
}

static int users_token_fn(users_t *db, void *arg, char *err, size_t errlen)
{
    struct users_name_arg *a = arg;
    uint8_t raw[32];
    struct users_entry *e = users_need(db, a->name, a->path, err, errlen);
    if (e == NULL)
        return -ENOENT;
    e->has_token = a->token != NULL;
    if (a->token == NULL)
        return 0;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return users_fail(err, errlen, -EIO, "random token: RAND_bytes failed");
    b64_encode(raw, sizeof raw, B64_URL, a->token, USERS_TOKEN_LEN + 1);
    OPENSSL_cleanse(raw, sizeof raw);
    EVP_Digest(a->token, USERS_TOKEN_LEN, e->token, NULL, EVP_sha256(), NULL);
    return 0;
}

int users_file_token(const char *path, const char *name, char *token, char *err, size_t errlen)
{
    struct users_name_arg a = {path, name, token};
    return users_edit(path, false, users_token_fn, &a, err, errlen);
}

static int users_del_fn(users_t *db, void *arg, char *err, size_t errlen)
{
    const struct users_name_arg *a = arg;
    struct users_entry *e = users_need(db, a->name, a->path, err, errlen);
    if (e == NULL)
        return -ENOENT;
    size_t i = (size_t)(e - db->e);
    memmove(e, e + 1, (db->n - i - 1) * sizeof *e);
    db->n--;
    return 0;
}

int users_file_del(const char *path, const char *name, char *err, size_t errlen)
{
    struct users_name_arg a = {path, name, NULL};
    return users_edit(path, false, users_del_fn, &a, err, errlen);
}
