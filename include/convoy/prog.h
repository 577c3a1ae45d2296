/*
 * prog — a download's progress line for a terminal: bytes, rate, ETA and
 * the server sending, redrawn in place at most every PROG_REDRAW_MS.
 *
 * The rate is the average since the start for the first PROG_TAU_MS, then
 * a moving average (an exponential one over samples taken at each redraw,
 * with that time constant), so the ETA follows a change of speed within
 * seconds without jumping at every packet. The
 * struct is plain state and prog_line() a pure function of it, so tests
 * check the text; prog_draw() is the one part that writes to a terminal.
 */
#ifndef CONVOY_PROG_H
#define CONVOY_PROG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROG_REDRAW_MS 100
#define PROG_TAU_MS    2000

struct prog {
    uint64_t total;     /* bytes of the whole file; 0 = unknown */
    uint64_t done;      /* bytes so far (a resumed part counts) */
    uint64_t t_start;   /* ms */
    uint64_t t_sample;  /* ms of the last rate sample */
    uint64_t at_sample; /* done at the last rate sample */
    uint64_t at_start;  /* done at t_start */
    double rate;        /* bytes per second, averaged */
    bool have_rate;     /* one sample taken */
    uint64_t t_drawn;   /* ms of the last redraw */
    char server[64];    /* who sends now ("" before the redirect) */
};

void prog_start(struct prog *p, uint64_t total, uint64_t done, uint64_t now_ms);

/* Records done bytes at now_ms; true when a redraw is due (the first call,
 * or PROG_REDRAW_MS since the last one), and then the rate is sampled. */
bool prog_update(struct prog *p, uint64_t done, uint64_t now_ms);

/* Names the server now sending (copied, control characters dropped). */
void prog_server(struct prog *p, const char *name);

/*
 * The line, fitted to width columns (at least 20): "x.bin  42% [=====>   ]
 * 12.3 MiB/29.0 MiB  5.1 MiB/s  ETA 0:03  fs2", the bar taking what the
 * rest leaves. Returns buf.
 */
char *prog_line(const struct prog *p, const char *name, unsigned width, char *buf, size_t cap);

/* "12.3 MiB", "512 B": n in buf. Returns buf. */
char *prog_bytes(uint64_t n, char *buf, size_t cap);

/* The width of the terminal on fd, or 80 when it says none. */
unsigned prog_term_width(int fd);

/* Writes the line over the previous one ("\r", the line, erase to end). */
void prog_draw(const struct prog *p, const char *name, FILE *tty);

#endif
