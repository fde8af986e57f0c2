#!/bin/bash
# Fuzzes the data plane's packet path and the tables-file readers with
# libFuzzer and the address sanitizer, for a bounded time, starting from the
# corpus in Tests/Fuzz (kept in the repository). Any crash, sanitizer report,
# leaked mbuf or accepted corrupt header fails the run; libFuzzer writes the
# input that did it to .build-fuzz/crashes/, which then becomes a corpus file
# and, for the packet path, a fixture (docs/reliability.md).
#
#   bash Tests/fuzz.sh [SECONDS_PER_TARGET]     (default 150)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-150}
export PATH=/opt/swift/usr/bin:$PATH
fuzzer=$(ls /opt/swift/usr/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)
# SwiftPM's own --sanitize passes each sanitizer as a separate flag, and the
# driver keeps only the last one; so the flags are given here: address
# sanitizer and libFuzzer's coverage on every Swift module, libFuzzer without
# its main (the targets' main calls LLVMFuzzerRunDriver).
flags=(-Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
       -Xcc -fsanitize=address -Xlinker "$fuzzer" -Xlinker -lstdc++)
for t in tables packet; do
    KEEL_LIBFUZZER=1 swift build -c release --scratch-path .build-fuzz --manifest-cache none "${flags[@]}" --product keel-fuzz-$t
done
rm -rf .build-fuzz/crashes; mkdir -p .build-fuzz/crashes
status=0
for t in tables packet; do
    work=.build-fuzz/corpus-$t
    rm -rf "$work"; mkdir -p "$work"
    echo "== keel-fuzz-$t: $seconds s, libFuzzer + address sanitizer, from $(ls Tests/Fuzz/$t | wc -l) corpus inputs"
    # New inputs go to $work (not committed); Tests/Fuzz/$t is read only.
    # -rss_limit_mb: the packet target maps its DPDK memory once; growth past the limit is a leak.
    maxlen=1600; [ $t = tables ] && maxlen=8192 # a frame; a header and more
    set +e
    .build-fuzz/release/keel-fuzz-$t -max_total_time="$seconds" -max_len=$maxlen -rss_limit_mb=3072 -print_final_stats=1 \
        -artifact_prefix=.build-fuzz/crashes/$t- "$work" Tests/Fuzz/$t > .build-fuzz/fuzz-$t.log 2>&1
    rc=$?
    set -e
    grep -E '^(INFO: seed corpus|#[0-9]+\s+(INITED|DONE)|stat::|==[0-9]+==ERROR|SUMMARY|Done )' .build-fuzz/fuzz-$t.log || true
    if [ $rc != 0 ]; then
        echo "keel-fuzz-$t FAILED (exit $rc); the end of its log:"; tail -60 .build-fuzz/fuzz-$t.log
        status=1
    fi
done
if ls .build-fuzz/crashes/* >/dev/null 2>&1; then echo "inputs that failed:"; ls -l .build-fuzz/crashes/; status=1; fi
exit $status
