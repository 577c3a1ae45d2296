/*
 * frame — the convoy control-frame codec, independent of sockets.
 *
 *  0      4     5     6       8          12       16                24
 *  | "CNVY" | ver | type | flags | meta_len | stream | body_len (u64) |
 *
 * Big-endian header, then meta_len bytes of JSON (an object), then the
 * frame's inline body (frame_inline_len). A large body does not follow its
 * message inline: the message is sent STREAMED, naming a stream and the
 * body's length, and the body follows in DATA frames of at most
 * FRAME_CHUNK_MAX bytes on that stream, which the receiver paces with CREDIT
 * frames, so that other frames pass between the chunks (mux.h runs this on a
 * connection). The decoder is incremental: it takes whatever bytes the
 * network delivered, validates the header before allocating anything, parses
 * the meta once it is complete, and hands body bytes on in pieces as they
 * come, so no body ever sits whole in memory.
 */
#ifndef CONVOY_FRAME_H
#define CONVOY_FRAME_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC    "CNVY"
#define FRAME_VERSION  2
#define FRAME_HDR_LEN  24
#define FRAME_META_MAX (64u * 1024) /* hard ceiling of meta_len */

/* Streams: the protocol's constants, the same for every peer. */
#define FRAME_F_STREAMED  0x0001u        /* the body follows in DATA frames */
#define FRAME_CHUNK_MAX   (64u * 1024)   /* largest body of one DATA frame */
#define FRAME_WINDOW      (1024u * 1024) /* a stream's initial credit; no credit exceeds it */
#define FRAME_STREAMS_MAX 16u            /* streams one side may have open at once */

enum frame_type {
    FRAME_HELLO = 1,
    FRAME_WELCOME,
    FRAME_HEARTBEAT,
    FRAME_DRAIN,
    FRAME_BYE,
    FRAME_XFER_START,
    FRAME_XFER_PROGRESS,
    FRAME_XFER_END,
    FRAME_CHAIN_SET_NEXT,
    FRAME_WORK,
    FRAME_ACCEPTED,
    FRAME_RESULT,
    FRAME_ERROR,
    FRAME_DATA,     /* a chunk of a STREAMED message's body */
    FRAME_CREDIT,   /* the receiver of a stream grants `credit` more bytes */
    FRAME_CATALOG,  /* a file server's files, whole or changed, in its body (fscat.h) */
    FRAME_CANCEL,   /* front-end → compute: drop a job's queued items (chain_msg.h) */
    FRAME_RELEASED, /* a shared-memory lane's reader is done up to a position (chain_msg.h) */
};
#define FRAME_TYPE_FIRST FRAME_HELLO
#define FRAME_TYPE_LAST  FRAME_RELEASED

/* Decoder errors; negative and apart from -errno values. */
enum frame_err {
    FRAME_EMAGIC = -1000, /* first four bytes are not "CNVY" */
    FRAME_EVERSION,       /* version other than FRAME_VERSION */
    FRAME_ETYPE,          /* unknown type */
    FRAME_EFLAGS,     /* a flag bit this version does not define, or STREAMED where no body goes */
    FRAME_ESTREAM,    /* stream 0 where one is needed, or one where none goes */
    FRAME_EMETA_LEN,  /* meta_len over the limit */
    FRAME_EBODY_LEN,  /* body_len over the limit, or 0 where a body must be */
    FRAME_ECREDIT,    /* CREDIT of 0 or more than FRAME_WINDOW */
    FRAME_EMETA_JSON, /* meta is not a JSON object */
    FRAME_ESCHEMA,    /* meta lacks a field, or has one unknown or mistyped */
    FRAME_ESTREAM_ID, /* a new stream's id is not the opener's, or not above its last */
    FRAME_ESTREAM_GONE, /* DATA or CREDIT for a stream that is not open */
    FRAME_ESTREAMS,     /* more than FRAME_STREAMS_MAX streams open */
    FRAME_EFLOW,        /* DATA beyond the credit, or credit beyond the body */
    FRAME_ENOMEM,
};

struct frame_hdr {
    uint8_t version;
    uint8_t type;      /* enum frame_type */
    uint16_t flags;    /* FRAME_F_* */
    uint32_t meta_len; /* bytes of JSON after the header */
    uint32_t stream;   /* STREAMED, DATA, CREDIT: the stream; else 0 */
    union {
        uint64_t body_len; /* bytes of body: inline, in this DATA, or (STREAMED) the whole stream */
        uint64_t credit;   /* CREDIT: bytes granted; nothing follows the header */
    };
};

struct frame_limits {
    uint32_t meta_max; /* <= FRAME_META_MAX */
    uint64_t body_max; /* largest body this peer accepts */
};

/* "HELLO", "WELCOME", …; "unknown" for anything else. */
const char *frame_type_str(int type);

/*
 * True when rc is one of the FRAME_E* codes, as opposed to 0, a -errno value
 * or a sink's own negative value: the cases that call for an ERROR frame
 * carrying frame_err_code(rc).
 */
bool frame_is_err(int rc);

/* Human-readable reason for a FRAME_E* code (also used as ERROR frame text). */
const char *frame_strerror(int err);

/*
 * Stable machine-readable name of a FRAME_E* code ("magic", "meta_len", …),
 * the "code" of the ERROR frame a peer gets before the connection closes;
 * "unknown" for anything else. docs/protocol-frames.md lists them.
 */
const char *frame_err_code(int err);

/* Writes the 24-byte big-endian header. */
void frame_hdr_encode(uint8_t out[FRAME_HDR_LEN], const struct frame_hdr *h);

/*
 * Parses and validates a header against lim, in this order: magic, version,
 * type, flags, stream, meta_len (against lim->meta_max clamped to
 * FRAME_META_MAX; 0 for DATA and CREDIT), body_len (against lim->body_max;
 * DATA also against FRAME_CHUNK_MAX, and DATA and STREAMED at least 1),
 * credit (CREDIT: 1..FRAME_WINDOW). Returns 0 or the FRAME_E* code of the
 * first check that fails; h is filled with the fields as read either way.
 */
int frame_hdr_decode(const uint8_t in[FRAME_HDR_LEN], const struct frame_limits *lim,
                     struct frame_hdr *h);

/* Body bytes that follow h's meta in the frame itself: body_len, except 0
 * for a STREAMED message (its body comes in DATA frames) and for CREDIT. */
uint64_t frame_inline_len(const struct frame_hdr *h);

/*
 * Encodes header and meta of a frame whose body_len bytes of body the caller
 * sends next. meta may be NULL (sent as meta_len 0, read back as {}).
 * On success *out is a malloc'd buffer of *outlen bytes owned by the caller.
 * Returns 0, FRAME_ETYPE for DATA, CREDIT or a type outside
 * FRAME_TYPE_FIRST..LAST, FRAME_EMETA_JSON when meta is not an object,
 * FRAME_EMETA_LEN when the JSON exceeds FRAME_META_MAX, or FRAME_ENOMEM;
 * *out is untouched on failure.
 */
int frame_encode(enum frame_type type, const cJSON *meta, uint64_t body_len, uint8_t **out,
                 size_t *outlen);

/*
 * Encodes header and meta of a STREAMED message: its body_len bytes follow
 * in DATA frames on stream. Returns as frame_encode(), and also FRAME_ETYPE
 * for ERROR, FRAME_ESTREAM for stream 0 and FRAME_EBODY_LEN for body_len 0.
 */
int frame_encode_streamed(enum frame_type type, const cJSON *meta, uint32_t stream,
                          uint64_t body_len, uint8_t **out, size_t *outlen);

/*
 * Encodes a whole ERROR frame, meta {"code": code, "reason": reason} and no
 * body: what a peer sends before closing a connection it refuses. For a
 * decoder failure pass frame_err_code(err) and frame_strerror(err).
 * Returns as frame_encode().
 */
int frame_error_encode(const char *code, const char *reason, uint8_t **out, size_t *outlen);

/*
 * What the decoder calls. Each returns 0 to go on or a negative value that
 * stops the decoder and is returned by frame_decoder_feed(). meta belongs to
 * the decoder and stays valid until on_end returns. on_body gets pointers
 * into the buffer given to frame_decoder_feed(), never a copy; the pieces of
 * one frame add up to exactly frame_inline_len(h) bytes. A frame with no
 * inline body gets on_end right after on_frame. on_body and on_end may be NULL (the body is
 * then skipped: set lim->body_max to 0 to refuse bodies instead). A sink must
 * not free the decoder from inside a callback.
 */
struct frame_sink {
    int (*on_frame)(void *ctx, const struct frame_hdr *h, const cJSON *meta);
    int (*on_body)(void *ctx, const uint8_t *data, size_t len); /* may be NULL if no body */
    int (*on_end)(void *ctx);
};

typedef struct frame_decoder frame_decoder_t;

/*
 * Returns 0, -EINVAL when lim, sink or sink->on_frame is NULL, or
 * FRAME_ENOMEM. lim->meta_max above FRAME_META_MAX is clamped. The limits and
 * the sink are copied; ctx is handed to every callback.
 */
int frame_decoder_new(frame_decoder_t **out, const struct frame_limits *lim,
                      const struct frame_sink *sink, void *ctx);
void frame_decoder_free(frame_decoder_t *d);

/*
 * Consumes all len bytes, calling the sink for every frame completed in them.
 * Returns 0, a FRAME_E* code, or a sink's negative value. After an error the
 * decoder stays failed and returns the same code.
 */
int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len);
/* Body bytes of the frame being decoded still to come (0 outside a body):
 * a caller may read up to that many itself, wherever they belong, and then
 * feed them (they reach on_body as one piece at that address). */
uint64_t frame_decoder_body_run(const frame_decoder_t *d);

/* True between frames: an end of stream here is clean. */
bool frame_decoder_idle(const frame_decoder_t *d);

/* Meta schemas: what a message may carry. Each integer kind is the range of
 * the C type the field is read into, so a cast after the check is exact. */
enum frame_field_kind {
    FF_STRING,
    FF_UINT, /* an integer in [0, 2^53]: a uint64_t (ids, sizes, offsets) */
    FF_U32,  /* an integer in [0, UINT32_MAX]: a uint32_t (counts, weights, ms) */
    FF_NUMBER,
    FF_BOOL,
    FF_OBJECT,
    FF_ARRAY
};

struct frame_field {
    const char *name;
    enum frame_field_kind kind;
    bool required;
};

/*
 * Checks that meta is an object, that every member is listed in fields with
 * its kind (an integer kind within its range; FF_NUMBER: a finite number),
 * and that every required field is present. Unknown and repeated fields are
 * refused; names match case-sensitively. Returns 0, or FRAME_ESCHEMA with a
 * reason naming the field, such as "unknown field 'x'" or "out of range
 * field 'weight'" (an integer above its kind's range), written to why
 * (NUL-terminated, truncated to whylen; why may be NULL when whylen is 0).
 */
int frame_meta_check(const cJSON *meta, const struct frame_field *fields, size_t nfields, char *why,
                     size_t whylen);

#endif
