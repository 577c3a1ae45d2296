#!/bin/sh
# Writes the seed corpus of fuzz_frame into DIR (default tests/fuzz/corpus/frame).
# Usage: tests/fuzz/gen_frame_corpus.sh [DIR]
#
# Each seed is the split prefix that fuzz_frame.c reads (byte 0: count-1 of
# split sizes in its low 3 bits; then each size-1 as one byte) followed by a
# stream of frames: valid ones of every shape, and one per refusal reason.
set -eu
export LC_ALL=C
out=${1:-tests/fuzz/corpus/frame}
mkdir -p "$out"

# be N V: V as N big-endian bytes.
be() {
    n=$1 v=$2 s=""
    while [ "$n" -gt 0 ]; do
        s="$(printf '\\%03o' $((v & 255)))$s"
        v=$((v >> 8))
        n=$((n - 1))
    done
    printf "$s"
}

# hdr MAGIC VERSION TYPE FLAGS META_LEN STREAM BODY_LEN
hdr() {
    printf '%s' "$1"
    be 1 "$2"
    be 1 "$3"
    be 2 "$4"
    be 4 "$5"
    be 4 "$6"
    be 8 "$7"
}

# frame TYPE META BODY: a valid frame (type numbers as in frame.h).
frame() {
    hdr CNVY 2 "$1" 0 ${#2} 0 ${#3}
    printf '%s%s' "$2" "$3"
}

# streamed TYPE META STREAM BODY_LEN: a STREAMED message, its body to follow.
streamed() {
    hdr CNVY 2 "$1" 1 ${#2} "$3" "$4"
    printf '%s' "$2"
}

# data STREAM BYTES: one DATA frame. credit STREAM N: one CREDIT frame.
data() {
    hdr CNVY 2 14 0 0 "$1" ${#2}
    printf '%s' "$2"
}
credit() {
    hdr CNVY 2 15 0 0 "$1" "$2"
}

# split SIZE...: the fuzz_frame split prefix for these piece sizes (1..256).
split() {
    be 1 $(($# - 1))
    for n in "$@"; do
        be 1 $((n - 1))
    done
}

body=0123456789abcdef
split 256 >"$out/hello"
frame 1 '{"name":"fs1","port":8443,"weight":1.5,"tls":true}' '' >>"$out/hello"
split 256 >"$out/heartbeat-no-meta"
frame 3 '' '' >>"$out/heartbeat-no-meta"
split 256 >"$out/result-body"
frame 12 '{"id":7}' "$body$body" >>"$out/result-body"
split 1 >"$out/result-bytewise"
frame 12 '{"id":7}' "$body" >>"$out/result-bytewise"
split 3 24 1 7 100 >"$out/stream"
{
    frame 1 '{"id":1,"name":"a"}' ''
    frame 6 '{"id":2,"path":"f/x","size":16}' "$body"
    frame 7 '{"id":2,"bytes":16}' ''
    frame 8 '{"id":2,"ok":true,"o":{},"a":[1,-2e3,null,"s"]}' ''
    frame 5 '{}' ''
} >>"$out/stream"
split 256 >"$out/error"
frame 13 '{"code":"magic","reason":"bad magic: not a convoy frame"}' '' >>"$out/error"
split 256 >"$out/work-nested"
frame 10 '{"items":[[1,2],[3,4]],"o":{"a":{"b":[{}]}},"x":1e308,"s":"\u00e9\n"}' "$body" >>"$out/work-nested"
split 5 24 2 60 >"$out/streams"
{
    streamed 10 '{"id":3}' 1 32
    data 1 "$body"
    credit 2 65536
    frame 3 '{"load":1}' ''
    streamed 12 '' 3 16
    data 3 "$body"
    data 1 "$body"
    frame 5 '' ''
} >>"$out/streams"
split 256 >"$out/bad-magic"
hdr CNVZ 2 1 0 0 0 0 >>"$out/bad-magic"
split 256 >"$out/bad-version"
hdr CNVY 1 1 0 0 0 0 >>"$out/bad-version"
split 256 >"$out/bad-type"
hdr CNVY 2 16 0 0 0 0 >>"$out/bad-type"
split 256 >"$out/bad-flags"
hdr CNVY 2 1 2 0 0 0 >>"$out/bad-flags"
split 256 >"$out/streamed-error"
hdr CNVY 2 13 1 0 1 4 >>"$out/streamed-error"
split 256 >"$out/bad-stream"
hdr CNVY 2 1 0 0 1 0 >>"$out/bad-stream"
split 256 >"$out/data-no-stream"
hdr CNVY 2 14 0 0 0 4 >>"$out/data-no-stream"
split 256 >"$out/data-too-long"
hdr CNVY 2 14 0 0 1 65537 >>"$out/data-too-long"
split 256 >"$out/data-with-meta"
hdr CNVY 2 14 0 2 1 1 >>"$out/data-with-meta"
split 256 >"$out/credit-zero"
hdr CNVY 2 15 0 0 1 0 >>"$out/credit-zero"
split 256 >"$out/credit-too-big"
hdr CNVY 2 15 0 0 1 1048577 >>"$out/credit-too-big"
split 256 >"$out/meta-too-long"
hdr CNVY 2 1 0 1025 0 0 >>"$out/meta-too-long"
split 256 >"$out/body-too-long"
hdr CNVY 2 12 0 2 0 4097 >>"$out/body-too-long"
printf '{}' >>"$out/body-too-long"
split 256 >"$out/meta-array"
frame 1 '[1,2]' '' >>"$out/meta-array"
split 256 >"$out/meta-trailing"
frame 1 '{"a":1} x' '' >>"$out/meta-trailing"
