/*
 * pki — the cluster's certificate authority, made with the OpenSSL API.
 *
 * `convoy pki init --dir DIR` writes DIR/ca.crt and DIR/ca.key;
 * `convoy pki issue NAME --dir DIR [--ip A]... [--dns H]...` writes
 * DIR/NAME.crt and DIR/NAME.key signed by that CA. Keys are mode 0600.
 */
#ifndef CONVOY_PKI_H
#define CONVOY_PKI_H

#include <stddef.h>

/* Creates DIR (0700) if missing and a new CA in it. Refuses (-EEXIST) to
 * overwrite an existing ca.key. Returns 0 or negative, reason in err
 * ("pki: open /x/ca.key: Permission denied"). */
int pki_init(const char *dir, char *err, size_t errlen);

/* Issues NAME's certificate and key, with the given IP and DNS subject
 * alternative names (either list may be empty; DNS:NAME is always added),
 * replacing an earlier NAME. NAME must be 1–63 of [A-Za-z0-9._-], not start
 * with '.' and not be "ca"; a bad NAME, IP or DNS name gives -EINVAL.
 * Returns 0 or negative (-ENOENT when DIR has no CA), reason in err. */
int pki_issue(const char *dir, const char *name, const char *const *ips, size_t nips,
              const char *const *dns, size_t ndns, char *err, size_t errlen);

#endif
