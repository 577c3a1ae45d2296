/*
 * What `convoy get` and `convoy loadgen get` share: the balancer's URL, the
 * TLS context from --cacert, and the credentials. A password never comes
 * from argv (where `ps` shows it to everyone): it comes from
 * CONVOY_PASSWORD or is read from the terminal with echo off; a token comes
 * from CONVOY_TOKEN. Credentials are refused over plain http:// unless the
 * user says --plain-auth (benchmarks against --insecure-http).
 */
#include "client.h"

#include "convoy/xget.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Reads a line from the terminal with echo off into buf. 0 or -errno. */
static int cli_prompt_password(const char *user, char *buf, size_t cap)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -ENOTTY;
    struct termios old, quiet;
    int rc = tcgetattr(fd, &old) == 0 ? 0 : -errno;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    if (rc == 0 && tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        rc = -errno;
    if (rc == 0) {
        dprintf(fd, "password for %s: ", user);
        size_t n = 0;
        char ch;
        ssize_t got;
        while ((got = read(fd, &ch, 1)) == 1 && ch != '\n' && ch != '\r')
            if (n + 1 < cap)
                buf[n++] = ch;
        buf[n] = '\0';
        if (got < 0)
            rc = -errno;
        tcsetattr(fd, TCSAFLUSH, &old);
        dprintf(fd, "\n");
    }
    close(fd);
    return rc;
}

/* The Authorization value from the environment or the terminal; "" when
 * neither --user nor CONVOY_TOKEN is given. */
static int cli_credentials(const char *cmd, const char *user, char *auth, size_t cap)
{
    const char *token = getenv("CONVOY_TOKEN");
    auth[0] = '\0';
    if (user == NULL && (token == NULL || *token == '\0'))
        return 0;
    if (user == NULL)
        return xget_auth_bearer(token, auth, cap) == 0
                   ? 0
                   : (fprintf(stderr, "convoy %s: CONVOY_TOKEN is not a token\n", cmd), -1);
    char pw[512];
    const char *env = getenv("CONVOY_PASSWORD");
    if (env != NULL) {
        snprintf(pw, sizeof pw, "%s", env);
    } else if (cli_prompt_password(user, pw, sizeof pw) != 0) {
        fprintf(stderr, "convoy %s: no terminal to ask the password of %s: set CONVOY_PASSWORD\n",
                cmd, user);
        return -1;
    }
    int rc = xget_auth_basic(user, pw, auth, cap);
    OPENSSL_cleanse(pw, sizeof pw);
    if (rc != 0)
        fprintf(stderr, "convoy %s: user name or password not usable in HTTP Basic: %s\n", cmd,
                rc == -ENOSPC ? "too long" : "':' in the name, or a control character");
    return rc == 0 ? 0 : -1;
}

int cli_client_setup(struct cli_client *c, const char *cmd, const char *balancer,
                     const char *cacert, const char *user, bool plain_auth)
{
    char err[512];
    memset(c, 0, sizeof *c);
    if (xget_url_parse(balancer, &c->url, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s: --balancer %s: %s\n", cmd, balancer, err);
        return XGET_EUSAGE;
    }
    if (c->url.tls && cacert == NULL) {
        fprintf(stderr, "convoy %s: --cacert is required for https\n", cmd);
        return XGET_EUSAGE;
    }
    if (cli_credentials(cmd, user, c->auth, sizeof c->auth) != 0)
        return XGET_EUSAGE;
    if (!c->url.tls && c->auth[0] != '\0' && !plain_auth) {
        fprintf(stderr, "convoy %s: refusing to send credentials over http:// (--plain-auth)\n",
                cmd);
        return XGET_EUSAGE;
    }
    if (cacert != NULL && tls_ctx_new_cafile(&c->tls, cacert, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s: %s\n", cmd, err);
        return XGET_EUSAGE;
    }
    return XGET_OK;
}

void cli_client_free(struct cli_client *c)
{
    tls_ctx_free(c->tls);
    OPENSSL_cleanse(c->auth, sizeof c->auth);
    c->tls = NULL;
}
