/*
 * fuzz_frame — libFuzzer target for the frame decoder.
 *
 * Input layout: byte 0 holds in its low 3 bits the count n-1 of split sizes
 * that follow (n in 1..8); each of those n bytes b gives a piece of b+1
 * bytes, used in turn. The rest is the byte stream, fed to one decoder in
 * those pieces, so that the same frames are cut at every place the fuzzer
 * finds interesting.
 *
 * The sink checks the decoder's promises and aborts when one breaks: frames
 * alternate on_frame / on_end, the body pieces of a frame add up to its
 * frame_inline_len and lie inside the piece being fed, every header field is
 * within what its type allows, an error latches. Every decoded frame is
 * encoded again (frame_encode, frame_encode_streamed, or frame_hdr_encode
 * for the bare DATA and CREDIT headers) and decoded by a second decoder,
 * which must read the same header and print the same meta; the meta also
 * goes through frame_meta_check, which must answer 0 or FRAME_ESCHEMA.
 */
#include "convoy/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Small limits, so that the fuzzer reaches both sides of each. */
static const struct frame_limits fuzz_limits = {.meta_max = 1024, .body_max = 4096};

struct fuzz_state {
    const uint8_t *lo, *hi; /* the piece being fed */
    bool in_frame;          /* between on_frame and on_end */
    uint64_t body_len;      /* of the current frame */
    uint64_t body_seen;     /* body bytes delivered so far */
    unsigned frames, ends;  /* callbacks seen */
};

/* What the second decoder of a round trip saw. */
struct echo {
    struct frame_hdr hdr;
    char *meta; /* printed */
    unsigned frames;
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_frame: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const struct frame_field fuzz_fields[] = {
    {"id", FF_UINT, true},  {"name", FF_STRING, false}, {"x", FF_NUMBER, false},
    {"ok", FF_BOOL, false}, {"o", FF_OBJECT, false},    {"a", FF_ARRAY, false},
};

static int echo_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    struct echo *e = ctx;
    e->hdr = *h;
    e->meta = cJSON_PrintUnformatted(meta);
    e->frames++;
    return 0;
}

static const struct frame_sink echo_sink = {echo_frame, NULL, NULL};

/* Encodes the frame as its sender would, in a malloc'd buffer. */
static void encode_again(const struct frame_hdr *h, const cJSON *meta, uint8_t **enc, size_t *len)
{
    if (h->type == FRAME_DATA || h->type == FRAME_CREDIT) {
        CHECK((*enc = malloc(FRAME_HDR_LEN)) != NULL);
        frame_hdr_encode(*enc, h);
        *len = FRAME_HDR_LEN;
    } else if (h->flags & FRAME_F_STREAMED) {
        CHECK(frame_encode_streamed((enum frame_type)h->type, meta, h->stream, h->body_len, enc,
                                    len) == 0);
    } else {
        CHECK(frame_encode((enum frame_type)h->type, meta, h->body_len, enc, len) == 0);
    }
}

/* Encodes the frame again and checks that a fresh decoder reads it the same. */
static void round_trip(const struct frame_hdr *h, const cJSON *meta)
{
    uint8_t *enc;
    size_t len;
    encode_again(h, meta, &enc, &len);
    struct frame_limits lim = {.meta_max = FRAME_META_MAX, .body_max = h->body_len};
    struct echo e = {0};
    frame_decoder_t *d;
    CHECK(frame_decoder_new(&d, &lim, &echo_sink, &e) == 0);
    CHECK(frame_decoder_feed(d, enc, len) == 0);
    CHECK(e.frames == 1);
    CHECK(e.hdr.type == h->type && e.hdr.flags == h->flags && e.hdr.stream == h->stream &&
          e.hdr.body_len == h->body_len);
    char *text = cJSON_PrintUnformatted(meta);
    CHECK(text != NULL && e.meta != NULL && strcmp(text, e.meta) == 0);
    size_t meta_len = h->type == FRAME_DATA || h->type == FRAME_CREDIT ? 0 : strlen(text);
    CHECK(e.hdr.meta_len == meta_len && len == FRAME_HDR_LEN + meta_len);
    cJSON_free(text);
    cJSON_free(e.meta);
    frame_decoder_free(d);
    free(enc);
}

/* What the header checks promise about a frame they let through. */
static void check_fields(const struct frame_hdr *h)
{
    bool bare = h->type == FRAME_DATA || h->type == FRAME_CREDIT;
    bool streamed = h->flags & FRAME_F_STREAMED;
    CHECK(h->version == FRAME_VERSION);
    CHECK(h->type >= FRAME_TYPE_FIRST && h->type <= FRAME_TYPE_LAST);
    CHECK((h->flags & ~FRAME_F_STREAMED) == 0 && !(streamed && (bare || h->type == FRAME_ERROR)));
    CHECK((h->stream != 0) == (bare || streamed));
    CHECK(h->meta_len <= (bare ? 0 : fuzz_limits.meta_max));
    if (h->type == FRAME_CREDIT)
        CHECK(h->credit >= 1 && h->credit <= FRAME_WINDOW);
    else
        CHECK(h->body_len <= fuzz_limits.body_max);
    if (h->type == FRAME_DATA)
        CHECK(h->body_len >= 1 && h->body_len <= FRAME_CHUNK_MAX);
    if (streamed)
        CHECK(h->body_len >= 1 && frame_inline_len(h) == 0);
}

static int on_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    struct fuzz_state *s = ctx;
    CHECK(!s->in_frame);
    CHECK(cJSON_IsObject(meta));
    check_fields(h);
    s->in_frame = true;
    s->body_len = frame_inline_len(h);
    s->body_seen = 0;
    s->frames++;
    char why[64];
    int rc = frame_meta_check(meta, fuzz_fields, sizeof fuzz_fields / sizeof fuzz_fields[0], why,
                              sizeof why);
    CHECK(rc == 0 || (rc == FRAME_ESCHEMA && strlen(why) < sizeof why));
    round_trip(h, meta);
    return 0;
}

static int on_body(void *ctx, const uint8_t *data, size_t len)
{
    struct fuzz_state *s = ctx;
    CHECK(s->in_frame && len > 0);
    CHECK(data >= s->lo && data + len <= s->hi);
    s->body_seen += len;
    CHECK(s->body_seen <= s->body_len);
    return 0;
}

static int on_end(void *ctx)
{
    struct fuzz_state *s = ctx;
    CHECK(s->in_frame && s->body_seen == s->body_len);
    s->in_frame = false;
    s->ends++;
    return 0;
}

static const struct frame_sink fuzz_sink = {on_frame, on_body, on_end};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t nsplit = (data[0] & 7u) + 1;
    if (size < 1 + nsplit)
        return 0;
    const uint8_t *split = data + 1;
    const uint8_t *p = data + 1 + nsplit;
    size_t left = size - 1 - nsplit;

    struct fuzz_state s = {0};
    frame_decoder_t *d;
    CHECK(frame_decoder_new(&d, &fuzz_limits, &fuzz_sink, &s) == 0);
    int rc = 0;
    for (size_t i = 0; left > 0 && rc == 0; i++) {
        size_t n = (size_t)split[i % nsplit] + 1;
        if (n > left)
            n = left;
        s.lo = p;
        s.hi = p + n;
        rc = frame_decoder_feed(d, p, n);
        p += n;
        left -= n;
    }
    CHECK(rc <= 0);
    CHECK(s.ends == s.frames || s.ends + 1 == s.frames);
    if (rc == 0)
        CHECK(!(frame_decoder_idle(d) && s.in_frame));
    else
        CHECK(frame_decoder_feed(d, data, size) == rc && !frame_decoder_idle(d));
    frame_decoder_free(d);
    return 0;
}
