/*
 * cshare — how much of each WORK a compute server keeps: weight / (weight
 * + behind) of the items that reach it, over many WORKs. A WORK's share
 * is rarely a whole number of items, so the fraction left over is carried
 * to the next one (a running remainder): a server of weight 1 before a
 * chain of weight 2 keeps one item in three however the items are cut
 * into WORKs, and never more than one item off.
 *
 * Weights are estimates (a short calibration on a shared machine), so the
 * share bends to what the server can take: never more than its window has
 * room for (the rest goes on down the chain instead of waiting here), and
 * as much as fits when it is idle (a server that runs dry takes the next
 * WORK whole). What an idle server takes beyond its share is borrowed from
 * the WORKs to come, up to one WORK's worth: otherwise a head that runs
 * dry between single-item WORKs (n = 1024) keeps three quarters of a job
 * its weight says is half theirs, and starves the servers after it.
 * Plain data, no I/O.
 */
#ifndef CONVOY_CSHARE_H
#define CONVOY_CSHARE_H

#include <stdbool.h>
#include <stdint.h>

struct cshare {
    double credit; /* the share owed but not yet kept (below one item), or borrowed */
};

/* The weight of a server that computes gflops GFLOP/s: tenths of them, at
 * least 1 (what a server announces from its calibration, and what the
 * front-end sets once it has measured the server at work). */
uint32_t cshare_weight(double gflops);

/* What a server can take now: room for more items in its window, and
 * whether it holds none at all. */
struct cshare_room {
    uint32_t room;
    bool idle;
};

/* Of count items, how many a server of weight (≥ 1) keeps when the chain
 * after it weighs behind (0: it is the tail, and keeps them all) and it
 * can take what r says. */
uint32_t cshare_keep(struct cshare *s, uint32_t count, uint32_t weight, uint32_t behind,
                     struct cshare_room r);

#endif
