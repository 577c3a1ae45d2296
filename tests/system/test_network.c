/*
 * network: membership across a real network path. The test makes its own
 * host in a network namespace, joined to this one by a veth pair on
 * 198.18.X.0/30 (the benchmarking range, never routed), runs a file server
 * there and the balancer here, then cuts the link: no RST, no FIN, only
 * silence — the failure loopback cannot show. Needs root and iproute2.
 */
#include "harness.h"

#include "convoy/proc.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IP_BIN "/usr/sbin/ip"

struct link {
    char ns[16];      /* namespace name */
    char here[16];    /* veth end in this namespace */
    char there[16];   /* veth end in the test host */
    char here_ip[20]; /* 198.18.X.1 */
    char there_ip[20];
    bool made;
};

/* Runs `ip ARGS...` (NULL-terminated). 0 when it exits 0. */
static int ip(const char *first, ...)
{
    char *argv[16] = {IP_BIN, (char *)first};
    size_t n = 2;
    va_list ap;
    va_start(ap, first);
    while (n < 15 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = proc_spawn(argv, "/dev/null");
    int status;
    if (pid < 0 || proc_wait(pid, 5000, &status) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void link_free(struct link *l)
{
    if (!l->made)
        return;
    ip("link", "del", l->here, NULL); /* takes its peer with it */
    ip("netns", "del", l->ns, NULL);
    l->made = false;
}

static int link_make(struct link *l)
{
    int id = getpid() % 250;
    snprintf(l->ns, sizeof l->ns, "cvt%d", getpid());
    snprintf(l->here, sizeof l->here, "cvt%da", getpid());
    snprintf(l->there, sizeof l->there, "cvt%db", getpid());
    snprintf(l->here_ip, sizeof l->here_ip, "198.18.%d.1", id);
    snprintf(l->there_ip, sizeof l->there_ip, "198.18.%d.2", id);
    char here_cidr[24], there_cidr[24];
    snprintf(here_cidr, sizeof here_cidr, "%s/30", l->here_ip);
    snprintf(there_cidr, sizeof there_cidr, "%s/30", l->there_ip);
    if (ip("netns", "add", l->ns, NULL) < 0)
        return -1;
    l->made = true;
    if (ip("link", "add", l->here, "type", "veth", "peer", "name", l->there, NULL) < 0 ||
        ip("link", "set", l->there, "netns", l->ns, NULL) < 0 ||
        ip("addr", "add", here_cidr, "dev", l->here, NULL) < 0 ||
        ip("link", "set", l->here, "up", NULL) < 0 ||
        ip("-n", l->ns, "addr", "add", there_cidr, "dev", l->there, NULL) < 0 ||
        ip("-n", l->ns, "link", "set", l->there, "up", NULL) < 0 ||
        ip("-n", l->ns, "link", "set", "lo", "up", NULL) < 0) {
        link_free(l);
        return -1;
    }
    return 0;
}

static void test_partition_and_heal(void)
{
    static const char *const servers[] = {"fs1", NULL};
    struct cluster cl;
    struct link l = {0};
    CU_ASSERT_FATAL(h_cluster_init(&cl, servers) == 0);
    if (link_make(&l) < 0) {
        fprintf(stderr, "network: cannot make a namespace and veth pair (root and iproute2 "
                        "are needed)\n");
        CU_FAIL("network namespace");
        h_cluster_free(&cl);
        return;
    }
    /* The balancer listens on this side of the link. */
    char port[8], http[40];
    snprintf(port, sizeof port, "%s", strrchr(cl.control, ':') + 1);
    snprintf(cl.control, sizeof cl.control, "%.16s:%s", l.here_ip, port);
    snprintf(http, sizeof http, "%s:8080", l.there_ip);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    CU_ASSERT_FATAL(h_fileserver_in(&cl, "fs1", cl.pki, l.ns, http) > 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", 5000) >= 0);

    /* Cut the cable: the server's connection stays open, only silent. */
    CU_ASSERT_EQUAL(ip("link", "set", l.here, "down", NULL), 0);
    long ms = h_wait_state(&cl, "fs1", "down", 500 + 1000);
    CU_ASSERT(ms >= 0);
    CU_ASSERT(h_log_has(&cl, "balancer", "name=fs1 reason=timeout"));

    /* Mend it: the server finds its connection dead and registers again. */
    CU_ASSERT_EQUAL(ip("link", "set", l.here, "up", NULL), 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", 5000) >= 0);
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
    link_free(&l);
}

void suite_network(void)
{
    CU_pSuite s = CU_add_suite("network", NULL, NULL);
    CU_add_test(s, "partition: silent server down, back up when healed", test_partition_and_heal);
}
