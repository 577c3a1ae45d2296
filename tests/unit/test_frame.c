/*
 * frame: frames survive a round trip, every bad header field is refused with
 * its own code before any callback, input split anywhere decodes the same,
 * and bodies arrive as pointers into the caller's buffer; streamed messages,
 * DATA and CREDIT frames interleave with others and have every new field
 * checked.
 */
#include "convoy/frame.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_MAX  8
#define BODY_MAX 4096

/* A sink that records what it was told, and can be told to refuse. */
struct rec {
    char events[64];               /* 'F' on_frame, 'B' on_body, 'E' on_end */
    size_t nevents;                /* letters in events */
    int nframes;                   /* on_frame calls */
    int nends;                     /* on_end calls */
    struct frame_hdr hdr[REC_MAX]; /* header of each frame */
    char *meta[REC_MAX];           /* each frame's meta, printed */
    uint8_t body[BODY_MAX];        /* every body byte, concatenated */
    size_t body_len;               /* bytes in body */
    const uint8_t *lo, *hi;        /* the buffer being fed */
    bool copied;                   /* a body piece lay outside [lo, hi) */
    char stop_on;                  /* event letter that returns stop_rc */
    int stop_rc;
};

static void rec_event(struct rec *r, char c)
{
    if (r->nevents < sizeof r->events - 1)
        r->events[r->nevents++] = c;
}

static int rec_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    struct rec *r = ctx;
    rec_event(r, 'F');
    if (r->nframes < REC_MAX) {
        r->hdr[r->nframes] = *h;
        r->meta[r->nframes] = cJSON_PrintUnformatted(meta);
    }
    r->nframes++;
    return r->stop_on == 'F' ? r->stop_rc : 0;
}

static int rec_body(void *ctx, const uint8_t *data, size_t len)
{
    struct rec *r = ctx;
    rec_event(r, 'B');
    if (data < r->lo || data + len > r->hi)
        r->copied = true;
    if (r->body_len + len <= BODY_MAX)
        memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    return r->stop_on == 'B' ? r->stop_rc : 0;
}

static int rec_end(void *ctx)
{
    struct rec *r = ctx;
    rec_event(r, 'E');
    r->nends++;
    return r->stop_on == 'E' ? r->stop_rc : 0;
}

static const struct frame_sink rec_sink = {rec_frame, rec_body, rec_end};
static const struct frame_limits small = {.meta_max = 256, .body_max = 1024};

static void rec_clear(struct rec *r)
{
    for (int i = 0; i < REC_MAX && i < r->nframes; i++)
        free(r->meta[i]);
    memset(r, 0, sizeof *r);
}

static frame_decoder_t *decoder(struct rec *r, const struct frame_limits *lim)
{
    frame_decoder_t *d = NULL;
    CU_ASSERT_FATAL(frame_decoder_new(&d, lim, &rec_sink, r) == 0);
    return d;
}

/* Feeds buf[0..len), remembering its bounds so pieces can be checked. */
static int feed(frame_decoder_t *d, struct rec *r, const uint8_t *buf, size_t len)
{
    r->lo = buf;
    r->hi = buf + len;
    return frame_decoder_feed(d, buf, len);
}

/* Appends one encoded frame (meta given as JSON text, or NULL) and its body. */
static size_t put_frame(uint8_t *out, enum frame_type type, const char *json, const uint8_t *body,
                        size_t body_len)
{
    cJSON *meta = json ? cJSON_Parse(json) : NULL;
    CU_ASSERT_FATAL(json == NULL || meta != NULL);
    uint8_t *enc;
    size_t enc_len;
    CU_ASSERT_FATAL(frame_encode(type, meta, body_len, &enc, &enc_len) == 0);
    memcpy(out, enc, enc_len);
    if (body_len > 0)
        memcpy(out + enc_len, body, body_len);
    free(enc);
    cJSON_Delete(meta);
    return enc_len + body_len;
}

/* Writes a header with raw meta text after it, bypassing frame_encode. */
static size_t put_raw(uint8_t *out, const char *meta, size_t meta_len, uint64_t body_len)
{
    struct frame_hdr h = {.version = FRAME_VERSION,
                          .type = FRAME_HELLO,
                          .meta_len = (uint32_t)meta_len,
                          .body_len = body_len};
    frame_hdr_encode(out, &h);
    memcpy(out + FRAME_HDR_LEN, meta, meta_len);
    return FRAME_HDR_LEN + meta_len;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 31);
}

static void test_round_trip(void)
{
    uint8_t buf[2048], body[300];
    char json[128];
    for (int t = FRAME_TYPE_FIRST; t <= FRAME_ERROR; t++) { /* every message type */
        struct rec r = {0};
        size_t body_len = (size_t)t * 20;
        fill(body, body_len, (unsigned)t);
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"n\":%d,\"list\":[1,\"x\",{\"a\":null}]}",
                 frame_type_str(t), t);
        size_t len = put_frame(buf, (enum frame_type)t, json, body, body_len);
        frame_decoder_t *d = decoder(&r, &small);
        CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
        CU_ASSERT_EQUAL(r.nframes, 1);
        CU_ASSERT_EQUAL(r.nends, 1);
        CU_ASSERT_EQUAL(r.hdr[0].type, t);
        CU_ASSERT_EQUAL(r.hdr[0].version, FRAME_VERSION);
        CU_ASSERT_EQUAL(r.hdr[0].flags, 0);
        CU_ASSERT_EQUAL(r.hdr[0].body_len, body_len);
        CU_ASSERT_STRING_EQUAL(r.meta[0], json);
        CU_ASSERT_EQUAL(r.body_len, body_len);
        CU_ASSERT_EQUAL(memcmp(r.body, body, body_len), 0);
        CU_ASSERT_TRUE(frame_decoder_idle(d));
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

static void test_no_meta(void)
{
    uint8_t buf[64];
    struct rec r = {0};
    size_t len = put_frame(buf, FRAME_HEARTBEAT, NULL, NULL, 0);
    CU_ASSERT_EQUAL(len, FRAME_HDR_LEN);
    frame_decoder_t *d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
    CU_ASSERT_STRING_EQUAL(r.events, "FE");
    CU_ASSERT_EQUAL(r.hdr[0].meta_len, 0);
    CU_ASSERT_STRING_EQUAL(r.meta[0], "{}");
    frame_decoder_free(d);
    rec_clear(&r);
}

/* A header with meta_len 2 and body_len 4, then one field overwritten. */
struct hdr_case {
    const char *what;
    size_t off; /* first byte overwritten */
    size_t n;   /* bytes overwritten, big-endian */
    uint64_t v; /* their value */
    int want;   /* FRAME_E* code */
};

static const struct hdr_case hdr_cases[] = {
    {"magic", 0, 1, 'X', FRAME_EMAGIC},
    {"magic last byte", 3, 1, 'y', FRAME_EMAGIC},
    {"version 0", 4, 1, 0, FRAME_EVERSION},
    {"version 1", 4, 1, 1, FRAME_EVERSION},
    {"version 3", 4, 1, 3, FRAME_EVERSION},
    {"type 0", 5, 1, 0, FRAME_ETYPE},
    {"type LAST+1", 5, 1, FRAME_TYPE_LAST + 1, FRAME_ETYPE},
    {"type 255", 5, 1, 255, FRAME_ETYPE},
    {"flags lowest undefined bit", 6, 2, 0x0002, FRAME_EFLAGS},
    {"flags high bit", 6, 2, 0x8000, FRAME_EFLAGS},
    {"stream on a plain frame", 12, 4, 1, FRAME_ESTREAM},
    {"meta_len limit+1", 8, 4, 257, FRAME_EMETA_LEN},
    {"meta_len 2^32-1", 8, 4, UINT32_MAX, FRAME_EMETA_LEN},
    {"body_len limit+1", 16, 8, 1025, FRAME_EBODY_LEN},
    {"body_len 2^64-1", 16, 8, UINT64_MAX, FRAME_EBODY_LEN},
};

static void valid_hdr(uint8_t out[FRAME_HDR_LEN])
{
    struct frame_hdr h = {
        .version = FRAME_VERSION, .type = FRAME_WORK, .meta_len = 2, .body_len = 4};
    frame_hdr_encode(out, &h);
}

static void poke(uint8_t *p, size_t n, uint64_t v)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static void test_header_fields(void)
{
    uint8_t buf[FRAME_HDR_LEN + 6];
    struct frame_hdr h;
    valid_hdr(buf);
    CU_ASSERT_EQUAL(frame_hdr_decode(buf, &small, &h), 0);
    for (size_t i = 0; i < sizeof hdr_cases / sizeof hdr_cases[0]; i++) {
        const struct hdr_case *c = &hdr_cases[i];
        valid_hdr(buf);
        memcpy(buf + FRAME_HDR_LEN, "{}body", 6);
        poke(buf + c->off, c->n, c->v);
        CU_ASSERT_EQUAL(frame_hdr_decode(buf, &small, &h), c->want);
        struct rec r = {0};
        frame_decoder_t *d = decoder(&r, &small);
        int rc = feed(d, &r, buf, sizeof buf);
        if (rc != c->want)
            fprintf(stderr, "\n  case '%s': got %d want %d\n", c->what, rc, c->want);
        CU_ASSERT_EQUAL(rc, c->want);
        CU_ASSERT_EQUAL(r.nevents, 0);
        CU_ASSERT_EQUAL(feed(d, &r, buf, sizeof buf), c->want); /* stays failed */
        CU_ASSERT_FALSE(frame_decoder_idle(d));
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

/* With every field wrong, fixing them one by one reveals the check order. */
static void test_header_order(void)
{
    static const int order[] = {FRAME_EMAGIC,  FRAME_EVERSION,  FRAME_ETYPE,    FRAME_EFLAGS,
                                FRAME_ESTREAM, FRAME_EMETA_LEN, FRAME_EBODY_LEN};
    uint8_t buf[FRAME_HDR_LEN], good[FRAME_HDR_LEN];
    struct frame_hdr h;
    valid_hdr(good);
    memcpy(buf, "XXXX", 4);
    poke(buf + 4, 1, 9);
    poke(buf + 5, 1, 0);
    poke(buf + 6, 2, 4);
    poke(buf + 8, 4, 100000);
    poke(buf + 12, 4, 7);
    poke(buf + 16, 8, 5000);
    /* Fields in check order: magic, version, type, flags, stream, meta_len. */
    static const size_t fix_off[] = {0, 4, 5, 6, 12, 8};
    static const size_t fix_len[] = {4, 1, 1, 2, 4, 4};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        CU_ASSERT_EQUAL(frame_hdr_decode(buf, &small, &h), order[i]);
        if (i < sizeof fix_off / sizeof fix_off[0])
            memcpy(buf + fix_off[i], good + fix_off[i], fix_len[i]);
    }
}

static void test_meta_max_clamped(void)
{
    struct frame_limits huge = {.meta_max = UINT32_MAX, .body_max = 0};
    uint8_t buf[FRAME_HDR_LEN];
    struct frame_hdr h = {.version = FRAME_VERSION, .type = FRAME_HELLO};
    h.meta_len = FRAME_META_MAX;
    frame_hdr_encode(buf, &h);
    CU_ASSERT_EQUAL(frame_hdr_decode(buf, &huge, &h), 0);
    h.meta_len = FRAME_META_MAX + 1;
    frame_hdr_encode(buf, &h);
    CU_ASSERT_EQUAL(frame_hdr_decode(buf, &huge, &h), FRAME_EMETA_LEN);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &huge);
    CU_ASSERT_EQUAL(feed(d, &r, buf, sizeof buf), FRAME_EMETA_LEN);
    frame_decoder_free(d);
}

/* Two frames: one with meta and body, one with neither. */
static size_t two_frames(uint8_t *buf, uint8_t *body, size_t body_len)
{
    fill(body, body_len, 7);
    size_t len = put_frame(buf, FRAME_XFER_START, "{\"id\":12,\"path\":\"a/b\"}", body, body_len);
    return len + put_frame(buf + len, FRAME_BYE, NULL, NULL, 0);
}

static void check_two_frames(const struct rec *r, const uint8_t *body, size_t body_len)
{
    CU_ASSERT_EQUAL(r->nframes, 2);
    CU_ASSERT_EQUAL(r->nends, 2);
    CU_ASSERT_EQUAL(r->hdr[0].type, FRAME_XFER_START);
    CU_ASSERT_EQUAL(r->hdr[1].type, FRAME_BYE);
    CU_ASSERT_EQUAL(r->body_len, body_len);
    CU_ASSERT_EQUAL(memcmp(r->body, body, body_len), 0);
}

static void test_truncated(void)
{
    uint8_t buf[256], body[40];
    size_t len = two_frames(buf, body, sizeof body);
    size_t first = len - FRAME_HDR_LEN; /* end of the first frame */
    size_t body_at = first - sizeof body;
    for (size_t cut = 0; cut <= len; cut++) {
        struct rec r = {0};
        frame_decoder_t *d = decoder(&r, &small);
        CU_ASSERT_EQUAL(feed(d, &r, buf, cut), 0);
        CU_ASSERT_EQUAL(r.nframes, (cut >= body_at) + (cut == len));
        CU_ASSERT_EQUAL(r.nends, (cut >= first) + (cut == len));
        CU_ASSERT_EQUAL(r.body_len, cut > body_at ? (cut < first ? cut : first) - body_at : 0);
        CU_ASSERT_EQUAL(frame_decoder_idle(d), cut == 0 || cut == first || cut == len);
        CU_ASSERT_EQUAL(feed(d, &r, buf + cut, len - cut), 0);
        check_two_frames(&r, body, sizeof body);
        CU_ASSERT_TRUE(frame_decoder_idle(d));
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

static void test_byte_at_a_time(void)
{
    uint8_t buf[256], body[40];
    size_t len = two_frames(buf, body, sizeof body);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &small);
    for (size_t i = 0; i < len; i++)
        CU_ASSERT_EQUAL(feed(d, &r, buf + i, 1), 0);
    check_two_frames(&r, body, sizeof body);
    char want[64] = "F"; /* one on_body per body byte fed */
    memset(want + 1, 'B', sizeof body);
    strcpy(want + 1 + sizeof body, "EFE");
    CU_ASSERT_STRING_EQUAL(r.events, want);
    CU_ASSERT_FALSE(r.copied);
    frame_decoder_free(d);
    rec_clear(&r);
}

/* Meta text with its exact length, so that it may hold a NUL. */
struct text {
    const char *s;
    size_t n;
};
#define TEXT(lit)                                                                                  \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static void test_meta_not_object(void)
{
    static const struct text bad[] = {
        TEXT("{\"a\":"), TEXT("nope"), TEXT("[1,2]"),      TEXT("42"),
        TEXT("\"s\""),   TEXT("null"), TEXT("{} x"),       TEXT("{}{}"),
        TEXT("   "),     TEXT("{}\0"), TEXT("{\"a\":1}]"), TEXT("{\"a\":\"\0\"}"),
    };
    uint8_t buf[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rec r = {0};
        size_t len = put_raw(buf, bad[i].s, bad[i].n, 0);
        frame_decoder_t *d = decoder(&r, &small);
        CU_ASSERT_EQUAL(feed(d, &r, buf, len), FRAME_EMETA_JSON);
        CU_ASSERT_EQUAL(r.nevents, 0);
        frame_decoder_free(d);
    }
}

/* JSON allows whitespace around the value: it is not trailing garbage. */
static void test_meta_whitespace(void)
{
    uint8_t buf[64];
    struct rec r = {0};
    static const struct text ws = TEXT(" {\"a\": true}\r\n");
    size_t len = put_raw(buf, ws.s, ws.n, 0);
    frame_decoder_t *d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
    CU_ASSERT_EQUAL_FATAL(r.nends, 1);
    CU_ASSERT_STRING_EQUAL(r.meta[0], "{\"a\":true}");
    frame_decoder_free(d);
    rec_clear(&r);
}

static void test_body_over_limit(void)
{
    uint8_t buf[64];
    struct rec r = {0};
    size_t len = put_raw(buf, "{}", 2, small.body_max + 1);
    frame_decoder_t *d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), FRAME_EBODY_LEN);
    CU_ASSERT_EQUAL(r.nevents, 0);
    frame_decoder_free(d);
    len = put_raw(buf, "{}", 2, small.body_max);
    d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
    CU_ASSERT_STRING_EQUAL(r.events, "F");
    frame_decoder_free(d);
    rec_clear(&r);
}

static void test_several_frames(void)
{
    uint8_t buf[512], body[8];
    fill(body, sizeof body, 1);
    size_t len = put_frame(buf, FRAME_HELLO, "{\"name\":\"fs1\"}", NULL, 0);
    len += put_frame(buf + len, FRAME_RESULT, NULL, body, 3);
    len += put_frame(buf + len, FRAME_WORK, "{\"items\":[1,2]}", body + 3, 5);
    len += put_frame(buf + len, FRAME_HEARTBEAT, "{}", NULL, 0);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
    CU_ASSERT_STRING_EQUAL(r.events, "FEFBEFBEFE");
    CU_ASSERT_EQUAL(r.hdr[0].type, FRAME_HELLO);
    CU_ASSERT_EQUAL(r.hdr[1].type, FRAME_RESULT);
    CU_ASSERT_EQUAL(r.hdr[2].type, FRAME_WORK);
    CU_ASSERT_EQUAL(r.hdr[3].type, FRAME_HEARTBEAT);
    CU_ASSERT_STRING_EQUAL(r.meta[0], "{\"name\":\"fs1\"}");
    CU_ASSERT_STRING_EQUAL(r.meta[2], "{\"items\":[1,2]}");
    CU_ASSERT_EQUAL(r.body_len, sizeof body);
    CU_ASSERT_EQUAL(memcmp(r.body, body, sizeof body), 0);
    frame_decoder_free(d);
    rec_clear(&r);
}

/* A sink that refuses at F, B or E stops the stream there, for good. */
static void test_sink_stops(void)
{
    static const struct {
        char on;
        int rc;
        const char *events;
    } cases[] = {{'F', -42, "F"}, {'B', -EPIPE, "FB"}, {'E', -7, "FBE"}};
    uint8_t buf[256], body[40];
    size_t len = two_frames(buf, body, sizeof body);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rec r = {.stop_on = cases[i].on, .stop_rc = cases[i].rc};
        frame_decoder_t *d = decoder(&r, &small);
        CU_ASSERT_EQUAL(feed(d, &r, buf, len), cases[i].rc);
        CU_ASSERT_STRING_EQUAL(r.events, cases[i].events);
        CU_ASSERT_EQUAL(feed(d, &r, buf, len), cases[i].rc);
        CU_ASSERT_STRING_EQUAL(r.events, cases[i].events);
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

/* Body pieces are the caller's own bytes, one piece per feed, summing up. */
static void test_body_pieces(void)
{
    static const size_t pieces[] = {30, 1, 7, 250, 600, 142, 1};
    uint8_t buf[1200], body[1000];
    fill(body, sizeof body, 3);
    size_t len = put_frame(buf, FRAME_RESULT, "{\"n\":1}", body, sizeof body);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &small);
    size_t off = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        CU_ASSERT_EQUAL(feed(d, &r, buf + off, pieces[i]), 0);
        off += pieces[i];
    }
    CU_ASSERT_FATAL(off == len);
    CU_ASSERT_STRING_EQUAL(r.events, "FBBBBBE");
    CU_ASSERT_EQUAL(r.body_len, sizeof body);
    CU_ASSERT_EQUAL(memcmp(r.body, body, sizeof body), 0);
    CU_ASSERT_FALSE(r.copied);
    frame_decoder_free(d);
    rec_clear(&r);
}

static const struct frame_field xfer_fields[] = {
    {"id", FF_UINT, true},      {"path", FF_STRING, true}, {"ratio", FF_NUMBER, false},
    {"resume", FF_BOOL, false}, {"legs", FF_ARRAY, false}, {"opts", FF_OBJECT, false},
    {"count", FF_U32, false},
};
#define NXFER (sizeof xfer_fields / sizeof xfer_fields[0])

/* Parses json, checks it against xfer_fields, returns the code and reason. */
static int check_json(const char *json, char *why, size_t whylen)
{
    cJSON *meta = cJSON_Parse(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    why[0] = '\0';
    int rc = frame_meta_check(meta, xfer_fields, NXFER, why, whylen);
    cJSON_Delete(meta);
    return rc;
}

static void test_meta_check_accepts(void)
{
    char why[96];
    CU_ASSERT_EQUAL(check_json("{\"id\":0,\"path\":\"x\"}", why, sizeof why), 0);
    CU_ASSERT_EQUAL(check_json("{\"path\":\"x\",\"id\":9007199254740992,\"ratio\":-0.5,"
                               "\"resume\":false,\"legs\":[],\"opts\":{\"k\":1}}",
                               why, sizeof why),
                    0);
    CU_ASSERT_EQUAL(check_json("{\"id\":1e3,\"path\":\"\"}", why, sizeof why), 0);
    CU_ASSERT_EQUAL(check_json("{\"id\":1,\"path\":\"x\",\"count\":4294967295}", why, sizeof why),
                    0);
}

static void test_meta_check_refuses(void)
{
    static const struct {
        const char *json;
        const char *why;
    } cases[] = {
        {"{\"id\":1,\"path\":\"x\",\"x\":1}", "unknown field 'x'"},
        {"{\"id\":1,\"Path\":\"x\"}", "unknown field 'Path'"},
        {"{\"id\":1}", "missing field 'path'"},
        {"{\"path\":\"x\"}", "missing field 'id'"},
        {"{\"id\":\"1\",\"path\":\"x\"}", "wrong kind for field 'id'"},
        {"{\"id\":-1,\"path\":\"x\"}", "wrong kind for field 'id'"},
        {"{\"id\":1.5,\"path\":\"x\"}", "wrong kind for field 'id'"},
        {"{\"id\":9007199254740994,\"path\":\"x\"}", "out of range field 'id'"},
        {"{\"id\":1,\"path\":\"x\",\"count\":4294967296}", "out of range field 'count'"},
        {"{\"id\":1,\"path\":\"x\",\"count\":9007199254740992}", "out of range field 'count'"},
        {"{\"id\":1,\"path\":\"x\",\"count\":-1}", "wrong kind for field 'count'"},
        {"{\"id\":1,\"path\":null}", "wrong kind for field 'path'"},
        {"{\"id\":1,\"path\":\"x\",\"ratio\":1e400}", "wrong kind for field 'ratio'"},
        {"{\"id\":1,\"path\":\"x\",\"resume\":1}", "wrong kind for field 'resume'"},
        {"{\"id\":1,\"path\":\"x\",\"legs\":{}}", "wrong kind for field 'legs'"},
        {"{\"id\":1,\"path\":\"x\",\"opts\":[]}", "wrong kind for field 'opts'"},
        {"{\"id\":1,\"path\":\"x\",\"id\":2}", "repeated field 'id'"},
        {"[1]", "meta is not an object"},
    };
    char why[96];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(check_json(cases[i].json, why, sizeof why), FRAME_ESCHEMA);
        CU_ASSERT_STRING_EQUAL(why, cases[i].why);
    }
    /* A short buffer still gets a terminated prefix of the reason. */
    CU_ASSERT_EQUAL(check_json("{\"id\":1}", why, 8), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "missing");
}

static void test_encode_refuses(void)
{
    uint8_t *out = NULL;
    size_t len = 0;
    cJSON *arr = cJSON_CreateArray();
    CU_ASSERT_EQUAL(frame_encode(FRAME_HELLO, arr, 0, &out, &len), FRAME_EMETA_JSON);
    CU_ASSERT_EQUAL(frame_encode((enum frame_type)0, NULL, 0, &out, &len), FRAME_ETYPE);
    cJSON_Delete(arr);
    char *big = malloc(FRAME_META_MAX + 1);
    CU_ASSERT_FATAL(big != NULL);
    memset(big, 'a', FRAME_META_MAX);
    big[FRAME_META_MAX] = '\0';
    cJSON *meta = cJSON_CreateObject();
    CU_ASSERT_PTR_NOT_NULL(cJSON_AddStringToObject(meta, "s", big));
    CU_ASSERT_EQUAL(frame_encode(FRAME_HELLO, meta, 0, &out, &len), FRAME_EMETA_LEN);
    CU_ASSERT_PTR_NULL(out);
    cJSON_Delete(meta);
    free(big);
}

static void test_error_frame(void)
{
    uint8_t *out;
    size_t len;
    CU_ASSERT_FATAL(frame_error_encode(frame_err_code(FRAME_EBODY_LEN),
                                       frame_strerror(FRAME_EBODY_LEN), &out, &len) == 0);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &small);
    CU_ASSERT_EQUAL(feed(d, &r, out, len), 0);
    CU_ASSERT_EQUAL(r.hdr[0].type, FRAME_ERROR);
    CU_ASSERT_STRING_EQUAL(r.meta[0],
                           "{\"code\":\"body_len\",\"reason\":\"body length over the limit\"}");
    frame_decoder_free(d);
    rec_clear(&r);
    free(out);
}

/* ---- streams ---- */

static const struct frame_limits streams = {.meta_max = 256, .body_max = 1u << 20};

/* Writes one bare or streamed header with the given fields. */
static size_t put_hdr(uint8_t *out, uint8_t type, uint16_t flags, uint32_t meta_len,
                      uint32_t stream, uint64_t body_len)
{
    struct frame_hdr h = {.version = FRAME_VERSION,
                          .type = type,
                          .flags = flags,
                          .meta_len = meta_len,
                          .stream = stream,
                          .body_len = body_len};
    frame_hdr_encode(out, &h);
    return FRAME_HDR_LEN;
}

struct stream_case {
    const char *what;
    uint8_t type;
    uint16_t flags;
    uint32_t meta_len, stream;
    uint64_t body_len; /* or credit */
    int want;
};

static const struct stream_case stream_cases[] = {
    {"STREAMED message", FRAME_WORK, FRAME_F_STREAMED, 2, 1, 1u << 20, 0},
    {"DATA of a full chunk", FRAME_DATA, 0, 0, 1, FRAME_CHUNK_MAX, 0},
    {"CREDIT of 1", FRAME_CREDIT, 0, 0, 2, 1, 0},
    {"CREDIT of a window", FRAME_CREDIT, 0, 0, 2, FRAME_WINDOW, 0},
    {"STREAMED on ERROR", FRAME_ERROR, FRAME_F_STREAMED, 2, 1, 4, FRAME_EFLAGS},
    {"STREAMED on DATA", FRAME_DATA, FRAME_F_STREAMED, 0, 1, 4, FRAME_EFLAGS},
    {"STREAMED on CREDIT", FRAME_CREDIT, FRAME_F_STREAMED, 0, 1, 4, FRAME_EFLAGS},
    {"STREAMED, stream 0", FRAME_WORK, FRAME_F_STREAMED, 2, 0, 4, FRAME_ESTREAM},
    {"DATA, stream 0", FRAME_DATA, 0, 0, 0, 4, FRAME_ESTREAM},
    {"CREDIT, stream 0", FRAME_CREDIT, 0, 0, 0, 4, FRAME_ESTREAM},
    {"plain message with a stream", FRAME_RESULT, 0, 2, 3, 0, FRAME_ESTREAM},
    {"DATA with meta", FRAME_DATA, 0, 1, 1, 4, FRAME_EMETA_LEN},
    {"CREDIT with meta", FRAME_CREDIT, 0, 1, 1, 4, FRAME_EMETA_LEN},
    {"DATA of 0 bytes", FRAME_DATA, 0, 0, 1, 0, FRAME_EBODY_LEN},
    {"DATA over a chunk", FRAME_DATA, 0, 0, 1, FRAME_CHUNK_MAX + 1, FRAME_EBODY_LEN},
    {"DATA of 2^64-1", FRAME_DATA, 0, 0, 1, UINT64_MAX, FRAME_EBODY_LEN},
    {"STREAMED of 0 bytes", FRAME_WORK, FRAME_F_STREAMED, 2, 1, 0, FRAME_EBODY_LEN},
    {"STREAMED over body_max", FRAME_WORK, FRAME_F_STREAMED, 2, 1, (1u << 20) + 1, FRAME_EBODY_LEN},
    {"CREDIT of 0", FRAME_CREDIT, 0, 0, 1, 0, FRAME_ECREDIT},
    {"CREDIT over a window", FRAME_CREDIT, 0, 0, 1, FRAME_WINDOW + 1, FRAME_ECREDIT},
    {"CREDIT of 2^64-1", FRAME_CREDIT, 0, 0, 1, UINT64_MAX, FRAME_ECREDIT},
};

static void test_stream_fields(void)
{
    for (size_t i = 0; i < sizeof stream_cases / sizeof stream_cases[0]; i++) {
        const struct stream_case *c = &stream_cases[i];
        uint8_t buf[FRAME_HDR_LEN + 2];
        put_hdr(buf, c->type, c->flags, c->meta_len, c->stream, c->body_len);
        memcpy(buf + FRAME_HDR_LEN, "{}", 2);
        struct frame_hdr h;
        int rc = frame_hdr_decode(buf, &streams, &h);
        if (rc != c->want)
            fprintf(stderr, "\n  case '%s': got %d want %d\n", c->what, rc, c->want);
        CU_ASSERT_EQUAL(rc, c->want);
        struct rec r = {0};
        frame_decoder_t *d = decoder(&r, &streams);
        CU_ASSERT_EQUAL(feed(d, &r, buf, FRAME_HDR_LEN + c->meta_len), c->want);
        CU_ASSERT_EQUAL(r.nevents, c->want == 0 ? 1 + (c->type != FRAME_DATA) : 0);
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

/* A STREAMED message, its body in two DATA frames with a CREDIT and a plain
 * message between them, then a message with no stream. */
static size_t stream_frames(uint8_t *buf, uint8_t *body, size_t body_len)
{
    fill(body, body_len, 5);
    uint8_t *enc;
    size_t n, len = 0, half = body_len / 2;
    CU_ASSERT_FATAL(frame_encode_streamed(FRAME_WORK, NULL, 7, body_len, &enc, &n) == 0);
    memcpy(buf, enc, n);
    free(enc);
    len += n;
    len += put_hdr(buf + len, FRAME_DATA, 0, 0, 7, half);
    memcpy(buf + len, body, half);
    len += half;
    len += put_hdr(buf + len, FRAME_CREDIT, 0, 0, 2, 1000);
    len += put_frame(buf + len, FRAME_HEARTBEAT, "{\"n\":1}", NULL, 0);
    len += put_hdr(buf + len, FRAME_DATA, 0, 0, 7, body_len - half);
    memcpy(buf + len, body + half, body_len - half);
    len += body_len - half;
    return len + put_frame(buf + len, FRAME_BYE, NULL, NULL, 0);
}

/* The events with each run of body pieces as one B: a cut splits a piece. */
static void squeeze_events(const struct rec *r, char *out)
{
    for (const char *p = r->events; *p; p++) {
        if (*p != 'B' || p[1] != 'B')
            *out++ = *p;
    }
    *out = '\0';
}

static void check_stream_frames(const struct rec *r, const uint8_t *body, size_t body_len)
{
    char events[sizeof r->events];
    squeeze_events(r, events);
    CU_ASSERT_STRING_EQUAL(events, "FEFBEFEFEFBEFE");
    static const uint8_t types[] = {FRAME_WORK,      FRAME_DATA, FRAME_CREDIT,
                                    FRAME_HEARTBEAT, FRAME_DATA, FRAME_BYE};
    for (size_t i = 0; i < sizeof types; i++)
        CU_ASSERT_EQUAL(r->hdr[i].type, types[i]);
    CU_ASSERT_EQUAL(r->hdr[0].flags, FRAME_F_STREAMED);
    CU_ASSERT_EQUAL(r->hdr[0].stream, 7);
    CU_ASSERT_EQUAL(r->hdr[0].body_len, body_len);
    CU_ASSERT_EQUAL(frame_inline_len(&r->hdr[0]), 0);
    CU_ASSERT_EQUAL(r->hdr[1].stream, 7);
    CU_ASSERT_EQUAL(r->hdr[2].credit, 1000);
    CU_ASSERT_EQUAL(frame_inline_len(&r->hdr[2]), 0);
    CU_ASSERT_STRING_EQUAL(r->meta[3], "{\"n\":1}");
    CU_ASSERT_EQUAL(r->hdr[5].stream, 0);
    CU_ASSERT_EQUAL(r->body_len, body_len);
    CU_ASSERT_EQUAL(memcmp(r->body, body, body_len), 0);
}

static void test_stream_interleaved(void)
{
    uint8_t buf[512], body[100];
    size_t len = stream_frames(buf, body, sizeof body);
    struct rec r = {0};
    frame_decoder_t *d = decoder(&r, &streams);
    CU_ASSERT_EQUAL(feed(d, &r, buf, len), 0);
    check_stream_frames(&r, body, sizeof body);
    CU_ASSERT_FALSE(r.copied);
    CU_ASSERT_TRUE(frame_decoder_idle(d));
    frame_decoder_free(d);
    rec_clear(&r);
}

/* Cut anywhere, in two feeds, the stream decodes to the same events. */
static void test_stream_truncated(void)
{
    uint8_t buf[512], body[100];
    size_t len = stream_frames(buf, body, sizeof body);
    for (size_t cut = 0; cut <= len; cut++) {
        struct rec r = {0};
        frame_decoder_t *d = decoder(&r, &streams);
        CU_ASSERT_EQUAL(feed(d, &r, buf, cut), 0);
        CU_ASSERT_EQUAL(feed(d, &r, buf + cut, len - cut), 0);
        check_stream_frames(&r, body, sizeof body);
        CU_ASSERT_TRUE(frame_decoder_idle(d));
        frame_decoder_free(d);
        rec_clear(&r);
    }
}

static void test_encode_streamed(void)
{
    uint8_t *out = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL(frame_encode(FRAME_DATA, NULL, 1, &out, &len), FRAME_ETYPE);
    CU_ASSERT_EQUAL(frame_encode(FRAME_CREDIT, NULL, 0, &out, &len), FRAME_ETYPE);
    CU_ASSERT_EQUAL(frame_encode_streamed(FRAME_ERROR, NULL, 1, 1, &out, &len), FRAME_ETYPE);
    CU_ASSERT_EQUAL(frame_encode_streamed(FRAME_DATA, NULL, 1, 1, &out, &len), FRAME_ETYPE);
    CU_ASSERT_EQUAL(frame_encode_streamed(FRAME_WORK, NULL, 0, 1, &out, &len), FRAME_ESTREAM);
    CU_ASSERT_EQUAL(frame_encode_streamed(FRAME_WORK, NULL, 1, 0, &out, &len), FRAME_EBODY_LEN);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL_FATAL(
        frame_encode_streamed(FRAME_RESULT, NULL, UINT32_MAX, UINT64_MAX, &out, &len), 0);
    struct frame_hdr h;
    struct frame_limits any = {.meta_max = 0, .body_max = UINT64_MAX};
    CU_ASSERT_EQUAL(frame_hdr_decode(out, &any, &h), 0);
    CU_ASSERT_EQUAL(h.flags, FRAME_F_STREAMED);
    CU_ASSERT_EQUAL(h.stream, UINT32_MAX);
    CU_ASSERT_EQUAL(h.body_len, UINT64_MAX);
    free(out);
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_HELLO), "HELLO");
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_CHAIN_SET_NEXT), "CHAIN_SET_NEXT");
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_ERROR), "ERROR");
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_DATA), "DATA");
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_CREDIT), "CREDIT");
    CU_ASSERT_STRING_EQUAL(frame_type_str(0), "unknown");
    CU_ASSERT_STRING_EQUAL(frame_type_str(FRAME_TYPE_LAST + 1), "unknown");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_EMAGIC), "magic");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ENOMEM), "nomem");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ESTREAM), "stream");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ECREDIT), "credit");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ESTREAM_ID), "stream_id");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ESTREAM_GONE), "stream_gone");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_ESTREAMS), "streams");
    CU_ASSERT_STRING_EQUAL(frame_err_code(FRAME_EFLOW), "flow");
    CU_ASSERT_STRING_EQUAL(frame_err_code(-EIO), "unknown");
    CU_ASSERT_STRING_EQUAL(frame_strerror(FRAME_EMETA_LEN), "meta length over the limit");
    CU_ASSERT_STRING_EQUAL(frame_strerror(0), "unknown frame error");
    CU_ASSERT_TRUE(frame_is_err(FRAME_EMAGIC));
    CU_ASSERT_TRUE(frame_is_err(FRAME_ENOMEM));
    CU_ASSERT_FALSE(frame_is_err(0));
    CU_ASSERT_FALSE(frame_is_err(-EIO));
    CU_ASSERT_FALSE(frame_is_err(FRAME_EMAGIC - 1));
}

void suite_frame(void)
{
    CU_pSuite s = CU_add_suite("frame", NULL, NULL);
    CU_add_test(s, "round trip of every type", test_round_trip);
    CU_add_test(s, "no meta reads back as {}", test_no_meta);
    CU_add_test(s, "each bad header field has its code", test_header_fields);
    CU_add_test(s, "header checks run in order", test_header_order);
    CU_add_test(s, "meta_max is clamped to 64 KiB", test_meta_max_clamped);
    CU_add_test(s, "input cut at every byte", test_truncated);
    CU_add_test(s, "input one byte at a time", test_byte_at_a_time);
    CU_add_test(s, "meta that is not one object", test_meta_not_object);
    CU_add_test(s, "whitespace around meta", test_meta_whitespace);
    CU_add_test(s, "body over the limit", test_body_over_limit);
    CU_add_test(s, "several frames in one buffer", test_several_frames);
    CU_add_test(s, "a refusing sink stops the decoder", test_sink_stops);
    CU_add_test(s, "body pieces are the caller's bytes", test_body_pieces);
    CU_add_test(s, "schema accepts good meta", test_meta_check_accepts);
    CU_add_test(s, "schema refuses with the field name", test_meta_check_refuses);
    CU_add_test(s, "encode refuses bad input", test_encode_refuses);
    CU_add_test(s, "ERROR frame", test_error_frame);
    CU_add_test(s, "every stream field out of range", test_stream_fields);
    CU_add_test(s, "a stream interleaved with other frames", test_stream_interleaved);
    CU_add_test(s, "streams cut at every byte", test_stream_truncated);
    CU_add_test(s, "encoding streamed messages", test_encode_streamed);
    CU_add_test(s, "type and error names", test_names);
}
