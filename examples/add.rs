//! The main job: JIT-compile `add(i32, i32)`, call it, verify it, free it, and show
//! what the runtime saw at each step.
//!
//! `unsafe` is allowed here for one thing: the raw call helper, whose contract (a live
//! page with add's signature) this program keeps by construction.
//!
//! Run with `cargo run --example add` (add `--features verify-on-call` to route the
//! call through the hardening check).

#![allow(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let before = wildx::stats();

    // Compile: alloc 64 bytes, write the 5 add bytes, seal.
    let f = wildx::jit::compile_add_i32();
    if f.is_null() {
        eprintln!("compile_add_i32 failed (quota, mmap or PROT_EXEC refused)");
        return ExitCode::FAILURE;
    }
    let info = wildx::inspect(f).expect("a compiled page is registered");
    println!("compiled add(i32, i32) at {f:p}");
    println!("  state     {:?}", info.state);
    println!("  length    {} bytes requested, {} mapped", info.len, info.mapped_len);
    println!("  bytes     {:02x?}", &wildx::jit::ADD_I32);
    println!("  seal hash {:#018x} (FNV-1a 64 of the {} requested bytes)", info.seal_hash.unwrap_or(0), info.len);

    // Call through the runtime call path.
    // SAFETY: `f` is a live add page from compile_add_i32, freed only below.
    let sum = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
    println!("add(7, 35) = {sum}");
    // SAFETY: as above.
    let wrapped = unsafe { wildx::jit::call_i32_i32(f, i32::MAX, 1) };
    println!("add(i32::MAX, 1) = {wrapped} (wrapping, as the machine adds)");

    // Verify: re-hash and compare with the seal hash.
    let verified = wildx::raw::verify(f);
    println!("verify = {verified} ({})", if verified == 0 { "bytes unchanged since seal" } else { "MISMATCH" });

    // The state machine refuses what the contract forbids.
    println!("seal again = {} (bug246: a sealed page cannot be sealed twice)", wildx::raw::seal(f));

    // Free, and show that nothing is left.
    let freed = wildx::jit::free(f);
    println!("free = {freed}; state after free = {:?}", wildx::raw::state(f));
    println!("free again = {} (double free refused, nothing touched)", wildx::jit::free(f));

    let after = wildx::stats();
    println!(
        "stats: {} live pages, {} live bytes, peak {} bytes, quota {} bytes; \
         allocs +{}, seals +{}, frees +{}, refusals +{}",
        after.live_pages,
        after.live_bytes,
        after.peak_bytes,
        after.quota,
        after.allocs - before.allocs,
        after.seals - before.seals,
        after.frees - before.frees,
        after.refusals - before.refusals,
    );
    let ok = sum == 42 && verified == 0 && freed == 0 && after.live_pages == 0 && after.live_bytes == 0;
    println!("{}", if ok { "ok: nothing live" } else { "FAILED" });
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
