//! Profilers and debuggers see wildx code: the perf map and jitdump files parsed record
//! by record against what was sealed, the GDB JIT objects read back through
//! `__jit_debug_descriptor` (feature `gdb-jit`), and the real tools: `perf record` +
//! `perf report` naming a spinning JIT function from the perf map, the same through the
//! jitdump and `perf inject --jit`, and `gdb -batch` naming a JIT frame in `bt`.
//!
//! Every test that enables a profiler does it in a child process (this binary re-run
//! with `--exact`), so each has its own pid, files and enabled set.
//!
//! Where the kernel forbids perf events (`perf_event_paranoid`, a container without
//! `CAP_PERFMON`) the perf tests print a loud SKIP line and pass; where `perf` or `gdb`
//! is missing they fail: CI installs both (`.ci/run`).
//!
//! `unsafe` is allowed here to seal pages holding known code and to read gdb's
//! descriptor, a static wildx exports.

#![allow(unsafe_code)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{CHILD_DONE, CHILD_ENV, assert_child_passed, describe, is_child, run_in_child};
use wildx::Page;
use wildx::profiling::{MAX_NAME_LEN, enable_jitdump, enable_perf_map};

type Nullary = extern "sysv64" fn() -> u64;
type Spin = extern "sysv64" fn(u64) -> u64;

/// `mov eax, 42; ret`.
const RET42: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];
/// `mov rax, rdi; 1: dec rax; jnz 1b; ret`: spins `rdi` times (rdi > 0), returns 0.
const SPIN: [u8; 9] = [0x48, 0x89, 0xf8, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3];
/// `int3; mov eax, 7; ret`: stops under a debugger inside the function.
const TRAP: [u8; 7] = [0xcc, 0xb8, 7, 0, 0, 0, 0xc3];
/// Spins of SPIN for the perf tests: about a second of CPU, so the JIT function holds
/// nearly all of the child's samples.
const SPINS: u64 = 1_500_000_000;

fn seal_named(code: &[u8], name: &str) -> wildx::Code<Nullary> {
    let page = Page::with_code(code).expect("map a page");
    // SAFETY: every caller passes RET42 or TRAP, functions of type `fn() -> u64` (eax set,
    // the upper half of rax is zeroed by the 32-bit mov).
    unsafe { page.seal_named::<Nullary>(name) }.expect("seal")
}

/// Runs `body` with a JIT function named `name` that spins `n` times. The one place to
/// change when the spinning function moves from a typed page to an arena function
/// (`Arena::push_named` + `publish` + `entry`).
fn with_named_spinner(name: &str, body: impl FnOnce(&dyn Fn(u64) -> u64)) {
    // A named arena function among unnamed neighbours, as a JIT would have it.
    let arena = wildx::Arena::new(1 << 16).expect("an arena");
    arena.push(&RET42).expect("push");
    let id = arena.push_named(name, &SPIN).expect("push_named");
    arena.push(&RET42).expect("push");
    arena.publish().expect("publish");
    // SAFETY: SPIN is `fn(u64) -> u64` for any non-zero argument; callers pass SPINS.
    let spin = unsafe { arena.entry::<Spin>(id) }.expect("entry");
    body(&|n| spin.call((n,)));
}

fn perf_map_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// A fresh directory under the target's temp dir for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("profiling-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

// ---- the perf map, parsed ----

/// One `START SIZE name` line.
#[derive(Debug, PartialEq)]
struct MapLine {
    start: usize,
    size: usize,
    name: String,
}

fn parse_map(text: &str) -> Vec<MapLine> {
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends in a newline: {text:?}");
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mut hex = || usize::from_str_radix(parts.next().expect("a field"), 16).expect("hex");
            let (start, size) = (hex(), hex());
            let name = parts.next().expect("a name").to_string();
            assert!(!name.is_empty() && !name.chars().any(char::is_control), "{line:?}");
            assert!(name.len() <= MAX_NAME_LEN, "{line:?}");
            MapLine { start, size, name }
        })
        .collect()
}

#[test]
fn perf_map_has_one_exact_line_per_sealed_page_with_sanitised_names() {
    let Some(out) = run_in_child("perf_map_has_one_exact_line_per_sealed_page_with_sanitised_names", || {
        let before = seal_named(&RET42, "sealed_before_enable");
        enable_perf_map().expect("enable the perf map");
        enable_perf_map().expect("enabling twice is a no-op");
        let long = "x".repeat(300);
        let named = [
            ("plain_name", "plain_name".to_string()),
            ("evil\nname\0with\r\tcontrols\u{7f}", "evil_name_with__controls_".to_string()),
            ("spaces and ünïcode", "spaces and ünïcode".to_string()),
            (&long[..], "x".repeat(MAX_NAME_LEN)),
        ];
        let mut codes = Vec::new();
        let mut want = Vec::new();
        for (name, clean) in &named {
            let code = seal_named(&RET42, name);
            want.push(MapLine { start: code.as_ptr() as usize, size: RET42.len(), name: clean.clone() });
            codes.push(code);
        }
        // Empty name and plain `seal`: named after the address.
        let empty = seal_named(&RET42, "");
        let page = Page::with_code(&RET42).unwrap();
        // SAFETY: RET42 is `fn() -> u64`.
        let unnamed = unsafe { page.seal::<Nullary>() }.unwrap();
        for code in [&empty, &unnamed] {
            let start = code.as_ptr() as usize;
            want.push(MapLine { start, size: RET42.len(), name: format!("wildx_0x{start:x}") });
        }
        for code in codes.iter().chain([&empty, &unnamed]) {
            assert_eq!(code.call(()), 42, "the code still runs");
        }
        let map = fs::read_to_string(perf_map_path(std::process::id())).expect("the map exists");
        let got = parse_map(&map);
        assert_eq!(got, want, "one line per seal after enable, in order:\n{map}");
        assert!(!map.contains("sealed_before_enable"));
        drop(before);
        let _ = fs::remove_file(perf_map_path(std::process::id()));
    }) else {
        return;
    };
    assert_child_passed("perf_map_has_one_exact_line_per_sealed_page_with_sanitised_names", &out);
}

/// Arena functions: one line per published function at publish (not at push), named by
/// `push_named` or after their address; import slots are not functions and get none.
#[test]
fn perf_map_has_one_line_per_published_arena_function() {
    let Some(out) = run_in_child("perf_map_has_one_line_per_published_arena_function", || {
        enable_perf_map().expect("enable the perf map");
        let path = perf_map_path(std::process::id());
        let arena = wildx::Arena::new(1 << 16).unwrap();
        let a = arena.push_named("arena_a", &RET42).unwrap();
        arena.import(0x1234).unwrap();
        let b = arena.push(&SPIN).unwrap();
        let c = arena.push_named("arena\nc", &TRAP).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "", "nothing before publish");
        arena.publish().unwrap();
        let d = arena.push_named("second_batch", &RET42).unwrap();
        arena.publish().unwrap();
        let line = |id, size, name: String| MapLine { start: arena.addr(id).unwrap(), size, name };
        let b_at = arena.addr(b).unwrap();
        let want = vec![
            line(a, RET42.len(), "arena_a".into()),
            line(b, SPIN.len(), format!("wildx_0x{b_at:x}")),
            line(c, TRAP.len(), "arena_c".into()),
            line(d, RET42.len(), "second_batch".into()),
        ];
        let map = fs::read_to_string(&path).unwrap();
        assert_eq!(parse_map(&map), want, "{map}");
        let _ = fs::remove_file(&path);
    }) else {
        return;
    };
    assert_child_passed("perf_map_has_one_line_per_published_arena_function", &out);
}

/// Lines are written whole even when many threads seal at once: 4 threads x 100 seals
/// give 400 well-formed lines naming exactly the pages sealed.
#[test]
fn perf_map_lines_never_interleave_across_threads() {
    let name = "perf_map_lines_never_interleave_across_threads";
    let Some(out) = run_in_child(name, || {
        enable_perf_map().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let name = format!("thread_{t}_{}", "y".repeat(100));
                    (0..100)
                        .map(|_| {
                            let code = seal_named(&RET42, &name);
                            let line = (code.as_ptr() as usize, name.clone());
                            drop(code);
                            line
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut want: Vec<(usize, String)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let map = fs::read_to_string(perf_map_path(std::process::id())).unwrap();
        let mut got: Vec<(usize, String)> = parse_map(&map)
            .into_iter()
            .map(|l| {
                assert_eq!(l.size, RET42.len());
                (l.start, l.name)
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        let _ = fs::remove_file(perf_map_path(std::process::id()));
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

/// A symbolic link planted at the map's name in the shared /tmp is refused (ELOOP), and
/// the file it points at is untouched.
#[test]
fn perf_map_refuses_a_planted_symlink() {
    let name = "perf_map_refuses_a_planted_symlink";
    let Some(out) = run_in_child(name, || {
        let dir = scratch(name);
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let map = perf_map_path(std::process::id());
        let _ = fs::remove_file(&map);
        std::os::unix::fs::symlink(&victim, &map).unwrap();
        let err = enable_perf_map().expect_err("a symlink at the map's name must be refused");
        assert_eq!(err, wildx::Error::Os(wildx::Errno::from_raw(libc::ELOOP)));
        let code = seal_named(&RET42, "not_written");
        assert_eq!(code.call(()), 42, "sealing works with the map off");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_file(&map).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

/// A forked child's seals do not go into its parent's map (the file is named for the
/// parent's pid): the child writes nothing.
#[test]
fn a_forked_child_writes_nothing_into_its_parents_map() {
    let name = "a_forked_child_writes_nothing_into_its_parents_map";
    let Some(out) = run_in_child(name, || {
        enable_perf_map().unwrap();
        // SAFETY: this child process has one thread (the harness runs the test on it);
        // the forked child only seals a page and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // A panic must not unwind into the harness: this process has only the forked
            // test thread, whose exit would end it with status 0.
            let ok = std::panic::catch_unwind(|| seal_named(&RET42, "sealed_in_the_forked_child").call(()) == 42)
                .unwrap_or(false);
            // SAFETY: _exit ends the forked child without running the parent's atexit state.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "forked child failed: {status}");
        let code = seal_named(&RET42, "sealed_in_the_parent_after_fork");
        let map = fs::read_to_string(perf_map_path(std::process::id())).unwrap();
        let lines = parse_map(&map);
        assert_eq!(
            lines,
            vec![MapLine {
                start: code.as_ptr() as usize,
                size: RET42.len(),
                name: "sealed_in_the_parent_after_fork".into()
            }]
        );
        let _ = fs::remove_file(perf_map_path(std::process::id()));
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

// ---- the jitdump, parsed ----

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One `JIT_CODE_LOAD` record, every field.
#[derive(Debug)]
struct Load {
    timestamp: u64,
    pid: u32,
    tid: u32,
    vma: u64,
    code_addr: u64,
    code_index: u64,
    name: String,
    code: Vec<u8>,
}

/// Parses a whole dump: checks the header against `pid` and returns its timestamp and
/// every record (all must be `JIT_CODE_LOAD`, with consistent sizes).
fn parse_jitdump(data: &[u8], pid: u32) -> (u64, Vec<Load>) {
    assert_eq!(u32_at(data, 0), 0x4A69_5444, "magic JiTD");
    assert_eq!(u32_at(data, 4), 1, "version");
    let header_size = u32_at(data, 8) as usize;
    assert_eq!(header_size, 40, "the header's total_size");
    assert_eq!(u32_at(data, 12), 62, "EM_X86_64");
    assert_eq!(u32_at(data, 16), 0, "pad1");
    assert_eq!(u32_at(data, 20), pid, "pid");
    let header_ts = u64_at(data, 24);
    assert_eq!(u64_at(data, 32), 0, "flags");
    let mut at = header_size;
    let mut loads = Vec::new();
    while at < data.len() {
        let (id, total) = (u32_at(data, at), u32_at(data, at + 4) as usize);
        assert_eq!(id, 0, "JIT_CODE_LOAD");
        let rec = &data[at..at + total];
        let code_size = u64_at(rec, 40) as usize;
        let name_end = 56 + rec[56..].iter().position(|&b| b == 0).expect("a NUL-terminated name");
        assert_eq!(name_end + 1 + code_size, total, "total_size covers header, name, NUL and code");
        loads.push(Load {
            timestamp: u64_at(rec, 8),
            pid: u32_at(rec, 16),
            tid: u32_at(rec, 20),
            vma: u64_at(rec, 24),
            code_addr: u64_at(rec, 32),
            code_index: u64_at(rec, 48),
            name: String::from_utf8(rec[56..name_end].to_vec()).expect("UTF-8 name"),
            code: rec[name_end + 1..].to_vec(),
        });
        at += total;
    }
    assert_eq!(at, data.len(), "no torn record at the end");
    (header_ts, loads)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call writes.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn jitdump_records_match_what_was_sealed_and_the_marker_is_read_exec_past_the_end() {
    let name = "jitdump_records_match_what_was_sealed_and_the_marker_is_read_exec_past_the_end";
    let Some(out) = run_in_child(name, || {
        let dir = scratch(name);
        std::env::set_current_dir(&dir).unwrap();
        let t0 = monotonic_ns();
        enable_jitdump().expect("enable the jitdump");
        enable_jitdump().expect("enabling twice is a no-op");
        let tid = {
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() as u32 }
        };
        let codes: Vec<(wildx::Code<Nullary>, &[u8], &str)> = vec![
            (seal_named(&RET42, "dump_first"), &RET42, "dump_first"),
            (seal_named(&TRAP, "dump\nsecond"), &TRAP, "dump_second"),
            (seal_named(&RET42, "dump_third"), &RET42, "dump_third"),
        ];
        let t1 = monotonic_ns();
        let pid = std::process::id();
        let data = fs::read(dir.join(format!("jit-{pid}.dump"))).expect("the dump exists");
        let (header_ts, loads) = parse_jitdump(&data, pid);
        assert!(t0 <= header_ts && header_ts <= t1, "CLOCK_MONOTONIC header timestamp");
        assert_eq!(loads.len(), codes.len(), "{loads:?}");
        let mut last_ts = header_ts;
        for (i, (load, (code, bytes, clean))) in loads.iter().zip(&codes).enumerate() {
            let addr = code.as_ptr() as u64;
            assert_eq!((load.pid, load.tid), (pid, tid), "{load:?}");
            assert_eq!((load.vma, load.code_addr), (addr, addr), "{load:?}");
            assert_eq!(load.code_index, i as u64, "{load:?}");
            assert_eq!(load.name, *clean, "{load:?}");
            assert_eq!(load.code, *bytes, "the record carries the sealed bytes");
            assert_eq!(load.code, code.as_slice());
            assert!(last_ts <= load.timestamp && load.timestamp <= t1, "timestamps increase: {load:?}");
            last_ts = load.timestamp;
        }
        // The marker: one page of the dump, r-xp, never writable, at file offset 1 TiB,
        // past the end of the file, so it shows no byte of it.
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let marker: Vec<&str> = maps.lines().filter(|l| l.ends_with(&format!("/jit-{pid}.dump"))).collect();
        assert_eq!(marker.len(), 1, "one marker mapping:\n{maps}");
        let fields: Vec<&str> = marker[0].split_whitespace().collect();
        assert_eq!(fields[1], "r-xp", "{}", marker[0]);
        assert_eq!(fields[2], "10000000000", "it maps at 1 TiB: {}", marker[0]);
        let (lo, hi) = fields[0].split_once('-').unwrap();
        let len = usize::from_str_radix(hi, 16).unwrap() - usize::from_str_radix(lo, 16).unwrap();
        assert_eq!(len, 4096, "{}", marker[0]);
        std::env::set_current_dir("/").unwrap();
        let _ = fs::remove_dir_all(&dir);
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

/// Records from several threads at once are whole and in order: every record parses,
/// code indexes run 0..n without gaps, timestamps never go backwards in file order.
#[test]
fn jitdump_records_from_many_threads_are_whole_and_ordered() {
    let name = "jitdump_records_from_many_threads_are_whole_and_ordered";
    let Some(out) = run_in_child(name, || {
        let dir = scratch(name);
        std::env::set_current_dir(&dir).unwrap();
        enable_jitdump().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        drop(seal_named(&TRAP, &format!("thread_{t}")));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let pid = std::process::id();
        let (_, loads) = parse_jitdump(&fs::read(dir.join(format!("jit-{pid}.dump"))).unwrap(), pid);
        assert_eq!(loads.len(), 200);
        for (i, pair) in loads.windows(2).enumerate() {
            assert!(pair[0].timestamp <= pair[1].timestamp, "record {i}");
        }
        for (i, load) in loads.iter().enumerate() {
            assert_eq!(load.code_index, i as u64);
            assert_eq!(load.code, TRAP);
            assert!(load.name.starts_with("thread_"), "{load:?}");
        }
        std::env::set_current_dir("/").unwrap();
        let _ = fs::remove_dir_all(&dir);
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

// ---- the GDB JIT objects, read back ----

#[cfg(feature = "gdb-jit")]
mod gdb_objects {
    use object::{Object, ObjectSection, ObjectSymbol};

    /// gdb's `struct jit_code_entry`.
    #[repr(C)]
    struct Entry {
        next: *const Entry,
        prev: *const Entry,
        symfile_addr: *const u8,
        symfile_size: u64,
    }

    /// gdb's `struct jit_descriptor`.
    #[repr(C)]
    struct Descriptor {
        version: u32,
        action_flag: u32,
        relevant_entry: *const Entry,
        first_entry: *const Entry,
    }

    unsafe extern "C" {
        // The symbol wildx exports with the gdb-jit feature.
        static __jit_debug_descriptor: Descriptor;
    }

    /// Every registered object's function symbols as (name, address, size).
    pub fn registered_symbols() -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        // SAFETY: wildx defines the descriptor with this layout; this test's child has one
        // thread, so no registration runs while the list is walked.
        let (version, mut cur) =
            unsafe { (__jit_debug_descriptor.version, std::ptr::addr_of!(__jit_debug_descriptor.first_entry).read()) };
        assert_eq!(version, 1);
        while !cur.is_null() {
            // SAFETY: linked entries and their objects are live (see above).
            let (elf, next) = unsafe {
                let e = &*cur;
                (std::slice::from_raw_parts(e.symfile_addr, e.symfile_size as usize), e.next)
            };
            let file = object::File::parse(elf).expect("a valid ELF object");
            assert_eq!(file.architecture(), object::Architecture::X86_64);
            let text = file.section_by_name(".text").expect(".text");
            for sym in file.symbols().filter(|s| s.kind() == object::SymbolKind::Text) {
                assert_eq!(sym.section_index(), Some(text.index()));
                out.push((sym.name().unwrap().to_string(), text.address() + sym.address(), sym.size()));
            }
            cur = next;
        }
        out
    }
}

#[cfg(feature = "gdb-jit")]
#[test]
fn gdb_objects_name_each_sealed_page_and_go_at_free() {
    let name = "gdb_objects_name_each_sealed_page_and_go_at_free";
    let Some(out) = run_in_child(name, || {
        let before = gdb_objects::registered_symbols().len();
        let a = seal_named(&RET42, "gdb_alpha");
        let b = seal_named(&TRAP, "gdb\u{1b}beta");
        let page = Page::with_code(&RET42).unwrap();
        // SAFETY: RET42 is `fn() -> u64`.
        let c = unsafe { page.seal::<Nullary>() }.unwrap();
        let syms = gdb_objects::registered_symbols();
        assert_eq!(syms.len(), before + 3, "{syms:?}");
        let find = |n: &str| syms.iter().find(|s| s.0 == n).cloned();
        assert_eq!(find("gdb_alpha"), Some(("gdb_alpha".into(), a.as_ptr() as u64, RET42.len() as u64)));
        assert_eq!(find("gdb_beta"), Some(("gdb_beta".into(), b.as_ptr() as u64, TRAP.len() as u64)));
        let c_name = format!("wildx_0x{:x}", c.as_ptr() as usize);
        assert_eq!(find(&c_name), Some((c_name.clone(), c.as_ptr() as u64, RET42.len() as u64)));
        drop(b);
        let syms = gdb_objects::registered_symbols();
        assert_eq!(syms.len(), before + 2, "freeing a page unregisters it: {syms:?}");
        assert!(!syms.iter().any(|s| s.0 == "gdb_beta"));
        drop((a, c));
        assert_eq!(gdb_objects::registered_symbols().len(), before);
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

/// Arena batches: one object per publish holding each function's symbol; it goes when
/// the batch's last function retires, and every remaining one goes with the arena.
#[cfg(feature = "gdb-jit")]
#[test]
fn gdb_objects_follow_arena_batches() {
    let name = "gdb_objects_follow_arena_batches";
    let Some(out) = run_in_child(name, || {
        let before = gdb_objects::registered_symbols().len();
        let arena = wildx::Arena::new(1 << 16).unwrap();
        let a = arena.push_named("batch1_a", &RET42).unwrap();
        arena.import(0x1234).unwrap();
        let b = arena.push(&TRAP).unwrap();
        assert_eq!(gdb_objects::registered_symbols().len(), before, "nothing before publish");
        arena.publish().unwrap();
        let c = arena.push_named("batch2_c", &RET42).unwrap();
        arena.publish().unwrap();
        let syms = gdb_objects::registered_symbols();
        assert_eq!(syms.len(), before + 3, "{syms:?}");
        let at = |id| arena.addr(id).unwrap() as u64;
        let find = |n: &str| syms.iter().find(|s| s.0 == n).cloned();
        assert_eq!(find("batch1_a"), Some(("batch1_a".into(), at(a), RET42.len() as u64)));
        let b_name = format!("wildx_0x{:x}", at(b));
        assert_eq!(find(&b_name), Some((b_name.clone(), at(b), TRAP.len() as u64)));
        assert_eq!(find("batch2_c"), Some(("batch2_c".into(), at(c), RET42.len() as u64)));
        arena.retire(a).unwrap();
        assert_eq!(gdb_objects::registered_symbols().len(), before + 3, "batch 1 still has b");
        arena.retire(b).unwrap();
        let syms = gdb_objects::registered_symbols();
        assert_eq!(syms.len(), before + 1, "batch 1 gone: {syms:?}");
        assert!(syms.iter().any(|s| s.0 == "batch2_c"));
        drop(arena);
        assert_eq!(gdb_objects::registered_symbols().len(), before, "the drop unregisters the rest");
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

/// Threads sealing and freeing at once leave gdb's list as they found it.
#[cfg(feature = "gdb-jit")]
#[test]
fn gdb_list_balances_under_concurrent_seals_and_frees() {
    let name = "gdb_list_balances_under_concurrent_seals_and_frees";
    let Some(out) = run_in_child(name, || {
        let before = gdb_objects::registered_symbols().len();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..100 {
                        let code = seal_named(&RET42, &format!("t{t}_{i}"));
                        if i % 3 == 0 {
                            kept.push(code);
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let syms = gdb_objects::registered_symbols();
        assert_eq!(syms.len(), before + kept.len());
        for code in &kept {
            assert!(syms.iter().any(|s| s.1 == code.as_ptr() as u64), "{:p} not registered", code.as_ptr());
        }
        drop(kept);
        assert_eq!(gdb_objects::registered_symbols().len(), before);
    }) else {
        return;
    };
    assert_child_passed(name, &out);
}

// ---- the real tools ----

/// Runs `cmd`, panicking (failing the test) if the program is missing: CI installs it.
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{program}` ({e}); install it (`apt-get install -y linux-perf gdb`): CI requires it")
    })
}

/// `None` if `perf record` works here; `Some(reason)` if the kernel forbids perf events.
/// Panics if perf is missing or fails for another reason.
fn perf_forbidden(dir: &Path) -> Option<String> {
    let data = dir.join("probe.data");
    let out = tool("perf", &["record", "-q", "-e", "cpu-clock", "-o", data.to_str().unwrap(), "--", "true"]);
    if out.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if ["paranoid", "ermission", "not permitted", "No permission", "Operation not supported"]
        .iter()
        .any(|s| stderr.contains(s))
    {
        return Some(stderr.lines().take(3).collect::<Vec<_>>().join(" | "));
    }
    panic!("perf record failed for a reason other than permissions:\n{}", describe(&out));
}

fn skip(test: &str, reason: &str) {
    println!("\n!!!!!!!! SKIP {test}: the kernel forbids perf events here: {reason} !!!!!!!!\n");
    eprintln!("\n!!!!!!!! SKIP {test}: the kernel forbids perf events here: {reason} !!!!!!!!\n");
}

/// This test binary re-run as child `name` under `perf record` with `record_args`.
fn perf_record_child(name: &str, dir: &Path, record_args: &[&str]) -> (PathBuf, u32) {
    let data = dir.join("perf.data");
    let exe = std::env::current_exe().unwrap();
    let mut args = vec!["record", "-q", "-e", "cpu-clock", "-o", data.to_str().unwrap()];
    args.extend_from_slice(record_args);
    args.extend_from_slice(&["--", exe.to_str().unwrap(), "--exact", name, "--nocapture", "--test-threads=1"]);
    let out = Command::new("perf").args(&args).env(CHILD_ENV, name).current_dir(dir).output().expect("run perf");
    assert!(out.status.success(), "perf record failed:\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{CHILD_DONE}{name}")), "the child did not finish:\n{}", describe(&out));
    // The harness prints "test NAME ... " before the child's own first line.
    let pid = stdout
        .split("child-pid: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the child prints its pid");
    (data, pid)
}

/// The share of samples `perf report` attributes to symbol `sym`, in percent.
fn share_of(data: &Path, sym: &str) -> (f64, String) {
    let out = tool("perf", &["report", "-i", data.to_str().unwrap(), "--stdio", "--sort", "sym"]);
    assert!(out.status.success(), "perf report failed:\n{}", describe(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let share = report
        .lines()
        .filter(|l| !l.starts_with('#') && l.trim_end().ends_with(&format!("] {sym}")))
        .filter_map(|l| l.split_whitespace().next()?.strip_suffix('%')?.parse::<f64>().ok())
        .sum();
    (share, report)
}

const PERF_MAP_SPIN: &str = "wildx_spin_perf_map";

#[test]
fn perf_report_names_a_jit_function_from_the_perf_map() {
    let name = "perf_report_names_a_jit_function_from_the_perf_map";
    if is_child(name) {
        println!("child-pid: {}", std::process::id());
        enable_perf_map().unwrap();
        with_named_spinner(PERF_MAP_SPIN, |spin| assert_eq!(spin(SPINS), 0));
        println!("{CHILD_DONE}{name}");
        return;
    }
    let dir = scratch(name);
    if let Some(reason) = perf_forbidden(&dir) {
        return skip(name, &reason);
    }
    let (data, pid) = perf_record_child(name, &dir, &[]);
    let (share, report) = share_of(&data, PERF_MAP_SPIN);
    let _ = fs::remove_file(perf_map_path(pid));
    println!("{PERF_MAP_SPIN}: {share:.2}% of samples\n{report}");
    assert!(share >= 80.0, "only {share:.2}% of samples in {PERF_MAP_SPIN}:\n{report}");
    let _ = fs::remove_dir_all(&dir);
}

const JITDUMP_SPIN: &str = "wildx_spin_jitdump";

#[test]
fn perf_inject_names_a_jit_function_from_the_jitdump() {
    let name = "perf_inject_names_a_jit_function_from_the_jitdump";
    if is_child(name) {
        println!("child-pid: {}", std::process::id());
        enable_jitdump().unwrap();
        with_named_spinner(JITDUMP_SPIN, |spin| assert_eq!(spin(SPINS), 0));
        println!("{CHILD_DONE}{name}");
        return;
    }
    let dir = scratch(name);
    if let Some(reason) = perf_forbidden(&dir) {
        return skip(name, &reason);
    }
    let (data, _pid) = perf_record_child(name, &dir, &["-k", "mono"]);
    let injected = dir.join("perf.jit.data");
    let out = tool("perf", &["inject", "--jit", "-i", data.to_str().unwrap(), "-o", injected.to_str().unwrap()]);
    assert!(out.status.success(), "perf inject --jit failed:\n{}", describe(&out));
    let (share, report) = share_of(&injected, JITDUMP_SPIN);
    println!("{JITDUMP_SPIN}: {share:.2}% of samples\n{report}");
    assert!(share >= 80.0, "only {share:.2}% of samples in {JITDUMP_SPIN}:\n{report}");
    let _ = fs::remove_dir_all(&dir);
}

#[cfg(feature = "gdb-jit")]
#[test]
fn gdb_backtrace_names_the_jit_frame() {
    let name = "gdb_backtrace_names_the_jit_frame";
    if is_child(name) {
        let keep = seal_named(&RET42, "gdb_bystander");
        let gone = seal_named(&RET42, "gdb_freed_before_the_trap");
        drop(gone);
        let trap = seal_named(&TRAP, "wildx_gdb_trap");
        // Under gdb this stops at the int3 inside the JIT function (SIGTRAP).
        assert_eq!(trap.call(()), 7);
        drop(keep);
        println!("{CHILD_DONE}{name}");
        return;
    }
    let (out, stdout) = gdb_backtrace_of_child(name);
    assert!(stdout.contains("SIGTRAP"), "the child did not stop in the JIT code:\n{}", describe(&out));
    let frame0 = stdout.lines().find(|l| l.starts_with("#0")).unwrap_or_else(|| panic!("no bt:\n{}", describe(&out)));
    assert!(frame0.contains(" in wildx_gdb_trap ()"), "frame #0 is not named: {frame0}\n{}", describe(&out));
    assert!(
        stdout.lines().any(|l| l.starts_with("#1") || l.starts_with("#2"))
            && stdout.contains(&format!("in profiling::{name} ()")),
        "gdb unwinds out of the JIT frame into its caller:\n{}",
        describe(&out)
    );
    assert!(!stdout.contains("gdb_freed_before_the_trap"), "{}", describe(&out));
}

/// The same through an arena: one gdb object per publish; a batch whose functions are all
/// retired is unregistered, and gdb names the trapping arena function.
#[cfg(feature = "gdb-jit")]
#[test]
fn gdb_backtrace_names_an_arena_function() {
    let name = "gdb_backtrace_names_an_arena_function";
    if is_child(name) {
        let arena = wildx::Arena::new(1 << 16).unwrap();
        let gone = arena.push_named("gdb_arena_retired", &RET42).unwrap();
        arena.publish().unwrap();
        arena.retire(gone).unwrap();
        arena.push_named("gdb_arena_bystander", &RET42).unwrap();
        let trap = arena.push_named("wildx_gdb_arena_trap", &TRAP).unwrap();
        arena.publish().unwrap();
        // SAFETY: TRAP is `fn() -> u64` once the debugger continues past its int3.
        let trap = unsafe { arena.entry::<Nullary>(trap) }.unwrap();
        assert_eq!(trap.call(()), 7);
        println!("{CHILD_DONE}{name}");
        return;
    }
    let (out, stdout) = gdb_backtrace_of_child(name);
    let frame0 = stdout.lines().find(|l| l.starts_with("#0")).unwrap_or_else(|| panic!("no bt:\n{}", describe(&out)));
    assert!(frame0.contains(" in wildx_gdb_arena_trap ()"), "frame #0 is not named: {frame0}\n{}", describe(&out));
    assert!(!stdout.contains("gdb_arena_retired"), "{}", describe(&out));
}

/// Runs this test binary's test `name` as a child under `gdb -batch` (run, then `bt` where
/// it stops) and returns the output and its stdout.
#[cfg(feature = "gdb-jit")]
fn gdb_backtrace_of_child(name: &str) -> (Output, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-iex", "set debuginfod enabled off", "-ex", "run", "-ex", "bt", "-ex", "kill"])
        .arg("--args")
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gdb ({e}); install it (`apt-get install -y gdb`): CI requires it"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    (out, stdout)
}

/// The harness can fail: a child that never reaches the JIT function leaves no sample
/// there, and `share_of` says 0.
#[test]
fn share_of_reports_zero_for_a_name_nobody_ran() {
    let dir = scratch("share_of_zero");
    if let Some(reason) = perf_forbidden(&dir) {
        return skip("share_of_reports_zero_for_a_name_nobody_ran", &reason);
    }
    let (share, _) = share_of(&dir.join("probe.data"), "wildx_never_ran");
    assert_eq!(share, 0.0);
    let _ = fs::remove_dir_all(&dir);
}
