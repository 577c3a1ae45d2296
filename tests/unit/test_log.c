/* log: level names, one key=value line per call whatever the fields hold,
 * and a rate limit that bounds a flood and counts what it dropped. */
#include "convoy/log.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_level_parse(void)
{
    enum log_level l;
    CU_ASSERT_EQUAL(log_level_parse("warn", &l), 0);
    CU_ASSERT_EQUAL(l, LOG_WARN);
    CU_ASSERT_STRING_EQUAL(log_level_str(LOG_DEBUG), "debug");
    CU_ASSERT_EQUAL(log_level_parse("loud", &l), -EINVAL);
}

/* stderr is pointed at a temporary file between capture_start() and
 * capture_end(), which returns what was written (malloc'd). A file, not a
 * pipe: a flood that the limit failed to stop must not block the test. */
static int capture_saved = -1;
static FILE *capture_file;

static void capture_start(void)
{
    capture_file = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(capture_file);
    capture_saved = dup(STDERR_FILENO);
    dup2(fileno(capture_file), STDERR_FILENO);
}

static char *capture_end(size_t *len)
{
    dup2(capture_saved, STDERR_FILENO);
    close(capture_saved);
    long n = ftell(capture_file) >= 0 ? lseek(fileno(capture_file), 0, SEEK_END) : -1;
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_FATAL(pread(fileno(capture_file), buf, (size_t)n, 0) == n);
    buf[n] = '\0';
    fclose(capture_file);
    *len = (size_t)n;
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_line_format(void)
{
    size_t len;
    capture_start();
    log_info("unit", "event=hello n=%d", 42);
    log_debug("unit", "event=hidden"); /* below the default level */
    char *buf = capture_end(&len);
    CU_ASSERT_EQUAL(strncmp(buf, "ts=", 3), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " level=info mod=unit event=hello n=42\n"));
    CU_ASSERT_PTR_NULL(strstr(buf, "hidden"));
    CU_ASSERT_EQUAL(count_lines(buf), 1);
    free(buf);
}

/* A peer's string with a newline and an escape sequence, as a HELLO's http
 * field would carry it: still one line, nothing raw reaches the log. */
static void test_fields_escaped(void)
{
    const char *http = "1.2.3.4:80\nts=forged level=error mod=balancer event=fake\x1b[2J";
    size_t len;
    capture_start();
    log_info("unit", "event=up http=%s", http);
    char *buf = capture_end(&len);
    CU_ASSERT_EQUAL(count_lines(buf), 1);
    CU_ASSERT_EQUAL(buf[len - 1], '\n');
    CU_ASSERT_PTR_NULL(strchr(buf, '\x1b'));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(buf, "http=1.2.3.4:80\\nts=forged level=error mod=balancer event=fake\\x1b[2J\n"));
    free(buf);
}

static void expect_escape(const char *in, size_t inlen, const char *want)
{
    char out[128];
    size_t n = log_escape(out, sizeof out, in, inlen);
    CU_ASSERT_STRING_EQUAL(out, want);
    CU_ASSERT_EQUAL(n, strlen(want));
}

static void test_escape(void)
{
    expect_escape("plain ascii", 11, "plain ascii");
    expect_escape("tab\there\r\n", 10, "tab\\there\\r\\n");
    expect_escape("a\\b", 3, "a\\\\b");
    expect_escape("nul\0x", 5, "nul\\x00x");
    expect_escape("del\x7f", 4, "del\\x7f");
    expect_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"); /* é € 😀 */
    expect_escape("\xc2\x9b"
                  "2J",
                  4, "\\xc2\\x9b2J");  /* C1 CSI as UTF-8 */
    expect_escape("\x9b", 1, "\\x9b"); /* C1 CSI as a byte */
    expect_escape("\xff\xfe", 2, "\\xff\\xfe");
    expect_escape("\xc0\xaf", 2, "\\xc0\\xaf");                   /* overlong '/' */
    expect_escape("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");          /* a surrogate */
    expect_escape("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80"); /* > U+10FFFF */
    expect_escape("cut\xe2\x82", 5, "cut\\xe2\\x82");             /* truncated sequence */
    /* Too small a buffer: stops before an escape that does not fit. */
    char small[5];
    CU_ASSERT_EQUAL(log_escape(small, sizeof small, "ab\ncd", 5), 4);
    CU_ASSERT_STRING_EQUAL(small, "ab\\n");
    CU_ASSERT_EQUAL(log_escape(small, 4, "ab\x1b", 3), 2);
    CU_ASSERT_STRING_EQUAL(small, "ab");
}

/* The window logic at chosen times: LOG_LIMIT_PER_S pass per second, the
 * rest are counted and handed to the next line that passes. */
static void test_limit_window(void)
{
    struct log_limit l = {0};
    uint64_t sup = 99;
    unsigned passed = 0;
    for (int i = 0; i < 1000; i++)
        passed += log_limit_pass(&l, 5000 + (uint64_t)i % 1000, &sup);
    CU_ASSERT_EQUAL(passed, LOG_LIMIT_PER_S);
    CU_ASSERT_EQUAL(sup, 0);
    CU_ASSERT_TRUE(log_limit_pass(&l, 6000, &sup));
    CU_ASSERT_EQUAL(sup, 1000 - LOG_LIMIT_PER_S);
    CU_ASSERT_TRUE(log_limit_pass(&l, 6001, &sup));
    CU_ASSERT_EQUAL(sup, 0);
    /* A clock read from the window before does not reopen it. */
    for (int i = 0; i < 100; i++)
        log_limit_pass(&l, 6002, &sup);
    CU_ASSERT_FALSE(log_limit_pass(&l, 5999, &sup));
}

static void flood_once(int i)
{
    log_warn_limited("unit", "event=accept_failed err=\"Too many open files\" i=%d", i);
}

enum { FLOOD_THREADS = 4, FLOOD_CALLS = 25000 };

static void *flood(void *arg)
{
    (void)arg;
    for (int i = 0; i < FLOOD_CALLS; i++)
        flood_once(i);
    return NULL;
}

/* 100,000 lines from one site in tight loops on four threads, as I/O
 * threads out of descriptors would make them: a bounded log, and every
 * dropped line is accounted for once the next window lets a line through. */
static void test_limit_flood(void)
{
    pthread_t t[FLOOD_THREADS];
    size_t len;
    capture_start();
    for (int i = 0; i < FLOOD_THREADS; i++)
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, flood, NULL) == 0);
    for (int i = 0; i < FLOOD_THREADS; i++)
        pthread_join(t[i], NULL);
    usleep(1100 * 1000); /* into the next window */
    flood_once(-1);
    char *buf = capture_end(&len);
    size_t lines = count_lines(buf);
    /* The loops may straddle a second boundary, racing threads may each
     * slip one line past a window's reset, and the last line opens a
     * window of its own. */
    CU_ASSERT(lines >= 2 && lines <= 3 * LOG_LIMIT_PER_S + 1);
    CU_ASSERT(len < 16 * 1024);
    unsigned long long reported = 0;
    for (const char *p = buf; (p = strstr(p, " suppressed=")) != NULL; p++)
        reported += strtoull(p + strlen(" suppressed="), NULL, 10);
    CU_ASSERT_EQUAL(reported + lines, FLOOD_THREADS * FLOOD_CALLS + 1);
    const char *last = buf + len - 1;
    while (last > buf && last[-1] != '\n')
        last--;
    CU_ASSERT_PTR_NOT_NULL(strstr(last, "i=-1 suppressed="));
    free(buf);
}

void suite_log(void)
{
    CU_pSuite s = CU_add_suite("log", NULL, NULL);
    CU_add_test(s, "level names", test_level_parse);
    CU_add_test(s, "one key=value line", test_line_format);
    CU_add_test(s, "a peer's newline and ESC are escaped", test_fields_escaped);
    CU_add_test(s, "log_escape", test_escape);
    CU_add_test(s, "rate limit window", test_limit_window);
    CU_add_test(s, "a flood is bounded and counted", test_limit_flood);
}
