/*
 * fileserver — the daemon that serves files under a root over HTTPS (or
 * plain HTTP) to holders of the balancer's tickets, and reports to the
 * balancer: membership (HELLO, heartbeats with the transfers in progress)
 * and every transfer's start, progress and end. docs/fileserver.md.
 */
#ifndef CONVOY_FILESERVER_H
#define CONVOY_FILESERVER_H

#include <stdbool.h>
#include <stdint.h>

struct fs_opts {
    const char *pki;           /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;          /* certificate name */
    const char *root;          /* directory served */
    const char *balancer;      /* balancer control HOST:PORT */
    const char *balancer_name; /* the certificate name the balancer must hold */
    const char *http;          /* this server's HTTP address: listened on, announced in HELLO */
    const char *state_dir;     /* where the digest cache is kept; NULL: no cache */
    bool insecure_http;        /* plain HTTP instead of TLS */
    uint32_t weight;           /* relative share for the weighted policy */
    uint32_t capacity;         /* concurrent transfers accepted */
    uint32_t retry_max_ms;     /* reconnect backoff ceiling */
};

/* Runs until SIGINT/SIGTERM (then drains and says BYE). Returns the process
 * exit status; failures are logged with their reason. */
int fs_run(const struct fs_opts *o);

#endif
