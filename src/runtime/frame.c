/*
 * frame — the convoy control-frame codec.
 *
 * The design is simple: the decoder is a three-state machine (header, meta,
 * body) that consumes the caller's bytes as they come. The 24-byte header is
 * buffered in the decoder itself and validated as a whole before anything is
 * allocated; the meta is then buffered in exactly meta_len bytes and parsed
 * once complete; the body is never buffered: each on_body call gets a pointer
 * into the caller's own buffer, so a body of hundreds of megabytes costs one
 * callback per received chunk and no copy. A state that needs no input (meta
 * of length 0, body of length 0) is left at once, so a frame ends in the same
 * feed call that delivered its last byte.
 *
 * Streams are the same three states: a STREAMED message is a frame with no
 * inline body, each DATA frame one with an inline body of at most one
 * chunk, CREDIT a bare header. What a stream may carry at all (its id, its
 * credit, its length) is the job of the layer that keeps stream state
 * (mux.c); the header checks here are those the 24 bytes alone decide.
 *
 * Any error latches: a peer that sent one bad frame has lost the framing, and
 * the only safe answer is an ERROR frame and a close.
 */
#include "convoy/frame.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Largest integer a double holds exactly: the ceiling of an FF_UINT. */
#define FRAME_UINT_MAX 9007199254740992.0 /* 2^53 */

enum dec_state {
    DEC_HDR,  /* buffering the 24-byte header */
    DEC_META, /* buffering meta_len bytes of JSON */
    DEC_BODY, /* handing body bytes to the sink */
};

struct frame_decoder {
    struct frame_limits lim;        /* meta_max already clamped */
    struct frame_sink sink;         /* copied from the caller */
    void *ctx;                      /* handed to every callback */
    enum dec_state state;           /* where the next byte goes */
    int err;                        /* latched error, 0 while healthy */
    uint8_t hdr_buf[FRAME_HDR_LEN]; /* header bytes so far */
    struct frame_hdr hdr;           /* the current frame's header */
    uint8_t *meta_buf;              /* meta_len bytes, NULL when meta_len is 0 */
    size_t have;                    /* bytes of hdr_buf or meta_buf filled */
    cJSON *meta;                    /* parsed meta, valid until on_end */
    uint64_t body_left;             /* body bytes still to come */
};

static const char *const type_names[] = {
    [FRAME_HELLO] = "HELLO",
    [FRAME_WELCOME] = "WELCOME",
    [FRAME_HEARTBEAT] = "HEARTBEAT",
    [FRAME_DRAIN] = "DRAIN",
    [FRAME_BYE] = "BYE",
    [FRAME_XFER_START] = "XFER_START",
    [FRAME_XFER_PROGRESS] = "XFER_PROGRESS",
    [FRAME_XFER_END] = "XFER_END",
    [FRAME_CHAIN_SET_NEXT] = "CHAIN_SET_NEXT",
    [FRAME_WORK] = "WORK",
    [FRAME_ACCEPTED] = "ACCEPTED",
    [FRAME_RESULT] = "RESULT",
    [FRAME_ERROR] = "ERROR",
    [FRAME_DATA] = "DATA",
    [FRAME_CREDIT] = "CREDIT",
    [FRAME_CATALOG] = "CATALOG",
    [FRAME_CANCEL] = "CANCEL",
    [FRAME_RELEASED] = "RELEASED",
};

/* Indexed by err - FRAME_EMAGIC: a reason for people and a code for programs. */
static const struct {
    const char *code;
    const char *reason;
} errors[] = {
    {"magic", "bad magic: not a convoy frame"},
    {"version", "unsupported frame version"},
    {"type", "unknown frame type"},
    {"flags", "undefined flag bits set"},
    {"stream", "stream field wrong for the frame type"},
    {"meta_len", "meta length over the limit"},
    {"body_len", "body length over the limit"},
    {"credit", "credit out of range"},
    {"meta_json", "meta is not a JSON object"},
    {"schema", "meta does not match the message schema"},
    {"stream_id", "new stream id not the sender's next"},
    {"stream_gone", "frame for a stream that is not open"},
    {"streams", "too many open streams"},
    {"flow", "flow control window exceeded"},
    {"nomem", "out of memory"},
};

_Static_assert(ARRAY_LEN(errors) == FRAME_ENOMEM - FRAME_EMAGIC + 1, "one entry per FRAME_E*");
_Static_assert(ARRAY_LEN(type_names) == FRAME_TYPE_LAST + 1, "one name per frame type");

const char *frame_type_str(int type)
{
    if (type < FRAME_TYPE_FIRST || type > FRAME_TYPE_LAST)
        return "unknown";
    return type_names[type];
}

bool frame_is_err(int rc)
{
    return rc >= FRAME_EMAGIC && rc <= FRAME_ENOMEM;
}

const char *frame_strerror(int err)
{
    return frame_is_err(err) ? errors[err - FRAME_EMAGIC].reason : "unknown frame error";
}

const char *frame_err_code(int err)
{
    return frame_is_err(err) ? errors[err - FRAME_EMAGIC].code : "unknown";
}

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

void frame_hdr_encode(uint8_t out[FRAME_HDR_LEN], const struct frame_hdr *h)
{
    memcpy(out, FRAME_MAGIC, 4);
    out[4] = h->version;
    out[5] = h->type;
    put_be(out + 6, h->flags, 2);
    put_be(out + 8, h->meta_len, 4);
    put_be(out + 12, h->stream, 4);
    put_be(out + 16, h->body_len, 8);
}

static uint32_t meta_limit(const struct frame_limits *lim)
{
    return lim->meta_max < FRAME_META_MAX ? lim->meta_max : FRAME_META_MAX;
}

/* A message (not DATA, CREDIT or ERROR) may have its body streamed. */
static bool type_streams(uint8_t type)
{
    return type != FRAME_DATA && type != FRAME_CREDIT && type != FRAME_ERROR;
}

static bool has_stream(const struct frame_hdr *h)
{
    return (h->flags & FRAME_F_STREAMED) || h->type == FRAME_DATA || h->type == FRAME_CREDIT;
}

static int check_flags(const struct frame_hdr *h)
{
    if (h->flags & ~FRAME_F_STREAMED)
        return FRAME_EFLAGS;
    return (h->flags & FRAME_F_STREAMED) && !type_streams(h->type) ? FRAME_EFLAGS : 0;
}

/* meta_len, then body_len or credit, each against what the type allows. */
static int check_lengths(const struct frame_hdr *h, const struct frame_limits *lim)
{
    bool bare = h->type == FRAME_DATA || h->type == FRAME_CREDIT;
    if (h->meta_len > (bare ? 0 : meta_limit(lim)))
        return FRAME_EMETA_LEN;
    if (h->type == FRAME_CREDIT)
        return h->credit == 0 || h->credit > FRAME_WINDOW ? FRAME_ECREDIT : 0;
    if (h->body_len > lim->body_max)
        return FRAME_EBODY_LEN;
    if (h->type == FRAME_DATA && h->body_len > FRAME_CHUNK_MAX)
        return FRAME_EBODY_LEN;
    return has_stream(h) && h->body_len == 0 ? FRAME_EBODY_LEN : 0;
}

int frame_hdr_decode(const uint8_t in[FRAME_HDR_LEN], const struct frame_limits *lim,
                     struct frame_hdr *h)
{
    h->version = in[4];
    h->type = in[5];
    h->flags = (uint16_t)get_be(in + 6, 2);
    h->meta_len = (uint32_t)get_be(in + 8, 4);
    h->stream = (uint32_t)get_be(in + 12, 4);
    h->body_len = get_be(in + 16, 8);
    if (memcmp(in, FRAME_MAGIC, 4) != 0)
        return FRAME_EMAGIC;
    if (h->version != FRAME_VERSION)
        return FRAME_EVERSION;
    if (h->type < FRAME_TYPE_FIRST || h->type > FRAME_TYPE_LAST)
        return FRAME_ETYPE;
    int rc = check_flags(h);
    if (rc < 0)
        return rc;
    if ((h->stream != 0) != has_stream(h))
        return FRAME_ESTREAM;
    return check_lengths(h, lim);
}

uint64_t frame_inline_len(const struct frame_hdr *h)
{
    return (h->flags & FRAME_F_STREAMED) || h->type == FRAME_CREDIT ? 0 : h->body_len;
}

/* Prints meta, or nothing for NULL; *text is NULL and *len 0 for no meta. */
static int meta_print(const cJSON *meta, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (meta == NULL)
        return 0;
    if (!cJSON_IsObject(meta))
        return FRAME_EMETA_JSON;
    *text = cJSON_PrintUnformatted(meta);
    if (*text == NULL)
        return FRAME_ENOMEM;
    *len = strlen(*text);
    if (*len > FRAME_META_MAX) {
        cJSON_free(*text);
        *text = NULL;
        return FRAME_EMETA_LEN;
    }
    return 0;
}

/* A type that carries meta: every type but DATA and CREDIT (bare headers). */
static bool type_is_message(int type)
{
    return type >= FRAME_TYPE_FIRST && type <= FRAME_TYPE_LAST && type != FRAME_DATA &&
           type != FRAME_CREDIT;
}

/* Header and meta of a message described by h (meta_len is filled in). */
static int encode(struct frame_hdr *h, const cJSON *meta, uint8_t **out, size_t *outlen)
{
    char *text;
    size_t len;
    int rc = meta_print(meta, &text, &len);
    if (rc < 0)
        return rc;
    uint8_t *buf = malloc(FRAME_HDR_LEN + len);
    if (buf == NULL) {
        rc = FRAME_ENOMEM;
        goto fail;
    }
    h->version = FRAME_VERSION;
    h->meta_len = (uint32_t)len;
    frame_hdr_encode(buf, h);
    if (len > 0)
        memcpy(buf + FRAME_HDR_LEN, text, len);
    *out = buf;
    *outlen = FRAME_HDR_LEN + len;
fail:
    cJSON_free(text);
    return rc;
}

int frame_encode(enum frame_type type, const cJSON *meta, uint64_t body_len, uint8_t **out,
                 size_t *outlen)
{
    if (!type_is_message(type))
        return FRAME_ETYPE;
    struct frame_hdr h = {.type = (uint8_t)type, .body_len = body_len};
    return encode(&h, meta, out, outlen);
}

int frame_encode_streamed(enum frame_type type, const cJSON *meta, uint32_t stream,
                          uint64_t body_len, uint8_t **out, size_t *outlen)
{
    if (!type_is_message(type) || type == FRAME_ERROR)
        return FRAME_ETYPE;
    if (stream == 0)
        return FRAME_ESTREAM;
    if (body_len == 0)
        return FRAME_EBODY_LEN;
    struct frame_hdr h = {
        .type = (uint8_t)type, .flags = FRAME_F_STREAMED, .stream = stream, .body_len = body_len};
    return encode(&h, meta, out, outlen);
}

int frame_error_encode(const char *code, const char *reason, uint8_t **out, size_t *outlen)
{
    int rc = FRAME_ENOMEM;
    cJSON *meta = cJSON_CreateObject();
    if (meta == NULL)
        goto fail;
    if (cJSON_AddStringToObject(meta, "code", code) == NULL ||
        cJSON_AddStringToObject(meta, "reason", reason) == NULL)
        goto fail;
    rc = frame_encode(FRAME_ERROR, meta, 0, out, outlen);
fail:
    cJSON_Delete(meta);
    return rc;
}

int frame_decoder_new(frame_decoder_t **out, const struct frame_limits *lim,
                      const struct frame_sink *sink, void *ctx)
{
    if (lim == NULL || sink == NULL || sink->on_frame == NULL)
        return -EINVAL;
    frame_decoder_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return FRAME_ENOMEM;
    d->lim = *lim;
    d->lim.meta_max = meta_limit(lim);
    d->sink = *sink;
    d->ctx = ctx;
    d->state = DEC_HDR;
    *out = d;
    return 0;
}

/* Drops the current frame's meta: after on_end, or when the decoder fails. */
static void frame_release(frame_decoder_t *d)
{
    cJSON_Delete(d->meta);
    d->meta = NULL;
    free(d->meta_buf);
    d->meta_buf = NULL;
    d->have = 0;
}

void frame_decoder_free(frame_decoder_t *d)
{
    if (d == NULL)
        return;
    frame_release(d);
    free(d);
}

bool frame_decoder_idle(const frame_decoder_t *d)
{
    return d->err == 0 && d->state == DEC_HDR && d->have == 0;
}

static int end_frame(frame_decoder_t *d)
{
    int rc = d->sink.on_end ? d->sink.on_end(d->ctx) : 0;
    frame_release(d);
    d->state = DEC_HDR;
    return rc < 0 ? rc : 0;
}

static bool is_json_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Parses the buffered meta: exactly one JSON object and nothing after it but
 * whitespace. A raw NUL is refused too: JSON does not allow one and cJSON
 * would silently cut a string there.
 */
static int parse_meta(frame_decoder_t *d)
{
    size_t len = d->hdr.meta_len;
    if (len == 0) {
        d->meta = cJSON_CreateObject();
        return d->meta ? 0 : FRAME_ENOMEM;
    }
    if (memchr(d->meta_buf, 0, len) != NULL)
        return FRAME_EMETA_JSON;
    const char *text = (const char *)d->meta_buf;
    const char *end = NULL;
    d->meta = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (d->meta == NULL || !cJSON_IsObject(d->meta))
        return FRAME_EMETA_JSON;
    size_t used = (size_t)(end - text);
    while (used < len && is_json_space(d->meta_buf[used]))
        used++;
    return used == len ? 0 : FRAME_EMETA_JSON;
}

/* The meta is complete: parse it, announce the frame, and go to the body. */
static int begin_body(frame_decoder_t *d)
{
    int rc = parse_meta(d);
    if (rc < 0)
        return rc;
    rc = d->sink.on_frame(d->ctx, &d->hdr, d->meta);
    if (rc < 0)
        return rc;
    d->body_left = frame_inline_len(&d->hdr);
    d->state = DEC_BODY;
    return d->body_left == 0 ? end_frame(d) : 0;
}

/* The header is complete: validate it, then allocate exactly meta_len bytes. */
static int begin_meta(frame_decoder_t *d)
{
    int rc = frame_hdr_decode(d->hdr_buf, &d->lim, &d->hdr);
    if (rc < 0)
        return rc;
    d->have = 0;
    d->state = DEC_META;
    if (d->hdr.meta_len == 0)
        return begin_body(d);
    d->meta_buf = malloc(d->hdr.meta_len);
    return d->meta_buf ? 0 : FRAME_ENOMEM;
}

/* Each take_* consumes up to n bytes and returns how many, or an error. */
static ssize_t take_hdr(frame_decoder_t *d, const uint8_t *p, size_t n)
{
    size_t k = FRAME_HDR_LEN - d->have;
    if (k > n)
        k = n;
    memcpy(d->hdr_buf + d->have, p, k);
    d->have += k;
    if (d->have < FRAME_HDR_LEN)
        return (ssize_t)k;
    int rc = begin_meta(d);
    return rc < 0 ? rc : (ssize_t)k;
}

static ssize_t take_meta(frame_decoder_t *d, const uint8_t *p, size_t n)
{
    size_t k = d->hdr.meta_len - d->have;
    if (k > n)
        k = n;
    memcpy(d->meta_buf + d->have, p, k);
    d->have += k;
    if (d->have < d->hdr.meta_len)
        return (ssize_t)k;
    int rc = begin_body(d);
    return rc < 0 ? rc : (ssize_t)k;
}

static ssize_t take_body(frame_decoder_t *d, const uint8_t *p, size_t n)
{
    size_t k = d->body_left < n ? (size_t)d->body_left : n;
    int rc = d->sink.on_body ? d->sink.on_body(d->ctx, p, k) : 0;
    if (rc < 0)
        return rc;
    d->body_left -= k;
    if (d->body_left > 0)
        return (ssize_t)k;
    rc = end_frame(d);
    return rc < 0 ? rc : (ssize_t)k;
}

static ssize_t take(frame_decoder_t *d, const uint8_t *p, size_t n)
{
    if (d->state == DEC_HDR)
        return take_hdr(d, p, n);
    if (d->state == DEC_META)
        return take_meta(d, p, n);
    return take_body(d, p, n);
}

uint64_t frame_decoder_body_run(const frame_decoder_t *d)
{
    return d->err == 0 && d->state == DEC_BODY ? d->body_left : 0;
}

int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (d->err == 0 && off < len) {
        ssize_t k = take(d, data + off, len - off);
        if (k < 0) {
            d->err = (int)k;
            frame_release(d);
        } else {
            off += (size_t)k;
        }
    }
    return d->err;
}

/* Writes a reason naming the field; the caller returns FRAME_ESCHEMA. */
static int schema_fail(char *why, size_t whylen, const char *what, const char *name)
{
    if (whylen > 0)
        snprintf(why, whylen, "%s '%s'", what, name);
    return FRAME_ESCHEMA;
}

/* A non-negative integer; its range is the kind's (kind_max). */
static bool is_uint(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return false;
    double x = v->valuedouble;
    return x >= 0 && x == floor(x);
}

/* The largest value of an integer kind, or 0 for the other kinds. */
static double kind_max(enum frame_field_kind kind)
{
    return kind == FF_UINT ? FRAME_UINT_MAX : kind == FF_U32 ? (double)UINT32_MAX : 0;
}

static bool kind_matches(const cJSON *v, enum frame_field_kind kind)
{
    switch (kind) {
    case FF_STRING:
        return cJSON_IsString(v);
    case FF_UINT:
    case FF_U32:
        return is_uint(v);
    case FF_NUMBER:
        return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case FF_BOOL:
        return cJSON_IsBool(v);
    case FF_OBJECT:
        return cJSON_IsObject(v);
    case FF_ARRAY:
        return cJSON_IsArray(v);
    }
    return false;
}

static const struct frame_field *field_find(const struct frame_field *fields, size_t nfields,
                                            const char *name)
{
    for (size_t i = 0; i < nfields; i++) {
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    }
    return NULL;
}

/* Checks one member; a member whose name occurs earlier is a repeat. */
static int member_check(const cJSON *meta, const cJSON *m, const struct frame_field *fields,
                        size_t nfields, char *why, size_t whylen)
{
    const struct frame_field *f = field_find(fields, nfields, m->string);
    if (f == NULL)
        return schema_fail(why, whylen, "unknown field", m->string);
    if (cJSON_GetObjectItemCaseSensitive(meta, m->string) != m)
        return schema_fail(why, whylen, "repeated field", m->string);
    if (!kind_matches(m, f->kind))
        return schema_fail(why, whylen, "wrong kind for field", m->string);
    if (kind_max(f->kind) > 0 && m->valuedouble > kind_max(f->kind))
        return schema_fail(why, whylen, "out of range field", m->string);
    return 0;
}

int frame_meta_check(const cJSON *meta, const struct frame_field *fields, size_t nfields, char *why,
                     size_t whylen)
{
    if (!cJSON_IsObject(meta)) {
        if (whylen > 0)
            snprintf(why, whylen, "meta is not an object");
        return FRAME_ESCHEMA;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, meta)
    {
        int rc = member_check(meta, m, fields, nfields, why, whylen);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < nfields; i++) {
        if (fields[i].required && !cJSON_GetObjectItemCaseSensitive(meta, fields[i].name))
            return schema_fail(why, whylen, "missing field", fields[i].name);
    }
    return 0;
}
