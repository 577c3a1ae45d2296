/* text: copies and numbers cut where the buffer ends, always terminated. */
#include "convoy/text.h"

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <string.h>

static void test_copy(void)
{
    char b[8];
    CU_ASSERT_EQUAL(text_copy(b, sizeof b, "convoy"), 6);
    CU_ASSERT_STRING_EQUAL(b, "convoy");
    CU_ASSERT_EQUAL(text_copy(b, sizeof b, "balancers"), 7); /* cut, terminated */
    CU_ASSERT_STRING_EQUAL(b, "balance");
    CU_ASSERT_EQUAL(text_copy(b, sizeof b, NULL), 0);
    CU_ASSERT_STRING_EQUAL(b, "");
    CU_ASSERT_EQUAL(text_copy(b, 1, "x"), 0);
    CU_ASSERT_STRING_EQUAL(b, "");
}

static void test_cat(void)
{
    char b[40];
    size_t n = 0; /* b is not terminated yet: the first append starts it */
    memset(b, 'x', sizeof b);
    text_cat(b, sizeof b, &n, "active=");
    text_cat_u64(b, sizeof b, &n, 0);
    text_cat(b, sizeof b, &n, " max=");
    text_cat_u64(b, sizeof b, &n, UINT64_MAX);
    CU_ASSERT_STRING_EQUAL(b, "active=0 max=18446744073709551615");
    CU_ASSERT_EQUAL(n, strlen(b));
    char s[10];
    n = 0;
    text_cat(s, sizeof s, &n, "w=");
    text_cat_u64(s, sizeof s, &n, 1234567890); /* cut at the end of s */
    CU_ASSERT_STRING_EQUAL(s, "w=1234567");
    CU_ASSERT_EQUAL(n, 9);
    text_cat(s, sizeof s, &n, "more"); /* full: stays as it is */
    CU_ASSERT_STRING_EQUAL(s, "w=1234567");
}

void suite_text(void)
{
    CU_pSuite s = CU_add_suite("text", NULL, NULL);
    CU_add_test(s, "copies cut at the end, always terminated", test_copy);
    CU_add_test(s, "strings and numbers appended, cut at the end", test_cat);
}
