/*
 * net — addresses and sockets.
 *
 * Sockets are blocking on purpose: the ring waits for them (see ring.c).
 * Listening sockets set SO_REUSEPORT so that each I/O thread can bind its own
 * socket to one port and the kernel spreads connections over them.
 */
#include "convoy/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the reason for a refused address into err (if any) and returns rc. */
static int refuse(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Digits only (no sign, no space, which strtoul would take), then the range
 * the use allows. */
static int parse_port(const char *s, enum net_use use, in_port_t *out, char *err, size_t errlen)
{
    unsigned long v = 0;
    if (*s == '\0')
        return refuse(-EINVAL, err, errlen, "expected HOST:PORT, the port is missing");
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return refuse(-EINVAL, err, errlen, "port '%.16s' is not a number", s);
        if (v <= 65535)
            v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return refuse(-ERANGE, err, errlen, "port %.16s out of range (%d-65535)", s,
                      use == NET_DIAL);
    if (v == 0 && use == NET_DIAL)
        return refuse(-ERANGE, err, errlen, "port 0 cannot be dialled (1-65535)");
    *out = htons((in_port_t)v);
    return 0;
}

/* Splits s into host (brackets removed) and port; 0 or -EINVAL. */
static int split_host_port(const char *s, char *host, size_t hostlen, const char **port, char *err,
                           size_t errlen)
{
    const char *h = s, *end;
    if (*s == '[') {
        h = s + 1;
        end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return refuse(-EINVAL, err, errlen, "expected [IPv6]:PORT");
    } else {
        end = strrchr(s, ':');
        if (end == NULL)
            return refuse(-EINVAL, err, errlen, "expected HOST:PORT");
        if (memchr(s, ':', (size_t)(end - s)) != NULL)
            return refuse(-EINVAL, err, errlen, "an IPv6 address goes in brackets: [::1]:PORT");
    }
    size_t n = (size_t)(end - h);
    if (n == 0)
        return refuse(-EINVAL, err, errlen, "expected HOST:PORT, the host is missing");
    if (n >= hostlen)
        return refuse(-EINVAL, err, errlen, "host too long (%zu bytes)", n);
    memcpy(host, h, n);
    host[n] = '\0';
    *port = end + (*s == '[' ? 2 : 1);
    return 0;
}

int net_addr_parse_err(const char *s, enum net_use use, struct net_addr *out, char *err,
                       size_t errlen)
{
    char host[INET6_ADDRSTRLEN];
    const char *port = NULL;
    int rc = split_host_port(s, host, sizeof host, &port, err, errlen);
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof *out);
    if (*s == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
        a6->sin6_family = AF_INET6;
        out->len = sizeof *a6;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return refuse(-EINVAL, err, errlen, "'%s' is not an IPv6 address", host);
        return parse_port(port, use, &a6->sin6_port, err, errlen);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    a4->sin_family = AF_INET;
    out->len = sizeof *a4;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return refuse(-EINVAL, err, errlen,
                      "'%s' is not a numeric IPv4 address, [IPv6] or localhost", host);
    return parse_port(port, use, &a4->sin_port, err, errlen);
}

int net_addr_parse(const char *s, struct net_addr *out)
{
    return net_addr_parse_err(s, NET_LISTEN, out, NULL, 0);
}

char *net_addr_str(const struct net_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(a6->sin6_port));
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(a4->sin_port));
    }
    return buf;
}

int net_local_addr(int fd, struct net_addr *out)
{
    out->len = sizeof out->ss;
    if (getsockname(fd, (struct sockaddr *)&out->ss, &out->len) < 0)
        return -errno;
    return 0;
}

int net_listen(const struct net_addr *a, int backlog)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int net_socket_for(const struct net_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}
