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

/* Parses "A.B.C.D:PORT", "[v6]:PORT" or "localhost:PORT" (numeric hosts only
 * otherwise: daemons never block on DNS). 0 or -EINVAL. */
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
