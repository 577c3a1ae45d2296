# convoy — one binary, build/convoy, plus the test runners.
#
# `make` first installs missing Debian packages (scripts/deps.sh), then builds
# in a second make so that pkg-config is only asked once it can answer.
# `make test` builds with -Werror and runs every CUnit suite and system test.
# Each flavour of object has its own folder: build/obj/ for `make`,
# build/obj-werror/ for `make test` (-Werror changes no code, only whether a
# warning stops the build, and the binaries in build/ are linked from
# whichever flavour built last), so switching between the two never
# recompiles what the other built.
# `make asan` runs the same suite built with ASan + UBSan in build-asan/,
# `make tsan` with ThreadSanitizer in build-tsan/.

BUILD   ?= build
ifeq ($(origin CC),default)
CC      = gcc
endif
OPT     ?= -O2
WERROR  ?=
SAN     ?=
PKGS     = openssl libcjson liburing

# The version `convoy --version` prints, defined here only: git describe in a
# checkout, else VERSION_FALLBACK (a source tree without its history).
VERSION_FALLBACK = 0.0-unknown
ifeq ($(origin VERSION),undefined)
VERSION := $(or $(shell git describe --always --dirty 2>/dev/null),$(VERSION_FALLBACK))
endif

CFLAGS_ALL = $(OPT) -g -Wall -Wextra $(WERROR) $(SAN) -std=gnu11 -D_GNU_SOURCE -pthread \
             -Iinclude $(shell pkg-config --cflags $(PKGS) cunit) $(CFLAGS)
LDLIBS_ALL = $(SAN) -pthread $(shell pkg-config --libs $(PKGS)) -lm $(LDLIBS)
CUNIT_LIBS = $(shell pkg-config --libs cunit)

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/common/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c) $(TEST_SRC)
SYS_SRC  := $(wildcard tests/system/*.c) $(TEST_SRC)
OBJ      := $(BUILD)/obj$(if $(WERROR),-werror)
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJ)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(OBJ)/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(OBJ)/%.o)
SYS_OBJ  := $(SYS_SRC:%.c=$(OBJ)/%.o)
SOURCES  := $(wildcard include/convoy/*.h src/*/*.c src/*/*.h tests/*/*.c tests/*/*.h bench/*.c)

.PHONY: all deps binaries test test-run asan tsan demo format check-format clean bench fuzz
.DEFAULT_GOAL := all

all: deps
	@$(MAKE) --no-print-directory binaries

deps:
	@sh scripts/deps.sh

binaries: $(BUILD)/convoy $(BUILD)/unit_tests $(BUILD)/system_tests

# Objects also depend on the flags they were built with, so that a change of
# OPT, CFLAGS or compiler rebuilds them.
$(OBJ)/.flags: FORCE
	@mkdir -p $(OBJ)
	@echo '$(CC) $(CFLAGS_ALL)' | cmp -s - $@ || echo '$(CC) $(CFLAGS_ALL)' > $@
FORCE:

# Micro-kernels for one instruction set live in files named after it.
$(OBJ)/%_avx2.o: CFLAGS_ALL += -mavx2 -mfma
$(OBJ)/%_avx512.o: CFLAGS_ALL += -mavx512f -mavx512vl -mavx512dq -mfma

# Only main.c sees the version, so that a new one rebuilds one object.
$(BUILD)/.version: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(OBJ)/src/cli/main.o: CFLAGS_ALL += -DCONVOY_VERSION='"$(VERSION)"'
$(OBJ)/src/cli/main.o: $(BUILD)/.version

$(OBJ)/%.o: %.c $(OBJ)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libconvoy.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/convoy: $(CLI_OBJ) $(BUILD)/libconvoy.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libconvoy.a $(LDLIBS_ALL)

$(BUILD)/unit_tests: $(UNIT_OBJ) $(BUILD)/libconvoy.a
	$(CC) -o $@ $(UNIT_OBJ) $(BUILD)/libconvoy.a $(CUNIT_LIBS) $(LDLIBS_ALL)

$(BUILD)/system_tests: $(SYS_OBJ) $(BUILD)/libconvoy.a
	$(CC) -o $@ $(SYS_OBJ) $(BUILD)/libconvoy.a $(CUNIT_LIBS) $(LDLIBS_ALL)

# What the suites run beside convoy: the format check, network namespaces,
# and the unmodified clients users fetch files with.
TEST_DEPS := clang-format:clang-format iproute2:/usr/sbin/ip curl:curl wget:wget

test: deps
	@sh scripts/deps.sh $(TEST_DEPS)
	@$(MAKE) --no-print-directory WERROR=-Werror binaries
	@$(MAKE) --no-print-directory check-format
	@sh tests/run.sh $(BUILD)

asan: deps
	@sh scripts/deps.sh $(TEST_DEPS)
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	    SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' binaries
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    sh tests/run.sh build-asan

tsan: deps
	@sh scripts/deps.sh $(TEST_DEPS)
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT=-O1 \
	    SAN='-fsanitize=thread -fno-omit-frame-pointer' binaries
	@TSAN_OPTIONS=halt_on_error=1 sh tests/run.sh build-tsan

demo: all
	@$(BUILD)/convoy demo

format:
	clang-format -i $(SOURCES)

check-format:
	@clang-format --dry-run --Werror $(SOURCES) || \
	    { echo "check-format: run 'make format'" >&2; exit 1; }

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include bench/bench.mk
-include tests/fuzz/fuzz.mk
-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
