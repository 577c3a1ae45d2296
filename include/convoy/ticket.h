/*
 * ticket — the signed, expiring permission the balancer puts in a redirect
 * (`https://fs2/f/<path>?t=<ticket>`) and a file server checks before it
 * serves a byte.
 *
 * A ticket is base64url (no padding) of a bounded binary record followed by
 * its HMAC-SHA256 under one key of a keyring:
 *
 *   u8 version (1) | u32 key id | u64 transfer id | u64 expiry (unix s) |
 *   u8 method | u8 len, server | u8 len, user | u16 len, path | 32 B HMAC
 *
 * (big-endian integers; every string is length-prefixed, 1..its limit, no
 * NUL). The balancer signs with its current key; when it restarts it makes
 * a new one, and the previous key, retired, keeps verifying for the ticket
 * lifetime, so no live ticket breaks. The keys reach file servers in the
 * membership WELCOME (mTLS): ticket_keyring_to_json / _from_json.
 *
 * Thread-safety: a keyring has its own lock. ticket_sign and ticket_verify
 * may run on any thread at once, also while another thread replaces the keys
 * (ticket_keyring_from_json on a file server's membership ring, the
 * balancer's ticket_keyring_rotate at start).
 */
#ifndef CONVOY_TICKET_H
#define CONVOY_TICKET_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define TICKET_VERSION    1
#define TICKET_KEY_LEN    32   /* bytes of one HMAC-SHA256 key */
#define TICKET_KEYS_MAX   4    /* keys a keyring holds: the current and retired ones */
#define TICKET_SERVER_MAX 63   /* a server name, as pki names it */
#define TICKET_USER_MAX   63   /* a user name, as users.h names it */
#define TICKET_PATH_MAX   1024 /* bytes of the path */
#define TICKET_TEXT_MAX   2048 /* longest ticket text; a longer one is malformed unread */

/* The WELCOME field that carries the keyring: list it in
 * mbrc_opts.welcome_fields as {TICKET_WELCOME_FIELD, FF_ARRAY, true}. */
#define TICKET_WELCOME_FIELD "ticket_keys"

enum ticket_method { TICKET_GET = 1, TICKET_HEAD = 2 };

/* Why a ticket was refused: negative, apart from -errno values. A file
 * server answers 403 with ticket_strerror(code) (and the detail in why). */
enum ticket_err {
    TICKET_EMISSING = -2000, /* no ticket at all */
    TICKET_EMALFORMED,       /* not base64url, too long, bad version, bad lengths */
    TICKET_EKEY,             /* signed by a key this keyring does not hold */
    TICKET_ERETIRED,         /* signed by a retired key past its valid_until */
    TICKET_ESIG,             /* the HMAC does not match (tampered, or another balancer) */
    TICKET_EEXPIRED,         /* past its expiry */
    TICKET_ESERVER,          /* made out for another server */
    TICKET_EPATH,            /* made out for another path */
    TICKET_EMETHOD,          /* made out for another method (GET vs HEAD) */
};

/* "expired ticket", ...; for any other value "unknown ticket error". */
const char *ticket_strerror(int code);

/* What a ticket says. Fixed size: decoding allocates nothing. */
struct ticket {
    uint64_t transfer;                  /* the balancer's transfer id */
    uint64_t expires;                   /* unix seconds; refused when now > expires */
    uint32_t key_id;                    /* the key that signed it (set by ticket_sign) */
    enum ticket_method method;          /* GET or HEAD */
    char server[TICKET_SERVER_MAX + 1]; /* the file server it is for */
    char user[TICKET_USER_MAX + 1];     /* who the balancer let in */
    char path[TICKET_PATH_MAX + 1];     /* the file, compared byte for byte */
};

/* One key. valid_until is 0 for the current (signing) key, else the last
 * unix second a ticket it signed may be accepted. */
struct ticket_key {
    uint32_t id;
    uint32_t pad; /* zero */
    uint64_t valid_until;
    uint8_t secret[TICKET_KEY_LEN];
};

/* A keyring's keys as a plain fixed-size struct, for the balancer to keep
 * in its shared-memory segment across restarts (see ticket_keyring_rotate).
 * It holds the secrets: keep it where only the balancer's user reads. */
struct ticket_keyset {
    uint32_t n; /* keys in use, <= TICKET_KEYS_MAX; key[0] signs when its valid_until is 0 */
    uint32_t pad;
    struct ticket_key key[TICKET_KEYS_MAX];
};

typedef struct ticket_keyring ticket_keyring_t;

/* An empty keyring (verifies nothing, signs nothing). 0 or -ENOMEM. */
int ticket_keyring_new(ticket_keyring_t **out);
void ticket_keyring_free(ticket_keyring_t *kr);

/*
 * The balancer at start: takes the keys a previous run saved (prev, or NULL
 * on a first start), retires prev's signing key at now + ttl_s (so tickets
 * it signed live out their lifetime), drops keys whose valid_until has
 * passed, and makes a fresh random signing key with a new id, dropping the
 * oldest retired key when TICKET_KEYS_MAX would be exceeded. Replaces what kr
 * held. Returns 0; -EINVAL when prev does not validate (n too large, a zero
 * id, repeated ids, more than one current key, a non-zero pad: kr is left
 * as it was, and the caller may start afresh with prev = NULL); -EIO when
 * the random generator fails.
 */
int ticket_keyring_rotate(ticket_keyring_t *kr, const struct ticket_keyset *prev, uint64_t now,
                          uint32_t ttl_s);

/* Copies kr's keys into out (what the balancer stores, what tests compare). */
void ticket_keyring_save(ticket_keyring_t *kr, struct ticket_keyset *out);

/*
 * Signs t (its transfer, expires, method, server, user and path; key_id is
 * set from the current key) into out as NUL-terminated text. Returns its
 * length; -ENOKEY without a current key; -EINVAL when a field is empty, too
 * long, holds a NUL or method is neither; -ENOSPC when cap is too small
 * (TICKET_TEXT_MAX + 1 always suffices).
 */
int ticket_sign(ticket_keyring_t *kr, struct ticket *t, char *out, size_t cap);

/*
 * Checks the len bytes of text (NULL or len 0: TICKET_EMISSING) at unix time
 * now, for this server, path and method. Order: decoding (EMALFORMED), the
 * key (EKEY, ERETIRED), the HMAC in constant time (ESIG), then what the
 * ticket says: EEXPIRED, ESERVER, EPATH, EMETHOD; nothing it says is looked
 * at before its signature holds. Returns 0 with the ticket in out (may be
 * NULL), or an enum ticket_err with a detail in why (NUL-terminated,
 * truncated to whylen; may be NULL when whylen is 0), such as "expired 12 s
 * ago" or "ticket is for server 'fs2'". The detail holds only what a valid
 * signature vouches for, and is escaped for a log or an HTTP body.
 */
int ticket_verify(ticket_keyring_t *kr, const char *text, size_t len, uint64_t now,
                  const char *expect_server, const char *expect_path,
                  enum ticket_method expect_method, struct ticket *out, char *why, size_t whylen);

/*
 * The keyring in a WELCOME: adds TICKET_WELCOME_FIELD to meta as an array of
 * {"id": u32, "key": base64url of 32 bytes, "valid_until": unix s or 0}.
 * Returns 0 or -ENOMEM (meta is then unchanged). Fits the membership server's
 * welcome callback: `return ticket_keyring_to_json(kr, meta);`.
 */
int ticket_keyring_to_json(ticket_keyring_t *kr, cJSON *meta);

/*
 * A file server reading WELCOME: replaces kr's keys with those of meta's
 * TICKET_WELCOME_FIELD, read strictly (1..TICKET_KEYS_MAX objects with
 * exactly those three fields, ids non-zero and distinct, keys of exactly 32
 * bytes, at most one current key; other WELCOME fields are ignored). Keys
 * already past their valid_until at now are dropped. Returns 0, or -EINVAL
 * with the reason in why ("ticket_keys[1]: key is not 32 bytes of
 * base64url"), kr unchanged. Fits mbrc_opts.welcome.
 */
int ticket_keyring_from_json(ticket_keyring_t *kr, const cJSON *meta, uint64_t now, char *why,
                             size_t whylen);

#endif
