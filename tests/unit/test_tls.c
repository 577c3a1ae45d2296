/*
 * tls: two sessions in one process talk through tls_out_take()/tls_feed(),
 * as the connection layer makes them talk through the ring. The suite makes
 * two clusters with pki_init/pki_issue: "home", whose CA every context
 * trusts, and "away", a foreign CA. A "rogue" directory trusts home's CA but
 * holds away's certificate for fs1, so a peer can present a foreign
 * certificate while still accepting ours. "old" is a file server whose
 * certificate has no role, as convoy issued them before roles existed.
 */
#include "convoy/pki.h"
#include "convoy/tls.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define BIG (4u << 20)

static char base[64];
static char home[128], away[128], rogue[128];
static char err[512];

static tls_ctx_t *srv;         /* balancer, home CA, requires client certs */
static tls_ctx_t *srv_fs2;     /* fs2 as a server, home CA */
static tls_ctx_t *srv_foreign; /* balancer certified by the away CA */
static tls_ctx_t *cli_fs1;     /* fs1, home CA */
static tls_ctx_t *cli_anon;    /* no certificate */
static tls_ctx_t *cli_rogue;   /* trusts home, presents away's fs1 */
static tls_ctx_t *cli_bal;     /* the balancer's certificate used to dial */
static tls_ctx_t *cli_old;     /* old, a certificate without a role */
static tls_ctx_t *srv_old;     /* old as a server */
static tls_ctx_t *cli_nocn;    /* nocn, a certificate without a common name */
static tls_ctx_t *srv_nocn;    /* nocn as a server */
static tls_ctx_t *srv_tix;     /* fs2 serving HTTPS, with session tickets */
static tls_ctx_t *srv_tix2;    /* the same, another process: other ticket keys */
static tls_ctx_t *cli_tix;     /* an HTTPS client that keeps tickets */

static int make_pkis(void)
{
    static const char *const names[] = {"balancer", "fs1", "fs2", "old", "nocn", NULL};
    snprintf(home, sizeof home, "%s/home", base);
    snprintf(away, sizeof away, "%s/away", base);
    snprintf(rogue, sizeof rogue, "%s/rogue", base);
    return fx_pki(home, names) || fx_pki(away, names) || fx_rogue(rogue, home, away, "fs1") ||
                   fx_strip_role(home, "old") || fx_strip_cn(home, "nocn")
               ? -1
               : 0;
}

static int suite_init(void)
{
    if (fx_tmpdir(base, sizeof base) != 0 || make_pkis() != 0)
        return -1;
    return tls_ctx_new(&srv, TLS_SERVER, home, "balancer", true, err, sizeof err) ||
           tls_ctx_new(&srv_fs2, TLS_SERVER, home, "fs2", false, err, sizeof err) ||
           tls_ctx_new(&srv_foreign, TLS_SERVER, away, "balancer", false, err, sizeof err) ||
           tls_ctx_new(&cli_fs1, TLS_CLIENT, home, "fs1", false, err, sizeof err) ||
           tls_ctx_new(&cli_anon, TLS_CLIENT, home, NULL, false, err, sizeof err) ||
           tls_ctx_new(&cli_rogue, TLS_CLIENT, rogue, "fs1", false, err, sizeof err) ||
           tls_ctx_new(&cli_bal, TLS_CLIENT, home, "balancer", false, err, sizeof err) ||
           tls_ctx_new(&cli_old, TLS_CLIENT, home, "old", false, err, sizeof err) ||
           tls_ctx_new(&srv_old, TLS_SERVER, home, "old", false, err, sizeof err) ||
           tls_ctx_new(&cli_nocn, TLS_CLIENT, home, "nocn", false, err, sizeof err) ||
           tls_ctx_new(&srv_nocn, TLS_SERVER, home, "nocn", false, err, sizeof err) ||
           tls_ctx_new(&srv_tix, TLS_SERVER, home, "fs2", false, err, sizeof err) ||
           tls_ctx_enable_tickets(srv_tix, err, sizeof err) ||
           tls_ctx_new(&srv_tix2, TLS_SERVER, home, "fs2", false, err, sizeof err) ||
           tls_ctx_enable_tickets(srv_tix2, err, sizeof err) ||
           tls_ctx_new(&cli_tix, TLS_CLIENT, home, NULL, false, err, sizeof err) ||
           tls_ctx_enable_tickets(cli_tix, err, sizeof err);
}

static int suite_clean(void)
{
    tls_ctx_t **all[] = {&srv,       &srv_fs2, &srv_foreign, &cli_fs1, &cli_anon,
                         &cli_rogue, &cli_bal, &cli_old,     &srv_old, &cli_nocn,
                         &srv_nocn,  &srv_tix, &srv_tix2,    &cli_tix};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        tls_ctx_free(*all[i]);
        *all[i] = NULL;
    }
    fx_rmtree(base);
    return 0;
}

/* Moves every pending ciphertext byte from one session to the other. */
static void shuttle(tls_t *from, tls_t *to)
{
    static unsigned char buf[64 * 1024];
    size_t n;
    while ((n = tls_out_take(from, buf, sizeof buf)) > 0)
        CU_ASSERT_EQUAL_FATAL(tls_feed(to, buf, n), 0);
}

struct pair {
    tls_t *c, *s;
    int crc, src; /* last tls_handshake() result of client and server */
};

/* Runs both handshakes until each is done or failed; a few rounds are
 * plenty (TLS 1.3 needs one and a half round trips). */
static void handshake_pair(struct pair *p)
{
    p->crc = p->src = 0;
    for (int round = 0; round < 8 && (p->crc == 0 || p->src == 0); round++) {
        if (p->crc == 0)
            p->crc = tls_handshake(p->c);
        shuttle(p->c, p->s);
        if (p->src == 0)
            p->src = tls_handshake(p->s);
        shuttle(p->s, p->c);
    }
}

/* A pair whose sides expect the given peer roles (NULL: any). */
static void handshake_roles(struct pair *p, tls_ctx_t *client, const char *client_expects,
                            tls_ctx_t *server, const char *server_expects)
{
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->c, client, NULL, client_expects), 0);
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->s, server, NULL, server_expects), 0);
    handshake_pair(p);
}

/* A pair whose sides expect the given peer names (NULL: any). */
static void handshake(struct pair *p, tls_ctx_t *client, const char *client_expects,
                      tls_ctx_t *server, const char *server_expects)
{
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->c, client, client_expects, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->s, server, server_expects, NULL), 0);
    handshake_pair(p);
}

static void pair_free(struct pair *p)
{
    tls_free(p->c);
    tls_free(p->s);
}

/* Sends len bytes from one side and reads them all on the other. */
static void transfer(tls_t *from, tls_t *to, const unsigned char *data, size_t len)
{
    unsigned char *got = malloc(len);
    size_t have = 0;
    CU_ASSERT_FATAL(got != NULL);
    CU_ASSERT_EQUAL(tls_write(from, data, len), 0);
    shuttle(from, to);
    for (;;) {
        ssize_t n = tls_read(to, got + have, len - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    CU_ASSERT_EQUAL(have, len);
    CU_ASSERT(have == len && memcmp(got, data, len) == 0);
    free(got);
}

static void test_mutual(void)
{
    struct pair p;
    handshake(&p, cli_fs1, "balancer", srv, NULL);
    CU_ASSERT_EQUAL(p.crc, 1);
    CU_ASSERT_EQUAL(p.src, 1);
    CU_ASSERT(tls_handshake_done(p.c) && tls_handshake_done(p.s));
    CU_ASSERT(tls_peer_name(p.c) != NULL && strcmp(tls_peer_name(p.c), "balancer") == 0);
    CU_ASSERT(tls_peer_name(p.s) != NULL && strcmp(tls_peer_name(p.s), "fs1") == 0);
    transfer(p.c, p.s, (const unsigned char *)"hello", 5);
    transfer(p.s, p.c, (const unsigned char *)"welcome", 7);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0); /* nothing left for the next caller */
    pair_free(&p);
}

static void test_client_cert_foreign_ca(void)
{
    struct pair p;
    handshake(&p, cli_rogue, NULL, srv, NULL);
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_errstr(p.s), "certificate verify failed"));
    CU_ASSERT_PTR_NULL(tls_peer_name(p.s));
    /* TLS 1.3: the client finished first and learns from the alert. */
    unsigned char buf[16];
    CU_ASSERT(tls_read(p.c, buf, sizeof buf) < 0 && tls_read(p.c, buf, sizeof buf) != TLS_EOF);
    pair_free(&p);
}

static void test_client_without_cert(void)
{
    struct pair p;
    handshake(&p, cli_anon, NULL, srv, NULL);
    CU_ASSERT_EQUAL(p.src, TLS_ENOCERT);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s), "peer did not return a certificate");
    pair_free(&p);
}

static void test_server_cert_foreign_ca(void)
{
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv_foreign, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c),
                           "certificate verify failed: unable to get local issuer certificate");
    CU_ASSERT(p.src < 0); /* the server got the alert */
    pair_free(&p);
}

static void test_expect_peer_mismatch(void)
{
    struct pair p;
    handshake(&p, cli_fs1, "balancer", srv_fs2, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c), "peer is 'fs2', expected 'balancer'");
    CU_ASSERT_PTR_NULL(tls_peer_name(p.c));
    CU_ASSERT(p.src < 0);
    /* Failures are sticky: the session gives the same answer again. */
    CU_ASSERT_EQUAL(tls_handshake(p.c), TLS_EVERIFY);
    pair_free(&p);
}

/* A server session that names its peer checks it, and insists on a
 * certificate even on a context that does not require one. */
static void test_server_expects_peer(void)
{
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv_fs2, "fs1");
    CU_ASSERT_EQUAL(p.src, 1);
    CU_ASSERT(tls_peer_name(p.s) != NULL && strcmp(tls_peer_name(p.s), "fs1") == 0);
    pair_free(&p);
    handshake(&p, cli_fs1, NULL, srv_fs2, "fs3");
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s), "peer is 'fs1', expected 'fs3'");
    pair_free(&p);
    handshake(&p, cli_anon, NULL, srv_fs2, "fs1");
    CU_ASSERT_EQUAL(p.src, TLS_ENOCERT);
    pair_free(&p);
    /* Without a name the same context asks for nothing. */
    handshake(&p, cli_anon, NULL, srv_fs2, NULL);
    CU_ASSERT_EQUAL(p.src, 1);
    CU_ASSERT_PTR_NULL(tls_peer_name(p.s));
    pair_free(&p);
}

static void test_roles_known(void)
{
    struct pair p;
    handshake_roles(&p, cli_fs1, PKI_ROLE_BALANCER, srv, PKI_ROLE_FILESERVER);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    CU_ASSERT(tls_peer_role(p.c) != NULL && strcmp(tls_peer_role(p.c), "balancer") == 0);
    CU_ASSERT(tls_peer_role(p.s) != NULL && strcmp(tls_peer_role(p.s), "fileserver") == 0);
    pair_free(&p);
}

/* A dialler that wants the balancer refuses a file server's certificate. */
static void test_client_checks_role(void)
{
    struct pair p;
    handshake_roles(&p, cli_fs1, PKI_ROLE_BALANCER, srv_fs2, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c),
                           "peer 'fs2' has role 'fileserver', expected 'balancer'");
    CU_ASSERT_PTR_NULL(tls_peer_role(p.c));
    CU_ASSERT(p.src < 0); /* the server got the alert */
    pair_free(&p);
}

/* A server that wants a compute server refuses a file server, and asks for
 * a certificate to check even on a context that requires none. */
static void test_server_checks_role(void)
{
    struct pair p;
    handshake_roles(&p, cli_fs1, NULL, srv_fs2, PKI_ROLE_COMPUTE);
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s), "peer 'fs1' has role 'fileserver', expected 'compute'");
    pair_free(&p);
    handshake_roles(&p, cli_anon, NULL, srv_fs2, PKI_ROLE_FILESERVER);
    CU_ASSERT_EQUAL(p.src, TLS_ENOCERT);
    pair_free(&p);
}

/* A certificate from before roles is refused wherever a role is expected,
 * in both directions, and still works where none is. */
static void test_no_role(void)
{
    struct pair p;
    handshake_roles(&p, cli_fs1, PKI_ROLE_FILESERVER, srv_old, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c), "peer 'old' has no role, expected 'fileserver'");
    pair_free(&p);
    handshake_roles(&p, cli_old, NULL, srv, PKI_ROLE_FILESERVER);
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s), "peer 'old' has no role, expected 'fileserver'");
    pair_free(&p);
    handshake_roles(&p, cli_old, NULL, srv, NULL);
    CU_ASSERT_EQUAL(p.src, 1);
    CU_ASSERT(tls_peer_name(p.s) != NULL && strcmp(tls_peer_name(p.s), "old") == 0);
    CU_ASSERT_PTR_NULL(tls_peer_role(p.s));
    pair_free(&p);
}

/* The balancer's certificate has no clientAuth: it cannot dial as a member. */
static void test_balancer_cannot_dial(void)
{
    struct pair p;
    handshake(&p, cli_bal, NULL, srv, NULL);
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s),
                           "certificate verify failed: unsuitable certificate purpose");
    pair_free(&p);
}

/* A certificate without a common name names nobody: refused by a client,
 * and by a server that asks for a certificate. */
static void test_no_common_name(void)
{
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv_nocn, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c), "peer certificate has no readable common name");
    pair_free(&p);
    handshake(&p, cli_nocn, NULL, srv, NULL);
    CU_ASSERT_EQUAL(p.src, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.s), "peer certificate has no readable common name");
    CU_ASSERT_PTR_NULL(tls_peer_name(p.s));
    pair_free(&p);
}

/* Makes a server context for name from dir: 0 or the error, words in err. */
static int try_ctx(const char *dir, const char *name)
{
    tls_ctx_t *ctx = NULL;
    int rc = tls_ctx_new(&ctx, TLS_SERVER, dir, name, false, err, sizeof err);
    tls_ctx_free(ctx);
    return rc;
}

/* As ssh does: a key that others can read is refused, naming it. */
static void test_key_mode(void)
{
    char key[256], want[700];
    snprintf(key, sizeof key, "%s/fs2.key", home);
    const mode_t modes[] = {0644, 0640, 0604, 0660};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(chmod(key, modes[i]), 0);
        CU_ASSERT_EQUAL(try_ctx(home, "fs2"), -EPERM);
    }
    snprintf(want, sizeof want,
             "tls: %s has mode 0660: group and others can read it (chmod 600 %s)", key, key);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL_FATAL(chmod(key, 0400), 0);
    CU_ASSERT_EQUAL(try_ctx(home, "fs2"), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(key, 0600), 0);
    CU_ASSERT_EQUAL(try_ctx(home, "fs2"), 0);
    /* A certificate others may write is refused too: they could swap it. */
    char crt[256];
    snprintf(crt, sizeof crt, "%s/ca.crt", home);
    CU_ASSERT_EQUAL_FATAL(chmod(crt, 0666), 0);
    CU_ASSERT_EQUAL(try_ctx(home, "fs2"), -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "group and others can write it"));
    CU_ASSERT_EQUAL_FATAL(chmod(crt, 0644), 0);
}

/* Copies home's CA and fs1's pair into dir (made with mode 0700). */
static void copy_pki(const char *dir)
{
    static const char *const files[] = {"ca.crt", "fs1.crt", "fs1.key"};
    char from[256], to[256];
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", home, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        CU_ASSERT_EQUAL_FATAL(fx_copy(from, to), 0);
        CU_ASSERT_EQUAL_FATAL(chmod(to, 0600), 0);
    }
}

/* A folder others may write, the PKI's or one above it, is refused unless
 * it is sticky (as /tmp is): there anyone could replace a key. */
static void test_open_folder(void)
{
    char open[128], pki[160], want[400];
    snprintf(open, sizeof open, "%s/open", base);
    snprintf(pki, sizeof pki, "%s/pki", open);
    CU_ASSERT_EQUAL_FATAL(mkdir(open, 0700), 0);
    copy_pki(pki);
    CU_ASSERT_EQUAL(try_ctx(pki, "fs1"), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(pki, 0770), 0);
    CU_ASSERT_EQUAL(try_ctx(pki, "fs1"), -EPERM);
    snprintf(want, sizeof want,
             "tls: folder %s has mode 0770: group or others could replace the files in it", pki);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL_FATAL(chmod(pki, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(open, 0777), 0);
    CU_ASSERT_EQUAL(try_ctx(pki, "fs1"), -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, open));
    CU_ASSERT_EQUAL_FATAL(chmod(open, 01777), 0);
    CU_ASSERT_EQUAL(try_ctx(pki, "fs1"), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(open, 0700), 0);
}

/* A pair on cli_tix expecting a fileserver, offering blob (len 0: none);
 * the client reads once so that the server's ticket is taken in. */
static void handshake_offer(struct pair *p, tls_ctx_t *server, const char *role,
                            const unsigned char *blob, size_t len)
{
    unsigned char buf[16];
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->c, cli_tix, NULL, role), 0);
    CU_ASSERT_EQUAL_FATAL(tls_new(&p->s, server, NULL, NULL), 0);
    if (len > 0)
        CU_ASSERT_EQUAL(tls_session_offer(p->c, blob, len), 0);
    handshake_pair(p);
    if (p->crc == 1)
        CU_ASSERT_EQUAL(tls_read(p->c, buf, sizeof buf), 0);
}

/* The second handshake resumes from the first one's ticket, and knows the
 * server by the same name and role. */
static void test_resume(void)
{
    unsigned char blob[8192];
    struct pair p;
    handshake_offer(&p, srv_tix, PKI_ROLE_FILESERVER, NULL, 0);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    CU_ASSERT(!tls_session_resumed(p.c));
    CU_ASSERT_EQUAL(tls_session_save(p.c, blob, 16), -ENOSPC);
    ssize_t n = tls_session_save(p.c, blob, sizeof blob);
    CU_ASSERT_FATAL(n > 0);
    pair_free(&p);

    handshake_offer(&p, srv_tix, PKI_ROLE_FILESERVER, blob, (size_t)n);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    CU_ASSERT(tls_session_resumed(p.c) && tls_session_resumed(p.s));
    CU_ASSERT(tls_peer_name(p.c) != NULL && strcmp(tls_peer_name(p.c), "fs2") == 0);
    CU_ASSERT(tls_peer_role(p.c) != NULL && strcmp(tls_peer_role(p.c), "fileserver") == 0);
    transfer(p.c, p.s, (const unsigned char *)"GET /", 5);
    CU_ASSERT_EQUAL(tls_session_save(p.c, blob, sizeof blob), n); /* still good: kept */
    pair_free(&p);

    /* Resuming is no way around the role check. */
    handshake_offer(&p, srv_tix, PKI_ROLE_BALANCER, blob, (size_t)n);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c),
                           "peer 'fs2' has role 'fileserver', expected 'balancer'");
    pair_free(&p);

    /* Another server's keys cannot open the ticket: a full handshake. */
    handshake_offer(&p, srv_tix2, PKI_ROLE_FILESERVER, blob, (size_t)n);
    CU_ASSERT(p.crc == 1 && p.src == 1);
    CU_ASSERT(!tls_session_resumed(p.c) && !tls_session_resumed(p.s));
    pair_free(&p);
}

/* Control edges keep tickets off: none are offered, none can be enabled. */
static void test_no_tickets_on_control(void)
{
    unsigned char blob[8192], buf[16];
    tls_ctx_t *ctx = NULL;
    CU_ASSERT_EQUAL(tls_ctx_new(&ctx, TLS_SERVER, home, "balancer", true, err, sizeof err), 0);
    CU_ASSERT_EQUAL(tls_ctx_enable_tickets(ctx, err, sizeof err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "client certificates"));
    tls_ctx_free(ctx);
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_EQUAL(tls_read(p.c, buf, sizeof buf), 0);
    CU_ASSERT_EQUAL(tls_session_save(p.c, blob, sizeof blob), 0);
    CU_ASSERT_EQUAL(tls_session_offer(p.c, "junk", 4), -EINVAL); /* and too late */
    pair_free(&p);
    CU_ASSERT_EQUAL_FATAL(tls_new(&p.c, cli_tix, NULL, NULL), 0);
    CU_ASSERT_EQUAL(tls_session_offer(p.c, "junk", 4), -EINVAL);
    tls_free(p.c);
}

static void test_big_payload(void)
{
    unsigned char *data = malloc(BIG);
    CU_ASSERT_FATAL(data != NULL);
    uint32_t x = 2463534242u; /* xorshift32: bytes no compressor or pattern bug could fake */
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    transfer(p.c, p.s, data, BIG);
    transfer(p.s, p.c, data, BIG);
    pair_free(&p);
    free(data);
}

/* Ciphertext lent in pieces that end inside records: what each piece's
 * reads leave is kept (the piece is scribbled over after tls_lend_end, as
 * a receive buffer is reused), and every plaintext byte comes in order. */
static void test_lend(void)
{
    enum { LEN = 200000, PIECE = 7001 };
    unsigned char *data = malloc(LEN), *got = malloc(LEN), *wire = malloc(2 * LEN);
    CU_ASSERT_FATAL(data && got && wire);
    for (size_t i = 0; i < LEN; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    CU_ASSERT_EQUAL(tls_write(p.c, data, LEN), 0);
    size_t wlen = 0, n, have = 0;
    while ((n = tls_out_take(p.c, wire + wlen, 2 * LEN - wlen)) > 0)
        wlen += n;
    unsigned char piece[PIECE];
    for (size_t off = 0; off < wlen; off += PIECE) {
        size_t len = wlen - off < PIECE ? wlen - off : PIECE;
        memcpy(piece, wire + off, len);
        tls_lend(p.s, piece, len);
        ssize_t r;
        while ((r = tls_read(p.s, got + have, LEN - have)) > 0)
            have += (size_t)r;
        CU_ASSERT_EQUAL(r, 0);
        CU_ASSERT_EQUAL(tls_lend_end(p.s), 0);
        memset(piece, 0xa5, sizeof piece);
    }
    CU_ASSERT_EQUAL(have, LEN);
    CU_ASSERT(have == LEN && memcmp(got, data, LEN) == 0);
    pair_free(&p);
    free(data);
    free(got);
    free(wire);
}

static size_t heap_used(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* An idle session holds no buffers: OpenSSL's are released between
 * records, and the queues free what has been taken. A burst leaves nothing
 * behind (memory BIOs kept their peak size: ~55 KiB a session idle, and
 * 64 KiB more in each direction after one 64 KiB write). */
static void test_idle_memory(void)
{
    enum { PAIRS = 20 };
    static struct pair p[PAIRS];
    static unsigned char data[256 * 1024];
    memset(data, 0x5a, sizeof data);
    size_t before = heap_used();
    for (int i = 0; i < PAIRS; i++) {
        handshake(&p[i], cli_fs1, NULL, srv, NULL);
        CU_ASSERT_FATAL(p[i].crc == 1 && p[i].src == 1);
    }
    size_t idle = heap_used();
    for (int i = 0; i < PAIRS; i++) {
        transfer(p[i].c, p[i].s, data, sizeof data);
        transfer(p[i].s, p[i].c, data, sizeof data);
    }
    size_t after = heap_used();
    size_t per_pair = (idle - before) / PAIRS;
    CU_ASSERT(per_pair < 48 * 1024);
    CU_ASSERT(after < idle + PAIRS * 1024);
    for (int i = 0; i < PAIRS; i++)
        pair_free(&p[i]);
}

/* Records straight to the caller: everything arrives through the output
 * function and nothing waits for tls_out_take. */
struct sink {
    tls_t *to;  /* fed with what arrives */
    size_t got; /* bytes seen */
    int fail;   /* returned instead of taking the bytes, when not 0 */
};

static int sink_take(void *arg, const void *data, size_t len)
{
    struct sink *k = arg;
    if (k->fail != 0)
        return k->fail;
    k->got += len;
    return tls_feed(k->to, data, len);
}

static void test_output_fn(void)
{
    static unsigned char data[300 * 1024];
    memset(data, 0xa5, sizeof data);
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_FATAL(p.crc == 1 && p.src == 1);
    struct sink k = {.to = p.s};
    CU_ASSERT_EQUAL(tls_write(p.c, "queued", 6), 0);
    size_t queued = tls_out_pending(p.c);
    CU_ASSERT_EQUAL(tls_set_output(p.c, sink_take, &k), 0);
    CU_ASSERT_EQUAL(k.got, queued); /* what was queued went first */
    CU_ASSERT_EQUAL(tls_out_pending(p.c), 0);
    CU_ASSERT_EQUAL(tls_write(p.c, data, sizeof data), 0);
    CU_ASSERT(k.got > queued + sizeof data); /* records carry some overhead */
    CU_ASSERT_EQUAL(tls_out_pending(p.c), 0);
    unsigned char *got = malloc(sizeof data + 6);
    size_t have = 0;
    ssize_t n;
    CU_ASSERT_FATAL(got != NULL);
    while ((n = tls_read(p.s, got + have, sizeof data + 6 - have)) > 0)
        have += (size_t)n;
    CU_ASSERT(have == sizeof data + 6 && memcmp(got, "queued", 6) == 0 &&
              memcmp(got + 6, data, sizeof data) == 0);
    free(got);
    k.fail = -ENOMEM;
    CU_ASSERT_EQUAL(tls_write(p.c, "x", 1), TLS_EPROTO);
    CU_ASSERT_STRING_EQUAL(tls_errstr(p.c), "output refused: Cannot allocate memory");
    CU_ASSERT_EQUAL(ERR_peek_error(), 0);
    pair_free(&p);
}

static void test_close_notify(void)
{
    struct pair p;
    unsigned char buf[16];
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_EQUAL(tls_read(p.s, buf, sizeof buf), 0); /* nothing yet */
    tls_close(p.c);
    CU_ASSERT(tls_out_pending(p.c) > 0);
    shuttle(p.c, p.s);
    CU_ASSERT_EQUAL(tls_read(p.s, buf, sizeof buf), TLS_EOF);
    CU_ASSERT_EQUAL(tls_read(p.s, buf, sizeof buf), TLS_EOF);
    pair_free(&p);
}

static void test_garbage(void)
{
    /* An application-data record header and a body that no key made. */
    unsigned char junk[64] = {0x17, 0x03, 0x03, 0x00, 59};
    for (size_t i = 5; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37);
    unsigned char buf[64];
    struct pair p;
    handshake(&p, cli_fs1, NULL, srv, NULL);
    CU_ASSERT_EQUAL(tls_feed(p.s, junk, sizeof junk), 0);
    CU_ASSERT_EQUAL(tls_read(p.s, buf, sizeof buf), TLS_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_errstr(p.s), "bad record mac"));
    CU_ASSERT_EQUAL(tls_write(p.s, "x", 1), TLS_EPROTO);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0);
    pair_free(&p);

    tls_t *s;
    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CU_ASSERT_EQUAL_FATAL(tls_new(&s, srv, NULL, NULL), 0);
    CU_ASSERT_EQUAL(tls_feed(s, http, sizeof http - 1), 0);
    CU_ASSERT_EQUAL(tls_handshake(s), TLS_EPROTO);
    CU_ASSERT_STRING_NOT_EQUAL(tls_errstr(s), "no error");
    tls_free(s);
}

/* A ClientHello offering at most TLS 1.2, made by OpenSSL directly. */
static size_t tls12_client_hello(unsigned char *buf, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    int n = 0;
    if (ssl != NULL && in != NULL && out != NULL &&
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION)) {
        SSL_set_bio(ssl, in, out);
        in = out = NULL;
        SSL_connect(ssl); /* wants the server's reply */
        n = BIO_read(SSL_get_wbio(ssl), buf, (int)cap);
    }
    BIO_free(in);
    BIO_free(out);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return n > 0 ? (size_t)n : 0;
}

/* Moves what a bare OpenSSL client wrote to a session and back. */
static void shuttle_raw(SSL *raw, tls_t *t)
{
    unsigned char buf[16384];
    int n;
    size_t m;
    while ((n = BIO_read(SSL_get_wbio(raw), buf, sizeof buf)) > 0)
        CU_ASSERT_EQUAL_FATAL(tls_feed(t, buf, (size_t)n), 0);
    tls_handshake(t);
    while ((m = tls_out_take(t, buf, sizeof buf)) > 0)
        CU_ASSERT_EQUAL_FATAL(BIO_write(SSL_get_rbio(raw), buf, (int)m), (int)m);
}

/* The server's order wins: a client that lists AES-256-GCM and ChaCha20
 * before AES-128-GCM still gets AES-128-GCM. */
static void test_server_cipher_order(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    CU_ASSERT_FATAL(ctx != NULL);
    CU_ASSERT_FATAL(SSL_CTX_set_ciphersuites(
        ctx, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"));
    SSL *raw = SSL_new(ctx);
    CU_ASSERT_FATAL(raw != NULL);
    SSL_set_bio(raw, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(raw);
    tls_t *s;
    CU_ASSERT_EQUAL_FATAL(tls_new(&s, srv_fs2, NULL, NULL), 0);
    for (int round = 0; round < 4 && !tls_handshake_done(s); round++) {
        SSL_do_handshake(raw);
        shuttle_raw(raw, s);
    }
    CU_ASSERT(tls_handshake_done(s));
    CU_ASSERT(tls_cipher(s) != NULL && strcmp(tls_cipher(s), "TLS_AES_128_GCM_SHA256") == 0);
    CU_ASSERT_STRING_EQUAL(SSL_get_cipher_name(raw), "TLS_AES_128_GCM_SHA256");
    tls_free(s);
    SSL_free(raw);
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

static void test_tls12_refused(void)
{
    unsigned char hello[4096];
    size_t n = tls12_client_hello(hello, sizeof hello);
    CU_ASSERT_FATAL(n > 0);
    tls_t *s;
    CU_ASSERT_EQUAL_FATAL(tls_new(&s, srv, NULL, NULL), 0);
    CU_ASSERT_EQUAL(tls_feed(s, hello, n), 0);
    CU_ASSERT_EQUAL(tls_handshake(s), TLS_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_errstr(s), "unsupported protocol"));
    tls_free(s);
}

static void test_ctx_errors(void)
{
    tls_ctx_t *ctx = NULL;
    char want[256];
    CU_ASSERT(tls_ctx_new(&ctx, TLS_SERVER, home, "nobody", true, err, sizeof err) < 0);
    snprintf(want, sizeof want, "tls: load %s/nobody.crt: No such file or directory", home);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT(tls_ctx_new(&ctx, TLS_CLIENT, "/nonexistent", NULL, false, err, sizeof err) < 0);
    CU_ASSERT_STRING_EQUAL(err, "tls: load /nonexistent/ca.crt: No such file or directory");
    CU_ASSERT_PTR_NULL(ctx);

    tls_t *c;
    CU_ASSERT_EQUAL_FATAL(tls_new(&c, cli_fs1, NULL, NULL), 0);
    CU_ASSERT_EQUAL(tls_write(c, "x", 1), TLS_EPROTO);
    CU_ASSERT_PTR_NULL(tls_peer_name(c));
    tls_free(c);
}

/* A user's client trusts one CA file: a server of that CA passes, one of
 * another CA does not; a file others may replace, or that holds no
 * certificate, is refused. */
static void test_ca_file(void)
{
    char ca[256], bad[256];
    tls_ctx_t *ctx = NULL;
    struct pair p;
    snprintf(ca, sizeof ca, "%s/ca.crt", home);
    CU_ASSERT_EQUAL_FATAL(tls_ctx_new_cafile(&ctx, ca, err, sizeof err), 0);
    handshake(&p, ctx, NULL, srv_fs2, NULL);
    CU_ASSERT_EQUAL(p.crc, 1);
    CU_ASSERT_EQUAL(p.src, 1);
    pair_free(&p);
    handshake(&p, ctx, NULL, srv_foreign, NULL);
    CU_ASSERT_EQUAL(p.crc, TLS_EVERIFY);
    pair_free(&p);
    tls_ctx_free(ctx);
    ctx = NULL;
    CU_ASSERT_EQUAL(tls_ctx_new_cafile(&ctx, "/nonexistent/ca.crt", err, sizeof err), -ENOENT);
    CU_ASSERT_STRING_EQUAL(err, "tls: load /nonexistent/ca.crt: No such file or directory");
    snprintf(bad, sizeof bad, "%s/open-ca.crt", base);
    CU_ASSERT_FATAL(fx_copy(ca, bad) == 0);
    CU_ASSERT_FATAL(chmod(bad, 0666) == 0);
    CU_ASSERT_EQUAL(tls_ctx_new_cafile(&ctx, bad, err, sizeof err), -EPERM);
    CU_ASSERT_FATAL(chmod(bad, 0644) == 0);
    FILE *f = fopen(bad, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("not a certificate\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(tls_ctx_new_cafile(&ctx, bad, err, sizeof err), -EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no certificate"));
    CU_ASSERT_PTR_NULL(ctx);
}

void suite_tls(void)
{
    CU_pSuite s = CU_add_suite("tls", suite_init, suite_clean);
    CU_add_test(s, "mutual handshake, peer names", test_mutual);
    CU_add_test(s, "client cert from another CA", test_client_cert_foreign_ca);
    CU_add_test(s, "client without cert", test_client_without_cert);
    CU_add_test(s, "server cert from another CA", test_server_cert_foreign_ca);
    CU_add_test(s, "expected peer name mismatch", test_expect_peer_mismatch);
    CU_add_test(s, "server names its peer", test_server_expects_peer);
    CU_add_test(s, "peer roles known", test_roles_known);
    CU_add_test(s, "client refuses a server's wrong role", test_client_checks_role);
    CU_add_test(s, "server refuses a client's wrong role", test_server_checks_role);
    CU_add_test(s, "certificate without a role", test_no_role);
    CU_add_test(s, "balancer certificate cannot dial", test_balancer_cannot_dial);
    CU_add_test(s, "certificate without a common name", test_no_common_name);
    CU_add_test(s, "key readable by others refused", test_key_mode);
    CU_add_test(s, "folder writable by others refused", test_open_folder);
    CU_add_test(s, "session resumed from a ticket", test_resume);
    CU_add_test(s, "no tickets on control edges", test_no_tickets_on_control);
    CU_add_test(s, "4 MiB both ways", test_big_payload);
    CU_add_test(s, "idle sessions hold no buffers", test_idle_memory);
    CU_add_test(s, "records straight to an output function", test_output_fn);
    CU_add_test(s, "close_notify is EOF", test_close_notify);
    CU_add_test(s, "garbage is a protocol error", test_garbage);
    CU_add_test(s, "server's cipher order wins", test_server_cipher_order);
    CU_add_test(s, "TLS 1.2 refused", test_tls12_refused);
    CU_add_test(s, "context and misuse errors", test_ctx_errors);
    CU_add_test(s, "a user's client trusts one CA file", test_ca_file);
    CU_add_test(s, "lent ciphertext: read in place, the rest kept", test_lend);
}
