/* fixture — temporary folders and PKIs shared by the unit and system tests. */
#include "fixture.h"

#include "convoy/pki.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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

int fx_pki(const char *dir, const char *const *names)
{
    char err[512];
    const char *ip[] = {"127.0.0.1"};
    if (pki_init(dir, err, sizeof err) < 0)
        goto fail;
    for (size_t i = 0; names[i]; i++)
        if (pki_issue(dir, names[i], ip, 1, NULL, 0, err, sizeof err) < 0)
            goto fail;
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
        if (fx_copy(from, to) < 0)
            return -1;
    }
    return 0;
}
