/* fixture — temporary folders and PKIs shared by the unit and system tests. */
#include "fixture.h"

#include "convoy/pki.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

int fx_tmpdir(char *buf, size_t len)
{
    if (snprintf(buf, len, "/tmp/convoy-test-XXXXXX") >= (int)len)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

void fx_rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int fx_copy(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[8192];
    size_t n;
    int rc = in && out ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

/* "NAME:ROLE" names its role; otherwise a name that starts with a role's
 * word (other than fileserver's) has that role, and any other is a file
 * server. The name part goes to name (cap bytes). */
static const char *fx_role_of(const char *entry, char *name, size_t cap)
{
    static const char *const prefixed[] = {PKI_ROLE_BALANCER, PKI_ROLE_FRONTEND, PKI_ROLE_COMPUTE};
    const char *colon = strchr(entry, ':');
    snprintf(name, cap, "%.*s", colon ? (int)(colon - entry) : (int)strlen(entry), entry);
    if (colon != NULL)
        return colon + 1;
    for (size_t i = 0; i < sizeof prefixed / sizeof prefixed[0]; i++) {
        if (strncmp(entry, prefixed[i], strlen(prefixed[i])) == 0)
            return prefixed[i];
    }
    return PKI_ROLE_FILESERVER;
}

int fx_pki(const char *dir, const char *const *names)
{
    char err[512], name[128];
    const char *ip[] = {"127.0.0.1"};
    if (pki_init(dir, err, sizeof err) < 0)
        goto fail;
    for (size_t i = 0; names[i]; i++) {
        const char *role = fx_role_of(names[i], name, sizeof name);
        if (pki_issue(dir, name, role, ip, 1, NULL, 0, err, sizeof err) < 0)
            goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "fixture: pki %s: %s\n", dir, err);
    return -1;
}

int fx_rogue(const char *rogue, const char *home, const char *away, const char *name)
{
    char from[512], to[512];
    if (mkdir(rogue, 0700) != 0)
        return -1;
    snprintf(from, sizeof from, "%s/ca.crt", home);
    snprintf(to, sizeof to, "%s/ca.crt", rogue);
    if (fx_copy(from, to) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        const char *ext = i ? "key" : "crt";
        snprintf(from, sizeof from, "%s/%s.%s", away, name, ext);
        snprintf(to, sizeof to, "%s/%s.%s", rogue, name, ext);
        if (fx_copy(from, to) < 0 || chmod(to, i ? 0600 : 0644) != 0)
            return -1;
    }
    return 0;
}

static X509 *fx_read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return x;
}

/* subjectAltName again, without its URI entries. */
static int fx_drop_uris(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL)
        return -1;
    for (int i = sk_GENERAL_NAME_num(gens) - 1; i >= 0; i--) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI) {
            (void)sk_GENERAL_NAME_delete(gens, i);
            GENERAL_NAME_free(g);
        }
    }
    int ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

/* The subject without its common name (an organisation instead, so that
 * it is not empty). */
static int fx_drop_cn(X509 *x)
{
    X509_NAME *subject = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    X509_NAME_ENTRY *e = i >= 0 ? X509_NAME_delete_entry(subject, i) : NULL;
    X509_NAME_ENTRY_free(e);
    return e != NULL && X509_NAME_add_entry_by_NID(subject, NID_organizationName, MBSTRING_UTF8,
                                                   (const unsigned char *)"convoy", -1, -1, 0)
               ? 0
               : -1;
}

/* Edits dir/name.crt with edit and signs it again with dir's CA. */
static int fx_resign(const char *dir, const char *name, int (*edit)(X509 *x))
{
    char path[512];
    snprintf(path, sizeof path, "%s/ca.key", dir);
    FILE *f = fopen(path, "r");
    EVP_PKEY *cakey = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    snprintf(path, sizeof path, "%s/%s.crt", dir, name);
    X509 *x = fx_read_cert(path);
    int rc = cakey != NULL && x != NULL && edit(x) == 0 && X509_sign(x, cakey, EVP_sha256()) > 0
                 ? 0
                 : -1;
    f = rc == 0 ? fopen(path, "w") : NULL;
    if (f == NULL || !PEM_write_X509(f, x))
        rc = -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    X509_free(x);
    EVP_PKEY_free(cakey);
    return rc;
}

int fx_strip_role(const char *dir, const char *name)
{
    return fx_resign(dir, name, fx_drop_uris);
}

int fx_strip_cn(const char *dir, const char *name)
{
    return fx_resign(dir, name, fx_drop_cn);
}
