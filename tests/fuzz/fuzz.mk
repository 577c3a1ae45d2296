# Fuzz targets: `make fuzz` builds each parser's libFuzzer target with clang,
# ASan and UBSan in build-fuzz/ and runs each for FUZZ_SECONDS, one after
# the other (`make fuzz-run-http_req` runs one). Not part of
# `make test`. The run works on a copy of the committed seed corpus in
# build-fuzz/corpus/, so new inputs never land in the repository; crash
# inputs are written to build-fuzz/ too. Reproduce one with
# `build-fuzz/fuzz_frame build-fuzz/crash-<hash>`.

FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -std=gnu11 -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags libcjson)
FUZZ_LIBS     = $(shell pkg-config --libs libcjson) -lm

.PHONY: fuzz fuzz-run fuzz-corpus

fuzz: deps
	@sh scripts/deps.sh clang:clang
	@$(MAKE) --no-print-directory fuzz-run

# Each target: its name, the sources it links, its dictionary and its
# longest input.
FUZZ_TARGETS = frame http_req http_range xget ticket catalog job npy chain
fuzz_frame_SRC      = src/runtime/frame.c
fuzz_frame_DICT     = frame
fuzz_frame_MAXLEN   = 8192
fuzz_http_req_SRC   = src/http/http.c
fuzz_http_req_DICT  = http
fuzz_http_req_MAXLEN = 4096
fuzz_http_range_SRC = src/http/http.c
fuzz_http_range_DICT = http
fuzz_http_range_MAXLEN = 128
fuzz_xget_SRC       = src/client/xget.c src/runtime/net.c
fuzz_xget_DICT      = xget
fuzz_xget_MAXLEN    = 512
fuzz_xget_LIBS      = -lcrypto
# The ticket decoder and the WELCOME keyring reader (seeds: tickets signed
# with the target's fixed keys, and keyring JSON); no dictionary.
fuzz_ticket_SRC     = src/auth/ticket.c src/auth/b64.c src/runtime/frame.c src/runtime/log.c
fuzz_ticket_MAXLEN  = 4096
fuzz_ticket_LIBS    = -pthread -lcrypto
# The catalog reader lives with the file server's catalog, which also runs
# the watcher on a ring: the ring and the log come along.
fuzz_catalog_SRC    = src/fileserver/fscat.c src/runtime/frame.c src/runtime/ring.c \
                      src/runtime/log.c
fuzz_catalog_LIBS   = -luring
fuzz_catalog_MAXLEN = 4096
# The job parser (jgen for the kind names) and the .npy header parser.
fuzz_job_SRC        = src/job/job.c src/job/jgen.c
fuzz_job_DICT       = job
fuzz_job_MAXLEN     = 4096
fuzz_npy_SRC        = src/job/npy.c
fuzz_npy_DICT       = npy
fuzz_npy_MAXLEN     = 1024

# The compute chain's messages (membership's name and address checks and
# the frame schema checker come along); no dictionary.
fuzz_chain_SRC      = src/chain/chain_msg.c src/membership/membership.c src/runtime/frame.c \
                      src/runtime/net.c src/runtime/shmbuf.c src/compute/gj_status.c
fuzz_chain_MAXLEN   = 2048

fuzz-run: $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-run-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$*
	cp tests/fuzz/corpus/$*/* $(FUZZ_BUILD)/corpus/$*/
	$(FUZZ_BUILD)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=$(fuzz_$*_MAXLEN) \
	    $(if $(fuzz_$*_DICT),-dict=tests/fuzz/$(fuzz_$*_DICT).dict) \
	    -artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus/$*

.PRECIOUS: $(FUZZ_BUILD)/fuzz_%
.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $$(fuzz_$$*_SRC) $(wildcard include/convoy/*.h)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(fuzz_$*_SRC) -o $@ $(FUZZ_LIBS) $(fuzz_$*_LIBS)

# Rewrites the committed seeds after a change to the frame format.
fuzz-corpus:
	sh tests/fuzz/gen_frame_corpus.sh tests/fuzz/corpus/frame
