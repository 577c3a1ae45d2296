# Fuzz targets: `make fuzz` builds each parser's libFuzzer target with clang,
# ASan and UBSan in build-fuzz/ and runs it for FUZZ_SECONDS. Not part of
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

fuzz-run: $(FUZZ_BUILD)/fuzz_frame $(FUZZ_BUILD)/fuzz_ticket
	@mkdir -p $(FUZZ_BUILD)/corpus/frame $(FUZZ_BUILD)/corpus/ticket
	cp tests/fuzz/corpus/frame/* $(FUZZ_BUILD)/corpus/frame/
	$(FUZZ_BUILD)/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	    -dict=tests/fuzz/frame.dict -artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus/frame
	cp tests/fuzz/corpus/ticket/* $(FUZZ_BUILD)/corpus/ticket/
	$(FUZZ_BUILD)/fuzz_ticket -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus/ticket

$(FUZZ_BUILD)/fuzz_frame: tests/fuzz/fuzz_frame.c src/runtime/frame.c include/convoy/frame.h
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) tests/fuzz/fuzz_frame.c src/runtime/frame.c -o $@ $(FUZZ_LIBS)

# The ticket decoder and the WELCOME keyring reader (seeds: tickets signed
# with the target's fixed keys, and keyring JSON).
TICKET_FUZZ_SRC = tests/fuzz/fuzz_ticket.c src/auth/ticket.c src/auth/b64.c src/runtime/frame.c \
                  src/runtime/log.c
$(FUZZ_BUILD)/fuzz_ticket: $(TICKET_FUZZ_SRC) include/convoy/ticket.h include/convoy/b64.h
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -pthread $(TICKET_FUZZ_SRC) -o $@ $(FUZZ_LIBS) -lcrypto

# Rewrites the committed seeds after a change to the frame format.
fuzz-corpus:
	sh tests/fuzz/gen_frame_corpus.sh tests/fuzz/corpus/frame
