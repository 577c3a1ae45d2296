/*
 * catalog: three real file servers report their files to a real balancer,
 * whole when they join and as deltas when a file changes, as the
 * balancer's log says (event=catalog name=… files=…).
 */
#include "harness.h"

#include "convoy/frame.h"

#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_MS    5000u
#define DELTA_MS 1000u

static const char *const three[] = {"fs1", "fs2", "fs3", NULL};
static struct cluster cl;

/* The data folder every file server serves: four files, one in a folder. */
static int make_data(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data", cl.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/data/sub", cl.dir);
    mkdir(path, 0755);
    return h_put_file(&cl, "a.bin", 1000) || h_put_file(&cl, "b.bin", 2000) ||
           h_put_file(&cl, "c.txt", 3) || h_put_file(&cl, "sub/d.bin", 4096);
}

/* Waits for server name's one-entry delta leaving it files entries. */
static bool wait_delta(const char *name, int files)
{
    char want[96];
    snprintf(want, sizeof want, "event=catalog name=%s kind=delta entries=1 files=%d", name, files);
    return h_wait_log(&cl, "balancer", want, DELTA_MS + 500);
}

static void test_full_then_delta(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, three) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_FATAL(h_fileserver(&cl, three[i], cl.pki) > 0);
    for (int i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof want, "event=catalog name=%s kind=full entries=4 files=4", three[i]);
        CU_ASSERT(h_wait_log(&cl, "balancer", want, UP_MS));
    }
    CU_ASSERT_FATAL(h_put_file(&cl, "new.bin", 5) == 0);
    for (int i = 0; i < 3; i++) /* each server's first delta, before the next change */
        CU_ASSERT(wait_delta(three[i], 5));
    char path[512];
    snprintf(path, sizeof path, "%s/data/a.bin", cl.dir);
    CU_ASSERT_FATAL(unlink(path) == 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(wait_delta(three[i], 4));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* A server that comes back sends its whole catalog again. */
static void test_back_sends_full(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, three) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    pid_t fs1 = h_fileserver(&cl, "fs1", cl.pki);
    CU_ASSERT_FATAL(fs1 > 0);
    CU_ASSERT(h_wait_log(&cl, "balancer", "event=catalog name=fs1 kind=full", UP_MS));
    h_signal(&cl, fs1, SIGKILL, true);
    CU_ASSERT(h_wait_state(&cl, "fs1", "down", UP_MS) >= 0);
    CU_ASSERT_FATAL(h_put_file(&cl, "late.bin", 7) == 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0);
    CU_ASSERT(
        h_wait_log(&cl, "balancer", "event=catalog name=fs1 kind=full entries=5 files=5", UP_MS));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* Appends a frame (header, meta, then any DATA of body) to out at *len. */
static void add_frame(uint8_t *out, size_t *len, enum frame_type type, const char *meta,
                      const char *body)
{
    cJSON *m = cJSON_Parse(meta);
    uint8_t *f;
    size_t n;
    size_t blen = body ? strlen(body) : 0;
    int rc =
        blen ? frame_encode_streamed(type, m, 1, blen, &f, &n) : frame_encode(type, m, 0, &f, &n);
    cJSON_Delete(m);
    CU_ASSERT_FATAL(rc == 0);
    memcpy(out + *len, f, n);
    *len += n;
    free(f);
    if (blen) {
        struct frame_hdr h = {
            .version = FRAME_VERSION, .type = FRAME_DATA, .stream = 1, .body_len = blen};
        frame_hdr_encode(out + *len, &h);
        memcpy(out + *len + FRAME_HDR_LEN, body, blen);
        *len += FRAME_HDR_LEN + blen;
    }
}

/* A member whose catalog has a bad line: WELCOME, then ERROR schema naming
 * the line, and nothing of it in the index. */
static void test_bad_catalog_refused(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, three) == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    CU_ASSERT_FATAL(h_wait_log(&cl, "balancer", "event=listening", UP_MS));
    uint8_t out[2048], in[4096];
    size_t len = 0;
    add_frame(out, &len, FRAME_HELLO,
              "{\"http\":\"127.0.0.1:1\",\"weight\":1,\"capacity\":1,\"files\":2,"
              "\"bytes\":2,\"active\":0,\"bytes_per_s\":0,\"load1\":0,\"disk_free\":0}",
              NULL);
    add_frame(out, &len, FRAME_CATALOG, "{\"full\":true,\"count\":2}",
              "{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"1-1\\\"\"}\n"
              "{\"path\":\"../x\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"1-1\\\"\"}\n");
    struct h_tls t;
    bool closed = false;
    ssize_t n = -1;
    if (h_tls_dial(&t, cl.pki, "fs1", cl.control) == 0 && h_tls_send(&t, out, len) == 0)
        n = h_tls_read_all(&t, in, sizeof in, 3000, &closed);
    h_tls_close(&t);
    CU_ASSERT(closed);
    struct frame_limits lim = {FRAME_META_MAX, 0};
    struct frame_hdr h;
    CU_ASSERT_FATAL(n > FRAME_HDR_LEN && frame_hdr_decode(in, &lim, &h) == 0);
    CU_ASSERT_EQUAL(h.type, FRAME_WELCOME);
    size_t off = FRAME_HDR_LEN + h.meta_len;
    CU_ASSERT_FATAL((size_t)n > off + FRAME_HDR_LEN && frame_hdr_decode(in + off, &lim, &h) == 0);
    CU_ASSERT_EQUAL(h.type, FRAME_ERROR);
    CU_ASSERT(h_log_has(&cl, "balancer", "code=schema reason=\"CATALOG: line 2: path is not"));
    CU_ASSERT_FALSE(h_log_has(&cl, "balancer", "event=catalog name=fs1"));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

void suite_catalog(void)
{
    CU_pSuite s = CU_add_suite("catalog", NULL, NULL);
    CU_add_test(s, "3 servers: full catalogs, then deltas within a second", test_full_then_delta);
    CU_add_test(s, "a server back sends its whole catalog", test_back_sends_full);
    CU_add_test(s, "a catalog with a bad line: ERROR schema, nothing applied",
                test_bad_catalog_refused);
}
