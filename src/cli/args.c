/* Argument helpers shared by the subcommands. */
#include "cli.h"

#include "convoy/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_u32(const char *cmd, const char *opt, const char *val, uint32_t min, uint32_t max,
            uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (*val == '\0' || *val == '-' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "convoy %s: %s takes a whole number from %u to %u, not '%s'\n", cmd, opt,
                min, max, val);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_log_level(const char *cmd, const char *val)
{
    enum log_level l;
    if (log_level_parse(val, &l) < 0) {
        fprintf(stderr, "convoy %s: --log-level takes debug, info, warn or error, not '%s'\n", cmd,
                val);
        return -1;
    }
    log_set_level(l);
    return 0;
}

int cli_missing(const char *cmd, const char *opt)
{
    fprintf(stderr, "convoy %s: %s is required (see convoy %s --help)\n", cmd, opt, cmd);
    return -1;
}
