/*
 * xget — the socket-free pieces of a download (see include/convoy/xget.h).
 *
 * Everything here is plain functions over strings, files and clocks, so the
 * unit tests drive each one directly; the download loops of `convoy get`
 * and `convoy loadgen` only compose them. The partial file is the one
 * piece of state that outlives a run: OUT.part holds the bytes, OUT.part.meta
 * what they are a prefix of (ETag, size, digest). A part is resumed only
 * when its meta says it is the same representation the server offers now,
 * and its bytes are hashed again on resume, because the digest check at the
 * end is over the whole file, not over what this run fetched.
 */
#include "convoy/xget.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- exit codes ---- */

const char *xget_exit_str(int code)
{
    switch (code) {
    case XGET_OK:
        return "ok";
    case XGET_EUSAGE:
        return "usage";
    case XGET_EAUTH:
        return "auth";
    case XGET_ENOTFOUND:
        return "not found";
    case XGET_EINTEGRITY:
        return "integrity";
    case XGET_ENOSERVER:
        return "no server";
    case XGET_ENET:
        return "network";
    default:
        return "failed";
    }
}

int xget_exit_for_status(int status)
{
    switch (status) {
    case 200:
    case 206:
        return XGET_OK;
    case 401:
    case 403:
    case 429: /* slowed after failed logins */
        return XGET_EAUTH;
    case 404:
        return XGET_ENOTFOUND;
    case 503:
        return XGET_ENOSERVER;
    default:
        return XGET_ENET;
    }
}

/* ---- URLs ---- */

static int xget_err(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", why);
    return -EINVAL;
}

/* Splits "HOST[:PORT]" (host possibly "[v6]") into u->host and u->port. */
static int xget_url_authority_parse(const char *a, size_t len, struct xget_url *u, char *err,
                                    size_t errlen)
{
    const char *colon = NULL;
    if (len > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (close == NULL)
            return xget_err(err, errlen, "unclosed '[' in host");
        if (close + 1 < a + len && close[1] != ':')
            return xget_err(err, errlen, "junk after ']' in host");
        colon = close + 1 < a + len ? close + 1 : NULL;
    } else {
        colon = memchr(a, ':', len);
    }
    size_t hlen = colon != NULL ? (size_t)(colon - a) : len;
    if (hlen == 0 || hlen >= sizeof u->host)
        return xget_err(err, errlen, hlen == 0 ? "no host" : "host too long");
    memcpy(u->host, a, hlen);
    u->host[hlen] = '\0';
    u->port = u->tls ? 443 : 80;
    if (colon == NULL)
        return 0;
    unsigned long port = 0;
    size_t i = (size_t)(colon - a) + 1;
    if (i == len)
        return xget_err(err, errlen, "empty port");
    for (; i < len; i++) {
        if (!isdigit((unsigned char)a[i]) || (port = port * 10 + (unsigned)(a[i] - '0')) > 65535)
            return xget_err(err, errlen, "port is not a number from 1 to 65535");
    }
    if (port == 0)
        return xget_err(err, errlen, "port 0 cannot be dialled");
    u->port = (uint16_t)port;
    return 0;
}

int xget_url_parse(const char *s, struct xget_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    const char *rest;
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = true;
        rest = s + 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        rest = s + 7;
    } else {
        return xget_err(err, errlen, "expected https:// or http://");
    }
    size_t alen = strcspn(rest, "/?#");
    if (memchr(rest, '@', alen) != NULL)
        return xget_err(err, errlen, "user info in a URL is refused (use --user)");
    if (strchr(rest, '#') != NULL)
        return xget_err(err, errlen, "fragment in URL");
    int rc = xget_url_authority_parse(rest, alen, u, err, errlen);
    if (rc != 0)
        return rc;
    const char *path = rest + alen;
    int n = snprintf(u->path, sizeof u->path, "%s%s", *path == '/' ? "" : "/", path);
    if (n < 0 || (size_t)n >= sizeof u->path)
        return xget_err(err, errlen, "path too long");
    char hp[XGET_HOST_MAX + 8], why[96];
    xget_url_authority(u, hp, sizeof hp);
    if (net_addr_parse_err(hp, NET_DIAL, &u->addr, why, sizeof why) != 0) {
        snprintf(err, errlen, "host %s: %s (numeric addresses or localhost only)", u->host, why);
        return -EINVAL;
    }
    return 0;
}

char *xget_url_authority(const struct xget_url *u, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%u", u->host, (unsigned)u->port);
    return buf;
}

int xget_path_quote(const char *path, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
        bool plain = isalnum(*p) || strchr("-._~/", *p) != NULL;
        if (n + (plain ? 1 : 3) >= cap)
            return -ENAMETOOLONG;
        if (plain) {
            buf[n++] = (char)*p;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[*p >> 4];
            buf[n++] = hex[*p & 15];
        }
    }
    if (n >= cap)
        return -ENAMETOOLONG;
    buf[n] = '\0';
    return (int)n;
}

/* ---- credentials ---- */

static bool xget_printable(const char *s, bool space_ok)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || (*s == ' ' && !space_ok))
            return false;
    return true;
}

int xget_auth_basic(const char *user, const char *password, char *buf, size_t cap)
{
    char plain[1024];
    if (strchr(user, ':') != NULL || !xget_printable(user, true) || !xget_printable(password, true))
        return -EINVAL;
    int n = snprintf(plain, sizeof plain, "%s:%s", user, password);
    if (n < 0 || (size_t)n >= sizeof plain || cap < 6 + 4 * ((size_t)n + 2) / 3 + 1) {
        OPENSSL_cleanse(plain, sizeof plain);
        return -ENOSPC;
    }
    memcpy(buf, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)buf + 6, (const unsigned char *)plain, n);
    OPENSSL_cleanse(plain, sizeof plain);
    return 0;
}

int xget_auth_bearer(const char *token, char *buf, size_t cap)
{
    if (*token == '\0' || !xget_printable(token, false))
        return -EINVAL;
    return snprintf(buf, cap, "Bearer %s", token) < (int)cap ? 0 : -ENOSPC;
}

/* ---- Repr-Digest ---- */

static int xget_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Strict base64 (RFC 8941 byte sequences: the standard alphabet, padding
 * optional) of exactly 32 bytes. */
static int xget_b64_32(const char *s, size_t len, uint8_t out[32])
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len != 43)
        return -EINVAL;
    uint32_t acc = 0;
    size_t bits = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = xget_b64_val((unsigned char)s[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (acc & ((1u << bits) - 1)) == 0 ? 0 : -EINVAL; /* no stray low bits */
}

/* One dictionary member "key=:b64:;params" (OWS trimmed): -ENOENT when its
 * key is not sha-256. */
static int xget_digest_member(const char *m, size_t len, uint8_t out[32])
{
    while (len > 0 && (*m == ' ' || *m == '\t'))
        m++, len--;
    while (len > 0 && (m[len - 1] == ' ' || m[len - 1] == '\t'))
        len--;
    const char *eq = memchr(m, '=', len);
    if (eq == NULL)
        return len > 0 ? -ENOENT : -EINVAL; /* a bare key is boolean true: not a digest */
    if ((size_t)(eq - m) != 7 || memcmp(m, "sha-256", 7) != 0)
        return -ENOENT;
    const char *v = eq + 1, *end = m + len;
    if (v >= end || *v != ':')
        return -EINVAL;
    const char *close = memchr(v + 1, ':', (size_t)(end - v - 1));
    if (close == NULL || (close + 1 < end && close[1] != ';'))
        return -EINVAL;
    return xget_b64_32(v + 1, (size_t)(close - v - 1), out);
}

int xget_digest_parse(const char *value, size_t len, uint8_t out[32])
{
    int rc = -ENOENT;
    while (len > 0) {
        const char *comma = memchr(value, ',', len);
        size_t mlen = comma != NULL ? (size_t)(comma - value) : len;
        int r = xget_digest_member(value, mlen, out);
        if (r != -ENOENT)
            rc = r; /* the last sha-256 member wins, as a dictionary's last key does */
        if (comma == NULL)
            break;
        value += mlen + 1;
        len -= mlen + 1;
    }
    return rc;
}

char *xget_digest_format(const uint8_t d[32], char *out, size_t cap)
{
    char b64[48];
    EVP_EncodeBlock((unsigned char *)b64, d, 32);
    snprintf(out, cap, "sha-256=:%s:", b64);
    return out;
}

/* ---- hashing ---- */

struct xget_hash {
    EVP_MD_CTX *md;
};

int xget_hash_new(xget_hash_t **out)
{
    xget_hash_t *h = calloc(1, sizeof *h);
    if (h == NULL || (h->md = EVP_MD_CTX_new()) == NULL ||
        !EVP_DigestInit_ex(h->md, EVP_sha256(), NULL)) {
        xget_hash_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

void xget_hash_update(xget_hash_t *h, const void *p, size_t len)
{
    EVP_DigestUpdate(h->md, p, len);
}

bool xget_hash_check(xget_hash_t *h, const uint8_t want[32])
{
    uint8_t got[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    bool ok = EVP_DigestFinal_ex(h->md, got, &n) && n == 32 && memcmp(got, want, 32) == 0;
    EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
    return ok;
}

void xget_hash_free(xget_hash_t *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
}

/* ---- pacing ---- */

int xget_rate_parse(const char *s, uint64_t *bytes_per_s)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case '\0':
        break;
    default:
        return -EINVAL;
    }
    if (shift != 0)
        end++;
    if (errno != 0 || *end != '\0' || v == 0 || v > (UINT64_MAX >> 30))
        return -EINVAL;
    *bytes_per_s = (uint64_t)v << shift;
    return 0;
}

void xget_pace_start(struct xget_pace *p, uint64_t rate, uint64_t now_ms, uint64_t taken)
{
    p->rate = rate;
    p->t0_ms = now_ms;
    p->base = taken;
}

uint64_t xget_pace_allow(const struct xget_pace *p, uint64_t now_ms, uint64_t taken)
{
    if (p->rate == 0)
        return UINT64_MAX;
    uint64_t ran = now_ms > p->t0_ms ? now_ms - p->t0_ms : 0;
    uint64_t may = p->base + p->rate / 10 + ran * p->rate / 1000;
    return may > taken ? may - taken : 0;
}

uint64_t xget_pace_wait(struct xget_pace *p, uint64_t now_ms, uint64_t taken)
{
    if (p->rate == 0 || taken <= p->base)
        return 0;
    uint64_t burst = p->rate / 10;
    uint64_t due = taken - p->base <= burst ? 0 : (taken - p->base - burst) * 1000 / p->rate;
    uint64_t at = p->t0_ms + due;
    if (at + 1000 < now_ms) /* more than a second behind: do not flood to catch up */
        xget_pace_start(p, p->rate, now_ms, taken);
    return at > now_ms ? at - now_ms : 0;
}

/* ---- the partial file ---- */

int xget_meta_save(const char *path, const struct xget_meta *m)
{
    char tmp[XGET_PATH_MAX + 8], dig[64];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    fprintf(f, "convoy-part 1\netag %s\nsize %" PRIu64 "\ndigest %s\n", m->etag, m->size,
            xget_digest_format(m->digest, dig, sizeof dig));
    int rc = fflush(f) != 0 || fsync(fileno(f)) != 0 ? -errno : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* One "key value" line of a meta file into m; -EINVAL when it is not one. */
static int xget_meta_line(char *line, struct xget_meta *m, unsigned *seen)
{
    line[strcspn(line, "\n")] = '\0';
    char *sp = strchr(line, ' ');
    if (sp == NULL)
        return -EINVAL;
    *sp++ = '\0';
    char *end;
    if (strcmp(line, "convoy-part") == 0 && strcmp(sp, "1") == 0) {
        *seen |= 1;
    } else if (strcmp(line, "etag") == 0 && strlen(sp) < sizeof m->etag && *sp != '\0') {
        memcpy(m->etag, sp, strlen(sp) + 1);
        *seen |= 2;
    } else if (strcmp(line, "size") == 0 && isdigit((unsigned char)*sp)) {
        errno = 0;
        m->size = strtoull(sp, &end, 10);
        if (errno != 0 || *end != '\0')
            return -EINVAL;
        *seen |= 4;
    } else if (strcmp(line, "digest") == 0 && xget_digest_parse(sp, strlen(sp), m->digest) == 0) {
        *seen |= 8;
    } else {
        return -EINVAL;
    }
    return 0;
}

int xget_meta_load(const char *path, struct xget_meta *m)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    memset(m, 0, sizeof *m);
    char line[XGET_ETAG_MAX + 64];
    unsigned seen = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL)
        rc = xget_meta_line(line, m, &seen);
    fclose(f);
    return rc == 0 && seen == 15 ? 0 : -EINVAL;
}

int xget_part_find(const char *part_path, const char *meta_path, struct xget_meta *m,
                   uint64_t *have)
{
    struct stat st;
    if (xget_meta_load(meta_path, m) != 0 || stat(part_path, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > m->size)
        return -ENOENT;
    *have = (uint64_t)st.st_size;
    return 0;
}

/* Feeds the first len bytes of fd to h. */
static int xget_hash_fd(int fd, uint64_t len, xget_hash_t *h)
{
    static uint8_t buf[256 * 1024];
    for (uint64_t off = 0; off < len;) {
        size_t want = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0)
            return n == 0 ? -ESTALE : -errno;
        xget_hash_update(h, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return 0;
}

int xget_part_open(const char *part_path, const char *meta_path, const struct xget_meta *m,
                   uint64_t keep, xget_hash_t *h)
{
    int fd = open(part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = xget_hash_fd(fd, keep, h);
    if (rc == 0 && ftruncate(fd, (off_t)keep) != 0)
        rc = -errno;
    if (rc == 0 && lseek(fd, (off_t)keep, SEEK_SET) < 0)
        rc = -errno;
    if (rc == 0)
        rc = xget_meta_save(meta_path, m);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int xget_part_finish(int fd, const char *part_path, const char *meta_path, const char *out)
{
    int rc = fsync(fd) != 0 ? -errno : 0;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(part_path, out) != 0)
        rc = -errno;
    if (rc == 0 && unlink(meta_path) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}
