/* The CUnit runner for every system suite listed in suites.h. */
#include "../cu_main.h"

#define SUITE(name) void suite_##name(void);
#include "suites.h"
#undef SUITE

static const cu_register_fn suites[] = {
#define SUITE(name) suite_##name,
#include "suites.h"
#undef SUITE
};

int main(int argc, char **argv)
{
    return cu_main("system", suites, sizeof suites / sizeof suites[0], argc, argv);
}
