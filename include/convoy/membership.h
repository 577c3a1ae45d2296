/*
 * membership — the messages of the membership protocol (HELLO, WELCOME,
 * HEARTBEAT, DRAIN, BYE, ERROR), as built by members (file servers,
 * compute servers) and checked by their coordinator (the balancer, the
 * front-end). docs/protocol-membership.md describes the exchange; the
 * coordinator's side is mbr_server.h, the member's mbr_client.h.
 *
 * Parsing is strict: a message with an unknown, missing or mistyped field,
 * an integer outside its C type, or a string that is not what it names is
 * refused (FRAME_ESCHEMA), and strings returned point into the meta, valid
 * as long as it is.
 */
#ifndef CONVOY_MEMBERSHIP_H
#define CONVOY_MEMBERSHIP_H

#include "convoy/frame.h"
#include "convoy/registry.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define MBR_WELCOME_EXTRA_MAX 8 /* fields a coordinator may add to WELCOME */

struct mbr_welcome {
    uint64_t session;       /* the coordinator's id for this connection */
    uint32_t heartbeat_ms;  /* send HEARTBEAT this often */
    uint32_t dead_after_ms; /* silence after which the member is marked down */
};

/* A member's name: 1 to REG_NAME_MAX - 1 characters of [A-Za-z0-9._-]
 * (so it is safe in a log line, a terminal and a file name). */
bool mbr_name_valid(const char *s);

/* An announced address: "HOST:PORT" as net_addr_parse reads it, with a
 * numeric host, port 1-65535, shorter than REG_ADDR_MAX, and nothing but
 * [A-Za-z0-9.:[]] in it. */
bool mbr_addr_valid(const char *s);

/* A host id as HELLO carries it: "" or up to REG_HOST_MAX - 1 characters
 * of [0-9a-f-] (a boot id). */
bool mbr_host_valid(const char *s);

/* Builders: a new cJSON object (caller frees), or NULL without memory. A
 * coordinator may add its own fields to the WELCOME object before sending. */
cJSON *mbr_hello_json(const struct reg_hello *h);
cJSON *mbr_welcome_json(const struct mbr_welcome *w);
cJSON *mbr_heartbeat_json(const struct reg_load *l);

/* Parsers: 0, or FRAME_ESCHEMA with the reason in why. mbr_hello_parse
 * leaves h->name NULL unless the meta names one (the certificate does);
 * a name or http that is not valid (above) is refused. */
int mbr_hello_parse(const cJSON *meta, struct reg_hello *h, char *why, size_t whylen);

/* WELCOME with the coordinator's own fields: extra lists the nextra
 * (<= MBR_WELCOME_EXTRA_MAX, else -E2BIG) fields it may add, which the
 * caller reads from meta itself. */
int mbr_welcome_parse(const cJSON *meta, const struct frame_field *extra, size_t nextra,
                      struct mbr_welcome *w, char *why, size_t whylen);
int mbr_heartbeat_parse(const cJSON *meta, struct reg_load *l, char *why, size_t whylen);

/* DRAIN and BYE carry nothing: checks that meta is empty. */
int mbr_empty_parse(const cJSON *meta, char *why, size_t whylen);

#endif
