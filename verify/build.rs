//! Links the freestanding binaries: no C runtime, no libc, static, not position
//! independent, laid out by `linker/static.ld`.
//!
//! The arguments go to the `[[bin]]`s only (`rustc-link-arg-bins`). They must not go in
//! `.cargo/config.toml` rustflags: those also reach build scripts, which are ordinary
//! hosted programs and crash when linked this way.
//!
//! - `-nostartfiles -nostdlib`: no crt1.o/crti.o, no libc, no libgcc; `_start`, the
//!   `mem*` functions and the panic handler come from `src/rt.rs`.
//! - `-static -no-pie`: an `ET_EXEC` at the addresses the script gives. Without
//!   `-static` rustc's default is a PIE that nothing would relocate (there is no dynamic
//!   linker), and it crashes on its first absolute address.
//! - `--orphan-handling=error`: any section the script does not place (an
//!   `.init_array` nobody would run, TLS nobody would set up) fails the link.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = manifest_dir.join("../linker/static.ld");
    let script = script.canonicalize().unwrap_or_else(|e| panic!("linker script {}: {e}", script.display()));
    let script = script.to_str().expect("the linker script's path is UTF-8");
    // `-Wl,` splits its argument at commas.
    assert!(!script.contains(','), "the linker script's path must not contain a comma: {script}");

    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={script}");
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--orphan-handling=error"] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!("cargo::rustc-link-arg-bins=-Wl,-T,{script}");
}
