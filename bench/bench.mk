# Benchmarks (included by the top Makefile). `make bench` runs them all;
# `make bench-kernel` runs the matrix-inversion kernel against OpenBLAS.
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

.PHONY: bench bench-kernel

bench: bench-kernel

bench-kernel: deps
	@sh scripts/deps.sh $(BENCH_K_DEPS)
	@$(MAKE) --no-print-directory $(BUILD)/bench_kernel
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/bench_kernel | tee $(BENCH_K_OUT)
	gnuplot -e "in='$(BENCH_K_OUT)'; out='docs/kernel-gflops.svg'" bench/kernel.gp

$(BUILD)/bench_kernel: bench/kernel.c $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -I$(OPENBLAS_INC) -o $@ bench/kernel.c $(BUILD)/libconvoy.a \
	    -llapacke -lopenblas $(LDLIBS_ALL)

# `make bench-frames`: heartbeats beside a 1 GiB body on one TLS connection
# through the mux (bench/frames.c), one `frames …` line.
.PHONY: bench-frames

bench-frames: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench_frames
	$(BUILD)/bench_frames

$(BUILD)/bench_frames: bench/frames.c tests/common/fixture.c $(BUILD)/libconvoy.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/frames.c tests/common/fixture.c $(BUILD)/libconvoy.a \
	    $(LDLIBS_ALL)
