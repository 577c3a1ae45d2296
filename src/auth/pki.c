/*
 * pki — the cluster's certificate authority, made with the OpenSSL 3.0 API.
 *
 * The design is simple: one directory holds the CA (ca.crt, ca.key) and every
 * issued identity (NAME.crt, NAME.key). Keys are EC P-256: every TLS 1.3
 * stack signs with it, and making one takes a millisecond. The CA signs leaf
 * certificates directly; there are no intermediates, so a chain is always
 * "leaf, CA" and the CA certificate alone is the trust anchor.
 *
 * A leaf's role is a URI subject alternative name, "convoy:role:ROLE". A SAN
 * rather than a private extension because OpenSSL parses SANs itself
 * (X509_get_ext_d2i), `openssl x509 -text` shows them, and every TLS stack
 * ignores a URI when matching host names, so HTTPS clients are unaffected; it
 * is how SPIFFE carries workload identities. The subject's OU would have
 * done as well, but a name attribute is easier to get wrong (several OUs,
 * string types). The extended key usage is the least each role needs.
 *
 * Files are written whole or not at all: the bytes go to a hidden temporary
 * file created with its final mode (0600 for keys, so a key is never readable
 * by others, not even for an instant), are fsync()ed, then moved into place.
 * ca.key is moved with link(), which fails when the name exists, so two
 * concurrent `pki init` cannot both win; an issued NAME is moved with
 * rename(), because re-issuing a server's certificate is normal.
 *
 * Reading is as careful as writing: before a daemon (tls.c) or `pki issue`
 * trusts a file, pki_check_file and pki_check_dir make ssh's StrictModes
 * checks, so a key others can read, or one that sits in a folder where others
 * could swap it, is refused with the file and the reason.
 */
#include "convoy/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PKI_NAME_MAX    63
#define PKI_DNS_MAX     253   /* longest DNS name (RFC 1035) */
#define PKI_CA_DAYS     3650  /* ten years */
#define PKI_LEAF_DAYS   825   /* the longest lifetime TLS clients accept */
#define PKI_SKEW_SECS   (-60) /* notBefore a minute back: peers' clocks drift */
#define PKI_SERIAL_BITS 128
#define PKI_CA_CN       "convoy cluster CA"
#define PKI_PATH_MAX    4096

/* What each role may do: the balancer and the front-end only accept
 * connections (members dial them), file and compute servers also dial. */
static const struct pki_role_def {
    const char *name;
    const char *eku; /* extendedKeyUsage, openssl.cnf syntax */
} pki_roles[] = {
    {PKI_ROLE_BALANCER, "serverAuth"},
    {PKI_ROLE_FILESERVER, "serverAuth,clientAuth"},
    {PKI_ROLE_FRONTEND, "serverAuth,clientAuth"}, /* it dials the chain's head */
    {PKI_ROLE_COMPUTE, "serverAuth,clientAuth"},
};

static const struct pki_role_def *pki_role_find(const char *role)
{
    for (size_t i = 0; role != NULL && i < sizeof pki_roles / sizeof pki_roles[0]; i++) {
        if (strcmp(role, pki_roles[i].name) == 0)
            return &pki_roles[i];
    }
    return NULL;
}

bool pki_role_ok(const char *role)
{
    return pki_role_find(role) != NULL;
}

static int pki_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "pki: <fmt>" into err and returns rc, so that failures read
 * `return pki_fail(err, errlen, -EINVAL, "...")`. */
static int pki_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "pki: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < errlen)
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int pki_ossl_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An OpenSSL call failed: report what was being done with the oldest queued
 * reason, and leave the thread's error queue empty for the next caller. */
static int pki_ossl_fail(char *err, size_t errlen, const char *fmt, ...)
{
    char what[PKI_PATH_MAX + 64];
    char reason[256] = "unknown OpenSSL error";
    unsigned long code = ERR_get_error();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (code != 0)
        ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return pki_fail(err, errlen, -EIO, "%s: %s", what, reason);
}

static int pki_say(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the reason without a prefix and returns rc: the checks' and the
 * file writer's callers (tls.c, users.c, pki.c itself) add their own. */
static int pki_say(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Owned by us or by root: anyone else could change its mode or contents. */
static bool pki_owner_ok(const struct stat *st)
{
    return st->st_uid == geteuid() || st->st_uid == 0;
}

int pki_check_file(int fd, const char *path, bool secret, char *err, size_t errlen)
{
    struct stat st;
    mode_t others = secret ? 077 : 022;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        pki_say(err, errlen, 0, "stat %s: %s", path, strerror(-rc));
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        pki_say(err, errlen, 0, "%s is not a regular file", path);
        return -EPERM;
    }
    if (!pki_owner_ok(&st)) {
        pki_say(err, errlen, 0, "%s is owned by uid %u, not by us (uid %u) or root", path,
                (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (st.st_mode & others) {
        pki_say(err, errlen, 0, "%s has mode %04o: group and others can %s it (chmod %s %s)", path,
                (unsigned)(st.st_mode & 07777), secret ? "read" : "write", secret ? "600" : "644",
                path);
        return -EPERM;
    }
    return 0;
}

/* One folder of pki_check_dir's walk. */
static int pki_check_one_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        int rc = -errno;
        pki_say(err, errlen, 0, "stat %s: %s", dir, strerror(-rc));
        return rc;
    }
    if (!pki_owner_ok(&st)) {
        pki_say(err, errlen, 0, "folder %s is owned by uid %u, not by us (uid %u) or root", dir,
                (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
        pki_say(err, errlen, 0,
                "folder %s has mode %04o: group or others could replace the files in it", dir,
                (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

int pki_check_dir(const char *dir, char *err, size_t errlen)
{
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL) {
        int rc = -errno;
        pki_say(err, errlen, 0, "%s: %s", dir, strerror(-rc));
        return rc;
    }
    /* From the folder itself up to "/"; realpath left no links to follow. */
    for (;;) {
        int rc = pki_check_one_dir(real, err, errlen);
        char *slash = strrchr(real, '/');
        if (rc != 0 || slash == NULL || (slash == real && real[1] == '\0'))
            return rc;
        slash[slash == real ? 1 : 0] = '\0';
    }
}

static int pki_path(char *buf, size_t cap, const char *dir, const char *name, const char *ext)
{
    int n = snprintf(buf, cap, "%s/%s%s", dir, name, ext);
    return n >= 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* 1–63 of [A-Za-z0-9._-], not starting with '.' (no hidden files, no "."
 * or ".."), and not "ca", which names the authority's own files. */
static bool pki_name_ok(const char *name)
{
    size_t len = strnlen(name, PKI_NAME_MAX + 1);
    if (len == 0 || len > PKI_NAME_MAX || name[0] == '.' || strcmp(name, "ca") == 0)
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* A host name: 1–253 of letters, digits, '-' and '.', optionally behind "*."
 * for a wildcard. Refusing everything else keeps a SAN from smuggling in
 * separators or control characters. */
static bool pki_dns_ok(const char *host)
{
    if (strncmp(host, "*.", 2) == 0)
        host += 2;
    size_t len = strnlen(host, PKI_DNS_MAX + 1);
    if (len == 0 || len > PKI_DNS_MAX || host[0] == '.' || host[0] == '-')
        return false;
    return strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") == len;
}

static int pki_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One file of a pair: where it goes and the temporary file it starts as. */
struct pki_file {
    char path[PKI_PATH_MAX];
    char tmp[PKI_PATH_MAX];
    bool tmp_exists; /* tmp is on disk and still ours to remove */
};

/* Writes the len bytes of data to a hidden temporary file in dir, created
 * with `mode` from the start and synced, and names its destination
 * dir/base+ext. */
static int pki_write_tmp(struct pki_file *f, const char *dir, const char *base, const char *ext,
                         const char *data, size_t len, mode_t mode, char *err, size_t errlen)
{
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return pki_say(err, errlen, -EIO, "random temporary name: RAND_bytes failed");
    int n = snprintf(f->tmp, sizeof f->tmp, "%s/.%s%s.%02x%02x%02x%02x%02x%02x", dir, base, ext,
                     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    if (n < 0 || (size_t)n >= sizeof f->tmp || pki_path(f->path, sizeof f->path, dir, base, ext))
        return pki_say(err, errlen, -ENAMETOOLONG, "path too long: %s/%s%s", dir, base, ext);
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return pki_say(err, errlen, -errno, "open %s: %s", f->path, strerror(errno));
    f->tmp_exists = true;
    int rc = pki_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        return pki_say(err, errlen, rc, "write %s: %s", f->tmp, strerror(-rc));
    return 0;
}

/* Moves the temporary file to its path: rename() replaces, link() refuses
 * (-EEXIST) an existing file. */
static int pki_place(struct pki_file *f, bool replace, char *err, size_t errlen)
{
    if (replace ? rename(f->tmp, f->path) : link(f->tmp, f->path))
        return pki_say(err, errlen, -errno, "%s %s: %s", replace ? "rename to" : "create", f->path,
                       strerror(errno));
    if (replace)
        f->tmp_exists = false;
    return 0;
}

int pki_write_atomic(const char *path, const char *data, size_t len, mode_t mode, char *err,
                     size_t errlen)
{
    struct pki_file f = {.tmp_exists = false};
    char dir[PKI_PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    int n = slash == NULL ? snprintf(dir, sizeof dir, ".")
                          : snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (*base == '\0' || n < 0 || (size_t)n >= sizeof dir)
        return pki_say(err, errlen, -EINVAL, "bad file name: %s", path);
    if (slash == path)
        dir[0] = '\0'; /* "/x": the temporary file is "/.x.…" */
    int rc = pki_write_tmp(&f, dir, base, "", data, len, mode, err, errlen);
    if (rc == 0)
        rc = pki_place(&f, true, err, errlen);
    if (f.tmp_exists)
        unlink(f.tmp);
    return rc;
}

/* Prepends "pki: " to the message in err. */
static void pki_prefix(char *err, size_t errlen)
{
    static const char prefix[] = "pki: ";
    size_t len = strnlen(err, errlen);
    if (errlen < sizeof prefix)
        return;
    if (len + sizeof prefix > errlen)
        len = errlen - sizeof prefix;
    memmove(err + sizeof prefix - 1, err, len);
    memcpy(err, prefix, sizeof prefix - 1);
    err[len + sizeof prefix - 1] = '\0';
}

/*
 * Stores key (0600) and cert (0644 less the umask) as dir/base.key and
 * dir/base.crt. Both are written before either is placed, so a full disk
 * leaves the old pair untouched; placing is two renames in a row.
 */
static int pki_store_pair(const char *dir, const char *base, EVP_PKEY *key, X509 *cert,
                          bool replace_key, char *err, size_t errlen)
{
    struct pki_file kf = {.tmp_exists = false}, cf = {.tmp_exists = false};
    int rc = -ENOMEM;
    BIO *kb = BIO_new(BIO_s_mem());
    BIO *cb = BIO_new(BIO_s_mem());
    if (kb == NULL || cb == NULL) {
        pki_fail(err, errlen, rc, "out of memory");
        goto fail;
    }
    if (!PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cb, cert)) {
        rc = pki_ossl_fail(err, errlen, "encode PEM");
        goto fail;
    }
    char *kdata, *cdata;
    long klen = BIO_get_mem_data(kb, &kdata), clen = BIO_get_mem_data(cb, &cdata);
    rc = klen > 0 && clen > 0 ? 0 : pki_say(err, errlen, -EIO, "encode PEM: empty");
    if (rc == 0)
        rc = pki_write_tmp(&kf, dir, base, ".key", kdata, (size_t)klen, 0600, err, errlen);
    if (rc == 0)
        rc = pki_write_tmp(&cf, dir, base, ".crt", cdata, (size_t)clen, 0644, err, errlen);
    if (rc == 0)
        rc = pki_place(&kf, replace_key, err, errlen);
    if (rc == 0 && (rc = pki_place(&cf, true, err, errlen)) != 0 && !replace_key)
        unlink(kf.path); /* ours alone (link() made it); it would block the next init */
    if (rc != 0)
        pki_prefix(err, errlen);
fail:
    if (cf.tmp_exists)
        unlink(cf.tmp);
    if (kf.tmp_exists)
        unlink(kf.tmp);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

/* 128 random bits: unique without a serial database, and positive as RFC
 * 5280 wants (an ASN.1 INTEGER made from a BIGNUM is never negative). */
static int pki_set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *serial = NULL;
    int ok = bn != NULL && BN_rand(bn, PKI_SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok ? 0 : -1;
}

/* A version 3 certificate for key with subject CN = cn, a random serial and
 * a validity from a minute ago for `days` days. Issuer and extensions are the
 * caller's. */
static X509 *pki_cert_new(EVP_PKEY *key, const char *cn, long days)
{
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    X509_NAME *subject = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) || pki_set_serial(x) != 0 ||
        X509_gmtime_adj(X509_getm_notBefore(x), PKI_SKEW_SECS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL ||
        !X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_pubkey(x, key)) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Adds fixed extensions, "nid=value" in openssl.cnf syntax, in order. */
struct pki_ext {
    int nid;
    const char *value;
};

static int pki_add_exts(X509 *x, X509 *issuer, const struct pki_ext *exts, size_t n)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        int ok = ext != NULL && X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        if (!ok)
            return -1;
    }
    return 0;
}

static EVP_PKEY *pki_keygen(void)
{
    return EVP_EC_gen("P-256");
}

static int pki_mkdir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return pki_fail(err, errlen, -errno, "mkdir %s: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0)
        return pki_fail(err, errlen, -errno, "stat %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pki_fail(err, errlen, -ENOTDIR, "%s: %s", dir, strerror(ENOTDIR));
    return 0;
}

int pki_init(const char *dir, char *err, size_t errlen)
{
    static const struct pki_ext ca_exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    char path[PKI_PATH_MAX];
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc = pki_mkdir(dir, err, errlen);
    if (rc != 0)
        return rc;
    if (pki_path(path, sizeof path, dir, "ca", ".key") != 0)
        return pki_fail(err, errlen, -ENAMETOOLONG, "path too long: %s", dir);
    /* Checked first only for a clear message before any work; link() in
     * pki_place() is what makes the refusal race-free. */
    if (access(path, F_OK) == 0)
        return pki_fail(err, errlen, -EEXIST, "%s exists: refusing to replace the cluster CA",
                        path);
    key = pki_keygen();
    if (key == NULL) {
        rc = pki_ossl_fail(err, errlen, "generate CA key");
        goto fail;
    }
    x = pki_cert_new(key, PKI_CA_CN, PKI_CA_DAYS);
    if (x == NULL || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        pki_add_exts(x, x, ca_exts, sizeof ca_exts / sizeof ca_exts[0]) != 0 ||
        !X509_sign(x, key, EVP_sha256())) {
        rc = pki_ossl_fail(err, errlen, "make CA certificate");
        goto fail;
    }
    rc = pki_store_pair(dir, "ca", key, x, false, err, errlen);
    if (rc == -EEXIST)
        pki_fail(err, errlen, rc, "%s exists: refusing to replace the cluster CA", path);
fail:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Opens DIR/ca.EXT for reading; on failure says which file and how to make it. */
static FILE *pki_open_ca(const char *dir, const char *ext, char *path, size_t cap, int *rc,
                         char *err, size_t errlen)
{
    if (pki_path(path, cap, dir, "ca", ext) != 0) {
        *rc = pki_fail(err, errlen, -ENAMETOOLONG, "path too long: %s", dir);
        return NULL;
    }
    FILE *f = fopen(path, "re");
    char why[PKI_PATH_MAX + 128];
    if (f == NULL && errno == ENOENT)
        *rc = pki_fail(err, errlen, -ENOENT, "open %s: %s (run `convoy pki init --dir %s`)", path,
                       strerror(ENOENT), dir);
    else if (f == NULL)
        *rc = pki_fail(err, errlen, -errno, "open %s: %s", path, strerror(errno));
    else if ((*rc = pki_check_file(fileno(f), path, strcmp(ext, ".key") == 0, why, sizeof why)))
        pki_fail(err, errlen, *rc, "%s", why);
    if (f != NULL && *rc != 0) {
        fclose(f);
        f = NULL;
    }
    return f;
}

/* Loads the CA's certificate and key and checks that they belong together. */
static int pki_load_ca(const char *dir, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
    char path[PKI_PATH_MAX];
    int rc = 0;
    FILE *f = pki_open_ca(dir, ".crt", path, sizeof path, &rc, err, errlen);
    if (f == NULL)
        return rc;
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (*cert == NULL)
        return pki_ossl_fail(err, errlen, "read %s", path);
    f = pki_open_ca(dir, ".key", path, sizeof path, &rc, err, errlen);
    if (f == NULL)
        return rc;
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*key == NULL)
        return pki_ossl_fail(err, errlen, "read %s", path);
    if (!X509_check_private_key(*cert, *key))
        return pki_ossl_fail(err, errlen, "%s does not match %s/ca.crt", path, dir);
    return 0;
}

static int pki_add_san(GENERAL_NAMES *gens, int type, ASN1_STRING *value)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    if (gen == NULL || value == NULL) {
        GENERAL_NAME_free(gen);
        ASN1_STRING_free(value);
        return -1;
    }
    GENERAL_NAME_set0_value(gen, type, value);
    if (!sk_GENERAL_NAME_push(gens, gen)) {
        GENERAL_NAME_free(gen);
        return -1;
    }
    return 0;
}

/* A DNS or URI name: both are IA5Strings. */
static int pki_add_ia5(GENERAL_NAMES *gens, int type, const char *prefix, const char *text)
{
    char buf[PKI_DNS_MAX + sizeof PKI_ROLE_URI];
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    int n = snprintf(buf, sizeof buf, "%s%s", prefix, text);
    if (s != NULL && (n < 0 || (size_t)n >= sizeof buf || !ASN1_STRING_set(s, buf, n))) {
        ASN1_IA5STRING_free(s);
        s = NULL;
    }
    return pki_add_san(gens, type, s);
}

static int pki_add_dns(GENERAL_NAMES *gens, const char *host)
{
    return pki_add_ia5(gens, GEN_DNS, "", host);
}

/*
 * subjectAltName = DNS:name, URI:convoy:role:ROLE, the dns list, then the ip
 * list. The names were validated, so a failure here is an allocation
 * failure. Built as GENERAL_NAMEs rather than a config string so no input is
 * ever parsed as syntax.
 */
static int pki_add_sans(X509 *x, const char *name, const char *role, const char *const *ips,
                        size_t nips, const char *const *dns, size_t ndns)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rc = gens != NULL ? pki_add_dns(gens, name) : -1;
    if (rc == 0)
        rc = pki_add_ia5(gens, GEN_URI, PKI_ROLE_URI, role);
    for (size_t i = 0; rc == 0 && i < ndns; i++)
        rc = pki_add_dns(gens, dns[i]);
    for (size_t i = 0; rc == 0 && i < nips; i++)
        rc = pki_add_san(gens, GEN_IPADD, a2i_IPADDRESS(ips[i]));
    if (rc == 0 && !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT))
        rc = -1;
    GENERAL_NAMES_free(gens);
    return rc;
}

static int pki_check_args(const char *name, const char *role, const char *const *ips, size_t nips,
                          const char *const *dns, size_t ndns, char *err, size_t errlen)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (name == NULL || !pki_name_ok(name))
        return pki_fail(err, errlen, -EINVAL,
                        "bad name '%.80s': want 1-63 of A-Z a-z 0-9 . _ -, "
                        "not starting with '.', and not 'ca'",
                        name != NULL ? name : "(null)");
    if (!pki_role_ok(role))
        return pki_fail(err, errlen, -EINVAL,
                        "bad role '%.80s': want balancer, fileserver, frontend or compute",
                        role != NULL ? role : "(null)");
    for (size_t i = 0; i < nips; i++) {
        if (inet_pton(AF_INET, ips[i], addr) != 1 && inet_pton(AF_INET6, ips[i], addr) != 1)
            return pki_fail(err, errlen, -EINVAL, "bad IP address '%.80s'", ips[i]);
    }
    for (size_t i = 0; i < ndns; i++) {
        if (!pki_dns_ok(dns[i]))
            return pki_fail(err, errlen, -EINVAL, "bad DNS name '%.80s'", dns[i]);
    }
    return 0;
}

int pki_issue(const char *dir, const char *name, const char *role, const char *const *ips,
              size_t nips, const char *const *dns, size_t ndns, char *err, size_t errlen)
{
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *cakey = NULL, *key = NULL;
    int rc = pki_check_args(name, role, ips, nips, dns, ndns, err, errlen);
    if (rc != 0)
        return rc;
    const struct pki_ext leaf_exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, pki_role_find(role)->eku},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    rc = pki_load_ca(dir, &ca, &cakey, err, errlen);
    if (rc != 0)
        goto fail;
    key = pki_keygen();
    if (key == NULL) {
        rc = pki_ossl_fail(err, errlen, "generate key");
        goto fail;
    }
    x = pki_cert_new(key, name, PKI_LEAF_DAYS);
    if (x == NULL || !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        pki_add_exts(x, ca, leaf_exts, sizeof leaf_exts / sizeof leaf_exts[0]) != 0 ||
        pki_add_sans(x, name, role, ips, nips, dns, ndns) != 0 ||
        !X509_sign(x, cakey, EVP_sha256())) {
        rc = pki_ossl_fail(err, errlen, "make certificate");
        goto fail;
    }
    rc = pki_store_pair(dir, name, key, x, true, err, errlen);
fail:
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
    X509_free(ca);
    return rc;
}
