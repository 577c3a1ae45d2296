/* log: level names parse both ways and a line is one key=value record. */
#include "convoy/log.h"

#include <CUnit/CUnit.h>
#include <errno.h>
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

/* Captures one line by pointing stderr at a pipe. */
static void test_line_format(void)
{
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    int saved = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    log_info("unit", "event=hello n=%d", 42);
    log_debug("unit", "event=hidden"); /* below the default level */
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    char buf[512] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL(strncmp(buf, "ts=", 3), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " level=info mod=unit event=hello n=42\n"));
    CU_ASSERT_PTR_NULL(strstr(buf, "hidden"));
}

void suite_log(void)
{
    CU_pSuite s = CU_add_suite("log", NULL, NULL);
    CU_add_test(s, "level names", test_level_parse);
    CU_add_test(s, "one key=value line", test_line_format);
}
