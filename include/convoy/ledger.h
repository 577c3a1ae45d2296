/*
 * ledger — exactly-once accounting of one job's items at the front-end.
 *
 * Each item of a job is unsent, sent (in a WORK on the chain, nobody has
 * said it keeps it), accepted (a compute session said ACCEPTED) or done
 * (its first RESULT counted). The design is simple: items travel in ranges
 * (a WORK, an ACCEPTED and a RESULT each name first … first+count-1), so
 * the ledger is a sorted array of runs, each a range of items in one state
 * (and, accepted, one session). A transition splits the runs at the
 * range's ends, changes the runs inside and merges equal neighbours again:
 * a job of 10^6 items costs a few runs per batch in flight, and a finished
 * job is one run.
 *
 * The rules that make it exactly once:
 *  - the first RESULT for an item counts; a later one (a duplicate, a
 *    forwarded copy, a resent copy) finds the item done and is ignored;
 *  - a session presumed dead (ledger_server_down) is ignored from then on,
 *    even if it answers late: its items went back to unsent;
 *  - when a session goes down, every item neither done nor accepted by a
 *    live session (so: sent, or accepted by the dead one) becomes unsent,
 *    to be delegated again; those items are counted as redelegated.
 *
 * No locks, no I/O: the front-end owns one ledger per job and calls it from
 * the one thread that runs the job table.
 */
#ifndef CONVOY_LEDGER_H
#define CONVOY_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_SERVERS  64 /* per-server counts kept per job */
#define LEDGER_NAME_MAX 64 /* a server name with its NUL */

enum ledger_state {
    LEDGER_UNSENT,
    LEDGER_SENT,
    LEDGER_ACCEPTED,
    LEDGER_DONE,
};

/* "unsent", "sent", "accepted", "done"; "unknown". */
const char *ledger_state_str(enum ledger_state s);

struct ledger;

/* A ledger of count items, all unsent. NULL on allocation failure or
 * count 0. */
struct ledger *ledger_new(uint64_t count);
void ledger_free(struct ledger *l);

/* Items in the job. */
uint64_t ledger_items(const struct ledger *l);

/*
 * The lowest run of unsent items, at most max long: *first and *count.
 * Returns 1 when there is one, 0 when no item is unsent.
 */
int ledger_next_unsent(const struct ledger *l, uint32_t max, uint64_t *first, uint32_t *count);

/* A WORK carried first … first+count-1: unsent items become sent.
 * -ERANGE when the range leaves the job, -ENOMEM. */
int ledger_sent(struct ledger *l, uint64_t first, uint32_t count);

/*
 * Session sid (never 0) keeps those items: every item not done becomes
 * accepted by sid. Ignored (returns 0) when sid is presumed dead. 0,
 * -ERANGE, -EINVAL (sid 0), -ENOMEM.
 */
int ledger_accepted(struct ledger *l, uint64_t first, uint32_t count, uint64_t sid);

/* Called once per run of items a RESULT newly counted (first of the run,
 * its length). */
typedef int (*ledger_done_fn)(void *arg, uint64_t first, uint32_t count);

/*
 * A RESULT from session sid, computed by server: every item of the range
 * not yet done becomes done and counts for server; done_fn (may be NULL)
 * hears each run that counted, in order, before the call returns, so the
 * caller stores exactly those items. sid 0 restores items already stored
 * (a restarted front-end reading its spool). A presumed-dead sid counts
 * nothing. Returns the items newly done, or -ERANGE, -ENOMEM, or done_fn's
 * negative return (the items stay done: the caller treats it as fatal).
 */
long ledger_result(struct ledger *l, uint64_t first, uint32_t count, uint64_t sid,
                   const char *server, ledger_done_fn done_fn, void *arg);

/*
 * Session sid is down: sent items, and items accepted by sid, become
 * unsent, and sid is ignored from then on. Returns the items that went
 * back (added to the redelegated count), or -ENOMEM.
 */
long ledger_server_down(struct ledger *l, uint64_t sid);

/*
 * Every sent item becomes unsent (and counts as redelegated): the WORKs
 * that carried them are presumed lost on the way (a link that closed
 * before its peer took them), though no server is known to be down. An
 * answer for them that still comes counts as ever. Returns the items
 * that went back, or -ENOMEM.
 */
long ledger_unsend(struct ledger *l);

/* Whether sid was given to ledger_server_down. */
bool ledger_session_dead(const struct ledger *l, uint64_t sid);

/* State of one item (and, accepted, its session in *sid; may be NULL). */
enum ledger_state ledger_item(const struct ledger *l, uint64_t item, uint64_t *sid);

struct ledger_server_count {
    char name[LEDGER_NAME_MAX];
    uint64_t done; /* items it computed that counted */
};

struct ledger_counts {
    uint64_t unsent, sent, accepted, done;
    uint64_t redelegated; /* items sent back to unsent by a server down */
    uint32_t runs;        /* runs held: what the ledger costs */
    uint32_t nservers;    /* rows of servers[] used */
    struct ledger_server_count servers[LEDGER_SERVERS];
};

/* The counts now. Servers past LEDGER_SERVERS count under the last row,
 * named "other". */
void ledger_counts(const struct ledger *l, struct ledger_counts *out);

/* Whether every item is done. */
bool ledger_complete(const struct ledger *l);

#endif
