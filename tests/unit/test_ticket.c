/*
 * ticket: a ticket the balancer signs opens exactly its file on exactly its
 * server, for its method, until it expires; any changed, missing or extra
 * byte is refused; a restart's new key leaves the previous key's tickets
 * valid for their lifetime and no longer; another balancer's tickets are
 * worth nothing; the keyring crosses WELCOME intact and is read strictly.
 * Also strict base64 (b64.h), which tickets are made of, and the prepared
 * HMAC (hmac.h) that signs them: RFC 4231's answer on every call, from
 * threads sharing one key; and lowercase hex (hex.h) for digests.
 */
#include "convoy/b64.h"
#include "convoy/hex.h"
#include "convoy/hmac.h"
#include "convoy/ticket.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOW 1800000000ull /* a fixed unix time: tests do not read the clock */
#define TTL 60

static ticket_keyring_t *new_ring(const struct ticket_keyset *prev, uint64_t now)
{
    ticket_keyring_t *kr = NULL;
    CU_ASSERT_FATAL(ticket_keyring_new(&kr) == 0);
    CU_ASSERT_FATAL(ticket_keyring_rotate(kr, prev, now, TTL) == 0);
    return kr;
}

static struct ticket sample(void)
{
    struct ticket t = {.transfer = 42, .expires = NOW + TTL, .method = TICKET_GET};
    snprintf(t.server, sizeof t.server, "fs2");
    snprintf(t.user, sizeof t.user, "alice");
    snprintf(t.path, sizeof t.path, "data/big file.bin");
    return t;
}

static int sign(ticket_keyring_t *kr, char *out)
{
    struct ticket t = sample();
    return ticket_sign(kr, &t, out, TICKET_TEXT_MAX + 1);
}

static int check(ticket_keyring_t *kr, const char *text, size_t len, uint64_t now)
{
    return ticket_verify(kr, text, len, now, "fs2", "data/big file.bin", TICKET_GET, NULL, NULL, 0);
}

static void test_valid(void)
{
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 1], why[256];
    struct ticket out;
    int n = sign(kr, text);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL((size_t)n, strlen(text));
    CU_ASSERT_EQUAL(
        strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        (size_t)n); /* fits a URL query unescaped */
    CU_ASSERT_EQUAL(ticket_verify(kr, text, (size_t)n, NOW, "fs2", "data/big file.bin", TICKET_GET,
                                  &out, why, sizeof why),
                    0);
    CU_ASSERT_EQUAL(out.transfer, 42);
    CU_ASSERT_EQUAL(out.expires, NOW + TTL);
    CU_ASSERT_STRING_EQUAL(out.user, "alice");
    CU_ASSERT_STRING_EQUAL(out.server, "fs2");
    CU_ASSERT_EQUAL(check(kr, text, (size_t)n, NOW + TTL), 0); /* the last second */
    ticket_keyring_free(kr);
}

/* Every byte changed to each other base64url character is refused. */
static void test_tampered(void)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 1];
    int n = sign(kr, text), accepted = 0;
    for (int i = 0; i < n; i++) {
        char keep = text[i];
        for (const char *c = alpha; *c; c++) {
            if (*c == keep)
                continue;
            text[i] = *c;
            int rc = check(kr, text, (size_t)n, NOW);
            accepted += rc == 0;
            if (rc == 0)
                fprintf(stderr, "ticket: byte %d changed to '%c' accepted\n", i, *c);
        }
        text[i] = keep;
    }
    CU_ASSERT_EQUAL(accepted, 0);
    text[n - 1] ^= 0x20; /* a character outside the alphabet's case */
    CU_ASSERT_NOT_EQUAL(check(kr, text, (size_t)n, NOW), 0);
    ticket_keyring_free(kr);
}

/* Every prefix, and the ticket with a byte more, is malformed. */
static void test_truncated(void)
{
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 2];
    int n = sign(kr, text), bad = 0;
    CU_ASSERT_EQUAL(check(kr, text, 0, NOW), TICKET_EMISSING);
    CU_ASSERT_EQUAL(check(kr, NULL, 0, NOW), TICKET_EMISSING);
    for (int len = 1; len < n; len++) {
        int rc = check(kr, text, (size_t)len, NOW);
        bad += rc != TICKET_EMALFORMED && rc != TICKET_ESIG;
    }
    CU_ASSERT_EQUAL(bad, 0);
    text[n] = 'A';
    CU_ASSERT_NOT_EQUAL(check(kr, text, (size_t)n + 1, NOW), 0);
    ticket_keyring_free(kr);
}

static void test_claims(void)
{
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 1], why[256];
    size_t n = (size_t)sign(kr, text);
    CU_ASSERT_EQUAL(ticket_verify(kr, text, n, NOW + TTL + 1, "fs2", "data/big file.bin",
                                  TICKET_GET, NULL, why, sizeof why),
                    TICKET_EEXPIRED);
    CU_ASSERT_STRING_EQUAL(why, "expired 1 s ago");
    CU_ASSERT_EQUAL(ticket_verify(kr, text, n, NOW, "fs1", "data/big file.bin", TICKET_GET, NULL,
                                  why, sizeof why),
                    TICKET_ESERVER);
    CU_ASSERT_STRING_EQUAL(why, "ticket is for server 'fs2'");
    CU_ASSERT_EQUAL(
        ticket_verify(kr, text, n, NOW, "fs2", "data/other.bin", TICKET_GET, NULL, why, sizeof why),
        TICKET_EPATH);
    CU_ASSERT_EQUAL(ticket_verify(kr, text, n, NOW, "fs2", "data/big file.bin", TICKET_HEAD, NULL,
                                  why, sizeof why),
                    TICKET_EMETHOD);
    CU_ASSERT_STRING_EQUAL(ticket_strerror(TICKET_EMETHOD), "ticket for another method");
    CU_ASSERT_STRING_EQUAL(ticket_strerror(TICKET_EEXPIRED), "expired ticket");
    CU_ASSERT_STRING_EQUAL(ticket_strerror(-1), "unknown ticket error");
    ticket_keyring_free(kr);
}

/* A restart: the old key verifies for TTL after it, then is retired; the
 * new key signs. */
static void test_rotation(void)
{
    ticket_keyring_t *first = new_ring(NULL, NOW - 10);
    struct ticket_keyset saved, after;
    char old[TICKET_TEXT_MAX + 1], fresh[TICKET_TEXT_MAX + 1];
    size_t n = (size_t)sign(first, old);
    ticket_keyring_save(first, &saved);
    CU_ASSERT_EQUAL(saved.n, 1);
    CU_ASSERT_EQUAL(saved.key[0].valid_until, 0);

    ticket_keyring_t *second = new_ring(&saved, NOW);
    ticket_keyring_save(second, &after);
    CU_ASSERT_EQUAL(after.n, 2);
    CU_ASSERT_EQUAL(after.key[0].valid_until, 0);
    CU_ASSERT_NOT_EQUAL(after.key[0].id, saved.key[0].id);
    CU_ASSERT_EQUAL(after.key[1].id, saved.key[0].id);
    CU_ASSERT_EQUAL(after.key[1].valid_until, NOW + TTL);
    CU_ASSERT_EQUAL(check(second, old, n, NOW + 30), 0); /* within its lifetime */
    size_t m = (size_t)sign(second, fresh);
    CU_ASSERT_NOT_EQUAL(strcmp(old, fresh), 0);
    CU_ASSERT_EQUAL(check(second, fresh, m, NOW + 30), 0);
    CU_ASSERT_EQUAL(check(first, fresh, m, NOW + 30), TICKET_EKEY); /* an old file server */

    /* A ticket of the old key made out to live longer than its key. */
    struct ticket t = sample();
    t.expires = NOW + 10 * TTL;
    char lasting[TICKET_TEXT_MAX + 1];
    size_t l = (size_t)ticket_sign(first, &t, lasting, sizeof lasting);
    CU_ASSERT_EQUAL(check(second, lasting, l, NOW + TTL), 0);
    CU_ASSERT_EQUAL(check(second, lasting, l, NOW + TTL + 1), TICKET_ERETIRED);

    /* Restarts in a row keep at most TICKET_KEYS_MAX keys, dropping the
     * retired ones past their time. */
    ticket_keyring_t *third = new_ring(&after, NOW + 1);
    struct ticket_keyset k3;
    ticket_keyring_save(third, &k3);
    CU_ASSERT_EQUAL(k3.n, 3);
    ticket_keyring_t *late = new_ring(&k3, NOW + 10 * TTL);
    struct ticket_keyset k4;
    ticket_keyring_save(late, &k4);
    CU_ASSERT_EQUAL(k4.n, 2); /* the new key and third's, retired now */
    CU_ASSERT_EQUAL(k4.key[1].id, k3.key[0].id);
    ticket_keyring_free(late);
    ticket_keyring_free(third);
    ticket_keyring_free(second);
    ticket_keyring_free(first);
}

/* A keyring holding one current key, id and secret given, made the way a
 * file server makes its own: from WELCOME's JSON. */
static ticket_keyring_t *ring_with(uint32_t id, const uint8_t *secret)
{
    ticket_keyring_t *kr = NULL;
    char key[64];
    cJSON *meta = cJSON_CreateObject(), *o = cJSON_CreateObject();
    b64_encode(secret, TICKET_KEY_LEN, B64_URL, key, sizeof key);
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddNumberToObject(o, "valid_until", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(meta, TICKET_WELCOME_FIELD), o);
    CU_ASSERT_FATAL(ticket_keyring_new(&kr) == 0);
    CU_ASSERT_EQUAL(ticket_keyring_from_json(kr, meta, NOW, NULL, 0), 0);
    cJSON_Delete(meta);
    return kr;
}

static void test_foreign_and_unknown(void)
{
    ticket_keyring_t *ours = new_ring(NULL, NOW), *theirs = new_ring(NULL, NOW), *empty = NULL;
    struct ticket_keyset a, b;
    char text[TICKET_TEXT_MAX + 1];
    CU_ASSERT_FATAL(ticket_keyring_new(&empty) == 0);
    size_t n = (size_t)sign(theirs, text);
    CU_ASSERT_EQUAL(check(ours, text, n, NOW), TICKET_EKEY);
    CU_ASSERT_EQUAL(check(empty, text, n, NOW), TICKET_EKEY);
    CU_ASSERT_EQUAL(sign(empty, text), -ENOKEY);
    /* Another balancer whose key happens to have our key's id. */
    ticket_keyring_save(ours, &a);
    ticket_keyring_save(theirs, &b);
    ticket_keyring_t *clash = ring_with(a.key[0].id, b.key[0].secret);
    n = (size_t)sign(clash, text);
    CU_ASSERT_EQUAL(check(ours, text, n, NOW), TICKET_ESIG);
    ticket_keyring_free(clash);
    ticket_keyring_free(theirs);
    ticket_keyring_free(empty);
    ticket_keyring_free(ours);
}

static void test_sign_bounds(void)
{
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 1];
    struct ticket t = sample();
    memset(t.path, 'p', TICKET_PATH_MAX);
    t.path[TICKET_PATH_MAX] = '\0';
    memset(t.server, 's', TICKET_SERVER_MAX);
    memset(t.user, 'u', TICKET_USER_MAX);
    int n = ticket_sign(kr, &t, text, sizeof text);
    CU_ASSERT(n > 0 && n <= TICKET_TEXT_MAX); /* the longest ticket fits */
    CU_ASSERT_EQUAL(
        ticket_verify(kr, text, (size_t)n, NOW, t.server, t.path, TICKET_GET, NULL, NULL, 0), 0);
    CU_ASSERT_EQUAL(ticket_sign(kr, &t, text, 10), -ENOSPC);
    t.user[0] = '\0';
    CU_ASSERT_EQUAL(ticket_sign(kr, &t, text, sizeof text), -EINVAL);
    t = sample();
    t.method = 7;
    CU_ASSERT_EQUAL(ticket_sign(kr, &t, text, sizeof text), -EINVAL);
    char huge[TICKET_TEXT_MAX + 8];
    memset(huge, 'A', sizeof huge);
    CU_ASSERT_EQUAL(check(kr, huge, sizeof huge, NOW), TICKET_EMALFORMED);
    ticket_keyring_free(kr);
}

/* The keyring through WELCOME: what the balancer adds, a file server reads
 * back to the same keys; anything off the schema is refused. */
static void test_json(void)
{
    ticket_keyring_t *bal = new_ring(NULL, NOW - 5), *fs = NULL;
    struct ticket_keyset prev, a, b;
    ticket_keyring_save(bal, &prev);
    ticket_keyring_free(bal);
    bal = new_ring(&prev, NOW);
    CU_ASSERT_FATAL(ticket_keyring_new(&fs) == 0);
    cJSON *meta = cJSON_CreateObject();
    CU_ASSERT_EQUAL_FATAL(ticket_keyring_to_json(bal, meta), 0);
    char *wire = cJSON_PrintUnformatted(meta);
    cJSON *back = cJSON_Parse(wire);
    CU_ASSERT_EQUAL(ticket_keyring_from_json(fs, back, NOW, NULL, 0), 0);
    ticket_keyring_save(bal, &a);
    ticket_keyring_save(fs, &b);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    char text[TICKET_TEXT_MAX + 1];
    size_t n = (size_t)sign(bal, text);
    CU_ASSERT_EQUAL(check(fs, text, n, NOW), 0);

    static const char *const bad[] = {
        "{}",
        "{\"ticket_keys\": {}}",
        "{\"ticket_keys\": []}",
        "{\"ticket_keys\": [{\"id\": 1, \"key\": \"AAAA\", \"valid_until\": 0}]}",
        "{\"ticket_keys\": [{\"id\": 0, \"key\": \"" /* id 0 */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": 0}]}",
        "{\"ticket_keys\": [{\"id\": 1, \"key\": \""
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": 0, \"x\": 1}]}",
        "{\"ticket_keys\": [{\"id\": 4294967296, \"key\": \""
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": 0}]}",
        "{\"ticket_keys\": [{\"id\": 1, \"key\": \""
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": 0},"
        "{\"id\": 1, \"key\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": "
        "9}]}",
        "{\"ticket_keys\": [{\"id\": 1, \"key\": \""
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": 0},"
        "{\"id\": 2, \"key\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"valid_until\": "
        "0}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *m = cJSON_Parse(bad[i]);
        char why[256] = "";
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        int rc = ticket_keyring_from_json(fs, m, NOW, why, sizeof why);
        CU_ASSERT_EQUAL(rc, -EINVAL);
        if (rc != -EINVAL)
            fprintf(stderr, "ticket: accepted %s\n", bad[i]);
        CU_ASSERT(why[0] != '\0');
        cJSON_Delete(m);
    }
    ticket_keyring_save(fs, &b); /* refusals left the keys as they were */
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    struct ticket_keyset junk = a;
    junk.n = TICKET_KEYS_MAX + 1;
    CU_ASSERT_EQUAL(ticket_keyring_rotate(fs, &junk, NOW, TTL), -EINVAL);
    free(wire);
    cJSON_Delete(back);
    cJSON_Delete(meta);
    ticket_keyring_free(fs);
    ticket_keyring_free(bal);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Cost of one sign and one verify (printed: docs/security.md has it). */
static void test_speed(void)
{
    ticket_keyring_t *kr = new_ring(NULL, NOW);
    char text[TICKET_TEXT_MAX + 1];
    int n = 0, ok = 0;
    double t0 = now_s();
    for (int i = 0; i < 20000; i++)
        n = sign(kr, text);
    double t1 = now_s();
    for (int i = 0; i < 20000; i++)
        ok += check(kr, text, (size_t)n, NOW) == 0;
    double t2 = now_s();
    CU_ASSERT_EQUAL(ok, 20000);
    printf("\n    ticket: sign %.2f us, verify %.2f us, %d characters\n", (t1 - t0) / 20000 * 1e6,
           (t2 - t1) / 20000 * 1e6, n);
    ticket_keyring_free(kr);
}

static void test_b64(void)
{
    uint8_t buf[8];
    char out[16];
    CU_ASSERT_EQUAL(b64_encode("ab", 2, B64_STD, out, sizeof out), 4);
    CU_ASSERT_STRING_EQUAL(out, "YWI=");
    CU_ASSERT_EQUAL(b64_encode("ab", 2, B64_URL, out, sizeof out), 3);
    CU_ASSERT_STRING_EQUAL(out, "YWI");
    CU_ASSERT_EQUAL(b64_decode("YWI=", 4, B64_STD, buf, sizeof buf), 2);
    CU_ASSERT_EQUAL(b64_decode("YWI", 3, B64_URL, buf, sizeof buf), 2);
    CU_ASSERT_EQUAL(memcmp(buf, "ab", 2), 0);
    CU_ASSERT_EQUAL(b64_decode("YWJ=", 4, B64_STD, buf, sizeof buf), -EINVAL); /* spare bits */
    CU_ASSERT_EQUAL(b64_decode("YWI", 3, B64_STD, buf, sizeof buf), -EINVAL);  /* unpadded */
    CU_ASSERT_EQUAL(b64_decode("YW I=", 5, B64_STD, buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(b64_decode("Y", 1, B64_URL, buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(b64_decode("+/", 2, B64_URL, buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(b64_decode("YWJj", 4, B64_URL, buf, 2), -ENOSPC);
    CU_ASSERT_EQUAL(b64_encode("abc", 3, B64_URL, out, 4), -ENOSPC);
}

/* RFC 4231, test case 2. */
static const uint8_t rfc_key[] = "Jefe";
static const char rfc_data[] = "what do ya want for nothing?";
static const uint8_t rfc_mac[HMAC_LEN] = {
    0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
    0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};

#define HMAC_THREADS 4
#define HMAC_ROUNDS  2000

/* Counts the MACs that came out wrong: each must start from the keyed
 * state, whatever the other threads do with the same key. */
static void *hmac_worker(void *arg)
{
    hmac_key_t *k = arg;
    uintptr_t wrong = 0;
    for (int i = 0; i < HMAC_ROUNDS; i++) {
        uint8_t mac[HMAC_LEN];
        wrong += hmac_sha256(k, rfc_data, sizeof rfc_data - 1, mac) != 0 ||
                 memcmp(mac, rfc_mac, sizeof mac) != 0;
    }
    return (void *)wrong;
}

static void test_hmac(void)
{
    hmac_key_t *k = NULL;
    uint8_t mac[HMAC_LEN];
    CU_ASSERT_EQUAL(hmac_key_new(rfc_key, 0, &k), -EINVAL);
    CU_ASSERT_FATAL(hmac_key_new(rfc_key, sizeof rfc_key - 1, &k) == 0);
    for (int i = 0; i < 3; i++) { /* the key is not used up by a MAC */
        CU_ASSERT_EQUAL(hmac_sha256(k, rfc_data, sizeof rfc_data - 1, mac), 0);
        CU_ASSERT_EQUAL(memcmp(mac, rfc_mac, sizeof mac), 0);
    }
    CU_ASSERT_EQUAL(hmac_sha256(k, rfc_data, sizeof rfc_data - 2, mac), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(mac, rfc_mac, sizeof mac), 0);
    pthread_t t[HMAC_THREADS];
    for (int i = 0; i < HMAC_THREADS; i++)
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, hmac_worker, k) == 0);
    for (int i = 0; i < HMAC_THREADS; i++) {
        void *wrong = NULL;
        pthread_join(t[i], &wrong);
        CU_ASSERT_EQUAL((uintptr_t)wrong, 0);
    }
    hmac_key_free(k);
    hmac_key_free(NULL);
}

static void test_hex(void)
{
    static const uint8_t in[] = {0x00, 0x01, 0x9a, 0xf0, 0xff};
    char out[2 * sizeof in + 1];
    memset(out, 'x', sizeof out);
    CU_ASSERT_PTR_EQUAL(hex_encode(in, sizeof in, out), out);
    CU_ASSERT_STRING_EQUAL(out, "00019af0ff");
    CU_ASSERT_STRING_EQUAL(hex_encode(in, 0, out), "");
}

void suite_ticket(void)
{
    CU_pSuite s = CU_add_suite("ticket", NULL, NULL);
    CU_add_test(s, "valid ticket opens its file", test_valid);
    CU_add_test(s, "every tampered byte refused", test_tampered);
    CU_add_test(s, "truncated at every byte refused", test_truncated);
    CU_add_test(s, "expired, other server, path, method", test_claims);
    CU_add_test(s, "old key within and past its lifetime", test_rotation);
    CU_add_test(s, "another balancer's key, unknown key", test_foreign_and_unknown);
    CU_add_test(s, "longest fields fit, bad fields refused", test_sign_bounds);
    CU_add_test(s, "keyring through WELCOME, strictly", test_json);
    CU_add_test(s, "sign and verify cost", test_speed);
    CU_add_test(s, "strict base64", test_b64);
    CU_add_test(s, "prepared HMAC, shared by threads", test_hmac);
    CU_add_test(s, "lowercase hex", test_hex);
}
