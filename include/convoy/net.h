/*
 * net — addresses and sockets: "HOST:PORT" parsing and printing, and
 * listening sockets that several I/O threads can share through SO_REUSEPORT.
 */
#ifndef CONVOY_NET_H
#define CONVOY_NET_H

#include <stddef.h>
#include <sys/socket.h>

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* What an address is for: a listener may take port 0 (the kernel picks a
 * free one), an address to dial may not. */
enum net_use {
    NET_LISTEN, /* port 0-65535 */
    NET_DIAL,   /* port 1-65535 */
};

/*
 * Parses "A.B.C.D:PORT", "[v6]:PORT" or "localhost:PORT" (numeric hosts only
 * otherwise: daemons never block on DNS) for use. Returns 0; -EINVAL when s
 * is not of that form, -ERANGE when the port is out of use's range. On
 * failure err (errlen bytes, may be NULL) says why in a phrase fit for a
 * message: "port 99999 out of range (1-65535)", "port 0 cannot be dialled
 * (1-65535)", "expected HOST:PORT".
 */
int net_addr_parse_err(const char *s, enum net_use use, struct net_addr *out, char *err,
                       size_t errlen);

/* net_addr_parse_err(s, NET_LISTEN, out, NULL, 0). */
int net_addr_parse(const char *s, struct net_addr *out);

/* Writes "HOST:PORT" (v6 in brackets) into buf. Returns buf. */
char *net_addr_str(const struct net_addr *a, char *buf, size_t len);

/* The local address of a bound socket (to learn an ephemeral port). */
int net_local_addr(int fd, struct net_addr *out);

/* A blocking listening socket with SO_REUSEADDR and SO_REUSEPORT bound to a.
 * Returns the fd or -errno. */
int net_listen(const struct net_addr *a, int backlog);

/* A blocking stream socket for connecting to a's family, TCP_NODELAY set.
 * Returns the fd or -errno. */
int net_socket_for(const struct net_addr *a);

#endif
