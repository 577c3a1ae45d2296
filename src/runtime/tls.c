/*
 * tls — TLS 1.3 over an in-memory BIO.
 *
 * The design is simple: each session owns an SSL and one BIO of our own
 * that holds two byte queues, `in` (ciphertext from the network, filled by
 * tls_feed) and `out` (ciphertext for the network, drained by tls_out_take),
 * or, once the caller gives an output function, hands each record straight
 * to it (one copy out of OpenSSL instead of two). OpenSSL never sees a
 * socket, so no call here blocks and the connection layer decides when
 * bytes move. The write side is unbounded: tls_write encrypts everything at
 * once and the caller applies back-pressure on tls_out_pending().
 *
 * Memory: an idle session holds no buffer. The queues are lists of 16 KiB
 * segments freed as they are read (a BIO_s_mem keeps its peak size for
 * good), and SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers between
 * records, as nginx does. What is left is OpenSSL's own state: measured
 * with OpenSSL 3.0, ~14 KiB for a server session after the handshake (7.6
 * KiB of it the SSL object) and ~19 KiB for a client, which also keeps the
 * server's certificate; before, a pair took ~104 KiB idle and ~400 KiB after
 * 64 KiB each way. Releasing the buffers costs a malloc and a free of 16 KiB
 * per record, which measured no slower.
 *
 * Trust is the cluster CA only (pki_dir/ca.crt, never the system's default
 * paths). Names are not host names: servers are dialled by IP and a peer's
 * identity is its certificate's common name, and what it may act as is its
 * role, the URI SAN "convoy:role:ROLE" that `convoy pki issue` writes. When
 * a session expects a particular peer or role, the verify callback compares
 * them on the leaf and fails the handshake with a bad_certificate alert, so
 * the peer learns it too. A certificate without a role (issued before roles
 * existed) has none and is refused wherever a role is expected.
 *
 * Errors: every SSL_* call starts from an empty thread-local error queue and
 * leaves it empty. A failure is mapped once to TLS_EVERIFY, TLS_ENOCERT or
 * TLS_EPROTO with its words in t->err (made at the first failure), and is sticky: an SSL object
 * that failed is never called again, so later calls return the same answer.
 *
 * Speed: the balancer pushes gigabytes through here. AES-128-GCM comes
 * first as the fastest suite measured here (docs/security.md), and servers impose
 * their order on clients; no CA certificate is sent, because the peer has
 * it. One core moves about 2 GB/s through a client and a server session
 * together, some 80% of what AES-128-GCM alone allows.
 *
 * Resumption: off unless tls_ctx_enable_tickets asks for it, which only
 * client-facing (HTTPS) contexts do. Tickets are stateless: the server seals
 * the session with a key of its own (AES-256-CBC + HMAC-SHA256, OpenSSL's
 * ticket format) and keeps nothing per client. Keys live in the context, in
 * memory only, and rotate every TLS_TICKET_SECS; the previous key still
 * opens tickets for one more period and is then wiped. A client session
 * keeps the newest ticket it got (new-session callback) for the caller to
 * save as a blob and offer on a later connection.
 */
#include "convoy/tls.h"

#include "convoy/pki.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_CN_MAX       64 /* ub-common-name is 64 */
#define TLS_ERR_MAX      256
#define TLS_PATH_MAX     4096
#define TLS_VERIFY_DEPTH 2         /* leaf and CA: the cluster has no intermediates */
#define TLS_CHUNK_MAX    (1 << 30) /* per SSL/BIO call, well inside int */
#define TLS_SUITES       "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#define TLS_TICKET_SECS 3600 /* a ticket's lifetime, and how long a ticket key issues */
#define TLS_TICKET_NAME 16   /* key_name bytes in a ticket (OpenSSL's fixed size) */
#define TLS_TICKET_AES  32   /* AES-256-CBC key */
#define TLS_TICKET_HMAC 32   /* HMAC-SHA256 key */
#define TLS_SESSION_MAX 8192 /* longest serialized session tls_session_offer takes */

/* One key that seals and opens session tickets. */
struct tls_ticket_key {
    unsigned char name[TLS_TICKET_NAME]; /* random, tells which key sealed a ticket */
    unsigned char aes[TLS_TICKET_AES];
    unsigned char hmac[TLS_TICKET_HMAC];
    time_t born; /* 0: no key in this slot */
};

struct tls_ctx {
    SSL_CTX *ssl; /* shared read-only by every session once made */
    enum tls_role role;
    bool mtls;                     /* a server that requires client certificates */
    bool tickets;                  /* tls_ctx_enable_tickets was called */
    pthread_mutex_t ticket_lock;   /* guards keys; sessions on any thread use them */
    struct tls_ticket_key keys[2]; /* [0] seals new tickets, [1] still opens old ones */
};

/*
 * A byte queue of heap segments, freed as soon as they are read: an idle
 * session holds none, and a burst leaves nothing behind (a BIO_s_mem keeps
 * its peak size for good).
 */
struct tls_seg {
    struct tls_seg *next;
    size_t off, len, cap; /* data[off, len) is unread; cap is data's size */
    unsigned char data[];
};

struct tls_q {
    struct tls_seg *head, *tail;
    size_t bytes; /* unread, over all segments */
};

/* A verified peer's name and role, kept only by sessions whose peer
 * presented a certificate (control edges), not by every HTTPS client's. */
struct tls_who {
    char peer[TLS_CN_MAX + 1];   /* CN */
    char role[PKI_ROLE_MAX + 1]; /* role, "" if none */
};

struct tls {
    SSL *ssl;
    struct tls_q in;           /* ciphertext fed, not yet read by OpenSSL */
    const unsigned char *lent; /* tls_lend()'s ciphertext, read after `in` */
    size_t lent_len;
    struct tls_q out;      /* ciphertext for the network, when no output fn */
    tls_output_fn *out_fn; /* takes ciphertext as it is made, or NULL */
    void *out_arg;
    int out_err;         /* out_fn's failure, for the words */
    char *expect_peer;   /* CN the peer must carry, or NULL */
    char *expect_role;   /* role the peer must carry, or NULL */
    int failed;          /* sticky TLS_E* once the session failed, else 0 */
    bool done;           /* handshake complete */
    bool name_mismatch;  /* the verify callback refused the peer's CN or role */
    struct tls_who *who; /* the verified peer, when it showed a certificate */
    SSL_SESSION *ticket; /* client: the newest session the server sent, or NULL */
    char *err;           /* last failure in words, made at the first (TLS_ERR_MAX) */
};

/* ---- helpers ---- */

static void tls_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tls_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The oldest queued OpenSSL error in words; empties the queue. */
static const char *tls_ossl_reason(char *buf, size_t cap)
{
    unsigned long code = ERR_get_error();
    if (code == 0)
        snprintf(buf, cap, "unknown OpenSSL error");
    else
        ERR_error_string_n(code, buf, cap);
    ERR_clear_error();
    return buf;
}

/* Writes the session's last failure in words. The buffer is made at the
 * first failure: a healthy session (most of them, for their whole life)
 * carries no text. Out of memory, the words are lost, not the error. */
static void tls_why(tls_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tls_why(tls_t *t, const char *fmt, ...)
{
    if (t->err == NULL && (t->err = malloc(TLS_ERR_MAX)) == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, TLS_ERR_MAX, fmt, ap);
    va_end(ap);
}

/* The certificate's common name into buf. Refuses a missing CN, one that
 * does not fit and one with an embedded NUL (which would compare equal to a
 * prefix of itself). Returns 0 or -1. */
static int tls_cert_cn(X509 *x, char *buf, size_t cap)
{
    X509_NAME *subject = x != NULL ? X509_get_subject_name(x) : NULL;
    int n =
        subject != NULL ? X509_NAME_get_text_by_NID(subject, NID_commonName, buf, (int)cap) : -1;
    ERR_clear_error();
    if (n <= 0 || (size_t)n >= cap || strlen(buf) != (size_t)n) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* The certificate's role from its one "convoy:role:ROLE" URI SAN into buf.
 * Refuses (-1, buf "") a certificate without one, with two, and one naming
 * a role that does not exist. */
static int tls_cert_role(X509 *x, char *buf, size_t cap)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t plen = strlen(PKI_ROLE_URI);
    int found = 0;
    buf[0] = '\0';
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const char *uri = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t len = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (len <= plen || len - plen >= cap || strncmp(uri, PKI_ROLE_URI, plen) != 0)
            continue;
        memcpy(buf, uri + plen, len - plen);
        buf[len - plen] = '\0';
        found++;
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    if (found != 1 || !pki_role_ok(buf)) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* ---- contexts ---- */

/* Opens dir/name.ext for PEM reading, once pki_check_file trusts it (a
 * private key when ext is ".key"); "tls: load PATH: reason" or "tls: PATH
 * has mode ..." on failure. */
static int tls_open(FILE **f, const char *dir, const char *name, const char *ext, char *path,
                    char *err, size_t errlen)
{
    char why[TLS_PATH_MAX + 128];
    int n = snprintf(path, TLS_PATH_MAX, "%s/%s%s", dir, name, ext);
    if (n < 0 || n >= TLS_PATH_MAX) {
        tls_set_err(err, errlen, "tls: path too long: %s/%s%s", dir, name, ext);
        return -ENAMETOOLONG;
    }
    *f = fopen(path, "re");
    if (*f == NULL) {
        int rc = -errno;
        tls_set_err(err, errlen, "tls: load %s: %s", path, strerror(-rc));
        return rc;
    }
    int rc = pki_check_file(fileno(*f), path, strcmp(ext, ".key") == 0, why, sizeof why);
    if (rc != 0) {
        tls_set_err(err, errlen, "tls: %s", why);
        fclose(*f);
        *f = NULL;
    }
    return rc;
}

/* Trusts every certificate in the open PEM file f (at path), and nothing
 * else; closes f. */
static int tls_load_ca_file(SSL_CTX *ssl, FILE *f, const char *path, char *err, size_t errlen)
{
    char why[TLS_ERR_MAX];
    int rc = 0;
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    X509 *x;
    int count = 0;
    while (rc == 0 && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (!X509_STORE_add_cert(store, x))
            rc = -EPROTO;
        X509_free(x);
        count++;
    }
    fclose(f);
    /* The loop ends on "no start line" after the last certificate. */
    unsigned long last = ERR_peek_last_error();
    if (rc == 0 && count > 0 && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return 0;
    }
    if (count == 0 && rc == 0)
        tls_set_err(err, errlen, "tls: load %s: no certificate in file", path);
    else
        tls_set_err(err, errlen, "tls: load %s: %s", path, tls_ossl_reason(why, sizeof why));
    ERR_clear_error();
    return -EPROTO;
}

/* Trusts every certificate in dir/ca.crt, and nothing else. */
static int tls_load_ca(SSL_CTX *ssl, const char *dir, char *err, size_t errlen)
{
    char path[TLS_PATH_MAX];
    FILE *f;
    int rc = tls_open(&f, dir, "ca", ".crt", path, err, errlen);
    return rc != 0 ? rc : tls_load_ca_file(ssl, f, path, err, errlen);
}

/* Presents dir/name.crt with dir/name.key, which must belong together. */
static int tls_load_identity(SSL_CTX *ssl, const char *dir, const char *name, char *err,
                             size_t errlen)
{
    char crt[TLS_PATH_MAX], key[TLS_PATH_MAX], why[TLS_ERR_MAX];
    FILE *f;
    int rc = tls_open(&f, dir, name, ".crt", crt, err, errlen);
    if (rc != 0)
        return rc;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    int ok = x != NULL && SSL_CTX_use_certificate(ssl, x);
    X509_free(x);
    if (!ok) {
        tls_set_err(err, errlen, "tls: load %s: %s", crt, tls_ossl_reason(why, sizeof why));
        return -EPROTO;
    }
    rc = tls_open(&f, dir, name, ".key", key, err, errlen);
    if (rc != 0)
        return rc;
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ok = pk != NULL && SSL_CTX_use_PrivateKey(ssl, pk);
    EVP_PKEY_free(pk);
    if (!ok || !SSL_CTX_check_private_key(ssl)) {
        tls_set_err(err, errlen, "tls: load %s (for %s): %s", key, crt,
                    tls_ossl_reason(why, sizeof why));
        return -EPROTO;
    }
    return 0;
}

/* Checks the leaf's name and role against what the session expects, and
 * that it has a name at all: 0, or -1 with the reason in t->err. */
static int tls_check_peer(tls_t *t, X509 *leaf)
{
    char cn[TLS_CN_MAX + 1], role[PKI_ROLE_MAX + 1];
    if (tls_cert_cn(leaf, cn, sizeof cn) != 0) {
        /* The CN is the peer's identity: without one there is nobody to
         * name in logs or to match against a registry. */
        tls_why(t, "peer certificate has no readable common name");
        return -1;
    }
    tls_cert_role(leaf, role, sizeof role);
    if (t->expect_peer != NULL && strcmp(cn, t->expect_peer) != 0) {
        tls_why(t, "peer is '%s', expected '%s'", cn, t->expect_peer);
        return -1;
    }
    if (t->expect_role != NULL && role[0] == '\0') {
        tls_why(t, "peer '%s' has no role, expected '%s'", cn, t->expect_role);
        return -1;
    }
    if (t->expect_role != NULL && strcmp(role, t->expect_role) != 0) {
        tls_why(t, "peer '%s' has role '%s', expected '%s'", cn, role, t->expect_role);
        return -1;
    }
    return 0;
}

/*
 * Runs after OpenSSL's own chain check for each certificate, leaf last
 * (depth 0). It only adds the name and role rules of tls_check_peer.
 */
static int tls_verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    if (!preverify_ok || X509_STORE_CTX_get_error_depth(xs) != 0)
        return preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_t *t = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    if (t == NULL || tls_check_peer(t, X509_STORE_CTX_get_current_cert(xs)) == 0)
        return 1;
    t->name_mismatch = true;
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static int tls_ctx_setup(SSL_CTX *ssl, enum tls_role role, bool require_client_cert)
{
    int mode = SSL_VERIFY_PEER;
    if (role == TLS_SERVER)
        mode = require_client_cert ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                   : SSL_VERIFY_NONE;
    SSL_CTX_set_verify(ssl, mode, tls_verify_cb);
    SSL_CTX_set_verify_depth(ssl, TLS_VERIFY_DEPTH);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    /* The peer holds the CA already: send the leaf alone. */
    SSL_CTX_set_mode(ssl, SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    /* Our order, not the client's: a client that lists AES-256-GCM or
     * ChaCha20 first still gets the suite measured fastest here. */
    SSL_CTX_set_options(ssl, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    return SSL_CTX_set_min_proto_version(ssl, TLS1_3_VERSION) &&
                   SSL_CTX_set_max_proto_version(ssl, TLS1_3_VERSION) &&
                   SSL_CTX_set_ciphersuites(ssl, TLS_SUITES) && SSL_CTX_set_num_tickets(ssl, 0)
               ? 0
               : -1;
}

/* A context with its SSL_CTX set up and nothing trusted yet. */
static int tls_ctx_make(tls_ctx_t **out, enum tls_role role, bool require_client_cert, char *err,
                        size_t errlen)
{
    char why[TLS_ERR_MAX];
    ERR_clear_error();
    tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        tls_set_err(err, errlen, "tls: out of memory");
        return -ENOMEM;
    }
    ctx->role = role;
    ctx->mtls = role == TLS_SERVER && require_client_cert;
    ctx->ssl = SSL_CTX_new(role == TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (ctx->ssl == NULL || tls_ctx_setup(ctx->ssl, role, require_client_cert) != 0) {
        tls_set_err(err, errlen, "tls: new context: %s", tls_ossl_reason(why, sizeof why));
        tls_ctx_free(ctx);
        return -EPROTO;
    }
    *out = ctx;
    return 0;
}

int tls_ctx_new_cafile(tls_ctx_t **out, const char *ca_file, char *err, size_t errlen)
{
    char why[TLS_PATH_MAX + 128];
    tls_ctx_t *ctx;
    int rc = tls_ctx_make(&ctx, TLS_CLIENT, false, err, errlen);
    if (rc != 0)
        return rc;
    FILE *f = fopen(ca_file, "re");
    if (f == NULL) {
        rc = -errno;
        tls_set_err(err, errlen, "tls: load %s: %s", ca_file, strerror(-rc));
        goto fail;
    }
    if ((rc = pki_check_file(fileno(f), ca_file, false, why, sizeof why)) != 0) {
        tls_set_err(err, errlen, "tls: %s", why);
        fclose(f);
        goto fail;
    }
    if ((rc = tls_load_ca_file(ctx->ssl, f, ca_file, err, errlen)) != 0)
        goto fail;
    *out = ctx;
    return 0;
fail:
    tls_ctx_free(ctx);
    return rc;
}

int tls_ctx_new(tls_ctx_t **out, enum tls_role role, const char *pki_dir, const char *name,
                bool require_client_cert, char *err, size_t errlen)
{
    char why[TLS_PATH_MAX + 128];
    tls_ctx_t *ctx;
    int rc = tls_ctx_make(&ctx, role, require_client_cert, err, errlen);
    if (rc != 0)
        return rc;
    rc = tls_load_ca(ctx->ssl, pki_dir, err, errlen);
    if (rc == 0 && (rc = pki_check_dir(pki_dir, why, sizeof why)) != 0)
        tls_set_err(err, errlen, "tls: %s", why);
    if (rc == 0 && name != NULL)
        rc = tls_load_identity(ctx->ssl, pki_dir, name, err, errlen);
    if (rc != 0)
        goto fail;
    *out = ctx;
    return 0;
fail:
    tls_ctx_free(ctx);
    return rc;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    if (ctx->tickets)
        pthread_mutex_destroy(&ctx->ticket_lock);
    OPENSSL_cleanse(ctx->keys, sizeof ctx->keys);
    free(ctx);
}

/* ---- session tickets ---- */

static int tls_ticket_key_new(struct tls_ticket_key *k, time_t now)
{
    if (RAND_bytes(k->name, sizeof k->name) != 1 || RAND_bytes(k->aes, sizeof k->aes) != 1 ||
        RAND_bytes(k->hmac, sizeof k->hmac) != 1)
        return -1;
    k->born = now;
    return 0;
}

/* Rotation: the sealing key is replaced once it has sealed for
 * TLS_TICKET_SECS, and kept one more period to open what it sealed, so
 * that every ticket opens for its whole lifetime and never longer than
 * twice that. Called with ticket_lock held. */
static int tls_ticket_rotate(tls_ctx_t *ctx, time_t now)
{
    if (ctx->keys[0].born == 0 || now - ctx->keys[0].born >= TLS_TICKET_SECS) {
        struct tls_ticket_key fresh;
        if (tls_ticket_key_new(&fresh, now) != 0)
            return -1;
        ctx->keys[1] = ctx->keys[0];
        ctx->keys[0] = fresh;
        OPENSSL_cleanse(&fresh, sizeof fresh);
    }
    /* A key sealed for at most TLS_TICKET_SECS from its birth, so
     * everything it sealed has expired two periods after it. */
    if (ctx->keys[1].born != 0 && now - ctx->keys[1].born >= 2 * TLS_TICKET_SECS)
        OPENSSL_cleanse(&ctx->keys[1], sizeof ctx->keys[1]);
    return 0;
}

static int tls_ticket_use(const struct tls_ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                          EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(hctx, params))
        return -1;
    int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)
                 : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv);
    return ok ? 0 : -1;
}

/*
 * OpenSSL's ticket callback. Sealing (enc 1): name the current key, pick an
 * IV, set up the cipher and the MAC; 1, or -1 to send no ticket. Opening
 * (enc 0): the key named by the ticket: 1 with the current key, 2 (open,
 * and send a fresh ticket) with the previous one, 0 (full handshake) for a
 * key that is gone or never was ours.
 */
static int tls_ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    int rc = enc ? -1 : 0;
    pthread_mutex_lock(&ctx->ticket_lock);
    if (tls_ticket_rotate(ctx, time(NULL)) != 0)
        goto done;
    if (enc) {
        const struct tls_ticket_key *k = &ctx->keys[0];
        memcpy(name, k->name, TLS_TICKET_NAME);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1 &&
            tls_ticket_use(k, iv, cctx, hctx, 1) == 0)
            rc = 1;
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        const struct tls_ticket_key *k = &ctx->keys[i];
        if (k->born != 0 && CRYPTO_memcmp(name, k->name, TLS_TICKET_NAME) == 0) {
            rc = tls_ticket_use(k, iv, cctx, hctx, 0) == 0 ? 1 + i : 0;
            break;
        }
    }
done:
    pthread_mutex_unlock(&ctx->ticket_lock);
    return rc;
}

/* A client session received a ticket: keep the newest. Returning 1 keeps
 * the reference OpenSSL hands over. */
static int tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION_free(t->ticket);
    t->ticket = sess;
    return 1;
}

int tls_ctx_enable_tickets(tls_ctx_t *ctx, char *err, size_t errlen)
{
    SSL_CTX *ssl = ctx->ssl;
    bool server = ctx->role == TLS_SERVER;
    if (ctx->mtls) {
        tls_set_err(err, errlen,
                    "tls: no session tickets on a context that requires "
                    "client certificates (control edges)");
        return -EINVAL;
    }
    if (ctx->tickets)
        return 0;
    if (pthread_mutex_init(&ctx->ticket_lock, NULL) != 0) {
        tls_set_err(err, errlen, "tls: out of memory");
        return -ENOMEM;
    }
    ctx->tickets = true;
    SSL_CTX_set_app_data(ssl, ctx);
    SSL_CTX_clear_options(ssl, SSL_OP_NO_TICKET);
    if (server) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, tls_ticket_cb);
        SSL_CTX_set_timeout(ssl, TLS_TICKET_SECS);
        SSL_CTX_set_num_tickets(ssl, 1);
    } else {
        /* The cache mode is only what makes OpenSSL call the callback:
         * sessions are kept per tls_t, never in the context. */
        SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ssl, tls_new_session_cb);
    }
    return 0;
}

/* ---- the session's BIO ---- */

#define TLS_SEG_SIZE (16384 - sizeof(struct tls_seg)) /* a segment is one 16 KiB block */

/* Appends len bytes: into the tail's room first, then a segment of at least
 * TLS_SEG_SIZE. 0 or -ENOMEM (nothing appended past what fitted). */
static int tls_q_put(struct tls_q *q, const unsigned char *p, size_t len)
{
    struct tls_seg *tail = q->tail;
    if (tail != NULL && tail->len < tail->cap) {
        size_t n = tail->cap - tail->len < len ? tail->cap - tail->len : len;
        memcpy(tail->data + tail->len, p, n);
        tail->len += n, q->bytes += n, p += n, len -= n;
    }
    if (len == 0)
        return 0;
    size_t cap = len > TLS_SEG_SIZE ? len : TLS_SEG_SIZE;
    struct tls_seg *seg = malloc(sizeof *seg + cap);
    if (seg == NULL)
        return -ENOMEM;
    *seg = (struct tls_seg){.next = NULL, .off = 0, .len = len, .cap = cap};
    memcpy(seg->data, p, len);
    if (q->tail != NULL)
        q->tail->next = seg;
    else
        q->head = seg;
    q->tail = seg;
    q->bytes += len;
    return 0;
}

/* Moves up to cap bytes out, freeing every segment it empties. */
static size_t tls_q_get(struct tls_q *q, unsigned char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap && q->head != NULL) {
        struct tls_seg *seg = q->head;
        size_t n = seg->len - seg->off < cap - got ? seg->len - seg->off : cap - got;
        memcpy(buf + got, seg->data + seg->off, n);
        seg->off += n, got += n;
        if (seg->off == seg->len) {
            q->head = seg->next;
            if (q->head == NULL)
                q->tail = NULL;
            free(seg);
        }
    }
    q->bytes -= got;
    return got;
}

static void tls_q_free(struct tls_q *q)
{
    while (q->head != NULL) {
        struct tls_seg *next = q->head->next;
        free(q->head);
        q->head = next;
    }
    q->tail = NULL;
    q->bytes = 0;
}

/*
 * One BIO serves both directions of a session: OpenSSL reads t->in and
 * writes either to t->out or, with an output function, straight to it. An
 * empty input is "retry later", never end of stream.
 */
static int tls_bio_read(BIO *b, char *buf, size_t cap, size_t *got)
{
    tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *got = tls_q_get(&t->in, (unsigned char *)buf, cap);
    if (*got < cap && t->lent_len > 0) {
        size_t n = cap - *got < t->lent_len ? cap - *got : t->lent_len;
        memcpy(buf + *got, t->lent, n);
        t->lent += n, t->lent_len -= n, *got += n;
    }
    if (*got > 0)
        return 1;
    BIO_set_retry_read(b);
    return 0;
}

static int tls_bio_write(BIO *b, const char *data, size_t len, size_t *put)
{
    tls_t *t = BIO_get_data(b);
    int rc = t->out_fn != NULL ? t->out_fn(t->out_arg, data, len)
                               : tls_q_put(&t->out, (const unsigned char *)data, len);
    BIO_clear_retry_flags(b);
    if (rc != 0) {
        t->out_err = rc;
        return 0;
    }
    *put = len;
    return 1;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num, (void)ptr;
    tls_t *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return (long)(t->in.bytes + t->lent_len < LONG_MAX ? t->in.bytes + t->lent_len : LONG_MAX);
    case BIO_CTRL_WPENDING:
        return (long)(t->out.bytes < LONG_MAX ? t->out.bytes : LONG_MAX);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0; /* no EOF, no kTLS, no push/pop */
    }
}

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static void tls_bio_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "convoy tls queue");
    if (m != NULL && BIO_meth_set_read_ex(m, tls_bio_read) &&
        BIO_meth_set_write_ex(m, tls_bio_write) && BIO_meth_set_ctrl(m, tls_bio_ctrl)) {
        tls_bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* A BIO for t, or NULL. The method is made once per process. */
static BIO *tls_bio_new(tls_t *t)
{
    pthread_once(&tls_bio_once, tls_bio_method_make);
    BIO *b = tls_bio_method != NULL ? BIO_new(tls_bio_method) : NULL;
    if (b == NULL)
        return NULL;
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    return b;
}

/* ---- sessions ---- */

int tls_new(tls_t **out, tls_ctx_t *ctx, const char *expect_peer, const char *expect_role)
{
    ERR_clear_error();
    tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->ssl = SSL_new(ctx->ssl);
    BIO *bio = tls_bio_new(t);
    if (expect_peer != NULL)
        t->expect_peer = strdup(expect_peer);
    if (expect_role != NULL)
        t->expect_role = strdup(expect_role);
    if (t->ssl == NULL || bio == NULL || (expect_peer != NULL && t->expect_peer == NULL) ||
        (expect_role != NULL && t->expect_role == NULL)) {
        BIO_free(bio);
        tls_free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_bio(t->ssl, bio, bio); /* one reference, for both directions */
    SSL_set_app_data(t->ssl, t);
    /* A server that expects a named peer or a role must see its
     * certificate, even on a context that does not require one from
     * everybody. */
    if ((expect_peer != NULL || expect_role != NULL) && SSL_is_server(t->ssl))
        SSL_set_verify(t->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_cb);
    if (SSL_is_server(t->ssl))
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    *out = t;
    return 0;
}

void tls_free(tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees the BIO */
    tls_q_free(&t->in);
    tls_q_free(&t->out);
    SSL_SESSION_free(t->ticket);
    free(t->expect_peer);
    free(t->expect_role);
    free(t->err);
    free(t->who);
    free(t);
}

/* Empties this thread's error queue around a read or a write: SSL_get_error
 * reads it, and nothing stale may be left to the next connection. It is
 * nearly always empty already, and ERR_clear_error walks every slot even
 * then (~180 ns, four times per small exchange) where a peek is ~20 ns. */
static void tls_errors_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Words and code for an SSL_ERROR_SSL; the queue is read and emptied. */
static int tls_map_ssl_error(tls_t *t)
{
    char why[TLS_ERR_MAX];
    unsigned long code = ERR_peek_error();
    long vr = SSL_get_verify_result(t->ssl);
    int rc = TLS_EPROTO;
    if (t->name_mismatch) {
        rc = TLS_EVERIFY; /* t->err written by the callback */
    } else if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
               ERR_GET_REASON(code) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        tls_why(t, "peer did not return a certificate");
        rc = TLS_ENOCERT;
    } else if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
               ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
        tls_why(t, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        rc = TLS_EVERIFY;
    } else {
        tls_why(t, "%s", tls_ossl_reason(why, sizeof why));
    }
    ERR_clear_error();
    return rc;
}

/* Maps the result of an SSL_* call: 0 when it only waits for input, else a
 * sticky TLS_E* with t->err set. */
static int tls_result(tls_t *t, int ret)
{
    int e = SSL_get_error(t->ssl, ret);
    int rc;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return TLS_EOF;
    case SSL_ERROR_SSL:
        rc = tls_map_ssl_error(t);
        break;
    default:
        /* The BIO never asks to retry a write, so WANT_WRITE or SYSCALL
         * means the output refused bytes or the state machine broke: both
         * are protocol ends. */
        if (t->out_err != 0)
            tls_why(t, "output refused: %s", strerror(-t->out_err));
        else
            tls_why(t, "unexpected SSL_get_error %d", e);
        ERR_clear_error();
        rc = TLS_EPROTO;
        break;
    }
    t->failed = rc;
    return rc;
}

int tls_feed(tls_t *t, const void *data, size_t len)
{
    return tls_q_put(&t->in, data, len);
}

void tls_lend(tls_t *t, const void *data, size_t len)
{
    t->lent = data;
    t->lent_len = len;
}

int tls_lend_end(tls_t *t)
{
    int rc = t->lent_len > 0 ? tls_q_put(&t->in, t->lent, t->lent_len) : 0;
    t->lent = NULL;
    t->lent_len = 0;
    return rc;
}

/* A resumed session skipped the verify callback: the certificate it was
 * made with must still be what this session expects. 0, or the sticky
 * failure. */
static int tls_check_resumed(tls_t *t, X509 *peer)
{
    if (t->expect_peer == NULL && t->expect_role == NULL)
        return 0;
    if (peer == NULL) {
        tls_why(t, "peer did not return a certificate");
        t->failed = TLS_ENOCERT;
    } else if (SSL_get_verify_result(t->ssl) != X509_V_OK || tls_check_peer(t, peer) != 0) {
        t->failed = TLS_EVERIFY;
    }
    return t->failed;
}

int tls_handshake(tls_t *t)
{
    if (t->failed)
        return t->failed;
    if (t->done)
        return 1;
    ERR_clear_error();
    int ret = SSL_do_handshake(t->ssl);
    if (ret != 1)
        return tls_result(t, ret);
    ERR_clear_error();
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (SSL_session_reused(t->ssl) && tls_check_resumed(t, peer) != 0)
        return t->failed;
    if (peer != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK) {
        if ((t->who = calloc(1, sizeof *t->who)) == NULL) {
            tls_why(t, "out of memory");
            return t->failed = TLS_EPROTO; /* a peer without its name is nobody */
        }
        tls_cert_cn(peer, t->who->peer, sizeof t->who->peer);
        tls_cert_role(peer, t->who->role, sizeof t->who->role);
    }
    t->done = true;
    return 1;
}

bool tls_handshake_done(const tls_t *t)
{
    return t->done;
}

ssize_t tls_read(tls_t *t, void *buf, size_t cap)
{
    if (t->failed)
        return t->failed;
    if (!t->done) {
        int rc = tls_handshake(t);
        if (rc != 1)
            return rc;
    }
    size_t n = 0;
    tls_errors_clear();
    int ret = SSL_read_ex(t->ssl, buf, cap, &n);
    if (ret == 1) {
        tls_errors_clear();
        return (ssize_t)n;
    }
    int rc = tls_result(t, ret);
    if (rc == TLS_EOF)
        t->failed = 0; /* a clean end is not a failure; SSL keeps returning it */
    return rc;
}

int tls_write(tls_t *t, const void *buf, size_t len)
{
    if (t->failed)
        return t->failed;
    if (!t->done) {
        tls_why(t, "write before the handshake finished");
        return TLS_EPROTO;
    }
    const char *p = buf;
    while (len > 0) {
        size_t n = 0;
        tls_errors_clear();
        int ret = SSL_write_ex(t->ssl, p, len < TLS_CHUNK_MAX ? len : TLS_CHUNK_MAX, &n);
        if (ret != 1 && tls_result(t, ret) == 0) {
            /* Only a renegotiation could make a write wait for input, and
             * TLS 1.3 has none. */
            tls_why(t, "write waits for input");
            t->failed = TLS_EPROTO;
        }
        if (ret != 1)
            return t->failed;
        p += n;
        len -= n;
    }
    tls_errors_clear();
    return 0;
}

void tls_close(tls_t *t)
{
    if (t->failed || !t->done)
        return; /* nothing to close cleanly: the transport just ends */
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t tls_out_pending(const tls_t *t)
{
    return t->out.bytes;
}

size_t tls_out_take(tls_t *t, void *buf, size_t cap)
{
    return tls_q_get(&t->out, buf, cap);
}

int tls_set_output(tls_t *t, tls_output_fn *fn, void *arg)
{
    struct tls_q *q = &t->out;
    t->out_fn = fn;
    t->out_arg = arg;
    while (fn != NULL && q->head != NULL) {
        struct tls_seg *seg = q->head;
        int rc = fn(arg, seg->data + seg->off, seg->len - seg->off);
        if (rc != 0)
            return rc;
        q->bytes -= seg->len - seg->off;
        q->head = seg->next;
        if (q->head == NULL)
            q->tail = NULL;
        free(seg);
    }
    return 0;
}

const char *tls_peer_name(const tls_t *t)
{
    return t->done && t->who && t->who->peer[0] != '\0' ? t->who->peer : NULL;
}

const char *tls_peer_role(const tls_t *t)
{
    return t->done && t->who && t->who->role[0] != '\0' ? t->who->role : NULL;
}

ssize_t tls_session_save(const tls_t *t, void *buf, size_t cap)
{
    if (t->ticket == NULL)
        return 0;
    int n = i2d_SSL_SESSION(t->ticket, NULL);
    if (n <= 0) {
        ERR_clear_error();
        return -ENOMEM;
    }
    if (n > TLS_SESSION_MAX)
        return -E2BIG; /* tls_session_offer would refuse it */
    if ((size_t)n > cap)
        return -ENOSPC;
    unsigned char *p = buf;
    n = i2d_SSL_SESSION(t->ticket, &p);
    ERR_clear_error();
    return n > 0 ? n : -ENOMEM;
}

int tls_session_offer(tls_t *t, const void *blob, size_t len)
{
    if (SSL_is_server(t->ssl) || t->done || len == 0 || len > TLS_SESSION_MAX)
        return -EINVAL;
    const unsigned char *p = blob;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long)len);
    int ok = sess != NULL && p == (const unsigned char *)blob + len &&
             SSL_SESSION_is_resumable(sess) && SSL_set_session(t->ssl, sess);
    ERR_clear_error();
    if (!ok) {
        SSL_SESSION_free(sess);
        return -EINVAL;
    }
    /* Saved again unless the server sends a newer ticket: a resumption
     * gets none while the ticket's key still seals. */
    SSL_SESSION_free(t->ticket);
    t->ticket = sess;
    return 0;
}

bool tls_session_resumed(const tls_t *t)
{
    return t->done && SSL_session_reused(t->ssl);
}

const char *tls_cipher(const tls_t *t)
{
    return t->done ? SSL_get_cipher_name(t->ssl) : NULL;
}

const char *tls_errstr(const tls_t *t)
{
    return t->err != NULL && t->err[0] != '\0' ? t->err : "no error";
}
