/*
 * http — HTTP/1.1 messages without sockets (RFC 9110, RFC 9112).
 *
 * The design is simple: a parser is fed the bytes a connection offers,
 * always from the first byte of the message it is reading (conn re-offers
 * what on_data left unconsumed at the head of the next offer), and keeps
 * its own scan position, so that no byte is scanned twice. Once the head
 * (start line and header fields) is complete the parser copies it into
 * memory of its own, so that every accessor stays valid until the parser is
 * reset or freed, whatever happens to the caller's buffer. Bodies are read
 * with a second call that finds the payload inside what it is given
 * (Content-Length or chunked) without copying it.
 *
 * Everything is bounded: a request line of HTTP_LINE_MAX bytes, a head of
 * HTTP_HEAD_MAX, HTTP_HEADERS_MAX fields, and a body of the limits' body_max.
 * What the parser refuses it refuses with the status RFC 9112 names.
 *
 * Also here: Range (one range of bytes against a size), the response and
 * request writer (into the caller's buffer, no allocation), the response
 * parser a client uses, status reason phrases and the Date header.
 */
#ifndef CONVOY_HTTP_H
#define CONVOY_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_LINE_MAX    (8u * 1024)  /* request line, CRLF included: past it 414 */
#define HTTP_HEAD_MAX    (32u * 1024) /* request line + fields + empty line: past it 431 */
#define HTTP_HEADERS_MAX 100u         /* header fields: past it 431 */
#define HTTP_BODY_MAX    (1u << 20)   /* default body limit: past it 413 */

/* Methods the server knows. Any other token is answered 501 (RFC 9110
 * §9.1: a method the server does not recognise); a known method a resource does not
 * allow is the handler's 405. */
enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_PUT,
    HTTP_POST,
    HTTP_DELETE,
};

const char *http_method_str(enum http_method m);

/* The reason phrase of a status ("Not Found"), "Unknown" for others. */
const char *http_status_reason(int status);

/* Limits of a parser; 0 in any field picks its default (HTTP_*_MAX). The
 * head limits may only be lowered (a larger value counts as the default);
 * body_max may be anything (an upload service raises it). */
struct http_limits {
    uint32_t line_max;    /* start line, CRLF included */
    uint32_t head_max;    /* whole head, the empty line included */
    uint32_t headers_max; /* header fields */
    uint64_t body_max;    /* request body (Content-Length or chunked payload) */
};

/* ---- requests (server side) ---- */

typedef struct http_req http_req_t;

/* A parser for requests, one at a time (http_req_reset between them).
 * lim may be NULL (every default). 0 or -ENOMEM. */
int http_req_new(http_req_t **out, const struct http_limits *lim);
void http_req_free(http_req_t *q);

/* Forgets the request read so far (and its copied head, keeping the memory
 * for the next unless it grew past 4 KiB) to read the next. */
void http_req_reset(http_req_t *q);

/*
 * Reads the head of a request from data[0..len), which starts at the
 * request's first byte and extends whatever was passed before (the same
 * bytes, maybe more of them, maybe at another address). Returns the length
 * of the head (start line, fields, empty line) once it is complete: the
 * accessors below then answer, and the body (if any) starts at data + that
 * length. Returns 0 while more is needed, or a negative HTTP status when
 * the request must be refused and the connection closed:
 *   -400 malformed (bad token, bad version, obs-fold, bare CR, NUL, bad or
 *        repeated Content-Length, Content-Length with Transfer-Encoding,
 *        missing, repeated or invalid Host, a target that does not decode,
 *        %00 or %2F in the path), -413 Content-Length over body_max,
 *   -414 request line over line_max, -431 head over head_max or more than
 *   headers_max fields, -501 unknown method or a transfer coding other than
 *   "chunked", -505 a version other than HTTP/1.0 and HTTP/1.1,
 *   -417 an Expect other than "100-continue", -500 out of memory.
 * Empty lines before a request are skipped (RFC 9112 §2.2) and count in
 * the returned length. After an error the parser answers the same error
 * until reset. http_req_error() says why in words.
 */
ssize_t http_req_parse(http_req_t *q, const uint8_t *data, size_t len);

/* Why the last parse failed, in a phrase fit for a log ("bare CR in
 * field"), or "" when it did not. */
const char *http_req_error(const http_req_t *q);

/* The accessors below answer once http_req_parse() returned a length. */
enum http_method http_req_method(const http_req_t *q);

/* 0 for HTTP/1.0, 1 for HTTP/1.1. */
int http_req_minor(const http_req_t *q);

/* The target as sent ("/f/a%20b?t=x"), NUL-terminated. */
const char *http_req_target(const http_req_t *q);

/* The path of the target, percent-decoded, NUL-terminated ("/f/a b"). The
 * decoding never yields NUL (%00 is refused) nor a '/' that was not one on
 * the wire (%2F is refused), so the path's segments are the sender's. An
 * absolute-form target ("http://host/p") gives its path. */
const char *http_req_path(const http_req_t *q);

/* The raw query (after '?', before '#'; "" when there is none). */
const char *http_req_query_raw(const http_req_t *q);

/*
 * Copies into buf (size bytes, NUL-terminated) the value of the first
 * query parameter called name, percent-decoded with '+' as a space.
 * Returns its length; -ENOENT when absent, -ENOSPC when it does not fit,
 * -EINVAL when it does not decode or decodes to a NUL.
 */
ssize_t http_req_query(const http_req_t *q, const char *name, char *buf, size_t size);

/* The value of the first header field called name (case-insensitive), its
 * surrounding whitespace removed, NUL-terminated; *len (may be NULL) gets
 * its length. NULL when absent. */
const char *http_req_header(const http_req_t *q, const char *name, size_t *len);

/* Header fields in the order received: i from 0 to http_req_header_count()
 * - 1. Names as sent (compare them case-insensitively). */
unsigned http_req_header_count(const http_req_t *q);
void http_req_header_at(const http_req_t *q, unsigned i, const char **name, const char **value);

/* Body framing: its Content-Length, or -1 when chunked; 0 without a body. */
int64_t http_req_content_length(const http_req_t *q);

/* Whether the client may send another request on the connection:
 * HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
 * "Connection: keep-alive". */
bool http_req_keep_alive(const http_req_t *q);

/* The client sent "Expect: 100-continue" (it waits for a 100 before the
 * body). */
bool http_req_expects_continue(const http_req_t *q);

/*
 * Reads body bytes from data[0..len), which continues right after what the
 * previous call used (the first call: right after the head). Returns how
 * many bytes of data it used (chunk framing included) and points *piece at
 * the payload among them (*piece_len bytes, maybe 0: a call may only eat
 * framing). Call again with what follows until http_req_body_done(). A
 * negative HTTP status when the body is malformed (-400: bad chunk size,
 * line or trailer) or grows past body_max (-413).
 */
ssize_t http_req_body(http_req_t *q, const uint8_t *data, size_t len, const uint8_t **piece,
                      size_t *piece_len);

/* The whole body (and a chunked body's trailer) has been read. */
bool http_req_body_done(const http_req_t *q);

/* Payload bytes that come next with no framing among them (the rest of a
 * Content-Length body, or of the chunk being read): a reader may take up
 * to that many itself, straight into its own memory, and count them with
 * http_req_body_took(). 0 when framing comes next, or the body is done. */
uint64_t http_req_body_run(const http_req_t *q);
/* n payload bytes read past the parser, as http_req_body() would have
 * counted them: 0, -400 for more than http_req_body_run(), -413 past
 * body_max. */
int http_req_body_took(http_req_t *q, size_t n);

/* ---- ranges (RFC 9110 §14) ---- */

enum http_range_result {
    HTTP_RANGE_NONE,          /* no Range, or one to ignore (other units, bad syntax,
                                 several ranges): send the whole representation, 200 */
    HTTP_RANGE_PARTIAL,       /* one satisfiable range: 206 with Content-Range */
    HTTP_RANGE_UNSATISFIABLE, /* 416 with "Content-Range: bytes * / size" */
};

/* A range of bytes, both ends included. */
struct http_range {
    uint64_t first;
    uint64_t last;
};

/*
 * Reads a Range value (NULL: none) against a representation of size bytes:
 * "bytes=a-b" (b clipped to size-1), "bytes=a-" and "bytes=-n" (the last n
 * bytes, all of them when n >= size). A range starting at or past size,
 * and "-0", are unsatisfiable; a list of several ranges is ignored (RFC
 * 9110 allows a server to ignore Range). *out is set for PARTIAL only.
 */
enum http_range_result http_range_parse(const char *value, uint64_t size, struct http_range *out);

/* Writes the Content-Range value for a result (PARTIAL: "bytes a-b/size",
 * UNSATISFIABLE: "bytes * /size" without the space) into buf (size bytes,
 * NUL-terminated). Returns its length, -ENOSPC, or -EINVAL for NONE. */
int http_content_range(char *buf, size_t cap, enum http_range_result res,
                       const struct http_range *r, uint64_t size);

/* ---- the writer ---- */

/*
 * Writes a message head into the caller's buffer: a status or request
 * line, then fields, then the empty line. Nothing is allocated; a writer
 * that ran out of room, or was given a value with CR, LF or NUL in it (a
 * header injection) or a name that is not a token, remembers it and
 * http_w_finish() says so. Fields are public so the writer can live on the
 * stack; change them only through these functions.
 */
struct http_w {
    char *buf;  /* the caller's */
    size_t cap; /* bytes at buf */
    size_t len; /* written so far */
    int err;    /* 0, -ENOSPC or -EINVAL: sticky */
};

void http_w_init(struct http_w *w, char *buf, size_t cap);

/* "HTTP/1.1 <status> <reason>" and a Date field. */
void http_w_status(struct http_w *w, int status);

/* "<METHOD> <target> HTTP/1.1" and "Host: <host>" (a client's). */
void http_w_request(struct http_w *w, enum http_method m, const char *target, const char *host);

void http_w_header(struct http_w *w, const char *name, const char *value);
void http_w_headerf(struct http_w *w, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void http_w_vheaderf(struct http_w *w, const char *name, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Appends already formatted field lines ("Name: value\r\n"...) as they are. */
void http_w_raw(struct http_w *w, const char *lines, size_t len);

/* The empty line. Returns the head's length, or the sticky error. */
ssize_t http_w_finish(struct http_w *w);

/* The IMF-fixdate of now ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes),
 * computed once a second per thread. */
const char *http_date_now(void);

/* ---- responses (client side) ---- */

typedef struct http_resp http_resp_t;

/* A parser for responses; lim as for requests (body_max unused: a client
 * counts what it wants). 0 or -ENOMEM. */
int http_resp_new(http_resp_t **out, const struct http_limits *lim);
void http_resp_free(http_resp_t *r);

/* Prepares for the response to a request of method m (HEAD: no body
 * whatever the fields say). */
void http_resp_reset(http_resp_t *r, enum http_method m);

/*
 * As http_req_parse() for a response: returns the head's length once
 * complete, 0 while more is needed, -EPROTO when malformed (http_resp_error
 * says why) or -EMSGSIZE over a limit. A 1xx response (100 Continue) is a
 * head without a body: reset and parse the next.
 */
ssize_t http_resp_parse(http_resp_t *r, const uint8_t *data, size_t len);
const char *http_resp_error(const http_resp_t *r);

int http_resp_status(const http_resp_t *r);
int http_resp_minor(const http_resp_t *r);

/* The reason phrase as sent, NUL-terminated. */
const char *http_resp_reason(const http_resp_t *r);

const char *http_resp_header(const http_resp_t *r, const char *name, size_t *len);
unsigned http_resp_header_count(const http_resp_t *r);
void http_resp_header_at(const http_resp_t *r, unsigned i, const char **name, const char **value);

/* The body's Content-Length; -1 when chunked or delimited by the close;
 * 0 without a body (HEAD, 1xx, 204, 304). */
int64_t http_resp_content_length(const http_resp_t *r);
bool http_resp_chunked(const http_resp_t *r);
bool http_resp_keep_alive(const http_resp_t *r);

/* As http_req_body(): -EPROTO for bad chunk framing. */
ssize_t http_resp_body(http_resp_t *r, const uint8_t *data, size_t len, const uint8_t **piece,
                       size_t *piece_len);
bool http_resp_body_done(const http_resp_t *r);

/* The server closed: 0 when that ends the body (a close-delimited body, or
 * one already done), -EPROTO when the body was cut short. */
int http_resp_eof(http_resp_t *r);

#endif
