/*
 * compute — the compute server daemon: joins the front-end (membership,
 * role compute), links into the chain where CHAIN_SET_NEXT says, keeps a
 * share of every WORK proportional to its weight against the weight
 * behind it, inverts that share on every core (cexec.h) and forwards the
 * rest; ACCEPTED and RESULT go straight to the front-end on the control
 * connection. docs/protocol-chain.md.
 */
#ifndef CONVOY_COMPUTE_H
#define CONVOY_COMPUTE_H

#include <stdbool.h>
#include <stdint.h>

struct cs_opts {
    const char *pki;           /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;          /* certificate name */
    const char *frontend;      /* the front-end's control HOST:PORT */
    const char *frontend_name; /* the certificate name it must hold */
    const char *listen;        /* chain address; NULL: the front-end's host, port 0 */
    uint32_t threads;          /* lanes; 0: one per CPU */
    uint32_t window;           /* items held before the chain is pushed back; 0: 64 per lane */
    uint32_t weight;           /* weight announced; 0: calibrated GFLOP/s */
    uint32_t retry_max_ms;     /* reconnect backoff ceiling */
    bool edge_tls;             /* no shared-memory lane, even to a neighbour on this host */
};

/* Runs until SIGINT/SIGTERM (then drains: finishes what it accepted, BYE).
 * Returns the process exit status; failures are logged with their reason. */
int cs_run(const struct cs_opts *o);

#endif
