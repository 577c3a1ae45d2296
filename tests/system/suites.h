/* Every system suite, one line each: SUITE(name) registers suite_<name>(). */
SUITE(cli)
SUITE(membership)
SUITE(network)
SUITE(flood)
SUITE(state)
SUITE(hostile)
SUITE(get)
SUITE(catalog)
