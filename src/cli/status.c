/*
 * convoy status: the balancer's server table, read from its shared-memory
 * segment on this host: no network, and it works while the balancer is
 * stopped (the last recorded state, every server down). A front-end's
 * segment (one with a job table, jobtab.h) shows its chain and jobs instead.
 */
#include "cli.h"

#include "convoy/balancer.h"
#include "convoy/jobtab.h"
#include "convoy/log.h"
#include "convoy/ring.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct snapshot {
    struct bal_shared s; /* a validated copy, read without a lock */
    size_t n;
    struct reg_server rows[REG_SERVERS];
    bool running;
    uint64_t now;
};

/* Reads the state without waiting on the balancer: the segment has no lock
 * to wait on, and a row being written is retried for about 1 ms at most. */
static int take_snapshot(const char *state, struct snapshot *snap)
{
    int rc = bal_read_state(state, &snap->s);
    if (rc == -ENOENT)
        fprintf(stderr,
                "convoy status: no balancer state '%s' on this host "
                "(is a balancer running with --state %s?)\n",
                state, state);
    else if (rc == -EPERM)
        fprintf(stderr,
                "convoy status: state '%s' is not trusted: /dev/shm/convoy-%s belongs to "
                "another user or is open to others (want this user, mode 0600)\n",
                state, state);
    else if (rc == -EPROTO)
        fprintf(stderr,
                "convoy status: state '%s' is damaged or from another convoy version "
                "(a balancer started with --state %s moves it aside)\n",
                state, state);
    else if (rc < 0)
        fprintf(stderr, "convoy status: state '%s': %s\n", state, strerror(-rc));
    if (rc < 0)
        return rc;
    snap->n = reg_snapshot(&snap->s.reg, snap->rows, REG_SERVERS);
    snap->now = ring_now_ms();
    snap->running = bal_running(&snap->s);
    return 0;
}

static uint64_t age(const struct snapshot *snap, uint64_t ms)
{
    return snap->now > ms ? snap->now - ms : 0;
}

/* A string from the segment, which peers wrote (a name, an address): read
 * up to its field's size, escaped as the log escapes, so that neither the
 * table nor the JSON carries a control byte or invalid UTF-8. */
struct shown {
    char s[4 * REG_ADDR_MAX + 1];
};

static const char *shown(struct shown *out, const char *field, size_t size)
{
    log_escape(out->s, sizeof out->s, field, strnlen(field, size));
    return out->s;
}

#define SHOWN(buf, field) shown(buf, field, sizeof(field))

static int print_json(const struct snapshot *snap)
{
    struct shown a;
    cJSON *root = cJSON_CreateObject();
    cJSON *bal = cJSON_AddObjectToObject(root, "balancer");
    cJSON *servers = cJSON_AddArrayToObject(root, "servers");
    if (bal == NULL || servers == NULL)
        goto fail;
    cJSON_AddBoolToObject(bal, "running", snap->running);
    cJSON_AddNumberToObject(bal, "pid", snap->running ? snap->s.pid : 0);
    cJSON_AddStringToObject(bal, "control", SHOWN(&a, snap->s.control));
    for (size_t i = 0; i < snap->n; i++) {
        /* Rows were validated on load (printable UTF-8 names, HOST:PORT
         * addresses): cJSON's escaping is all the JSON needs. */
        cJSON *o = reg_server_json(&snap->rows[i], snap->now);
        if (o == NULL || !cJSON_AddItemToArray(servers, o)) {
            cJSON_Delete(o);
            goto fail;
        }
    }
    char *text = cJSON_Print(root);
    if (text == NULL)
        goto fail;
    puts(text);
    free(text);
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    fprintf(stderr, "convoy status: out of memory\n");
    return -ENOMEM;
}

static void print_table(const struct snapshot *snap)
{
    struct shown a, b;
    if (snap->running)
        printf("balancer: running, pid %d, control %s\n", snap->s.pid, SHOWN(&a, snap->s.control));
    else
        printf("balancer: not running (last recorded state)\n");
    printf("%-16s %-22s %-9s %6s %6s %6s %10s\n", "NAME", "ADDRESS", "STATE", "WEIGHT", "ACTIVE",
           "LOAD", "HEARTBEAT");
    for (size_t i = 0; i < snap->n; i++) {
        const struct reg_server *r = &snap->rows[i];
        printf("%-16s %-22s %-9s %6u %6u %6.2f %8.1fs\n", SHOWN(&a, r->name), SHOWN(&b, r->addr),
               reg_state_str(r->state), r->weight, r->load.active, r->load.load1,
               (double)age(snap, r->last_seen_ms) / 1000.0);
    }
    if (snap->n == 0)
        printf("(no servers)\n");
}

/* One line per transfer: id, user, state, size, path, then its legs. */
static void print_transfer(const cJSON *t)
{
    struct shown a, b;
    const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs"), *l;
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "user"));
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "path"));
    printf("%-8.0f %-12s %-11s %12.0f %s\n",
           cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "id")),
           shown(&a, user ? user : "?", 64),
           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "state")),
           cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "size")),
           shown(&b, path ? path : "?", 1024));
    cJSON_ArrayForEach(l, legs)
    {
        const char *server = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "server"));
        const char *outcome = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "outcome"));
        printf("    leg %-16s first_byte=%.0f bytes=%.0f outcome=%s\n",
               shown(&a, server ? server : "?", 64),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "first_byte")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, "bytes")),
               outcome ? outcome : "-");
    }
}

/* --transfers: the transfer table instead of the servers. */
static int show_transfers(const char *state, bool json)
{
    cJSON *doc;
    int rc = bal_read_transfers(state, XFER_NONE, &doc);
    if (rc < 0) {
        fprintf(stderr, "convoy status: state '%s': %s\n", state, strerror(-rc));
        return 1;
    }
    if (json) {
        char *text = cJSON_Print(doc);
        if (text)
            puts(text);
        free(text);
        cJSON_Delete(doc);
        return text ? 0 : 1;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "transfers"), *t;
    printf("%-8s %-12s %-11s %12s %s\n", "ID", "USER", "STATE", "SIZE", "PATH");
    cJSON_ArrayForEach(t, list) print_transfer(t);
    if (cJSON_GetArraySize(list) == 0)
        printf("(no transfers)\n");
    cJSON_Delete(doc);
    return 0;
}

/* A front-end's chain, in order, as JSON (strings escaped as shown). */
static cJSON *chain_json(const struct jobtab_server *c, size_t n)
{
    struct shown a;
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; list && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(list, o)) {
            cJSON_Delete(o);
            cJSON_Delete(list);
            return NULL;
        }
        cJSON_AddStringToObject(o, "name", SHOWN(&a, c[i].name));
        cJSON_AddStringToObject(o, "address", SHOWN(&a, c[i].addr));
        cJSON_AddNumberToObject(o, "weight", c[i].weight);
        cJSON_AddNumberToObject(o, "capacity", c[i].capacity);
        cJSON_AddNumberToObject(o, "active", c[i].active);
    }
    return list;
}

static cJSON *job_json(const struct jobtab_row *r)
{
    struct shown a;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)r->id);
    cJSON_AddStringToObject(o, "state", jobtab_state_str(r->state));
    cJSON_AddStringToObject(o, "user", SHOWN(&a, r->user));
    cJSON_AddStringToObject(o, "op", SHOWN(&a, r->op));
    cJSON_AddNumberToObject(o, "n", r->n);
    const struct {
        const char *key;
        uint64_t v;
    } nums[] = {{"items", r->items},
                {"done", r->done},
                {"ok", r->ok},
                {"singular", r->singular},
                {"invalid", r->invalid},
                {"redelegated", r->redelegated},
                {"submitted_ms", r->submitted_ms},
                {"finished_ms", r->finished_ms}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        cJSON_AddNumberToObject(o, nums[i].key, (double)nums[i].v);
    return o;
}

/* The jobs of a front-end's table, by slot, into list. */
static int jobs_json(struct jobtab *jt, cJSON *list)
{
    struct jobtab_row r;
    for (uint32_t i = 0; i < jobtab_capacity(jt); i++) {
        if (jobtab_get(jt, i, &r) != 1)
            continue;
        cJSON *o = job_json(&r);
        if (!o || !cJSON_AddItemToArray(list, o)) {
            cJSON_Delete(o);
            return -ENOMEM;
        }
    }
    return 0;
}

static void print_frontend_table(const struct jobtab_server *c, size_t n, cJSON *jobs)
{
    struct shown a, b;
    printf("chain (in order):\n%-16s %-22s %6s %8s %6s\n", "NAME", "ADDRESS", "WEIGHT", "CAPACITY",
           "ACTIVE");
    for (size_t i = 0; i < n; i++)
        printf("%-16s %-22s %6u %8u %6u\n", SHOWN(&a, c[i].name), SHOWN(&b, c[i].addr), c[i].weight,
               c[i].capacity, c[i].active);
    if (n == 0)
        printf("(no compute server: jobs wait)\n");
    printf("\n%-8s %-10s %-12s %10s %10s %8s %8s %8s %11s\n", "JOB", "STATE", "USER", "ITEMS",
           "DONE", "OK", "SINGULAR", "INVALID", "REDELEGATED");
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs)
    {
#define NUM(k) cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, k))
#define STR(k) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, k))
        printf("%-8.0f %-10s %-12s %10.0f %10.0f %8.0f %8.0f %8.0f %11.0f\n", NUM("id"),
               STR("state"), STR("user"), NUM("items"), NUM("done"), NUM("ok"), NUM("singular"),
               NUM("invalid"), NUM("redelegated"));
#undef NUM
#undef STR
    }
    if (cJSON_GetArraySize(jobs) == 0)
        printf("(no jobs)\n");
}

/* A front-end's segment: its chain and jobs. */
static int show_frontend(struct jobtab *jt, bool json)
{
    int rc = -ENOMEM;
    struct jobtab_server *chain = calloc(REG_SERVERS, sizeof *chain);
    cJSON *root = cJSON_CreateObject(), *jobs, *c = NULL;
    if (!chain || !root || !(jobs = cJSON_AddArrayToObject(root, "jobs")) ||
        jobs_json(jt, jobs) < 0)
        goto fail;
    size_t n = jobtab_chain(jt, chain, REG_SERVERS);
    if (!(c = chain_json(chain, n)) || !cJSON_AddItemToObject(root, "chain", c)) {
        cJSON_Delete(c);
        goto fail;
    }
    if (json) {
        char *text = cJSON_Print(root);
        if (!text)
            goto fail;
        puts(text);
        free(text);
    } else {
        print_frontend_table(chain, n, jobs);
    }
    rc = 0;
fail:
    if (rc < 0)
        fprintf(stderr, "convoy status: out of memory\n");
    cJSON_Delete(root);
    free(chain);
    return rc < 0 ? 1 : 0;
}

int cmd_status(int argc, char **argv)
{
    const char *state = "balancer";
    bool json = false, transfers = false;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("state", &state, "NAME",
                    "the balancer's or front-end's --state (default: balancer)", false),
        CLI_OPT_FLAG("json", &json, "one JSON object instead of the table (shape above)"),
        CLI_OPT_FLAG("transfers", &transfers, "the transfers instead of the servers"),
    };
    const struct cli_cmd cmd = {
        "status", "[--state NAME] [--transfers] [--json]",
        "Prints the balancer's servers from its shared memory on this host: name,\n"
        "address, state (up, draining, down), weight, active transfers, load and\n"
        "heartbeat age. Works while the balancer is stopped (its last recorded\n"
        "state, every server down). Strings the servers sent are shown escaped as\n"
        "in the logs (\\n, \\xHH), in the table and in the JSON.\n"
        "\n"
        "--json prints one object:\n"
        "  \"balancer\": {\"running\": true|false, \"pid\": N (0 when not running),\n"
        "               \"control\": \"HOST:PORT\" (its control address)}\n"
        "  \"servers\": [one object per server, with\n"
        "    \"name\", \"address\" (the HTTP HOST:PORT it announced),\n"
        "    \"state\" (\"up\", \"draining\" or \"down\"), \"weight\", \"capacity\",\n"
        "    \"active\" (transfers), \"bytes_per_s\", \"load1\" (load average),\n"
        "    \"disk_free\" (bytes), \"files\", \"bytes\" (under its root),\n"
        "    \"heartbeat_age_ms\" (since its last frame), \"state_age_ms\" (since\n"
        "    its state changed)]\n"
        "\n"
        "--transfers --json prints {\"transfers\": [{\"id\", \"user\", \"path\",\n"
        "  \"size\", \"etag\", \"digest\", \"state\" (redirected, active, done, failed,\n"
        "  interrupted), \"decision\", \"created_ms\", \"expires_ms\", \"ended_ms\",\n"
        "  \"legs\": [{\"server\", \"first_byte\", \"length\", \"bytes\", \"redirect_ms\",\n"
        "  \"start_ms\", \"end_ms\", \"outcome\"}, ...]}, ...]} by ascending id.\n"
        "\n"
        "A front-end's state shows its chain in order and its jobs; --json prints\n"
        "  {\"chain\": [{\"name\", \"address\", \"weight\", \"capacity\", \"active\"}, ...],\n"
        "   \"jobs\": [{\"id\", \"state\" (waiting, running, done, cancelled), \"user\",\n"
        "   \"op\", \"n\", \"items\", \"done\", \"ok\", \"singular\", \"invalid\",\n"
        "   \"redelegated\", \"submitted_ms\", \"finished_ms\"}, ...]}.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0)
        return rc;
    if (transfers)
        return show_transfers(state, json);
    struct jobtab *jt;
    if (jobtab_attach(state, &jt) == 0) {
        rc = show_frontend(jt, json);
        jobtab_close(jt);
        return rc;
    }
    struct snapshot *snap = calloc(1, sizeof *snap);
    if (snap == NULL || take_snapshot(state, snap) < 0) {
        free(snap);
        return 1;
    }
    rc = 0;
    if (json)
        rc = print_json(snap);
    else
        print_table(snap);
    free(snap);
    return rc < 0 ? 1 : 0;
}
