/*
 * users — who may use the HTTP edges (the balancer's /f/ and /v1/, the
 * compute front-end's /v1/jobs) and as what: the users file, password and
 * token checks of an `Authorization` header, a short cache of verified
 * passwords, and brute-force slowing.
 *
 * The users file holds one JSON object per line (docs/security.md):
 *   {"user":"alice","role":"read","password":"$scrypt$ln=15,r=8,p=1$<salt>$<hash>",
 *    "token":"<hex SHA-256 of the API token>"}
 * ("token" optional). It is written atomically with mode 0600 and refused
 * when group or others can read it.
 *
 * Checking a header is three steps, so that the slow password hash (scrypt,
 * tens of ms) never runs on an I/O thread:
 *
 *   users_prepare   I/O thread, cheap: parse, throttle, cache, tokens.
 *                   Answers at once, or USERS_PENDING: a password to hash.
 *   users_verify    any thread (a pool worker): the scrypt hash. Touches
 *                   only the users_check, never the database.
 *   users_finish    I/O thread (any): records the outcome (cache on success,
 *                   failure counts on failure) and gives the answer.
 *
 * users_check_sync does all three on the calling thread (tests, tools).
 * Thread-safety: a users_t has one internal mutex, held for a table lookup
 * at most (never during a hash), so every function may be called from any
 * thread at once; a users_check belongs to one request and is used by one
 * thread at a time (hand it to the pool and back).
 */
#ifndef CONVOY_USERS_H
#define CONVOY_USERS_H

#include "convoy/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USERS_NAME_MAX     63  /* a user name: 1–63 of A-Z a-z 0-9 . _ -, not starting with '.' */
#define USERS_PASSWORD_MAX 256 /* bytes of a password (1..this, no NUL) */
#define USERS_HEADER_MAX   1024 /* bytes of an Authorization value; longer is malformed */
#define USERS_TOKEN_LEN    43   /* an API token: base64url of 32 random bytes */
#define USERS_CACHE_S      60   /* a verified password is trusted again for this long */

enum users_role { USERS_READ, USERS_SUBMIT, USERS_ADMIN };

/* "read", "submit", "admin". */
const char *users_role_str(enum users_role r);
/* 0, or -EINVAL for any other name. */
int users_role_parse(const char *s, enum users_role *out);
/* Whether a user of role have may do what needs role need: the same role,
 * or admin, which may do everything. */
bool users_role_allows(enum users_role have, enum users_role need);

/* The outcome of a check. HTTP: OK → go on, MISSING/MALFORMED/DENIED → 401
 * with WWW-Authenticate, THROTTLED → 429 with Retry-After. */
enum users_result {
    USERS_OK,        /* user and role are set */
    USERS_PENDING,   /* from users_prepare only: run users_verify, then users_finish */
    USERS_MISSING,   /* no Authorization header (NULL or empty) */
    USERS_MALFORMED, /* not "Basic <base64 of user:password>" or "Bearer <token>" */
    USERS_DENIED,    /* unknown user, wrong password, unknown or revoked token */
    USERS_THROTTLED, /* too many failures: retry_after_s says when to try again */
};

/* "ok", "pending", "missing credentials", ... */
const char *users_result_str(enum users_result r);

/* One request's check. Fill nothing: users_prepare initialises it. It holds
 * the password until users_finish, which wipes it. */
struct users_check {
    enum users_result result;
    char user[USERS_NAME_MAX + 1]; /* OK: who; DENIED: the name tried ("" for a token) */
    enum users_role role;          /* OK: the user's role */
    uint32_t retry_after_s;        /* THROTTLED: seconds, >= 1 */
    bool cached;                   /* OK: answered from the cache, no hash paid */
    struct {                       /* private to users.c */
        uint8_t key[32];           /* cache key: HMAC of the header value */
        bool keyed;                /* key is set: the cache may answer, and learn it */
        uint8_t addr[16];          /* the peer's address (a /64 for IPv6), for throttling */
        bool has_addr;
        bool known;       /* the user exists (else a dummy hash is paid) */
        bool match;       /* users_verify: the hash matched */
        uint8_t ln, r, p; /* scrypt parameters of the stored hash */
        uint8_t salt[16];
        uint8_t hash[32];
        char password[USERS_PASSWORD_MAX + 1];
        size_t password_len;
    } priv;
};

typedef struct users users_t;

/*
 * Loads the users file at path: refused (-EPERM) when group or others can
 * read or write it or it is not ours (pki_check_file), -ENOENT when missing,
 * -EINVAL when a line does not validate (the reason names the line: "users:
 * /x/users:3: unknown role 'root'"). 0, or -errno, reason in err.
 */
int users_load(users_t **out, const char *path, char *err, size_t errlen);

/* An empty database with no file (tests, a daemon without --users). */
int users_new(users_t **out);

void users_free(users_t *db);

/* Number of users. */
size_t users_count(users_t *db);

/*
 * Step 1, on the I/O thread. header is the Authorization value (len bytes,
 * need not be NUL-terminated; NULL: none); peer the client's address (NULL:
 * unknown, no per-address slowing); now_ms any monotonic clock in ms. A
 * Bearer token and a cached password are answered here (USERS_OK or
 * USERS_DENIED); an address or user with too many recent failures gets
 * USERS_THROTTLED without any password being looked at; a password to check
 * gives USERS_PENDING (also for an unknown user, who pays the same hash, so
 * timing does not tell which names exist). Returns c->result.
 */
enum users_result users_prepare(users_t *db, const char *header, size_t len,
                                const struct net_addr *peer, uint64_t now_ms,
                                struct users_check *c);

/* Step 2, after USERS_PENDING, on any thread: the slow hash (~50–100 ms).
 * Reads and writes only c. */
void users_verify(struct users_check *c);

/* Step 3, on any thread holding no users lock: records the outcome of a
 * USERS_PENDING check (cache it, or count a failure for the address and the
 * user) and returns c->result: USERS_OK or USERS_DENIED. For any other
 * result it returns it unchanged. Wipes the password from c. */
enum users_result users_finish(users_t *db, struct users_check *c, uint64_t now_ms);

/* The three steps on this thread. */
enum users_result users_check_sync(users_t *db, const char *header, size_t len,
                                   const struct net_addr *peer, uint64_t now_ms,
                                   struct users_check *c);

/*
 * Editing the users file (`convoy user`): each call reads the file (a
 * missing file is an empty one for add), changes one user, and writes the
 * whole file atomically with mode 0600, under an exclusive lock on
 * "<path>.lock" so that two edits at once do not lose either. A running
 * daemon reads the file at start only.
 *
 * users_file_add: adds user name with role and password (1..USERS_PASSWORD_MAX
 * bytes), or replaces the password and role of an existing one (its token
 * stays). users_file_token: makes a new random API token for name, writes
 * its SHA-256 (revoking the previous token) and copies the token, base64url,
 * NUL-terminated, into token (USERS_TOKEN_LEN + 1 bytes); with token NULL it
 * only revokes. users_file_del: removes name (-ENOENT if absent).
 * Each returns 0 or -errno, reason in err ("users: no user 'bob' in /x").
 */
int users_file_add(const char *path, const char *name, enum users_role role, const char *password,
                   size_t password_len, char *err, size_t errlen);
int users_file_token(const char *path, const char *name, char *token, char *err, size_t errlen);
int users_file_del(const char *path, const char *name, char *err, size_t errlen);

/* Calls fn(arg, name, role, has_token) for every user of db, in name order. */
void users_each(users_t *db,
                void (*fn)(void *arg, const char *name, enum users_role role, bool has_token),
                void *arg);

#endif
