/*
 * The setup `convoy get` and `convoy loadgen get` share (src/cli/client.c).
 */
#ifndef CONVOY_CLI_CLIENT_H
#define CONVOY_CLI_CLIENT_H

#include "convoy/tls.h"
#include "convoy/xget.h"

#include <stdbool.h>

struct cli_client {
    struct xget_url url;      /* --balancer */
    tls_ctx_t *tls;           /* from --cacert, or NULL */
    char auth[XGET_AUTH_MAX]; /* Authorization value, "" for none */
};

/* Parses the balancer's URL, loads the CA, gets the credentials. Returns
 * XGET_OK, or XGET_EUSAGE after saying why on stderr. */
int cli_client_setup(struct cli_client *c, const char *cmd, const char *balancer,
                     const char *cacert, const char *user, bool plain_auth);
void cli_client_free(struct cli_client *c);

#endif
