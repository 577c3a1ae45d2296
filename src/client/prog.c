/*
 * prog — the progress line (see include/convoy/prog.h). The text is built
 * left to right from fields of fixed meaning; when the terminal is narrow
 * the bar shrinks first, then the name, so the numbers a user watches stay.
 */
#include "convoy/prog.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PROG_BAR_MIN 10

void prog_start(struct prog *p, uint64_t total, uint64_t done, uint64_t now_ms)
{
    char server[sizeof p->server];
    memcpy(server, p->server, sizeof server);
    *p = (struct prog){
        .total = total, .done = done, .t_start = now_ms, .t_sample = now_ms, .at_sample = done};
    memcpy(p->server, server, sizeof server);
}

/* For the first PROG_TAU_MS the rate is the average since the start (so
 * the burst a connection starts with is diluted, not taken as the speed);
 * after it, an exponential moving average of the samples. */
static void prog_sample(struct prog *p, uint64_t now_ms)
{
    uint64_t dt = now_ms - p->t_sample, since = now_ms - p->t_start;
    if (dt == 0 || since < PROG_REDRAW_MS) /* a first packet is no rate */
        return;
    if (since <= PROG_TAU_MS) {
        p->rate = (double)(p->done - p->at_start) * 1000.0 / (double)since;
    } else {
        double inst = (double)(p->done - p->at_sample) * 1000.0 / (double)dt;
        double keep = exp(-(double)dt / PROG_TAU_MS);
        p->rate = p->rate * keep + inst * (1.0 - keep);
    }
    p->have_rate = true;
    p->t_sample = now_ms;
    p->at_sample = p->done;
}

bool prog_update(struct prog *p, uint64_t done, uint64_t now_ms)
{
    if (done < p->at_sample) /* a leg started over: the rate begins again */
        prog_start(p, p->total, done, now_ms);
    p->done = done;
    if (p->t_drawn != 0 && now_ms - p->t_drawn < PROG_REDRAW_MS)
        return false;
    prog_sample(p, now_ms);
    p->t_drawn = now_ms ? now_ms : 1;
    return true;
}

void prog_server(struct prog *p, const char *name)
{
    size_t n = 0;
    for (; *name != '\0' && n + 1 < sizeof p->server; name++)
        if ((unsigned char)*name >= 0x20 && *name != 0x7f)
            p->server[n++] = *name;
    p->server[n] = '\0';
}

char *prog_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", n);
        return buf;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof unit / sizeof unit[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, unit[u]);
    return buf;
}

/* "ETA 1:02:03", "ETA 0:42", "ETA --:--" when it cannot be told. */
static void prog_eta(const struct prog *p, char *buf, size_t cap)
{
    if (p->total == 0 || !p->have_rate || p->rate < 1.0 || p->done > p->total) {
        snprintf(buf, cap, "ETA --:--");
        return;
    }
    uint64_t s = (uint64_t)llround((double)(p->total - p->done) / p->rate);
    if (s >= 100 * 3600)
        snprintf(buf, cap, "ETA >99h");
    else if (s >= 3600)
        snprintf(buf, cap, "ETA %" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60,
                 s % 60);
    else
        snprintf(buf, cap, "ETA %" PRIu64 ":%02" PRIu64, s / 60, s % 60);
}

/* "[=====>    ]" of width w (with brackets) for fraction f. */
static void prog_bar(double f, unsigned w, char *out)
{
    unsigned inner = w - 2, full = (unsigned)(f * inner);
    out[0] = '[';
    for (unsigned i = 0; i < inner; i++)
        out[1 + i] = i < full ? '=' : i == full ? '>' : ' ';
    if (full >= inner)
        out[inner] = '=';
    out[w - 1] = ']';
    out[w] = '\0';
}

char *prog_line(const struct prog *p, const char *name, unsigned width, char *buf, size_t cap)
{
    char done[16], total[16], rate[16], eta[24], tail[160], bar[256];
    prog_bytes(p->done, done, sizeof done);
    prog_bytes(p->total, total, sizeof total);
    prog_bytes(p->have_rate ? (uint64_t)llround(p->rate) : 0, rate, sizeof rate);
    prog_eta(p, eta, sizeof eta);
    if (p->total != 0)
        snprintf(tail, sizeof tail, "%s/%s  %s/s  %s%s%s", done, total, rate, eta,
                 p->server[0] ? "  " : "", p->server);
    else
        snprintf(tail, sizeof tail, "%s  %s/s%s%s", done, rate, p->server[0] ? "  " : "",
                 p->server);
    if (width < 20)
        width = 20;
    if (width > sizeof bar)
        width = sizeof bar;
    unsigned pct = p->total ? (unsigned)(p->done >= p->total ? 100 : p->done * 100 / p->total) : 0;
    size_t tlen = strlen(tail), nlen = strlen(name);
    /* name + "  " + "100% " + bar + " " + tail, within width - 1 (no wrap) */
    long room = (long)width - 1 - (long)tlen - 7;
    if (p->total == 0 || room < PROG_BAR_MIN + 2) {
        snprintf(buf, cap, "%.*s", (int)(width - 1), tail);
        return buf;
    }
    if ((long)nlen > room - PROG_BAR_MIN - 2)
        nlen = room - PROG_BAR_MIN - 2 > 0 ? (size_t)(room - PROG_BAR_MIN - 2) : 0;
    unsigned bw = (unsigned)(room - (long)nlen - (nlen ? 2 : 0));
    if (bw > 42)
        bw = 42;
    prog_bar((double)pct / 100.0, bw, bar);
    snprintf(buf, cap, "%.*s%s%3u%% %s %s", (int)nlen, name, nlen ? "  " : "", pct, bar, tail);
    return buf;
}

unsigned prog_term_width(int fd)
{
    struct winsize ws;
    return ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

void prog_draw(const struct prog *p, const char *name, FILE *tty)
{
    char line[512];
    prog_line(p, name, prog_term_width(fileno(tty)), line, sizeof line);
    fprintf(tty, "\r%s\033[K", line);
    fflush(tty);
}
