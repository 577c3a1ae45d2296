/*
 * fuzz_catalog — libFuzzer target for the CATALOG body reader.
 *
 * Input layout: byte 0's bit 0 says full (1) or delta (0), its bits 1-7 the
 * piece size less one; the rest is the body, fed to one reader in those
 * pieces. Every entry the reader hands on must be one the writer can write
 * (fscat_body_add accepts it), and reading that line back must give the
 * same entry; an error must be FRAME_ESCHEMA with a reason.
 */
#include "convoy/fscat.h"

#include "convoy/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool full;

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_catalog: %s\n", what);
        abort();
    }
}

static bool same(const struct fscat_entry *a, const struct fscat_entry *b)
{
    return strcmp(a->path, b->path) == 0 && a->gone == b->gone &&
           (a->gone || (a->size == b->size && a->mtime_ns == b->mtime_ns &&
                        strcmp(a->etag, b->etag) == 0 && a->has_sha256 == b->has_sha256 &&
                        memcmp(a->sha256, b->sha256, a->has_sha256 ? 32 : 0) == 0));
}

static int echo(void *arg, const struct fscat_entry *e)
{
    check(same(arg, e), "a line read back differs");
    return 0;
}

/* Writes e again and reads it back through a second reader. */
static int entry(void *arg, const struct fscat_entry *e)
{
    (void)arg;
    check(full ? !e->gone : true, "gone in a full catalog");
    struct fscat_body b = {0};
    check(fscat_body_add(&b, e) == 0, "the writer refuses what the reader took");
    fscat_reader_t *r;
    char why[256];
    check(fscat_reader_new(&r, full, 1, echo, (void *)e) == 0, "no memory");
    check(fscat_reader_feed(r, (const uint8_t *)b.data, b.len, why, sizeof why) == 0 &&
              fscat_reader_end(r, why, sizeof why) == 0,
          "the reader refuses what the writer wrote");
    fscat_reader_free(r);
    fscat_body_free(&b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    full = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    fscat_reader_t *r;
    char why[256] = "";
    if (fscat_reader_new(&r, full, FSCAT_ENTRIES_MAX, entry, NULL) < 0)
        return 0;
    int rc = 0;
    for (size_t off = 1; rc == 0 && off < size; off += step)
        rc = fscat_reader_feed(r, data + off, size - off < step ? size - off : step, why,
                               sizeof why);
    check(rc == 0 || (rc == FRAME_ESCHEMA && why[0]), "an error without a reason");
    fscat_reader_free(r);
    return 0;
}
