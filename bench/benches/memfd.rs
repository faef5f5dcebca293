//! The page cycle in memfd mode (the fallback where the kernel refuses `PROT_EXEC` on
//! anonymous memory): alloc 64 bytes, write the add code, seal, call once, free. This
//! process chooses the memfd mode up front (`wildx::use_memfd`), so wildx's pages are
//! views of its memfd here; beside them, in the same run, the anonymous syscall floor
//! (`mmap` R|W, `mprotect` R|X, `munmap`, through `libc`) and the memfd floor (the
//! same file, the same steps wildx takes, by hand: `mmap` shared R|W at the offset of
//! the address, `MAP_FIXED` `mmap` R|X over it, then `MAP_FIXED` anonymous `PROT_NONE`,
//! `fallocate` punch and `munmap`; without `MADV_DONTFORK`).
//!
//! Run: `cargo bench -p wildx-bench --bench memfd`.
//!
//! `unsafe` is allowed here because every variant ends in a call into JIT code through a
//! function pointer, and the floors map and write memory by hand.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use common::{ADD, to_fn};
use criterion::{Criterion, criterion_group, criterion_main};

const PAGE: usize = 4096;

/// The memfd floor: wildx's steps on one page of the file `fd`, by hand.
fn memfd_floor(fd: i32) -> i32 {
    // SAFETY: a fresh inaccessible page at an address the kernel picks, then replaced
    // (MAP_FIXED) by views of our own file at the offset equal to its address; written
    // while R|W, called while R|X, released and unmapped after the call.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(p, libc::MAP_FAILED);
        let off = p as libc::off_t;
        let fixed = libc::MAP_SHARED | libc::MAP_FIXED;
        assert_eq!(libc::mmap(p, PAGE, libc::PROT_READ | libc::PROT_WRITE, fixed, fd, off), p);
        p.cast::<u8>().copy_from_nonoverlapping(ADD.as_ptr(), ADD.len());
        assert_eq!(libc::mmap(p, PAGE, libc::PROT_READ | libc::PROT_EXEC, fixed, fd, off), p);
        let r = to_fn(p.cast())(black_box(7), black_box(35));
        let none = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
        assert_eq!(libc::mmap(p, PAGE, libc::PROT_NONE, none, -1, 0), p);
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        assert_eq!(libc::fallocate(fd, punch, off, PAGE as libc::off_t), 0);
        assert_eq!(libc::munmap(p, PAGE), 0);
        r
    }
}

fn memfd_cycle(c: &mut Criterion) {
    assert_eq!(wildx::use_memfd(), Ok(wildx::ExecMode::Memfd));
    // SAFETY: memfd_create reads the NUL-terminated name; ftruncate sizes our own file.
    let fd = unsafe {
        let fd = libc::memfd_create(c"floor".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, 1 << 47), 0);
        fd
    };
    let mut g = c.benchmark_group("memfd_cycle");
    g.bench_function("floor_anonymous", |b| b.iter(|| common::floor_cycle(false)));
    g.bench_function("floor_memfd", |b| b.iter(|| memfd_floor(fd)));
    g.bench_function("wildx_raw_memfd", |b| b.iter(common::wildx_raw_cycle));
    g.finish();
}

criterion_group!(name = benches; config = common::config(); targets = memfd_cycle);
criterion_main!(benches);
