/*
 * prog: the progress line — redraw pace, the moving-average rate and its
 * ETA, the fit to narrow and wide terminals, and a server name that cannot
 * inject terminal controls.
 */
#include "convoy/prog.h"

#include <CUnit/CUnit.h>
#include <string.h>

static void test_redraw_pace(void)
{
    struct prog p = {0};
    prog_start(&p, 1000, 0, 5000);
    CU_ASSERT(prog_update(&p, 10, 5000)); /* the first draws */
    CU_ASSERT(!prog_update(&p, 20, 5050));
    CU_ASSERT(!prog_update(&p, 30, 5099));
    CU_ASSERT(prog_update(&p, 40, 5100));
    CU_ASSERT_EQUAL(p.done, 40);
}

static void test_rate_eta(void)
{
    struct prog p = {0};
    char line[256];
    prog_start(&p, 10u << 20, 0, 0);
    /* one MiB per second for eight samples */
    for (uint64_t t = 125; t <= 1000; t += 125)
        prog_update(&p, t * 1048576 / 1000, t);
    CU_ASSERT(p.rate > 0.99 * 1048576 && p.rate < 1.01 * 1048576);
    prog_line(&p, "x.bin", 120, line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "ETA 0:09"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.0 MiB/10.0 MiB"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.0 MiB/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, " 10% ["));
    /* the speed halves: the average follows within a few time constants */
    uint64_t done = p.done;
    for (uint64_t t = 1100; t <= 9000; t += 100) {
        done += 52429;
        prog_update(&p, done, t);
    }
    CU_ASSERT(p.rate > 0.48 * 1048576 && p.rate < 0.6 * 1048576);
}

/* A burst right after the start does not seed the rate. */
static void test_first_sample(void)
{
    struct prog p = {0};
    prog_start(&p, 10u << 20, 0, 0);
    CU_ASSERT(prog_update(&p, 0, 0));
    prog_start(&p, 10u << 20, 0, 0); /* the sink opened: counts restart */
    CU_ASSERT(prog_update(&p, 65536, 2));
    CU_ASSERT_FALSE(p.have_rate);
    prog_update(&p, 65536 + 104858, 102);
    prog_update(&p, 65536 + 2 * 104858, 202);
    CU_ASSERT(p.have_rate);
    CU_ASSERT(p.rate < 1.8 * 1048576);
}

static void test_fit(void)
{
    struct prog p = {0};
    char line[512];
    prog_start(&p, 2048, 1024, 0);
    prog_server(&p, "fs2");
    for (unsigned w = 20; w <= 300; w += 7) {
        prog_line(&p, "a-very-long-file-name-that-will-not-fit.bin", w, line, sizeof line);
        CU_ASSERT(strlen(line) <= w - 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(line, w >= 40 ? "fs2" : "1.0 KiB"));
    }
    prog_line(&p, "x", 100, line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "x   50% ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "ETA --:--")); /* no rate yet */
    /* unknown total: no bar, no percentage */
    prog_start(&p, 0, 512, 0);
    prog_line(&p, "x", 100, line, sizeof line);
    CU_ASSERT_PTR_NULL(strchr(line, '%'));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "512 B"));
}

static void test_bytes_and_names(void)
{
    char b[16];
    CU_ASSERT_STRING_EQUAL(prog_bytes(0, b, sizeof b), "0 B");
    CU_ASSERT_STRING_EQUAL(prog_bytes(1023, b, sizeof b), "1023 B");
    CU_ASSERT_STRING_EQUAL(prog_bytes(1536, b, sizeof b), "1.5 KiB");
    CU_ASSERT_STRING_EQUAL(prog_bytes(256ull << 20, b, sizeof b), "256.0 MiB");
    CU_ASSERT_STRING_EQUAL(prog_bytes(3ull << 40, b, sizeof b), "3.0 TiB");
    struct prog p = {0};
    prog_server(&p, "fs\033[2J1\r\n");
    CU_ASSERT_STRING_EQUAL(p.server, "fs[2J1");
    /* the server name outlives a restart of the counts (a new leg) */
    prog_start(&p, 10, 0, 0);
    CU_ASSERT_STRING_EQUAL(p.server, "fs[2J1");
}

void suite_prog(void)
{
    CU_pSuite s = CU_add_suite("prog", NULL, NULL);
    CU_add_test(s, "redraw at most every 100 ms", test_redraw_pace);
    CU_add_test(s, "moving-average rate and ETA", test_rate_eta);
    CU_add_test(s, "a first burst is no rate", test_first_sample);
    CU_add_test(s, "fits the terminal width", test_fit);
    CU_add_test(s, "byte counts, server names without controls", test_bytes_and_names);
}
