# Benchmarks (included by the top Makefile). `make bench` runs them all;
# `make bench-kernel` runs the matrix-inversion kernel against OpenBLAS,
# `make bench-runtime` the runtime (connections, closing, TLS streams, and
# frames when bench/frames.c exists) against nginx and the cipher;
# `make bench-net` the file transfers (redirects, downloads, idle front
# connections) against nginx; `make bench-chain` the compute chain (a
# front-end and 2 compute servers) against the kernel in one process.
# BENCH_ARGS passes options to bench_net (-q, -r ROW) and bench_chain.
#
# OpenBLAS and LAPACKE are a reference for the benchmark only: they are
# installed here when missing and linked into build/bench_kernel, never
# into convoy. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which these machines
# may set, are removed so that OpenBLAS picks its kernels for the real CPU;
# the run prints which core it chose.

OPENBLAS_INC  = /usr/include/x86_64-linux-gnu/openblas-pthread
BENCH_K_DEPS  = libopenblas-dev:$(OPENBLAS_INC)/cblas.h liblapacke-dev:/usr/include/lapacke.h \
                gnuplot-nox:gnuplot
BENCH_K_OUT   = $(BUILD)/bench_kernel.txt

.PHONY: bench bench-kernel bench-runtime bench-net bench-chain

bench: bench-kernel bench-runtime bench-net bench-chain

bench-kernel: deps
	@sh scripts/deps.sh $(BENCH_K_DEPS)
	@$(MAKE) --no-print-directory $(BUILD)/bench_kernel
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/bench_kernel | tee $(BENCH_K_OUT)
	gnuplot -e "in='$(BENCH_K_OUT)'; out='docs/kernel-gflops.svg'" bench/kernel.gp

$(BUILD)/bench_kernel: bench/kernel.c $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -I$(OPENBLAS_INC) -o $@ bench/kernel.c $(BUILD)/libconvoy.a \
	    -llapacke -lopenblas $(LDLIBS_ALL)

# nginx is the reference for memory per connection. Installing it never
# starts it (Debian's policy-rc.d here denies it; the bench never uses the
# system service): bench_runtime runs its own with a generated configuration
# in a temporary folder and stops it by its PID.
BENCH_R_DEPS   = nginx:/usr/sbin/nginx
BENCH_R_OUT    = $(BUILD)/bench_runtime.txt
BENCH_R_PROGS  = $(BUILD)/bench_runtime $(if $(wildcard bench/frames.c),$(BUILD)/bench_frames) \
                 $(BUILD)/bench_catalog

# Each program's rows go to the screen and to BENCH_R_OUT; one that fails
# fails the rule (its status is kept across the pipe to tee).
bench-runtime: deps
	@sh scripts/deps.sh $(BENCH_R_DEPS)
	@$(MAKE) --no-print-directory $(BENCH_R_PROGS)
	@rm -f $(BENCH_R_OUT)
	@for p in $(BENCH_R_PROGS); do \
	    { $$p; echo $$? > $(BENCH_R_OUT).rc; } | tee -a $(BENCH_R_OUT); \
	    rc=$$(cat $(BENCH_R_OUT).rc); rm -f $(BENCH_R_OUT).rc; [ "$$rc" = 0 ] || exit "$$rc"; \
	done

$(BUILD)/bench_runtime: bench/runtime.c bench/common.c bench/common.h $(BUILD)/obj/tests/common/fixture.o \
                        $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/runtime.c bench/common.c $(BUILD)/obj/tests/common/fixture.o \
	    $(BUILD)/libconvoy.a $(LDLIBS_ALL)


# `make bench-frames`: heartbeats beside a 1 GiB body on one TLS connection
# through the mux (bench/frames.c), one `frames …` line.
.PHONY: bench-frames

bench-frames: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench_frames
	$(BUILD)/bench_frames

$(BUILD)/bench_frames: bench/frames.c $(BUILD)/obj/tests/common/fixture.o $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/frames.c $(BUILD)/obj/tests/common/fixture.o \
	    $(BUILD)/libconvoy.a $(LDLIBS_ALL)

# `make bench-catalog`: 3 file servers × 100,000 files joining a balancer
# (bench/catalog.c), one `catalog …` line; bench-runtime runs it too.
.PHONY: bench-catalog

bench-catalog: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench_catalog binaries
	$(BUILD)/bench_catalog

$(BUILD)/bench_catalog: bench/catalog.c $(BUILD)/obj/tests/common/fixture.o $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/catalog.c $(BUILD)/obj/tests/common/fixture.o \
	    $(BUILD)/libconvoy.a $(LDLIBS_ALL)

# `make bench-net`: real balancers, file servers and nginx on loopback
# (bench/net.c), driven by wrk and curl: `redirect`, `serve` and `conns`
# rows, kept in build/bench_net.txt. nginx is started by the bench with its
# own configuration and stopped by its PID, as for bench-runtime.
BENCH_N_DEPS = nginx:/usr/sbin/nginx wrk:/usr/bin/wrk curl:/usr/bin/curl
BENCH_N_OUT  = $(BUILD)/bench_net.txt

bench-net: deps
	@sh scripts/deps.sh $(BENCH_N_DEPS)
	@$(MAKE) --no-print-directory $(BUILD)/bench_net binaries
	@{ $(BUILD)/bench_net $(BENCH_ARGS); echo $$? > $(BENCH_N_OUT).rc; } | tee $(BENCH_N_OUT); \
	    rc=$$(cat $(BENCH_N_OUT).rc); rm -f $(BENCH_N_OUT).rc; exit "$$rc"

$(BUILD)/bench_net: bench/net.c bench/common.c bench/common.h $(BUILD)/obj/tests/common/fixture.o \
                    $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/net.c bench/common.c $(BUILD)/obj/tests/common/fixture.o \
	    $(BUILD)/libconvoy.a $(LDLIBS_ALL)

# `make bench-chain`: a real front-end and 2 compute servers on loopback
# (bench/chain.c) against the kernel on 2 lanes in one process: one
# `chain …` line per row, kept in build/bench_chain.txt.
BENCH_C_OUT  = $(BUILD)/bench_chain.txt

bench-chain: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench_chain binaries
	@{ $(BUILD)/bench_chain $(BENCH_ARGS); echo $$? > $(BENCH_C_OUT).rc; } | tee $(BENCH_C_OUT); \
	    rc=$$(cat $(BENCH_C_OUT).rc); rm -f $(BENCH_C_OUT).rc; exit "$$rc"

$(BUILD)/bench_chain: bench/chain.c bench/common.c bench/common.h $(BUILD)/obj/tests/common/fixture.o \
                      $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/chain.c bench/common.c $(BUILD)/obj/tests/common/fixture.o \
	    $(BUILD)/libconvoy.a $(LDLIBS_ALL)
