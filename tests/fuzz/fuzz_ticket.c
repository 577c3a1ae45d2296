/*
 * fuzz_ticket — libFuzzer target for the ticket decoder and the WELCOME
 * keyring reader.
 *
 * Every input is verified as ticket text against a fixed keyring (key 1,
 * 32 bytes of 0x01, current; key 2, 32 bytes of 0x02, retired at FUZZ_NOW),
 * which must give 0 or one of the enum ticket_err codes, and on 0 fields
 * within their bounds. The seeds are tickets signed with those keys, so
 * the fuzzer starts past the signature check. An input starting with '{'
 * is also read as a WELCOME meta by ticket_keyring_from_json, which must
 * answer 0 or -EINVAL. Finally the input's bytes are cut into the fields
 * of a ticket, signed and verified again: a ticket that signs must verify
 * to the same fields.
 */
#include "convoy/b64.h"
#include "convoy/ticket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW 1800000000ull

static ticket_keyring_t *ring;

static void fuzz_add_key(cJSON *arr, unsigned id, int byte, double valid_until)
{
    uint8_t secret[TICKET_KEY_LEN];
    char text[64];
    memset(secret, byte, sizeof secret);
    b64_encode(secret, sizeof secret, B64_URL, text, sizeof text);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "key", text);
    cJSON_AddNumberToObject(o, "valid_until", valid_until);
    cJSON_AddItemToArray(arr, o);
}

static ticket_keyring_t *fuzz_ring(void)
{
    ticket_keyring_t *kr;
    cJSON *meta = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(meta, TICKET_WELCOME_FIELD);
    fuzz_add_key(arr, 1, 1, 0);
    fuzz_add_key(arr, 2, 2, (double)FUZZ_NOW);
    if (ticket_keyring_new(&kr) != 0 || ticket_keyring_from_json(kr, meta, 0, NULL, 0) != 0)
        abort();
    cJSON_Delete(meta);
    return kr;
}

static void fuzz_verify(const uint8_t *data, size_t size)
{
    struct ticket t;
    char why[256];
    int rc = ticket_verify(ring, (const char *)data, size, FUZZ_NOW, "fs1", "a/b", TICKET_GET, &t,
                           why, sizeof why);
    if (rc != 0 && (rc < TICKET_EMISSING || rc > TICKET_EMETHOD))
        abort();
    if (strnlen(why, sizeof why) == sizeof why)
        abort();
    if (rc == 0 && (strcmp(t.server, "fs1") != 0 || strcmp(t.path, "a/b") != 0 ||
                    strnlen(t.user, sizeof t.user) == sizeof t.user))
        abort();
}

static void fuzz_json(const uint8_t *data, size_t size)
{
    ticket_keyring_t *kr;
    cJSON *meta = cJSON_ParseWithLength((const char *)data, size);
    if (meta == NULL || ticket_keyring_new(&kr) != 0) {
        cJSON_Delete(meta);
        return;
    }
    int rc = ticket_keyring_from_json(kr, meta, FUZZ_NOW, NULL, 0);
    if (rc != 0 && rc != -EINVAL)
        abort();
    ticket_keyring_free(kr);
    cJSON_Delete(meta);
}

/* The next field of the input: a length byte (modulo max + 1), then that
 * many bytes, as far as the input goes. */
static void fuzz_take(const uint8_t **p, size_t *left, char *dst, size_t max)
{
    size_t n = 0;
    if (*left > 0) {
        n = **p % (max + 1);
        (*p)++;
        (*left)--;
    }
    if (n > *left)
        n = *left;
    memcpy(dst, *p, n);
    dst[n] = '\0';
    *p += n;
    *left -= n;
}

static void fuzz_roundtrip(const uint8_t *data, size_t size)
{
    struct ticket t = {0}, back;
    char text[TICKET_TEXT_MAX + 1];
    if (size < 17)
        return;
    memcpy(&t.transfer, data, 8);
    memcpy(&t.expires, data + 8, 8);
    t.method = (data[16] & 1) ? TICKET_HEAD : TICKET_GET;
    const uint8_t *p = data + 17;
    size_t left = size - 17;
    fuzz_take(&p, &left, t.server, TICKET_SERVER_MAX);
    fuzz_take(&p, &left, t.user, TICKET_USER_MAX);
    fuzz_take(&p, &left, t.path, TICKET_PATH_MAX);
    int n = ticket_sign(ring, &t, text, sizeof text);
    if (n == -EINVAL)
        return;
    if (n <= 0 || n > TICKET_TEXT_MAX)
        abort();
    int rc = ticket_verify(ring, text, (size_t)n, 0, t.server, t.path, t.method, &back, NULL, 0);
    if (rc != 0 || (back.transfer != t.transfer || back.expires != t.expires ||
                    strcmp(back.user, t.user) != 0 || back.key_id != 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ring == NULL)
        ring = fuzz_ring();
    fuzz_verify(data, size);
    if (size > 0 && data[0] == '{')
        fuzz_json(data, size);
    fuzz_roundtrip(data, size);
    return 0;
}
