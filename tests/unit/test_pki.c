/*
 * pki: a CA is made once and never replaced; an issued certificate carries
 * the name, role and addresses asked for, chains to that CA alone, and comes with
 * its own private key; keys are private to the owner; bad input is refused
 * with words a user can act on.
 */
#include "convoy/pki.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char base[64]; /* the suite's mkdtemp directory */
static char dir[128]; /* its PKI, made by suite init */
static char err[512];

static int suite_init(void)
{
    if (fx_tmpdir(base, sizeof base) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/pki", base);
    return pki_init(dir, err, sizeof err);
}

static int suite_clean(void)
{
    fx_rmtree(base);
    return 0;
}

static char *path_of(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static X509 *load_cert(const char *name)
{
    FILE *f = fopen(path_of(name), "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    FILE *f = fopen(path_of(name), "r");
    EVP_PKEY *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return k;
}

static unsigned file_mode(const char *name)
{
    struct stat st;
    return stat(path_of(name), &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
}

/* Verifies x against a store that holds only this directory's CA. */
static int verify_with_ca(X509 *x, int purpose)
{
    X509 *ca = load_cert("ca.crt");
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = ca != NULL && store != NULL && ctx != NULL && X509_STORE_add_cert(store, ca) &&
             X509_STORE_CTX_init(ctx, store, x, NULL) && X509_STORE_CTX_set_purpose(ctx, purpose) &&
             X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    return ok;
}

static void test_init_files(void)
{
    CU_ASSERT_EQUAL(file_mode("ca.key"), 0600);
    X509 *ca = load_cert("ca.crt");
    CU_ASSERT_FATAL(ca != NULL);
    EVP_PKEY *key = load_key("ca.key");
    CU_ASSERT(key != NULL && X509_check_private_key(ca, key) == 1);
    CU_ASSERT_EQUAL(X509_check_ca(ca), 1);
    CU_ASSERT(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    CU_ASSERT_EQUAL(X509_check_issued(ca, ca), X509_V_OK); /* self-signed */
    struct stat st;
    CU_ASSERT(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    EVP_PKEY_free(key);
    X509_free(ca);
}

static void test_init_refuses_second(void)
{
    X509 *before = load_cert("ca.crt");
    CU_ASSERT_EQUAL(pki_init(dir, err, sizeof err), -EEXIST);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ca.key"));
    X509 *after = load_cert("ca.crt");
    CU_ASSERT(before != NULL && after != NULL && X509_cmp(before, after) == 0);
    X509_free(after);
    X509_free(before);
}

/* True when x has a SAN of this type whose text is `want`. */
static int has_san(X509 *x, int type, const char *want)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != type)
            continue;
        if (type == GEN_DNS || type == GEN_URI) {
            /* both are IA5Strings, and the union shares their storage */
            found = strcmp((const char *)ASN1_STRING_get0_data(g->d.ia5), want) == 0;
        } else {
            ASN1_OCTET_STRING *ip = a2i_IPADDRESS(want);
            found = ip != NULL && ASN1_STRING_cmp(ip, g->d.iPAddress) == 0;
            ASN1_OCTET_STRING_free(ip);
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static void test_issue(void)
{
    const char *ips[] = {"10.0.0.7", "::1"};
    const char *dns[] = {"fs1.example.net"};
    CU_ASSERT_EQUAL_FATAL(
        pki_issue(dir, "fs1", PKI_ROLE_FILESERVER, ips, 2, dns, 1, err, sizeof err), 0);
    CU_ASSERT_EQUAL(file_mode("fs1.key"), 0600);
    X509 *x = load_cert("fs1.crt");
    EVP_PKEY *key = load_key("fs1.key");
    CU_ASSERT_FATAL(x != NULL && key != NULL);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    CU_ASSERT_STRING_EQUAL(cn, "fs1");
    CU_ASSERT(has_san(x, GEN_DNS, "fs1"));
    CU_ASSERT(has_san(x, GEN_DNS, "fs1.example.net"));
    CU_ASSERT(has_san(x, GEN_IPADD, "10.0.0.7"));
    CU_ASSERT(has_san(x, GEN_IPADD, "::1"));
    CU_ASSERT(!has_san(x, GEN_IPADD, "10.0.0.8"));
    CU_ASSERT_EQUAL(X509_check_private_key(x, key), 1);
    CU_ASSERT_EQUAL(X509_check_ca(x), 0);
    CU_ASSERT(verify_with_ca(x, X509_PURPOSE_SSL_SERVER));
    CU_ASSERT(verify_with_ca(x, X509_PURPOSE_SSL_CLIENT));
    EVP_PKEY_free(key);
    X509_free(x);
}

/* Each role is written as its URI, and gets only the key usages it needs:
 * the balancer and the front-end cannot act as TLS clients. */
static void test_roles(void)
{
    static const struct {
        const char *role;
        int client; /* may authenticate as a TLS client */
    } roles[] = {
        {PKI_ROLE_BALANCER, 0},
        {PKI_ROLE_FILESERVER, 1},
        {PKI_ROLE_FRONTEND, 1}, /* it dials the chain's head */
        {PKI_ROLE_COMPUTE, 1},
    };
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        char name[32], file[40], uri[64];
        snprintf(name, sizeof name, "r-%s", roles[i].role);
        snprintf(file, sizeof file, "%s.crt", name);
        snprintf(uri, sizeof uri, "convoy:role:%s", roles[i].role);
        CU_ASSERT_EQUAL_FATAL(
            pki_issue(dir, name, roles[i].role, NULL, 0, NULL, 0, err, sizeof err), 0);
        X509 *x = load_cert(file);
        CU_ASSERT_FATAL(x != NULL);
        CU_ASSERT(has_san(x, GEN_URI, uri));
        CU_ASSERT(has_san(x, GEN_DNS, name));
        uint32_t xku = X509_get_extended_key_usage(x);
        CU_ASSERT(xku & XKU_SSL_SERVER);
        CU_ASSERT_EQUAL(!!(xku & XKU_SSL_CLIENT), roles[i].client);
        CU_ASSERT(verify_with_ca(x, X509_PURPOSE_SSL_SERVER));
        CU_ASSERT_EQUAL(verify_with_ca(x, X509_PURPOSE_SSL_CLIENT), roles[i].client);
        X509_free(x);
    }
}

static void test_bad_role(void)
{
    const char *bad[] = {"", "admin", "Balancer", "balancer ", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(pki_issue(dir, "fs4", bad[i], NULL, 0, NULL, 0, err, sizeof err), -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad role"));
    }
    CU_ASSERT_EQUAL(access(path_of("fs4.crt"), F_OK), -1);
}

/* Temporary files are hidden; a finished call leaves none. */
static int hidden_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d != NULL)
        closedir(d);
    return d != NULL ? n : -1;
}

/* Re-issuing replaces the pair, and leaves no temporary file behind. */
static void test_reissue(void)
{
    CU_ASSERT_EQUAL_FATAL(
        pki_issue(dir, "fs2", PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err), 0);
    X509 *first = load_cert("fs2.crt");
    CU_ASSERT_EQUAL_FATAL(
        pki_issue(dir, "fs2", PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err), 0);
    X509 *second = load_cert("fs2.crt");
    EVP_PKEY *key = load_key("fs2.key");
    CU_ASSERT(first != NULL && second != NULL && X509_cmp(first, second) != 0);
    CU_ASSERT(key != NULL && X509_check_private_key(second, key) == 1);
    CU_ASSERT_EQUAL(hidden_files(), 0);
    EVP_PKEY_free(key);
    X509_free(second);
    X509_free(first);
}

static void test_bad_names(void)
{
    const char *bad[] = {
        "",          "a/b",
        "../x",      "fs 1",
        ".hidden",   "ca",
        "f\xc3\xa9", "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(
            pki_issue(dir, bad[i], PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err),
            -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad name"));
    }
    /* 63 characters is the longest name allowed. */
    CU_ASSERT_EQUAL(pki_issue(dir,
                              "012345678901234567890123456789012345678901234567890123456789012",
                              PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err),
                    0);
    const char *ip[] = {"10.0.0.256"};
    CU_ASSERT_EQUAL(pki_issue(dir, "fs3", PKI_ROLE_FILESERVER, ip, 1, NULL, 0, err, sizeof err),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "10.0.0.256"));
    const char *dns[] = {"a,IP:1.2.3.4"};
    CU_ASSERT_EQUAL(pki_issue(dir, "fs3", PKI_ROLE_FILESERVER, NULL, 0, dns, 1, err, sizeof err),
                    -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad DNS name"));
    CU_ASSERT_EQUAL(access(path_of("fs3.crt"), F_OK), -1);
}

/* pki issue refuses a CA key that others can read, as the daemons do. */
static void test_ca_key_mode(void)
{
    CU_ASSERT_EQUAL_FATAL(chmod(path_of("ca.key"), 0644), 0);
    CU_ASSERT_EQUAL(pki_issue(dir, "fs5", PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err),
                    -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ca.key has mode 0644: group and others can read it"));
    CU_ASSERT_EQUAL_FATAL(chmod(path_of("ca.key"), 0600), 0);
    CU_ASSERT_EQUAL(access(path_of("fs5.crt"), F_OK), -1);
}

static void test_missing_ca(void)
{
    char empty[128];
    snprintf(empty, sizeof empty, "%s/empty", base);
    CU_ASSERT_EQUAL_FATAL(mkdir(empty, 0700), 0);
    CU_ASSERT_EQUAL(pki_issue(empty, "fs1", PKI_ROLE_FILESERVER, NULL, 0, NULL, 0, err, sizeof err),
                    -ENOENT);
    char want[256];
    snprintf(want, sizeof want, "pki: open %s/ca.crt: No such file or directory", empty);
    CU_ASSERT_EQUAL(strncmp(err, want, strlen(want)), 0);
}

void suite_pki(void)
{
    CU_pSuite s = CU_add_suite("pki", suite_init, suite_clean);
    CU_add_test(s, "init writes the CA, key 0600", test_init_files);
    CU_add_test(s, "second init refused", test_init_refuses_second);
    CU_add_test(s, "issue: CN, SANs, chain, key", test_issue);
    CU_add_test(s, "roles: URI and key usages", test_roles);
    CU_add_test(s, "bad role refused", test_bad_role);
    CU_add_test(s, "re-issue replaces atomically", test_reissue);
    CU_add_test(s, "bad names and addresses refused", test_bad_names);
    CU_add_test(s, "CA key readable by others refused", test_ca_key_mode);
    CU_add_test(s, "missing CA named in the error", test_missing_ca);
}
