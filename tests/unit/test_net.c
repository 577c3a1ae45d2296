/* net: "HOST:PORT" parsing, what it accepts for listening and for dialling,
 * and what it says about what it refuses. */
#include "convoy/net.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

/* Parses s for use and expects rc; on success the address prints back as
 * want, on failure err contains want. */
static void expect(const char *s, enum net_use use, int rc, const char *want)
{
    struct net_addr a;
    char err[128] = "", back[64];
    int got = net_addr_parse_err(s, use, &a, err, sizeof err);
    CU_ASSERT_EQUAL(got, rc);
    if (got == 0 && rc == 0)
        CU_ASSERT_STRING_EQUAL(net_addr_str(&a, back, sizeof back), want);
    if (got < 0 && rc < 0)
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
}

static void test_accepted(void)
{
    expect("127.0.0.1:7000", NET_DIAL, 0, "127.0.0.1:7000");
    expect("0.0.0.0:65535", NET_LISTEN, 0, "0.0.0.0:65535");
    expect("localhost:1", NET_DIAL, 0, "127.0.0.1:1");
    expect("[::1]:8443", NET_DIAL, 0, "[::1]:8443");
    expect("[fe80::1:2]:80", NET_DIAL, 0, "[fe80::1:2]:80");
    expect("127.0.0.1:0", NET_LISTEN, 0, "127.0.0.1:0"); /* the kernel picks */
    expect("[::]:0", NET_LISTEN, 0, "[::]:0");
    struct net_addr a;
    CU_ASSERT_EQUAL(net_addr_parse("127.0.0.1:0", &a), 0);
    CU_ASSERT_EQUAL(a.ss.ss_family, AF_INET);
    CU_ASSERT_EQUAL(a.len, sizeof(struct sockaddr_in));
}

static void test_ports(void)
{
    expect("127.0.0.1:99999", NET_DIAL, -ERANGE, "port 99999 out of range (1-65535)");
    expect("127.0.0.1:65536", NET_LISTEN, -ERANGE, "port 65536 out of range (0-65535)");
    expect("127.0.0.1:99999999999999999999999", NET_LISTEN, -ERANGE, "out of range");
    expect("127.0.0.1:0", NET_DIAL, -ERANGE, "port 0 cannot be dialled");
    expect("[::1]:0", NET_DIAL, -ERANGE, "port 0 cannot be dialled");
    expect("127.0.0.1:", NET_LISTEN, -EINVAL, "the port is missing");
    expect("127.0.0.1:http", NET_DIAL, -EINVAL, "port 'http' is not a number");
    expect("127.0.0.1:-1", NET_DIAL, -EINVAL, "is not a number");
    expect("127.0.0.1:+80", NET_DIAL, -EINVAL, "is not a number");
    expect("127.0.0.1: 80", NET_DIAL, -EINVAL, "is not a number");
    expect("127.0.0.1:80 ", NET_DIAL, -EINVAL, "is not a number");
}

static void test_hosts(void)
{
    expect("127.0.0.1", NET_DIAL, -EINVAL, "expected HOST:PORT");
    expect("", NET_DIAL, -EINVAL, "expected HOST:PORT");
    expect(":80", NET_DIAL, -EINVAL, "the host is missing");
    expect("example.com:80", NET_DIAL, -EINVAL, "'example.com' is not a numeric IPv4 address");
    expect("256.0.0.1:80", NET_DIAL, -EINVAL, "is not a numeric IPv4 address");
    expect("::1:80", NET_DIAL, -EINVAL, "in brackets");
    expect("[::1]", NET_DIAL, -EINVAL, "expected [IPv6]:PORT");
    expect("[::1:80", NET_DIAL, -EINVAL, "expected [IPv6]:PORT");
    expect("[]:80", NET_DIAL, -EINVAL, "the host is missing");
    expect("[127.0.0.1]:80", NET_DIAL, -EINVAL, "is not an IPv6 address");
    char longhost[300];
    memset(longhost, '1', sizeof longhost);
    memcpy(longhost + sizeof longhost - 4, ":80", 4);
    expect(longhost, NET_DIAL, -EINVAL, "host too long");
    /* No err buffer: the code alone. */
    struct net_addr a;
    CU_ASSERT_EQUAL(net_addr_parse_err("nonsense", NET_DIAL, &a, NULL, 0), -EINVAL);
    CU_ASSERT_EQUAL(net_addr_parse("1.2.3.4:70000", &a), -ERANGE);
}

void suite_net(void)
{
    CU_pSuite s = CU_add_suite("net", NULL, NULL);
    CU_add_test(s, "accepted addresses", test_accepted);
    CU_add_test(s, "ports: range, 0, digits only", test_ports);
    CU_add_test(s, "hosts: form, family, length", test_hosts);
}
