/*
 * catalog: the balancer's index, loaded the way CATALOG messages arrive
 * (bodies in pieces): lookups by path and by version, a full catalog
 * replacing what a server had, deltas, drops, and the session rules that
 * keep an old connection from touching its successor's entries.
 */
#include "convoy/catalog.h"

#include "convoy/frame.h"
#include "convoy/log.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <string.h>

static catalog_t *cat;

static struct fscat_entry ent(const char *path, uint64_t size, bool gone)
{
    struct fscat_entry e = {.path = path, .size = size, .mtime_ns = 1000, .gone = gone};
    snprintf(e.etag, sizeof e.etag, "\"%llx-3e8\"", (unsigned long long)size);
    return e;
}

/* Loads n entries as one message from name in session; returns the last
 * call's result (why gets its reason). */
static int load(const char *name, uint64_t session, bool full, const struct fscat_entry *e,
                size_t n, char *why)
{
    struct fscat_body b = {0};
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(fscat_body_add(&b, &e[i]) == 0);
    cJSON *meta = fscat_meta_json(full, n);
    catalog_load_t *l;
    int rc = catalog_load_begin(cat, name, session, meta, &l, why, 256);
    cJSON_Delete(meta);
    for (size_t off = 0; rc == 0 && off < b.len; off += 10)
        rc = catalog_load_feed(l, (const uint8_t *)b.data + off,
                               b.len - off < 10 ? b.len - off : 10, why, 256);
    if (rc == 0)
        rc = catalog_load_end(l, why, 256);
    fscat_body_free(&b);
    return rc;
}

static int setup(void)
{
    log_set_level(LOG_WARN);
    return catalog_new(&cat);
}

static int teardown(void)
{
    catalog_free(cat);
    cat = NULL;
    log_set_level(LOG_INFO);
    return 0;
}

static size_t holders(const char *path, const struct catalog_version *v, char *names)
{
    struct catalog_hit hits[4];
    size_t n = catalog_lookup(cat, path, v, hits, 4);
    names[0] = '\0';
    for (size_t i = 0; i < n && i < 4; i++)
        strcat(strcat(names, i ? "," : ""), hits[i].server);
    return n;
}

static void test_lookup_and_versions(void)
{
    char why[256], names[64];
    struct fscat_entry one[] = {ent("a", 10, false), ent("b/c", 20, false)};
    struct fscat_entry two[] = {ent("a", 10, false), ent("b/c", 21, false)};
    CU_ASSERT_FATAL(setup() == 0);
    CU_ASSERT_EQUAL(load("fs1", 1, true, one, 2, why), 0);
    CU_ASSERT_EQUAL(load("fs2", 2, true, two, 2, why), 0);
    CU_ASSERT_EQUAL(catalog_total(cat), 4);
    CU_ASSERT_EQUAL(holders("a", NULL, names), 2);
    CU_ASSERT_EQUAL(holders("nope", NULL, names), 0);
    struct catalog_hit h;
    CU_ASSERT_EQUAL(catalog_lookup(cat, "b/c", NULL, &h, 1), 2); /* room for one, two hold it */
    struct catalog_version v = {21, two[1].etag};
    CU_ASSERT_EQUAL(holders("b/c", &v, names), 1);
    CU_ASSERT_STRING_EQUAL(names, "fs2");
    v.size = 20; /* the size of fs1's, the ETag of fs2's: nobody */
    CU_ASSERT_EQUAL(holders("b/c", &v, names), 0);
    CU_ASSERT_EQUAL(catalog_lookup(cat, "b/c", &(struct catalog_version){20, one[1].etag}, &h, 1),
                    1);
    CU_ASSERT_STRING_EQUAL(h.server, "fs1");
    CU_ASSERT_EQUAL(h.size, 20);
    CU_ASSERT_STRING_EQUAL(h.etag, one[1].etag);
    CU_ASSERT(catalog_memory(cat) > 0);
    teardown();
}

static void test_full_replaces_delta_changes(void)
{
    char why[256], names[64];
    struct fscat_entry first[] = {ent("a", 1, false), ent("b", 2, false), ent("c", 3, false)};
    struct fscat_entry delta[] = {ent("a", 0, true), ent("b", 5, false), ent("d", 4, false)};
    struct fscat_entry again[] = {ent("z", 9, false)};
    CU_ASSERT_FATAL(setup() == 0);
    CU_ASSERT_EQUAL(load("fs1", 1, true, first, 3, why), 0);
    CU_ASSERT_EQUAL(load("fs1", 1, false, delta, 3, why), 0);
    CU_ASSERT_EQUAL(catalog_files(cat, "fs1"), 3); /* b, c, d */
    CU_ASSERT_EQUAL(holders("a", NULL, names), 0);
    struct catalog_hit h;
    CU_ASSERT_EQUAL(catalog_lookup(cat, "b", NULL, &h, 1), 1);
    CU_ASSERT_EQUAL(h.size, 5);
    CU_ASSERT_EQUAL(load("fs1", 3, true, again, 1, why), 0); /* back with a new session */
    CU_ASSERT_EQUAL(catalog_files(cat, "fs1"), 1);
    CU_ASSERT_EQUAL(holders("b", NULL, names), 0);
    CU_ASSERT_EQUAL(load("fs1", 3, true, NULL, 0, why), 0); /* a full one of nothing */
    CU_ASSERT_EQUAL(catalog_files(cat, "fs1"), 0);
    teardown();
}

static void test_sessions_and_drop(void)
{
    char why[256], names[64];
    struct fscat_entry now[] = {ent("new", 1, false)};
    struct fscat_entry old[] = {ent("old", 1, false)};
    CU_ASSERT_FATAL(setup() == 0);
    CU_ASSERT_EQUAL(load("fs1", 5, true, now, 1, why), 0);
    CU_ASSERT_EQUAL(load("fs1", 4, true, old, 1, why), 0); /* an older session: ignored */
    CU_ASSERT_EQUAL(holders("old", NULL, names), 0);
    CU_ASSERT_EQUAL(load("fs1", 4, false, old, 1, why), 0); /* a delta from another: ignored */
    CU_ASSERT_EQUAL(holders("old", NULL, names), 0);
    CU_ASSERT_EQUAL(load("fs2", 6, false, old, 1, why), 0); /* a delta before any full one */
    CU_ASSERT_EQUAL(catalog_files(cat, "fs2"), 0);
    catalog_drop(cat, "fs1", 4); /* the old session's close */
    CU_ASSERT_EQUAL(holders("new", NULL, names), 1);
    catalog_drop(cat, "fs1", 5);
    CU_ASSERT_EQUAL(holders("new", NULL, names), 0);
    CU_ASSERT_EQUAL(catalog_total(cat), 0);
    teardown();
}

static void test_bad_bodies_refused(void)
{
    char why[256];
    CU_ASSERT_FATAL(setup() == 0);
    cJSON *meta = fscat_meta_json(true, 2);
    catalog_load_t *l;
    CU_ASSERT_FATAL(catalog_load_begin(cat, "fs1", 1, meta, &l, why, sizeof why) == 0);
    const char *body =
        "{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"1-1\\\"\"}\n"
        "{\"path\":\"/etc/passwd\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"1-1\\\"\"}\n";
    CU_ASSERT_EQUAL(catalog_load_feed(l, (const uint8_t *)body, strlen(body), why, sizeof why),
                    FRAME_ESCHEMA);
    CU_ASSERT(strncmp(why, "line 2: path", 12) == 0);
    CU_ASSERT_EQUAL(catalog_files(cat, "fs1"), 0); /* nothing of it applied */
    cJSON_Delete(meta);
    meta = cJSON_Parse("{\"full\":true}");
    CU_ASSERT_EQUAL(catalog_load_begin(cat, "fs1", 1, meta, &l, why, sizeof why), FRAME_ESCHEMA);
    cJSON_Delete(meta);
    meta = fscat_meta_json(true, 3);
    CU_ASSERT_FATAL(catalog_load_begin(cat, "fs1", 1, meta, &l, why, sizeof why) == 0);
    CU_ASSERT_EQUAL(catalog_load_end(l, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "0 entries, 3 announced");
    cJSON_Delete(meta);
    teardown();
}

void suite_catalog(void)
{
    CU_pSuite s = CU_add_suite("catalog", NULL, NULL);
    CU_add_test(s, "lookups by path and by version", test_lookup_and_versions);
    CU_add_test(s, "a full catalog replaces, a delta changes", test_full_replaces_delta_changes);
    CU_add_test(s, "sessions: old ones change nothing; drop", test_sessions_and_drop);
    CU_add_test(s, "bad bodies refused with the line, nothing applied", test_bad_bodies_refused);
}
