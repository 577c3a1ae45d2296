/*
 * membership — the messages of the membership protocol (HELLO, WELCOME,
 * HEARTBEAT, DRAIN, BYE, ERROR), as built by file servers and checked by
 * the balancer. docs/protocol-membership.md describes the exchange.
 *
 * Parsing is strict: a message with an unknown, missing or mistyped field
 * is refused (frame_meta_check), and strings returned point into the meta,
 * valid as long as it is.
 */
#ifndef CONVOY_MEMBERSHIP_H
#define CONVOY_MEMBERSHIP_H

#include "convoy/frame.h"
#include "convoy/registry.h"

#include <cjson/cJSON.h>

struct mbr_welcome {
    uint64_t session;       /* the balancer's id for this connection */
    uint32_t heartbeat_ms;  /* send HEARTBEAT this often */
    uint32_t dead_after_ms; /* silence after which the balancer marks the server down */
};

/* Builders: a new cJSON object (caller frees), or NULL without memory. */
cJSON *mbr_hello_json(const struct reg_hello *h);
cJSON *mbr_welcome_json(const struct mbr_welcome *w);
cJSON *mbr_heartbeat_json(const struct reg_load *l);

/* Parsers: 0, or FRAME_ESCHEMA with the reason in why. mbr_hello_parse
 * leaves h->name NULL unless the meta names one (the certificate does). */
int mbr_hello_parse(const cJSON *meta, struct reg_hello *h, char *why, size_t whylen);
int mbr_welcome_parse(const cJSON *meta, struct mbr_welcome *w, char *why, size_t whylen);
int mbr_heartbeat_parse(const cJSON *meta, struct reg_load *l, char *why, size_t whylen);

/* DRAIN and BYE carry nothing: checks that meta is empty. */
int mbr_empty_parse(const cJSON *meta, char *why, size_t whylen);

#endif
