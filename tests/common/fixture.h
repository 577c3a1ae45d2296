/*
 * fixture — temporary folders and PKIs shared by the unit and system tests.
 */
#ifndef CONVOY_TESTS_FIXTURE_H
#define CONVOY_TESTS_FIXTURE_H

#include <stddef.h>

/* Makes a fresh /tmp/convoy-test-XXXXXX, its path in buf. 0 or -1. */
int fx_tmpdir(char *buf, size_t len);

/* Removes dir and everything under it (symbolic links are not followed). */
void fx_rmtree(const char *dir);

/* Copies the file `from` to `to`. 0 or -1. */
int fx_copy(const char *from, const char *to);

/* A CA in dir and, for each name of the NULL-terminated list, a certificate
 * with the IP address 127.0.0.1. An entry "NAME:ROLE" gives NAME that role;
 * otherwise names starting "balancer", "frontend" or "compute" get that
 * role and every other name is a fileserver. 0, or -1 with the reason on
 * stderr. */
int fx_pki(const char *dir, const char *const *names);

/* Signs dir/name.crt again without its role, as a convoy from before roles
 * issued it: a certificate every edge that expects a role must refuse. */
int fx_strip_role(const char *dir, const char *name);

/* Signs dir/name.crt again without a common name: a certificate whose
 * holder has no identity, which every handshake that sees it must refuse. */
int fx_strip_cn(const char *dir, const char *name);

/* Makes the PKI folder `rogue` of a peer that trusts home's CA but holds
 * name's certificate and key from the other CA's folder `away`: a peer
 * whose certificate the cluster must refuse. 0 or -1. */
int fx_rogue(const char *rogue, const char *home, const char *away, const char *name);

#endif
