/*
 * fileserver — the daemon that serves files under a root and reports to a
 * balancer. (Serving files over HTTP arrives with the transfers issue; the
 * HTTP address is announced already.)
 */
#ifndef CONVOY_FILESERVER_H
#define CONVOY_FILESERVER_H

#include <stdint.h>

struct fs_opts {
    const char *pki;           /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;          /* certificate name */
    const char *root;          /* directory served */
    const char *balancer;      /* balancer control HOST:PORT */
    const char *balancer_name; /* the certificate name the balancer must hold */
    const char *http;          /* this server's HTTP address, announced in HELLO */
    uint32_t weight;           /* relative share for the weighted policy */
    uint32_t capacity;         /* concurrent transfers accepted */
    uint32_t retry_max_ms;     /* reconnect backoff ceiling */
};

/* Runs until SIGINT/SIGTERM (then drains and says BYE). Returns the process
 * exit status; failures are logged with their reason. */
int fs_run(const struct fs_opts *o);

#endif
