/*
 * convoy pki — make the cluster CA and issue certificates from it.
 *
 * A thin shell over pki_init() and pki_issue(): it parses options, lets the
 * library do the work and prints what was written. Exit status 0 on
 * success, 1 when the work failed, 2 on a usage error.
 */
#include "cli.h"
#include "convoy/pki.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PKI_ERRLEN 512

static const char usage_init[] = "convoy pki init --dir DIR";
static const char usage_issue[] =
    "convoy pki issue NAME --role ROLE --dir DIR [--ip ADDR]... [--dns HOST]...";

static const char help_init[] =
    "\nCreates DIR (mode 0700) if missing and a new cluster CA in it:\n"
    "DIR/ca.crt (share with every node) and DIR/ca.key (mode 0600; keep it on\n"
    "the machine that issues certificates). Refuses to replace an existing\n"
    "ca.key.\n\n"
    "  -d, --dir DIR   the PKI directory\n"
    "  -h, --help      this text\n";

static const char help_issue[] =
    "\nIssues NAME's certificate and key from the CA in DIR: DIR/NAME.crt and\n"
    "DIR/NAME.key (mode 0600). NAME (1-63 of A-Z a-z 0-9 . _ -) becomes the\n"
    "certificate's common name, which is the node's identity on control edges,\n"
    "and a DNS subject alternative name. ROLE is what the node may act as, and\n"
    "every edge checks it: balancer, fileserver, frontend or compute (required).\n"
    "Issuing an existing NAME again replaces its certificate and key (rotation).\n\n"
    "  -r, --role ROLE  balancer, fileserver, frontend or compute\n"
    "  -d, --dir DIR    the PKI directory made by `convoy pki init`\n"
    "  -i, --ip ADDR    add an IPv4 or IPv6 subject alternative name (repeatable)\n"
    "  -n, --dns HOST   add a DNS subject alternative name (repeatable)\n"
    "  -h, --help       this text\n";

static void usage(FILE *out)
{
    fprintf(out, "usage: %s\n       %s\n       convoy pki <init|issue> --help\n", usage_init,
            usage_issue);
}

static int usage_error(const char *synopsis, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "convoy pki: <what is wrong>" and the command's usage line on stderr; exit 2. */
static int usage_error(const char *synopsis, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "convoy pki: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nusage: %s\n", synopsis);
    va_end(ap);
    return 2;
}

static int run_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    char err[PKI_ERRLEN];
    int c;
    optind = 0; /* glibc: full re-initialisation for this argv */
    while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'h':
            printf("usage: %s\n%s", usage_init, help_init);
            return 0;
        case ':':
            return usage_error(usage_init, "%s needs an argument", argv[optind - 1]);
        default:
            return usage_error(usage_init, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error(usage_init, "unexpected argument '%s'", argv[optind]);
    if (dir == NULL)
        return usage_error(usage_init, "--dir is required");
    if (pki_init(dir, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s\n", err); /* err reads "pki: ..." */
        return 1;
    }
    printf("wrote %s/ca.crt %s/ca.key\n", dir, dir);
    return 0;
}

/* The repeatable options of `issue`; each list holds at most argc entries. */
struct issue_args {
    const char *dir;
    const char *name;
    const char *role;
    const char **ips;
    size_t nips;
    const char **dns;
    size_t ndns;
};

/* Returns -1 when parsing is done and the command should run, else the
 * exit status (help printed, or a usage error). */
static int parse_issue(int argc, char **argv, struct issue_args *a)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"role", required_argument, NULL, 'r'},
        {"ip", required_argument, NULL, 'i'},  {"dns", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
    };
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":d:r:i:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            a->dir = optarg;
            break;
        case 'r':
            a->role = optarg;
            break;
        case 'i':
            a->ips[a->nips++] = optarg;
            break;
        case 'n':
            a->dns[a->ndns++] = optarg;
            break;
        case 'h':
            printf("usage: %s\n%s", usage_issue, help_issue);
            return 0;
        case ':':
            return usage_error(usage_issue, "%s needs an argument", argv[optind - 1]);
        default:
            return usage_error(usage_issue, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error(usage_issue, "NAME is required");
    a->name = argv[optind++];
    if (optind < argc)
        return usage_error(usage_issue, "unexpected argument '%s'", argv[optind]);
    if (a->dir == NULL)
        return usage_error(usage_issue, "--dir is required");
    if (a->role == NULL)
        return usage_error(usage_issue,
                           "--role is required (balancer, fileserver, frontend or compute)");
    return -1;
}

static int run_issue(int argc, char **argv)
{
    struct issue_args a = {0};
    char err[PKI_ERRLEN];
    int status = 1;
    a.ips = calloc((size_t)argc, sizeof *a.ips);
    a.dns = calloc((size_t)argc, sizeof *a.dns);
    if (a.ips == NULL || a.dns == NULL) {
        fprintf(stderr, "convoy pki: out of memory\n");
        goto fail;
    }
    status = parse_issue(argc, argv, &a);
    if (status >= 0)
        goto fail;
    status = 1;
    if (pki_issue(a.dir, a.name, a.role, a.ips, a.nips, a.dns, a.ndns, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s\n", err);
        goto fail;
    }
    printf("wrote %s/%s.crt %s/%s.key\n", a.dir, a.name, a.dir, a.name);
    status = 0;
fail:
    free(a.dns);
    free(a.ips);
    return status;
}

int cmd_pki(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        printf("convoy pki — the cluster's certificate authority\n\n");
        usage(stdout);
        printf("\nSee docs/security.md for the PKI layout and certificate rotation.\n");
        return 0;
    }
    if (strcmp(sub, "init") == 0)
        return run_init(argc - 1, argv + 1);
    if (strcmp(sub, "issue") == 0)
        return run_issue(argc - 1, argv + 1);
    fprintf(stderr, "convoy pki: unknown subcommand '%s'\n", sub);
    usage(stderr);
    return 2;
}
