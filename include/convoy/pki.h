/*
 * pki — the cluster's certificate authority, made with the OpenSSL API.
 *
 * `convoy pki init --dir DIR` writes DIR/ca.crt and DIR/ca.key;
 * `convoy pki issue NAME --role ROLE --dir DIR [--ip A]... [--dns H]...`
 * writes DIR/NAME.crt and DIR/NAME.key signed by that CA. Keys are mode 0600.
 *
 * Every leaf certificate carries one role, the part a node plays in the
 * cluster, as the URI subject alternative name "convoy:role:ROLE". The TLS
 * layer reads it back (tls_peer_role) and each edge checks it, so that a file
 * server's certificate cannot act as the balancer.
 */
#ifndef CONVOY_PKI_H
#define CONVOY_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PKI_ROLE_BALANCER   "balancer"
#define PKI_ROLE_FILESERVER "fileserver"
#define PKI_ROLE_FRONTEND   "frontend"
#define PKI_ROLE_COMPUTE    "compute"
#define PKI_ROLE_URI        "convoy:role:" /* the SAN is this followed by the role */
#define PKI_ROLE_MAX        16             /* longest role name, with room to spare */

/* True when role is one of the four PKI_ROLE_* names. */
bool pki_role_ok(const char *role);

/* Creates DIR (0700) if missing and a new CA in it. Refuses (-EEXIST) to
 * overwrite an existing ca.key. Returns 0 or negative, reason in err
 * ("pki: open /x/ca.key: Permission denied"). */
int pki_init(const char *dir, char *err, size_t errlen);

/* Issues NAME's certificate and key for role (a PKI_ROLE_*), with the given
 * IP and DNS subject alternative names (either list may be empty; DNS:NAME
 * and the role's URI are always added), replacing an earlier NAME. The
 * extended key usage follows the role: serverAuth for the balancer and the
 * front-end, which only accept connections; serverAuth and clientAuth for
 * file and compute servers, which dial and accept. NAME must be 1–63 of
 * [A-Za-z0-9._-], not start with '.' and not be "ca"; a bad NAME, role, IP
 * or DNS name gives -EINVAL. Returns 0 or negative (-ENOENT when DIR has no
 * CA), reason in err. */
int pki_issue(const char *dir, const char *name, const char *role, const char *const *ips,
              size_t nips, const char *const *dns, size_t ndns, char *err, size_t errlen);

/*
 * The checks ssh makes before it trusts a key, for files a daemon loads from
 * a PKI directory. pki_check_file: the open file fd (at path, for the
 * message) must be a regular file owned by the caller's effective uid or
 * root and not writable by group or others; a secret (a private key) must
 * not be readable by them either. pki_check_dir: dir and every folder above
 * it must be owned by the caller or root and not writable by group or others
 * unless sticky (as /tmp is), so that nobody else can replace what is in it.
 * Both return 0, or -EPERM (or -errno) with the reason in err, naming the
 * file and the fix ("/x/fs1.key has mode 0644: group and others can read it
 * (chmod 600 /x/fs1.key)"). No module prefix: the caller adds its own.
 */
int pki_check_file(int fd, const char *path, bool secret, char *err, size_t errlen);
int pki_check_dir(const char *dir, char *err, size_t errlen);

/* Writes path whole or not at all, the way keys are written: the len bytes
 * of data go to a hidden temporary file beside path, created with mode from
 * the start (so a secret is never readable by others), synced, then renamed
 * over path. 0 or -errno, reason in err without a prefix ("write
 * /x/.users.0a1b2c3d4e5f: No space left on device"). */
int pki_write_atomic(const char *path, const char *data, size_t len, mode_t mode, char *err,
                     size_t errlen);

#endif
