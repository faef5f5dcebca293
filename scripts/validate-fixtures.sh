#!/usr/bin/env bash
# Rebuilds the validator's compiler-output fixture: compiles tests/fixtures/validate/funcs.c
# with gcc -O2 and funcs.rs with rustc -O into object files (one section per function),
# and writes each function's machine code to tests/fixtures/validate/<name>.<gcc|rustc>.bin.
# A function with relocations (calls to other symbols, constants in .rodata) cannot run
# from its bytes alone, so the script refuses it. Needs gcc, rustc, objcopy, objdump, nm.
# Usage: scripts/validate-fixtures.sh (from anywhere). The output is committed.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/validate"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gcc -O2 -fno-pic -fno-asynchronous-unwind-tables -fcf-protection=none -ffunction-sections -c "$dir/funcs.c" -o "$tmp/gcc.o"
rustc -O --edition 2024 -C panic=abort -C relocation-model=static --emit=obj "$dir/funcs.rs" -o "$tmp/rustc.o"

rm -f "$dir"/*.bin
for tool in gcc rustc; do
    obj="$tmp/$tool.o"
    for name in $(nm --defined-only "$obj" | awk '$2 == "T" { print $3 }'); do
        section=".text.$name"
        if objdump -r -j "$section" "$obj" | grep -q 'R_X86_64'; then
            echo "refused: $name ($tool) has relocations" >&2
            exit 1
        fi
        objcopy -O binary --only-section="$section" "$obj" "$dir/$name.$tool.bin"
        echo "$name.$tool.bin: $(wc -c <"$dir/$name.$tool.bin") bytes"
    done
done
