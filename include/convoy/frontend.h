/*
 * frontend — the compute chain's front-end daemon: takes jobs over an
 * authenticated HTTP API (docs/jobs.md), spools them under --data, keeps
 * the compute servers that join it in a chain (CHAIN_SET_NEXT), streams
 * the items to the chain's head and counts every result exactly once,
 * sending again what a server that went down held. docs/frontend.md,
 * docs/protocol-chain.md.
 */
#ifndef CONVOY_FRONTEND_H
#define CONVOY_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>

struct fe_opts {
    const char *pki;     /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;    /* certificate name */
    const char *control; /* HOST:PORT compute servers join */
    const char *http;    /* HOST:PORT of the API */
    const char *users;   /* users file, or NULL: nobody may submit */
    const char *state;   /* shared-memory state name (convoy status --state) */
    const char *data;    /* spool folder */
    bool insecure_http;  /* plain HTTP API */
    bool edge_tls;       /* no shared-memory lane, even to a server on this host */
    uint32_t heartbeat_ms, dead_after_ms;
};

/* Runs until SIGINT/SIGTERM. Returns the process exit status. */
int fe_run(const struct fe_opts *o);

#endif
