#!/bin/sh
# Builds the freestanding binaries of verify/ in the min-size profile (fat LTO, one
# codegen unit, opt-level "z", stripped) and runs them outside cargo test:
#   smoke, two_pages, lifecycle, arena, profile  must exit 0;
#   panics                       must exit 101 (the panic handler's code);
#   tamper                       must be killed by SIGABRT (status 134) after printing
#                                "wildx: integrity check failed ...";
#   smoke                        must be at most 8192 bytes without wildx's default
#                                `memfd` feature (the fallback; about 2.7 KiB more):
#                                it is built and run both ways.
# Exits non-zero if any result is wrong. Usage: verify/run.sh (from anywhere).
#
# tamper needs the verify-on-call feature, so it is built by a second cargo command;
# the others are built without it. Binaries land in ${CARGO_TARGET_DIR:-target}/min-size/.

set -u
cd "$(dirname "$0")/.." || exit 1
target=${CARGO_TARGET_DIR:-target}
bin="$target/min-size"
size_goal=8192

cargo build --package wildx-verify --profile min-size --bin smoke --bin two_pages --bin lifecycle --bin arena --bin profile --bin panics || exit 1
cargo build --package wildx-verify --profile min-size --features verify-on-call --bin tamper || exit 1

status=0
fail() {
    echo "FAIL: $*" >&2
    status=1
}

for name in smoke two_pages lifecycle arena profile; do
    "$bin/$name"
    code=$?
    if [ "$code" -eq 0 ]; then echo "ok: $name exited 0"; else fail "$name exited $code, expected 0"; fi
done
echo "smoke with the memfd fallback: $(wc -c < "$bin/smoke") bytes"

# The size goal is for the build without the fallback (replaces smoke, runs it again).
cargo build --package wildx-verify --profile min-size --no-default-features --bin smoke || exit 1
"$bin/smoke"
code=$?
if [ "$code" -eq 0 ]; then echo "ok: smoke without memfd exited 0"; else fail "smoke without memfd exited $code"; fi

"$bin/panics" 2>/dev/null
code=$?
if [ "$code" -eq 101 ]; then echo "ok: panics exited 101"; else fail "panics exited $code, expected 101"; fi

# A shell reports death by signal N as 128 + N; SIGABRT is 6. The diagnostic line tells
# this apart from an ordinary exit 134.
stderr=$("$bin/tamper" 2>&1 >/dev/null)
code=$?
case "$stderr" in
    "wildx: integrity check failed for page 0x"*) line_ok=1 ;;
    *) line_ok=0 ;;
esac
if [ "$code" -eq 134 ] && [ "$line_ok" -eq 1 ]; then
    echo "ok: tamper died by SIGABRT: $stderr"
else
    fail "tamper: status $code, stderr: $stderr (expected SIGABRT after the integrity line)"
fi

size=$(wc -c <"$bin/smoke")
if [ "$size" -le "$size_goal" ]; then
    echo "ok: smoke is $size bytes stripped (goal $size_goal)"
else
    fail "smoke is $size bytes stripped, over the $size_goal-byte goal"
fi

exit $status
