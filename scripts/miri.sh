#!/usr/bin/env bash
# Runs the pure unit tests (the registry lock, the registry's slot packing and hasher,
# FNV-1a) under Miri, with its weak-memory emulation (on by default) and several
# scheduling seeds. Nightly only, so NOT part of CI (.ci/run needs stable alone).
#
# Everything that issues a syscall is out of Miri's reach (inline assembly): the page
# state machine, the syscall wrappers and the integration tests are not run here.
#
# Needs: rustup toolchain install nightly --component miri
# Usage: scripts/miri.sh [extra miri flags, e.g. -Zmiri-seed=7]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri is not installed: rustup toolchain install nightly --component miri" >&2
    exit 2
fi
# -Zmiri-many-seeds: run every test under several seeds (thread schedules and
# weak-memory outcomes differ per seed). The lock tests shrink their loops under
# cfg(miri).
export MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-many-seeds=0..8 $*"
cargo +nightly miri test --lib -- lock::tests registry::tests hash::tests
