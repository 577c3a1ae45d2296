/*
 * convoy user — edit the users file: add (password from stdin), token,
 * del, list. A thin shell over users_file_*() and users_load().
 *
 * The password never comes from argv, where `ps` would show it: it is read
 * from stdin, one line. On a terminal it is asked for twice with echo off
 * (as passwd does); from a pipe the first line is taken as it is.
 */
#include "cli.h"

#include "convoy/users.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define USER_ERRLEN 512

static const char user_usage[] =
    "usage: convoy user add NAME --file USERS [--role read|submit|admin]\n"
    "       convoy user token NAME --file USERS\n"
    "       convoy user del NAME --file USERS\n"
    "       convoy user list --file USERS\n";

/* One line of stdin into buf without its newline. Returns its length, or
 * -1 (EOF before any byte, or longer than USERS_PASSWORD_MAX). */
static long user_read_line(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (got == NULL)
        return -1;
    size_t len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    else if (!feof(stdin))
        return -1; /* the line did not fit */
    return (long)len;
}

/* The password, asked twice on a terminal. Returns its length or -1. */
static long user_password(char *pw, size_t cap)
{
    char again[USERS_PASSWORD_MAX + 2];
    long n = user_read_line("password: ", pw, cap);
    if (n <= 0) {
        fprintf(stderr, "convoy user: no password on stdin (1 to %d bytes, one line)\n",
                USERS_PASSWORD_MAX);
        return -1;
    }
    if (isatty(STDIN_FILENO)) {
        long m = user_read_line("again: ", again, sizeof again);
        bool same = m == n && memcmp(pw, again, (size_t)n) == 0;
        OPENSSL_cleanse(again, sizeof again);
        if (!same) {
            fprintf(stderr, "convoy user: the passwords differ\n");
            return -1;
        }
    }
    return n;
}

static int user_add(const char *name, const char *file, const char *role_s)
{
    char pw[USERS_PASSWORD_MAX + 2], err[USER_ERRLEN];
    enum users_role role = USERS_READ;
    if (role_s != NULL && users_role_parse(role_s, &role) != 0) {
        fprintf(stderr, "convoy user: --role takes read, submit or admin, not '%s'\n", role_s);
        return 2;
    }
    long n = user_password(pw, sizeof pw);
    int rc = n < 0 ? -EINVAL : users_file_add(file, name, role, pw, (size_t)n, err, sizeof err);
    OPENSSL_cleanse(pw, sizeof pw);
    if (n < 0)
        return 1;
    if (rc != 0) {
        fprintf(stderr, "convoy %s\n", err);
        return 1;
    }
    printf("user %s role=%s in %s\n", name, users_role_str(role), file);
    return 0;
}

static int user_token(const char *name, const char *file)
{
    char token[USERS_TOKEN_LEN + 1], err[USER_ERRLEN];
    if (users_file_token(file, name, token, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s\n", err);
        return 1;
    }
    printf("%s\n", token);
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}

static int user_del(const char *name, const char *file)
{
    char err[USER_ERRLEN];
    if (users_file_del(file, name, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s\n", err);
        return 1;
    }
    printf("deleted user %s from %s\n", name, file);
    return 0;
}

static void user_print(void *arg, const char *name, enum users_role role, bool has_token)
{
    (void)arg;
    printf("%-24s %-7s %s\n", name, users_role_str(role), has_token ? "token" : "-");
}

static int user_list(const char *file)
{
    char err[USER_ERRLEN];
    users_t *db;
    if (users_load(&db, file, err, sizeof err) != 0) {
        fprintf(stderr, "convoy %s\n", err);
        return 1;
    }
    printf("%-24s %-7s %s\n", "USER", "ROLE", "TOKEN");
    users_each(db, user_print, NULL);
    users_free(db);
    return 0;
}

int cmd_user(int argc, char **argv)
{
    const char *file = NULL, *role = NULL, *sub = argc > 1 ? argv[1] : "";
    const struct cli_opt opts[] = {
        CLI_OPT_STR("file", &file, "USERS", "the users file (mode 0600)", true),
        CLI_OPT_STR("role", &role, "ROLE", "add: read, submit or admin (default read)", false),
    };
    const struct cli_cmd cmd = {
        "user", "add|token|del NAME --file USERS [--role ROLE] | list --file USERS",
        "Edits the users file the balancer and the front-end read at start (--users).\n"
        "add: the password is read from stdin (asked twice, without echo, on a\n"
        "terminal), stored as a salted scrypt hash; adding an existing user replaces\n"
        "its password and role. token: prints a new API token for Authorization:\n"
        "Bearer, stores only its SHA-256 and revokes the previous one. del: removes\n"
        "the user. list: users, roles and whether each has a token.",
        opts, sizeof opts / sizeof opts[0]};
    bool is_list = strcmp(sub, "list") == 0;
    bool named = strcmp(sub, "add") == 0 || strcmp(sub, "token") == 0 || strcmp(sub, "del") == 0;
    if (!is_list && !named) {
        if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
            return cli_parse(&cmd, 2, (char *[]){"user", "--help", NULL});
        fprintf(stderr, "convoy user: unknown subcommand '%s'\n%s", sub, user_usage);
        return 2;
    }
    if (named && (argc < 3 || argv[2][0] == '-')) {
        fprintf(stderr, "convoy user %s: NAME is required\n%s", sub, user_usage);
        return 2;
    }
    const char *name = named ? argv[2] : NULL;
    int skip = named ? 2 : 1; /* parse from the options on, as "user" */
    argv[skip] = argv[0];
    int rc = cli_parse(&cmd, argc - skip, argv + skip);
    if (rc >= 0)
        return rc;
    if (role != NULL && strcmp(sub, "add") != 0) {
        fprintf(stderr, "convoy user: --role is only for add\n");
        return 2;
    }
    if (is_list)
        return user_list(file);
    if (strcmp(sub, "add") == 0)
        return user_add(name, file, role);
    return strcmp(sub, "token") == 0 ? user_token(name, file) : user_del(name, file);
}
