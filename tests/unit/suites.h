/* Every unit suite, one line each: SUITE(name) registers suite_<name>(). */
SUITE(log)
SUITE(pool)
SUITE(frame)
SUITE(registry)
SUITE(pki)
SUITE(tls)
SUITE(shm)
SUITE(gj)
