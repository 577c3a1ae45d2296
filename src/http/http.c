/*
 * http — HTTP/1.1 heads and bodies, parsed and written without sockets.
 *
 * The design is simple: one head parser serves requests and responses. It
 * looks for line ends from where it stopped (memchr), and checks each line
 * once, when it is complete, recording the fields as offsets from the
 * message's first byte (the caller's buffer may move between calls). When
 * the empty line arrives the head is copied into the parser's own buffer,
 * each name, value and start-line part is NUL-terminated there in place,
 * and the meaning of the fields (Host, Content-Length, Transfer-Encoding,
 * Connection, Expect) is decided once, so that every later lookup is a
 * plain walk over at most HTTP_HEADERS_MAX offsets.
 *
 * Strictness: lines end with CRLF, a CR anywhere else or a NUL is refused,
 * a field line starting with whitespace (obs-fold) is refused, Content-Length
 * is one decimal number at most once, and Transfer-Encoding with
 * Content-Length is refused (RFC 9112 §6.3: request smuggling). A request
 * body is either Content-Length or chunked; a chunked body goes through the
 * same decoder for requests and responses, which hands out payload as
 * pieces of the caller's buffer.
 */
#include "convoy/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define KEEP_MAX      4096u /* a head buffer larger than this is freed on reset */
#define CHUNK_EXT_MAX 4096u /* bytes of chunk extension per chunk line */

/* One field as offsets into the message. */
struct field {
    uint32_t name;      /* offset of the name */
    uint32_t value;     /* offset of the value, whitespace removed */
    uint16_t name_len;  /* bytes of the name */
    uint32_t value_len; /* bytes of the value */
};

enum body_mode {
    BODY_NONE,    /* no body */
    BODY_LENGTH,  /* Content-Length bytes */
    BODY_CHUNKED, /* chunked transfer coding */
    BODY_CLOSE,   /* until the connection closes (responses) */
};

enum chunk_state {
    CH_SIZE,       /* hex digits of a chunk size */
    CH_EXT,        /* chunk extension, until CR */
    CH_SIZE_LF,    /* the LF after a chunk line's CR */
    CH_DATA,       /* chunk payload */
    CH_DATA_CR,    /* the CR after a chunk's payload */
    CH_DATA_LF,    /* the LF after it */
    CH_TRAILER,    /* a trailer line (or the final empty line) */
    CH_TRAILER_LF, /* the LF after a trailer line's CR */
    CH_DONE,       /* the body has ended */
};

/* Body framing state, the same for both directions. */
struct body {
    enum body_mode mode;
    enum chunk_state cs; /* chunked: where the next byte goes */
    uint64_t left;       /* LENGTH: bytes to come; CHUNKED: of this chunk */
    uint64_t total;      /* payload bytes seen */
    uint64_t max;        /* payload limit */
    uint32_t line;       /* bytes of the current chunk or trailer line */
    uint32_t trailer;    /* bytes of trailer so far */
    unsigned digits;     /* hex digits of the current size */
};

/* The head parser, embedded in both message kinds. */
struct head {
    struct http_limits lim; /* defaults filled in */
    bool response;          /* parsing a status line */
    size_t skip;            /* empty lines before a request */
    size_t pos;             /* bytes scanned for line ends */
    size_t line;            /* offset of the line being read */
    bool start_done;        /* the start line has been checked */
    unsigned nfields;       /* fields recorded */
    struct field f[HTTP_HEADERS_MAX];
    uint32_t sl[3];   /* start line: offsets of its three parts */
    uint32_t sl_end;  /* start line: offset of its CR */
    size_t len;       /* head length once done, else 0 */
    int err;          /* latched error (negative), 0 while healthy */
    const char *why;  /* what the error was */
    char *buf;        /* the copied head (+ the decoded path) */
    size_t cap;       /* bytes at buf */
    int minor;        /* HTTP/1.<minor> */
    bool keep_alive;  /* decided when done */
    struct body body; /* the message's body */
};

struct http_req {
    struct head h;
    enum http_method method;
    uint32_t path;  /* offset in buf of the decoded path */
    uint32_t query; /* offset in buf of the raw query */
    int64_t clen;   /* Content-Length, -1 chunked, 0 none */
    bool expect_continue;
};

struct http_resp {
    struct head h;
    enum http_method method; /* of the request answered */
    int status;
    int64_t clen;
};

/* ---- names ---- */

static const char *const method_names[] = {
    [HTTP_GET] = "GET",   [HTTP_HEAD] = "HEAD",     [HTTP_PUT] = "PUT",
    [HTTP_POST] = "POST", [HTTP_DELETE] = "DELETE",
};

const char *http_method_str(enum http_method m)
{
    return (unsigned)m < ARRAY_LEN(method_names) ? method_names[m] : "?";
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ---- characters ---- */

/* tchar of RFC 9110 §5.6.2, as a table: names are checked byte by byte. */
#define T1(c) [c] = true
static const bool tchar[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'), T1('-'), T1('.'),
    T1('^'), T1('_'), T1('`'), T1('|'), T1('~'), T1('0'),  T1('1'), T1('2'), T1('3'), T1('4'),
    T1('5'), T1('6'), T1('7'), T1('8'), T1('9'), T1('a'),  T1('b'), T1('c'), T1('d'), T1('e'),
    T1('f'), T1('g'), T1('h'), T1('i'), T1('j'), T1('k'),  T1('l'), T1('m'), T1('n'), T1('o'),
    T1('p'), T1('q'), T1('r'), T1('s'), T1('t'), T1('u'),  T1('v'), T1('w'), T1('x'), T1('y'),
    T1('z'), T1('A'), T1('B'), T1('C'), T1('D'), T1('E'),  T1('F'), T1('G'), T1('H'), T1('I'),
    T1('J'), T1('K'), T1('L'), T1('M'), T1('N'), T1('O'),  T1('P'), T1('Q'), T1('R'), T1('S'),
    T1('T'), T1('U'), T1('V'), T1('W'), T1('X'), T1('Y'),  T1('Z'),
};
#undef T1

static bool is_tchar(unsigned char c)
{
    return tchar[c];
}

/* field-vchar, SP, HTAB (obs-text included): what a field value may hold. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether s[0..n) equals the NUL-terminated word, ignoring case. */
static bool word_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* ---- the head parser ---- */

static void head_init(struct head *h, const struct http_limits *lim, bool response)
{
    char *buf = h->buf; /* kept across requests */
    size_t cap = h->cap;
    memset(h, 0, sizeof *h);
    h->buf = buf;
    h->cap = cap;
    h->response = response;
    h->minor = 1;
    if (lim)
        h->lim = *lim;
    if (!h->lim.line_max || h->lim.line_max > HTTP_LINE_MAX)
        h->lim.line_max = HTTP_LINE_MAX;
    if (!h->lim.head_max || h->lim.head_max > HTTP_HEAD_MAX)
        h->lim.head_max = HTTP_HEAD_MAX;
    if (!h->lim.headers_max || h->lim.headers_max > HTTP_HEADERS_MAX)
        h->lim.headers_max = HTTP_HEADERS_MAX;
    if (!h->lim.body_max)
        h->lim.body_max = HTTP_BODY_MAX;
}

static void head_reset(struct head *h)
{
    if (h->cap > KEEP_MAX) {
        free(h->buf);
        h->buf = NULL;
        h->cap = 0;
    }
    struct http_limits lim = h->lim;
    head_init(h, &lim, h->response);
}

/* Latches an error: status is the request's (negative), why its words. */
static int head_fail(struct head *h, int status, const char *why)
{
    h->err = status;
    h->why = why;
    return status;
}

/* "HTTP/1.1" at p (8 bytes): 0 with h->minor set, else the error. */
static int check_version(struct head *h, const char *p, size_t n)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return head_fail(h, -400, "malformed version");
    if (p[5] != '1')
        return head_fail(h, -505, "unsupported version");
    if (p[7] > '1')
        return head_fail(h, -505, "unsupported version");
    h->minor = p[7] - '0';
    return 0;
}

/* "METHOD SP target SP HTTP/1.x" (n bytes, without CRLF). */
static int check_request_line(struct head *h, const char *p, size_t n, size_t at)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return head_fail(h, -400, "malformed request line");
    for (const char *c = p; c < sp1; c++)
        if (!is_tchar((unsigned char)*c))
            return head_fail(h, -400, "bad method");
    const char *t = sp1 + 1, *end = p + n;
    const char *sp2 = t;
    while (sp2 < end && *sp2 != ' ')
        sp2++;
    if (sp2 == t || sp2 == end)
        return head_fail(h, -400, "malformed request line");
    for (const char *c = t; c < sp2; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
            return head_fail(h, -400, "bad character in target");
    h->sl[0] = (uint32_t)at;
    h->sl[1] = (uint32_t)(at + (size_t)(t - p));
    h->sl[2] = (uint32_t)(at + (size_t)(sp2 + 1 - p));
    return check_version(h, sp2 + 1, (size_t)(end - sp2 - 1));
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" (n bytes, without CRLF). */
static int check_status_line(struct head *h, const char *p, size_t n, size_t at)
{
    if (n < 12 || p[8] != ' ' || check_version(h, p, 8) < 0)
        return head_fail(h, -EPROTO, "malformed status line");
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return head_fail(h, -EPROTO, "malformed status code");
    if (p[9] == '0' || (n > 12 && p[12] != ' '))
        return head_fail(h, -EPROTO, "malformed status line");
    for (size_t i = 13; i < n; i++)
        if (!is_value_char((unsigned char)p[i]))
            return head_fail(h, -EPROTO, "bad character in reason");
    h->sl[0] = (uint32_t)at;
    h->sl[1] = (uint32_t)(at + 9);
    h->sl[2] = (uint32_t)(at + (n > 12 ? 13 : 12));
    return 0;
}

/* "name: value" (n bytes, without CRLF), recorded as h->f[nfields]. */
static int check_field_line(struct head *h, const char *p, size_t n, size_t at)
{
    int bad = h->response ? -EPROTO : -400;
    if (p[0] == ' ' || p[0] == '\t')
        return head_fail(h, bad, "obsolete line folding");
    if (h->nfields == h->lim.headers_max)
        return head_fail(h, h->response ? -EMSGSIZE : -431, "too many fields");
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return head_fail(h, bad, "malformed field line");
    for (const char *c = p; c < colon; c++)
        if (!is_tchar((unsigned char)*c))
            return head_fail(h, bad, "bad character in field name");
    const char *v = colon + 1, *end = p + n;
    for (const char *c = v; c < end; c++)
        if (!is_value_char((unsigned char)*c))
            return head_fail(h, bad, "bad character in field value");
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    struct field *f = &h->f[h->nfields++];
    f->name = (uint32_t)at;
    f->name_len = (uint16_t)(colon - p);
    f->value = (uint32_t)(at + (size_t)(v - p));
    f->value_len = (uint32_t)(end - v);
    return 0;
}

/* One complete line at data + h->line, ending at the LF at data + lf. */
static int check_line(struct head *h, const uint8_t *data, size_t lf)
{
    size_t at = h->line, n = lf - at;
    const char *p = (const char *)data + at;
    if (n == 0 || p[n - 1] != '\r')
        return head_fail(h, h->response ? -EPROTO : -400, "line without CR");
    n--;
    if (memchr(p, '\0', n))
        return head_fail(h, h->response ? -EPROTO : -400, "NUL in head");
    if (memchr(p, '\r', n))
        return head_fail(h, h->response ? -EPROTO : -400, "bare CR in head");
    if (h->start_done)
        return check_field_line(h, p, n, at);
    if (n == 0 && !h->response) { /* empty lines before a request */
        h->skip = lf + 1;
        return 0;
    }
    if (n == 0)
        return head_fail(h, -EPROTO, "empty status line");
    if (n + 2 > h->lim.line_max)
        return head_fail(h, h->response ? -EMSGSIZE : -414, "start line too long");
    h->start_done = true;
    h->sl_end = (uint32_t)(at + n);
    return h->response ? check_status_line(h, p, n, at) : check_request_line(h, p, n, at);
}

/* The limit the unfinished line at h->line breaks, if any. */
static int check_partial(struct head *h, size_t len)
{
    size_t used = len - h->skip;
    if (!h->start_done && len - h->line > h->lim.line_max)
        return head_fail(h, h->response ? -EMSGSIZE : -414, "start line too long");
    if (used > h->lim.head_max)
        return head_fail(h, h->response ? -EMSGSIZE : -431, "head too large");
    if (h->skip > h->lim.line_max)
        return head_fail(h, h->response ? -EPROTO : -400, "too many empty lines");
    return 0;
}

/* Copies the head, with room for extra bytes after it, and NUL-terminates
 * every part of it in place. */
static int head_copy(struct head *h, const uint8_t *data, size_t extra)
{
    size_t need = h->len + extra + 1;
    if (need > h->cap) {
        char *nb = realloc(h->buf, need);
        if (!nb)
            return head_fail(h, h->response ? -ENOMEM : -500, "out of memory");
        h->buf = nb;
        h->cap = need;
    }
    memcpy(h->buf, data, h->len);
    for (unsigned i = 0; i < h->nfields; i++) {
        h->buf[h->f[i].name + h->f[i].name_len] = '\0';
        h->buf[h->f[i].value + h->f[i].value_len] = '\0';
    }
    h->buf[h->sl_end] = '\0';
    h->buf[h->sl[1] - 1] = '\0';
    h->buf[h->response ? h->sl[1] + 3 : h->sl[2] - 1] = '\0';
    return 0;
}

/* Scans for lines; returns the head's end (after the empty line) once
 * found, 0 for more, or the error. */
static ssize_t head_scan(struct head *h, const uint8_t *data, size_t len)
{
    if (h->err)
        return h->err;
    while (h->pos < len) {
        const uint8_t *lf = memchr(data + h->pos, '\n', len - h->pos);
        if (!lf) {
            h->pos = len;
            break;
        }
        size_t at = (size_t)(lf - data);
        h->pos = at + 1;
        bool last = h->start_done && at - h->line == 1 && data[h->line] == '\r';
        if (!last && check_line(h, data, at) < 0)
            return h->err;
        if (h->pos - h->skip > h->lim.head_max)
            return head_fail(h, h->response ? -EMSGSIZE : -431, "head too large");
        if (last)
            return (ssize_t)h->pos;
        h->line = h->pos;
    }
    return check_partial(h, len);
}

static const char *head_field(const struct head *h, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct field *f = &h->f[i];
        if (f->name_len == n && strncasecmp(h->buf + f->name, name, n) == 0) {
            if (len)
                *len = f->value_len;
            return h->buf + f->value;
        }
    }
    return NULL;
}

/* How many fields are called name. */
static unsigned head_count(const struct head *h, const char *name)
{
    size_t n = strlen(name);
    unsigned k = 0;
    for (unsigned i = 0; i < h->nfields; i++)
        k += h->f[i].name_len == n && strncasecmp(h->buf + h->f[i].name, name, n) == 0;
    return k;
}

static void head_field_at(const struct head *h, unsigned i, const char **name, const char **value)
{
    *name = h->buf + h->f[i].name;
    *value = h->buf + h->f[i].value;
}

/* Whether a comma-separated list field (every field called name) holds
 * the token tok. */
static bool head_list_has(const struct head *h, const char *name, const char *tok)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct field *f = &h->f[i];
        if (f->name_len != n || strncasecmp(h->buf + f->name, name, n) != 0)
            continue;
        const char *p = h->buf + f->value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if (t > p && word_eq(p, (size_t)(t - p), tok))
                return true;
            p = e;
        }
    }
    return false;
}

/* A Content-Length value: 1*DIGIT that fits in int64_t. */
static int parse_length(const char *v, int64_t *out)
{
    if (!*v)
        return -1;
    uint64_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > (uint64_t)(INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = (int64_t)n;
    return 0;
}

/* Content-Length and Transfer-Encoding into h->body; *clen as the
 * accessors give it. bad: the error for a malformed message. */
static int decide_framing(struct head *h, int bad, int unknown_te, int64_t *clen)
{
    const char *cl = head_field(h, "Content-Length", NULL);
    const char *te = head_field(h, "Transfer-Encoding", NULL);
    unsigned ncl = head_count(h, "Content-Length");
    *clen = 0;
    if (te && cl)
        return head_fail(h, bad, "Content-Length with Transfer-Encoding");
    if (ncl > 1)
        return head_fail(h, bad, "repeated Content-Length");
    if (cl) {
        if (parse_length(cl, clen) < 0)
            return head_fail(h, bad, "bad Content-Length");
        h->body.mode = *clen ? BODY_LENGTH : BODY_NONE;
        h->body.left = (uint64_t)*clen;
        return 0;
    }
    if (!te)
        return 0;
    if (head_count(h, "Transfer-Encoding") > 1 || strcasecmp(te, "chunked") != 0)
        return head_fail(h, unknown_te, "unsupported transfer coding");
    if (h->minor == 0)
        return head_fail(h, bad, "Transfer-Encoding in HTTP/1.0");
    h->body.mode = BODY_CHUNKED;
    *clen = -1;
    return 0;
}

/* ---- requests ---- */

int http_req_new(http_req_t **out, const struct http_limits *lim)
{
    http_req_t *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    head_init(&q->h, lim, false);
    *out = q;
    return 0;
}

void http_req_free(http_req_t *q)
{
    if (!q)
        return;
    free(q->h.buf);
    free(q);
}

void http_req_reset(http_req_t *q)
{
    head_reset(&q->h);
    q->method = HTTP_GET;
    q->path = q->query = 0;
    q->clen = 0;
    q->expect_continue = false;
}

/* uri-host [":" port] of RFC 3986, loosely: the characters it may hold. */
static bool host_ok(const char *v)
{
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            !strchr("-._~!$&'()*+,;=%[]:", c))
            return false;
    }
    return true;
}

/* Percent-decodes the path of the target into buf at q->path. */
static int decode_path(http_req_t *q, const char *t, size_t n)
{
    char *o = q->h.buf + q->path;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '%') {
            *o++ = t[i];
            continue;
        }
        int hi = i + 2 < n ? hex_val((unsigned char)t[i + 1]) : -1;
        int lo = hi >= 0 ? hex_val((unsigned char)t[i + 2]) : -1;
        if (lo < 0)
            return head_fail(&q->h, -400, "bad percent-encoding in path");
        int c = hi * 16 + lo;
        if (c == 0)
            return head_fail(&q->h, -400, "%00 in path");
        if (c == '/')
            return head_fail(&q->h, -400, "%2F in path");
        *o++ = (char)c;
        i += 2;
    }
    *o = '\0';
    return 0;
}

/* Splits the target into path and query: origin-form "/p?q" or
 * absolute-form "http://authority/p?q". */
static int decide_target(http_req_t *q)
{
    struct head *h = &q->h;
    const char *t = h->buf + h->sl[1];
    const char *p = t;
    if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
        p = strstr(t, "://") + 3;
        while (*p && *p != '/' && *p != '?')
            p++;
    } else if (*t != '/') {
        return head_fail(h, -400, "target not in origin or absolute form");
    }
    const char *qm = strchr(p, '?');
    size_t plen = qm ? (size_t)(qm - p) : strlen(p);
    q->path = (uint32_t)(h->len + 1);
    if (plen == 0) { /* "http://host" or "http://host?q" */
        h->buf[q->path] = '/';
        h->buf[q->path + 1] = '\0';
    } else if (decode_path(q, p, plen) < 0) {
        return h->err;
    }
    q->query = qm ? (uint32_t)(qm + 1 - h->buf) : (uint32_t)(h->sl[2] - 1);
    return 0;
}

static int decide_method(http_req_t *q)
{
    const char *m = q->h.buf + q->h.sl[0];
    for (unsigned i = 0; i < ARRAY_LEN(method_names); i++)
        if (strcmp(m, method_names[i]) == 0) {
            q->method = (enum http_method)i;
            return 0;
        }
    return head_fail(&q->h, -501, "method unknown to this server");
}

/* The meaning of a complete request head. */
static int decide_request(http_req_t *q)
{
    struct head *h = &q->h;
    if (decide_method(q) < 0)
        return h->err;
    unsigned nhost = head_count(h, "Host");
    const char *host = head_field(h, "Host", NULL);
    if (nhost > 1 || (nhost == 0 && h->minor == 1) || (host && !host_ok(host)))
        return head_fail(h, -400, nhost > 1 ? "repeated Host" : host ? "bad Host" : "no Host");
    if (decide_framing(h, -400, -501, &q->clen) < 0)
        return h->err;
    if (q->clen > 0 && (uint64_t)q->clen > h->lim.body_max)
        return head_fail(h, -413, "Content-Length over the limit");
    const char *expect = head_field(h, "Expect", NULL);
    if (expect && strcasecmp(expect, "100-continue") != 0)
        return head_fail(h, -417, "unsupported Expect");
    q->expect_continue = expect != NULL;
    if (h->minor == 1)
        h->keep_alive = !head_list_has(h, "Connection", "close");
    else
        h->keep_alive = head_list_has(h, "Connection", "keep-alive") &&
                        !head_list_has(h, "Connection", "close");
    h->body.max = h->lim.body_max;
    return decide_target(q);
}

ssize_t http_req_parse(http_req_t *q, const uint8_t *data, size_t len)
{
    struct head *h = &q->h;
    if (h->len)
        return (ssize_t)h->len;
    ssize_t end = head_scan(h, data, len);
    if (end <= 0)
        return end;
    h->len = (size_t)end;
    size_t target_len = h->sl[2] - h->sl[1];
    if (head_copy(h, data, target_len + 1) < 0 || decide_request(q) < 0) {
        h->len = 0;
        return h->err;
    }
    return end;
}

const char *http_req_error(const http_req_t *q)
{
    return q->h.why ? q->h.why : "";
}

enum http_method http_req_method(const http_req_t *q)
{
    return q->method;
}

int http_req_minor(const http_req_t *q)
{
    return q->h.minor;
}

const char *http_req_target(const http_req_t *q)
{
    return q->h.buf + q->h.sl[1];
}

const char *http_req_path(const http_req_t *q)
{
    return q->h.buf + q->path;
}

const char *http_req_query_raw(const http_req_t *q)
{
    return q->h.buf + q->query;
}

/* Decodes s[0..n) (percent, '+' as space) into buf. */
static ssize_t decode_param(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hex_val((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_val((unsigned char)s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= size)
            return -ENOSPC;
        buf[o] = (char)c;
    }
    if (size == 0)
        return -ENOSPC;
    buf[o] = '\0';
    return (ssize_t)o;
}

ssize_t http_req_query(const http_req_t *q, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen(name);
    const char *p = http_req_query_raw(q);
    while (*p) {
        const char *amp = strchr(p, '&');
        const char *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : end;
            return decode_param(v, (size_t)(end - v), buf, size);
        }
        p = amp ? amp + 1 : end;
    }
    return -ENOENT;
}

const char *http_req_header(const http_req_t *q, const char *name, size_t *len)
{
    return head_field(&q->h, name, len);
}

unsigned http_req_header_count(const http_req_t *q)
{
    return q->h.nfields;
}

void http_req_header_at(const http_req_t *q, unsigned i, const char **name, const char **value)
{
    head_field_at(&q->h, i, name, value);
}

int64_t http_req_content_length(const http_req_t *q)
{
    return q->clen;
}

bool http_req_keep_alive(const http_req_t *q)
{
    return q->h.keep_alive;
}

bool http_req_expects_continue(const http_req_t *q)
{
    return q->expect_continue;
}

/* ---- bodies ---- */

/* Steps the chunk framing over one byte c. 0, or -1 malformed. */
static int chunk_step(struct body *b, unsigned char c)
{
    switch (b->cs) {
    case CH_SIZE: {
        int v = hex_val(c);
        if (v >= 0) {
            if (b->digits++ == 16)
                return -1;
            b->left = b->left * 16 + (uint64_t)v;
            return 0;
        }
        if (b->digits == 0 || (c != ';' && c != '\r' && c != ' ' && c != '\t'))
            return -1;
        b->cs = c == '\r' ? CH_SIZE_LF : CH_EXT;
        return 0;
    }
    case CH_EXT:
        if (c == '\r')
            b->cs = CH_SIZE_LF;
        else if (!is_value_char(c) || ++b->line > CHUNK_EXT_MAX)
            return -1;
        return 0;
    case CH_SIZE_LF:
        if (c != '\n')
            return -1;
        b->cs = b->left ? CH_DATA : CH_TRAILER;
        b->line = 0;
        return 0;
    case CH_DATA_CR:
        b->cs = CH_DATA_LF;
        return c == '\r' ? 0 : -1;
    case CH_DATA_LF:
        b->cs = CH_SIZE;
        b->digits = 0;
        b->line = 0;
        return c == '\n' ? 0 : -1;
    case CH_TRAILER:
        if (c == '\r') {
            b->cs = CH_TRAILER_LF;
            return 0;
        }
        b->line++;
        return is_value_char(c) && ++b->trailer <= HTTP_HEAD_MAX ? 0 : -1;
    case CH_TRAILER_LF:
        if (c != '\n')
            return -1;
        b->cs = b->line ? CH_TRAILER : CH_DONE;
        b->line = 0;
        return 0;
    default:
        return -1;
    }
}

/* One step of a body: framing bytes, then at most one piece of payload.
 * Returns bytes used, -1 malformed, -2 over the limit. */
/* Payload bytes that follow with no framing among them: the rest of a
 * Content-Length body, or of the chunk being read. */
static uint64_t body_run(const struct body *b)
{
    bool in_data = b->mode == BODY_LENGTH || (b->mode == BODY_CHUNKED && b->cs == CH_DATA);
    return in_data ? b->left : 0;
}

/* n bytes of the run (at most body_run) are read. 0, or -2 past max. */
static int body_take(struct body *b, size_t n)
{
    if (b->total + n > b->max)
        return -2;
    b->total += n;
    b->left -= n;
    if (b->left == 0 && b->mode == BODY_CHUNKED)
        b->cs = CH_DATA_CR;
    else if (b->left == 0)
        b->mode = BODY_NONE;
    return 0;
}

static ssize_t body_feed(struct body *b, const uint8_t *data, size_t len, const uint8_t **piece,
                         size_t *plen)
{
    size_t i = 0;
    *piece = data;
    *plen = 0;
    if (b->mode == BODY_CLOSE) {
        *plen = len;
        return (ssize_t)len;
    }
    while (b->mode == BODY_CHUNKED && b->cs != CH_DATA && b->cs != CH_DONE && i < len)
        if (chunk_step(b, data[i++]) < 0)
            return -1;
    bool in_data = b->mode == BODY_LENGTH || (b->mode == BODY_CHUNKED && b->cs == CH_DATA);
    if (!in_data || i == len)
        return (ssize_t)i;
    size_t n = len - i < b->left ? len - i : (size_t)b->left;
    if (body_take(b, n) < 0)
        return -2;
    *piece = data + i;
    *plen = n;
    return (ssize_t)(i + n);
}

static bool body_done(const struct body *b)
{
    return b->mode == BODY_NONE || (b->mode == BODY_CHUNKED && b->cs == CH_DONE);
}

ssize_t http_req_body(http_req_t *q, const uint8_t *data, size_t len, const uint8_t **piece,
                      size_t *piece_len)
{
    ssize_t n = body_feed(&q->h.body, data, len, piece, piece_len);
    return n == -1 ? -400 : n == -2 ? -413 : n;
}

bool http_req_body_done(const http_req_t *q)
{
    return body_done(&q->h.body);
}

uint64_t http_req_body_run(const http_req_t *q)
{
    return body_run(&q->h.body);
}

int http_req_body_took(http_req_t *q, size_t n)
{
    if (n > body_run(&q->h.body))
        return -400;
    return body_take(&q->h.body, n) < 0 ? -413 : 0;
}

/* ---- ranges ---- */

/* 1*DIGIT at *p, saturating at UINT64_MAX; advances *p. -1 without one. */
static int range_num(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t n = 0;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s++ - '0');
        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
    }
    if (s == *p)
        return -1;
    *p = s;
    *out = n;
    return 0;
}

enum http_range_result http_range_parse(const char *value, uint64_t size, struct http_range *out)
{
    if (!value || strncasecmp(value, "bytes=", 6) != 0)
        return HTTP_RANGE_NONE;
    const char *p = value + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t a = 0, b = UINT64_MAX;
    bool suffix = *p == '-';
    if (suffix)
        p++;
    if (range_num(&p, suffix ? &b : &a) < 0)
        return HTTP_RANGE_NONE;
    if (!suffix && *p++ != '-')
        return HTTP_RANGE_NONE;
    if (!suffix && *p >= '0' && *p <= '9' && range_num(&p, &b) < 0)
        return HTTP_RANGE_NONE;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || (!suffix && b < a))
        return HTTP_RANGE_NONE; /* several ranges, or not a range */
    if (suffix) {
        if (b == 0 || size == 0)
            return HTTP_RANGE_UNSATISFIABLE;
        a = b >= size ? 0 : size - b;
        b = size - 1;
    } else if (a >= size) {
        return HTTP_RANGE_UNSATISFIABLE;
    }
    out->first = a;
    out->last = b >= size ? size - 1 : b;
    return HTTP_RANGE_PARTIAL;
}

int http_content_range(char *buf, size_t cap, enum http_range_result res,
                       const struct http_range *r, uint64_t size)
{
    int n;
    if (res == HTTP_RANGE_PARTIAL)
        n = snprintf(buf, cap, "bytes %llu-%llu/%llu", (unsigned long long)r->first,
                     (unsigned long long)r->last, (unsigned long long)size);
    else if (res == HTTP_RANGE_UNSATISFIABLE)
        n = snprintf(buf, cap, "bytes */%llu", (unsigned long long)size);
    else
        return -EINVAL;
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

/* ---- the writer ---- */

void http_w_init(struct http_w *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

static void w_put(struct http_w *w, const char *s, size_t n)
{
    if (w->err)
        return;
    if (w->cap - w->len < n) {
        w->err = -ENOSPC;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void w_str(struct http_w *w, const char *s)
{
    w_put(w, s, strlen(s));
}

void http_w_status(struct http_w *w, int status)
{
    if (status < 100 || status > 999) {
        w->err = w->err ? w->err : -EINVAL;
        return;
    }
    char code[5] = {'0' + (char)(status / 100), '0' + (char)(status / 10 % 10),
                    '0' + (char)(status % 10), ' ', '\0'};
    w_put(w, "HTTP/1.1 ", 9);
    w_put(w, code, 4);
    w_str(w, http_status_reason(status));
    w_put(w, "\r\nDate: ", 8);
    w_put(w, http_date_now(), 29);
    w_put(w, "\r\n", 2);
}

void http_w_request(struct http_w *w, enum http_method m, const char *target, const char *host)
{
    for (const char *c = target; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            w->err = w->err ? w->err : -EINVAL;
    w_str(w, http_method_str(m));
    w_put(w, " ", 1);
    w_str(w, target);
    w_put(w, " HTTP/1.1\r\n", 11);
    http_w_header(w, "Host", host);
}

/* A name that is a token and a value without CR, LF or NUL. */
static bool field_ok(const char *name, const char *value, size_t vlen)
{
    if (!*name)
        return false;
    for (const char *c = name; *c; c++)
        if (!is_tchar((unsigned char)*c))
            return false;
    for (size_t i = 0; i < vlen; i++)
        if (!is_value_char((unsigned char)value[i]))
            return false;
    return true;
}

void http_w_header(struct http_w *w, const char *name, const char *value)
{
    if (!field_ok(name, value, strlen(value))) {
        w->err = w->err ? w->err : -EINVAL;
        return;
    }
    w_str(w, name);
    w_put(w, ": ", 2);
    w_str(w, value);
    w_put(w, "\r\n", 2);
}

void http_w_headerf(struct http_w *w, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    http_w_vheaderf(w, name, fmt, ap);
    va_end(ap);
}

void http_w_vheaderf(struct http_w *w, const char *name, const char *fmt, va_list ap)
{
    if (w->err)
        return;
    size_t start = w->len;
    w_str(w, name);
    w_put(w, ": ", 2);
    if (w->err)
        return;
    size_t vstart = w->len;
    int n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
    if (n < 0 || (size_t)n >= w->cap - w->len) {
        w->err = -ENOSPC;
        return;
    }
    w->len += (size_t)n;
    w->buf[start + strlen(name)] = '\0'; /* temporarily, to check the name */
    bool ok = field_ok(w->buf + start, w->buf + vstart, (size_t)n);
    w->buf[start + strlen(name)] = ':';
    if (!ok) {
        w->len = start;
        w->err = -EINVAL;
        return;
    }
    w_put(w, "\r\n", 2);
}

void http_w_raw(struct http_w *w, const char *lines, size_t len)
{
    w_put(w, lines, len);
}

ssize_t http_w_finish(struct http_w *w)
{
    w_put(w, "\r\n", 2);
    return w->err ? w->err : (ssize_t)w->len;
}

const char *http_date_now(void)
{
    static __thread time_t last = -1;
    static __thread char buf[32];
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        last = now;
    }
    return buf;
}

/* ---- responses ---- */

int http_resp_new(http_resp_t **out, const struct http_limits *lim)
{
    http_resp_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    head_init(&r->h, lim, true);
    *out = r;
    return 0;
}

void http_resp_free(http_resp_t *r)
{
    if (!r)
        return;
    free(r->h.buf);
    free(r);
}

void http_resp_reset(http_resp_t *r, enum http_method m)
{
    head_reset(&r->h);
    r->method = m;
    r->status = 0;
    r->clen = 0;
}

/* The meaning of a complete response head. */
static int decide_response(http_resp_t *r)
{
    struct head *h = &r->h;
    const char *code = h->buf + h->sl[1];
    r->status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    h->body.max = UINT64_MAX;
    bool closes = head_list_has(h, "Connection", "close");
    h->keep_alive =
        h->minor == 1 ? !closes : head_list_has(h, "Connection", "keep-alive") && !closes;
    if (r->method == HTTP_HEAD || r->status < 200 || r->status == 204 || r->status == 304)
        return 0;
    const char *te = head_field(h, "Transfer-Encoding", NULL);
    if (te && strcasecmp(te, "chunked") != 0) { /* RFC 9112 §6.3: read until the close */
        h->body.mode = BODY_CLOSE;
        h->keep_alive = false;
        r->clen = -1;
        return 0;
    }
    if (decide_framing(h, -EPROTO, -EPROTO, &r->clen) < 0)
        return h->err;
    if (!te && !head_field(h, "Content-Length", NULL)) {
        h->body.mode = BODY_CLOSE;
        h->keep_alive = false;
        r->clen = -1;
    }
    return 0;
}

ssize_t http_resp_parse(http_resp_t *r, const uint8_t *data, size_t len)
{
    struct head *h = &r->h;
    if (h->len)
        return (ssize_t)h->len;
    ssize_t end = head_scan(h, data, len);
    if (end <= 0)
        return end;
    h->len = (size_t)end;
    if (head_copy(h, data, 0) < 0 || decide_response(r) < 0) {
        h->len = 0;
        return h->err;
    }
    return end;
}

const char *http_resp_error(const http_resp_t *r)
{
    return r->h.why ? r->h.why : "";
}

int http_resp_status(const http_resp_t *r)
{
    return r->status;
}

int http_resp_minor(const http_resp_t *r)
{
    return r->h.minor;
}

const char *http_resp_reason(const http_resp_t *r)
{
    return r->h.buf + r->h.sl[2];
}

const char *http_resp_header(const http_resp_t *r, const char *name, size_t *len)
{
    return head_field(&r->h, name, len);
}

unsigned http_resp_header_count(const http_resp_t *r)
{
    return r->h.nfields;
}

void http_resp_header_at(const http_resp_t *r, unsigned i, const char **name, const char **value)
{
    head_field_at(&r->h, i, name, value);
}

int64_t http_resp_content_length(const http_resp_t *r)
{
    return r->clen;
}

bool http_resp_chunked(const http_resp_t *r)
{
    return r->h.body.mode == BODY_CHUNKED;
}

bool http_resp_keep_alive(const http_resp_t *r)
{
    return r->h.keep_alive;
}

ssize_t http_resp_body(http_resp_t *r, const uint8_t *data, size_t len, const uint8_t **piece,
                       size_t *piece_len)
{
    ssize_t n = body_feed(&r->h.body, data, len, piece, piece_len);
    return n < 0 ? -EPROTO : n;
}

bool http_resp_body_done(const http_resp_t *r)
{
    return body_done(&r->h.body);
}

int http_resp_eof(http_resp_t *r)
{
    return r->h.body.mode == BODY_CLOSE || body_done(&r->h.body) ? 0 : -EPROTO;
}
