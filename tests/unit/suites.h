/* Every unit suite, one line each: SUITE(name) registers suite_<name>(). */
SUITE(log)
SUITE(pool)
SUITE(frame)
SUITE(pki)
SUITE(tls)
SUITE(shm)
