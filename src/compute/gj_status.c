/* gj — the names of the outcomes, apart from the kernel so that the chain's
 * message parsers (and their fuzz target) take them without it. */
#include "convoy/gj.h"

const char *gj_status_str(enum gj_status s)
{
    switch (s) {
    case GJ_OK:
        return "ok";
    case GJ_SINGULAR:
        return "singular";
    case GJ_INVALID:
        return "invalid";
    default:
        return "?";
    }
}
