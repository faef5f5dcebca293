//! Runs the freestanding binaries natively and checks their ELF images.
//!
//! - `smoke`, `two_pages`, `lifecycle`, `arena`, `profile` (built by cargo for this test, reached through
//!   `CARGO_BIN_EXE_<name>`) must exit 0 with nothing on stderr;
//! - `panics` must exit 101 after the panic handler's one line;
//! - `tamper` must die by SIGABRT after the runtime's one-line diagnostic;
//! - every failure exit in the binaries' sources has a code of its own and one line;
//! - every binary must be a static `ET_EXEC` with no interpreter, no dynamic section, no
//!   undefined symbol, no writable and executable segment, no page shared between
//!   segments, and a non-executable `PT_GNU_STACK`;
//! - `smoke` in the `min-size` profile (fat LTO, one codegen unit, `opt-level = "z"`,
//!   stripped) must be at most 8 KiB, and still run.
//!
//! Why this test lives in `verify/tests/` and not in the root package's `tests/`: cargo
//! only gives an integration test `CARGO_BIN_EXE_<name>` for the binaries of its own
//! package, and only builds a package's binaries when that package's tests need them.
//!
//! `tamper` needs wildx's `verify-on-call`. Enabling it in a plain `cargo test
//! --workspace` would unify it into every wildx test binary of that build, so `tamper`
//! has `required-features = ["verify-on-call"]` and, unless this package's feature is
//! already on (`--all-features`: then cargo builds `tamper` for this test), this test
//! builds it itself with a nested `cargo build --features verify-on-call` into a target
//! directory of its own under `CARGO_TARGET_TMPDIR` (the outer cargo holds its own target
//! directory's lock while tests run). The size check builds `smoke` the same way, with
//! `--profile min-size`. Both nested builds are offline: the outer build has fetched
//! every package they need.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock, PoisonError};

use object::Endianness;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader, Sym};

const SIGABRT: i32 = 6;
const PAGE: u64 = 4096;
/// The size goal for `smoke`, stripped, in the `min-size` profile.
const SMOKE_SIZE_GOAL: u64 = 8 * 1024;

fn run(exe: &Path) -> Output {
    Command::new(exe).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

fn describe(exe: &Path, out: &Output) -> String {
    format!(
        "{}: {:?} (signal {:?})\nstdout: {}\nstderr: {}",
        exe.display(),
        out.status,
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_exits_0(exe: &Path) {
    let out = run(exe);
    assert_eq!(out.status.code(), Some(0), "{}", describe(exe, &out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", describe(exe, &out));
}

/// Builds `bin` of wildx-verify with a nested cargo into this test's own target
/// directory and returns the executable's path.
fn nested_build(profile: &str, features: Option<&str>, bin: &str) -> PathBuf {
    // One nested cargo at a time: they share a target directory.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("freestanding");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from(env!("CARGO")));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--offline", "--quiet", "--package", "wildx-verify", "--bin", bin, "--profile", profile])
        .arg("--target-dir")
        .arg(&target_dir);
    if let Some(features) = features {
        cmd.args(["--features", features]);
    }
    if profile == "min-size" {
        // The size goal is for wildx without its default features: `memfd`, the
        // fallback for systems that deny executable anonymous memory (about 2.5 KiB
        // more), and `page-ring` (about 0.4 KiB more).
        cmd.arg("--no-default-features");
    }
    let out = cmd.output().expect("cannot run the nested cargo");
    assert!(
        out.status.success(),
        "nested `{cmd:?}` failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let exe = target_dir.join(profile_dir).join(bin);
    assert!(exe.is_file(), "the nested build did not produce {}", exe.display());
    exe
}

fn smoke() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smoke"))
}

fn two_pages() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_two_pages"))
}

fn lifecycle() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifecycle"))
}

fn arena() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_arena"))
}

fn profile() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_profile"))
}

fn panics() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_panics"))
}

/// `tamper` with verify-on-call on: cargo's own build when this package's feature is on
/// (`--all-features`), else a nested dev build with the feature, built once per run of
/// this test binary. (Cargo sets `CARGO_BIN_EXE_tamper` even when the binary's required
/// features are off and it was not built, so the feature is what decides.)
fn tamper() -> PathBuf {
    static TAMPER: OnceLock<PathBuf> = OnceLock::new();
    TAMPER
        .get_or_init(|| {
            if cfg!(feature = "verify-on-call") {
                PathBuf::from(env!("CARGO_BIN_EXE_tamper"))
            } else {
                nested_build("dev", Some("verify-on-call"), "tamper")
            }
        })
        .clone()
}

/// `smoke` in the `min-size` profile (stripped), built once per run of this test binary.
fn smoke_min_size() -> PathBuf {
    static SMOKE: OnceLock<PathBuf> = OnceLock::new();
    SMOKE.get_or_init(|| nested_build("min-size", None, "smoke")).clone()
}

#[test]
fn smoke_adds_7_and_35_and_frees() {
    assert_exits_0(&smoke());
}

#[test]
fn two_pages_are_independent() {
    assert_exits_0(&two_pages());
}

#[test]
fn lifecycle_refusals_and_quota_recovery() {
    assert_exits_0(&lifecycle());
}

#[test]
fn arena_pushes_publishes_calls_retires_and_balances_without_a_heap() {
    assert_exits_0(&arena());
}

#[test]
fn profile_writes_the_perf_map_line_of_a_named_page() {
    assert_exits_0(&profile());
}

#[test]
fn panic_handler_writes_one_line_and_exits_101() {
    let exe = panics();
    let out = run(&exe);
    assert_eq!(out.status.code(), Some(101), "{}", describe(&exe, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("wildx-verify: panic at "), "{}", describe(&exe, &out));
    assert!(stderr.contains("panics.rs:") && stderr.ends_with('\n'), "{}", describe(&exe, &out));
    assert_eq!(stderr.lines().count(), 1, "{}", describe(&exe, &out));
}

#[test]
fn tamper_dies_by_sigabrt_with_one_line() {
    let exe = tamper();
    let out = run(&exe);
    assert_eq!(out.status.signal(), Some(SIGABRT), "{}", describe(&exe, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("wildx: integrity check failed for page 0x"), "{}", describe(&exe, &out));
    assert_eq!(stderr.lines().count(), 1, "{}", describe(&exe, &out));
}

#[test]
fn smoke_min_size_is_within_the_size_goal_and_runs() {
    let exe = smoke_min_size();
    let len = fs::metadata(&exe).expect("stat smoke").len();
    println!("smoke, min-size profile, stripped: {len} bytes (goal {SMOKE_SIZE_GOAL})");
    let data = fs::read(&exe).expect("read smoke");
    let header = FileHeader64::<Endianness>::parse(&*data).expect("an ELF64 file");
    let endian = header.endian().expect("a known byte order");
    let sections = header.sections(endian, &*data).expect("section headers");
    assert!(sections.symbols(endian, &*data, elf::SHT_SYMTAB).expect("symtab").is_empty(), "not stripped");
    assert!(len <= SMOKE_SIZE_GOAL, "smoke is {len} bytes stripped, over the {SMOKE_SIZE_GOAL}-byte goal");
    assert_exits_0(&exe);
    assert_eq!(elf_violations(&data), Vec::<String>::new(), "{}", exe.display());
}

#[test]
fn every_binary_is_a_static_elf_with_wx_segments() {
    for exe in [smoke(), two_pages(), lifecycle(), arena(), profile(), panics(), tamper()] {
        let data = fs::read(&exe).unwrap_or_else(|e| panic!("read {}: {e}", exe.display()));
        assert_eq!(elf_violations(&data), Vec::<String>::new(), "{}", exe.display());
    }
}

/// The checker can fail: this test binary itself is a dynamically linked PIE.
#[test]
fn elf_checker_rejects_a_dynamic_executable() {
    let exe = env::current_exe().expect("current_exe");
    let violations = elf_violations(&fs::read(&exe).expect("read the test binary"));
    let has = |what: &str| violations.iter().any(|v| v.contains(what));
    assert!(has("PT_INTERP") && has("PT_DYNAMIC"), "{violations:?}");
}

/// The checker can fail on what it exists to catch: smoke's program headers, altered to
/// make its code writable, its stack executable, or its data share the code's last page.
#[test]
fn elf_checker_catches_wx_segments_executable_stack_and_shared_pages() {
    let good = fs::read(smoke()).expect("read smoke");
    let field = |data: &[u8], at: usize, len: usize| -> u64 {
        data[at..at + len].iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b))
    };
    let (phoff, phnum) = (field(&good, 0x20, 8) as usize, field(&good, 0x38, 2) as usize);
    // (offset of the header, p_type, p_flags) for each program header.
    let headers: Vec<(usize, u32, u32)> = (0..phnum)
        .map(|i| phoff + i * 56)
        .map(|ph| (ph, field(&good, ph, 4) as u32, field(&good, ph + 4, 4) as u32))
        .collect();
    let find = |p_type: u32, flags: u32| {
        headers.iter().find(|h| h.1 == p_type && h.2 == flags).map(|h| h.0).expect("the program header")
    };
    let (text, data, stack) = (
        find(elf::PT_LOAD.0, elf::PF_R.0 | elf::PF_X.0),
        find(elf::PT_LOAD.0, elf::PF_R.0 | elf::PF_W.0),
        find(elf::PT_GNU_STACK.0, elf::PF_R.0 | elf::PF_W.0),
    );
    let rwx = (elf::PF_R.0 | elf::PF_W.0 | elf::PF_X.0).to_le_bytes();
    let has = |bytes: &[u8], what: &str| elf_violations(bytes).iter().any(|v| v.contains(what));

    let mut bad = good.clone();
    bad[text + 4..text + 8].copy_from_slice(&rwx);
    assert!(has(&bad, "writable and executable"), "{:?}", elf_violations(&bad));

    let mut bad = good.clone();
    bad[stack + 4..stack + 8].copy_from_slice(&rwx);
    assert!(has(&bad, "PT_GNU_STACK is executable"), "{:?}", elf_violations(&bad));

    // Move the data segment onto the text segment's last page, at the in-page offset
    // its file offset requires.
    let text_last_page = (field(&good, text + 16, 8) + field(&good, text + 40, 8) - 1) / PAGE;
    let moved = text_last_page * PAGE + field(&good, data + 8, 8) % PAGE;
    let mut bad = good.clone();
    bad[data + 16..data + 24].copy_from_slice(&moved.to_le_bytes());
    assert!(has(&bad, "share a page"), "{:?}", elf_violations(&bad));
}

/// Each failed check in a binary exits with a code of its own and writes one line that
/// names the binary.
#[test]
fn failure_exit_codes_are_distinct_and_lines_name_their_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut seen: Vec<(u32, String)> = Vec::new();
    for entry in fs::read_dir(&dir).expect("read src/bin") {
        let path = entry.expect("dir entry").path();
        let bin = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name").to_owned();
        let source = fs::read_to_string(&path).expect("read a binary's source");
        let mut count = 0;
        for call in source.split("rt::fail(").skip(1) {
            let (code, rest) = call.split_once(',').expect("rt::fail(code, line)");
            let code: u32 =
                code.trim().parse().unwrap_or_else(|_| panic!("{bin}: exit code {code:?} is not a literal"));
            let line = rest.trim_start().strip_prefix('"').and_then(|r| r.split_once('"')).map(|(l, _)| l);
            let line = line.unwrap_or_else(|| panic!("{bin}: exit {code}: the line is not a string literal"));
            assert!(line.starts_with(&format!("{bin}: ")), "{bin}: exit {code}: {line:?} does not name the binary");
            assert!(line.ends_with("\\n") && line.matches("\\n").count() == 1, "{bin}: exit {code}: not one line");
            assert!(code != 0 && code != 101 && code < 128, "{bin}: exit {code} is reserved (0, panic, signals)");
            if let Some((_, other)) = seen.iter().find(|(c, _)| *c == code) {
                panic!("exit code {code} is used by both {other} and {bin}");
            }
            seen.push((code, bin.clone()));
            count += 1;
        }
        assert!(count > 0, "{bin} has no failure exits");
    }
    let binaries: std::collections::BTreeSet<_> = seen.iter().map(|(_, bin)| bin.as_str()).collect();
    let sources = fs::read_dir(&dir).expect("read src/bin").count();
    assert_eq!(binaries.len(), sources, "binaries with failure exits: {binaries:?}");
}

/// Everything wrong with `data` as a freestanding static W^X executable; empty if it
/// is one.
fn elf_violations(data: &[u8]) -> Vec<String> {
    let mut violations = Vec::new();
    let header = FileHeader64::<Endianness>::parse(data).expect("an ELF64 file");
    let endian = header.endian().expect("a known byte order");
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC {
        violations.push(format!("e_type is {:#x}, not ET_EXEC", e_type.0));
    }
    let entry = header.e_entry(endian);

    let mut loads = Vec::new();
    let mut stack = None;
    for ph in header.program_headers(endian, data).expect("program headers") {
        let flags = ph.p_flags(endian).0;
        match ph.p_type(endian) {
            elf::PT_INTERP => violations.push("has a PT_INTERP (needs a dynamic loader)".into()),
            elf::PT_DYNAMIC => violations.push("has a PT_DYNAMIC (dynamically linked)".into()),
            elf::PT_TLS => violations.push("has a PT_TLS (nothing sets up thread-local storage)".into()),
            elf::PT_GNU_STACK => stack = Some(flags),
            elf::PT_LOAD => {
                let (vaddr, offset, memsz) = (ph.p_vaddr(endian), ph.p_offset(endian), ph.p_memsz(endian));
                if flags & elf::PF_W.0 != 0 && flags & elf::PF_X.0 != 0 {
                    violations.push(format!("PT_LOAD at {vaddr:#x} is writable and executable"));
                }
                if ph.p_align(endian) < PAGE || vaddr % PAGE != offset % PAGE {
                    violations.push(format!("PT_LOAD at {vaddr:#x} is not page-aligned against its file offset"));
                }
                if memsz > 0 {
                    loads.push((vaddr / PAGE, (vaddr + memsz - 1) / PAGE, flags, vaddr, memsz));
                }
            }
            _ => {}
        }
    }
    match stack {
        None => violations.push("no PT_GNU_STACK (the kernel may make the stack executable)".into()),
        Some(flags) if flags & elf::PF_X.0 != 0 => violations.push("PT_GNU_STACK is executable".into()),
        Some(_) => {}
    }
    for (i, a) in loads.iter().enumerate() {
        for b in &loads[i + 1..] {
            if a.0 <= b.1 && b.0 <= a.1 {
                violations.push(format!("PT_LOADs at {:#x} and {:#x} share a page", a.3, b.3));
            }
        }
    }
    let executable: Vec<_> = loads.iter().filter(|l| l.2 & elf::PF_X.0 != 0).collect();
    if executable.len() != 1 {
        violations.push(format!("{} executable PT_LOADs, expected 1", executable.len()));
    } else if !(executable[0].3..executable[0].3 + executable[0].4).contains(&entry) {
        violations.push(format!("the entry point {entry:#x} is outside the executable segment"));
    }

    let sections = header.sections(endian, data).expect("section headers");
    for (kind, table) in [(elf::SHT_SYMTAB, ".symtab"), (elf::SHT_DYNSYM, ".dynsym")] {
        let symbols = sections.symbols(endian, data, kind).expect("a symbol table");
        if kind == elf::SHT_DYNSYM && !symbols.is_empty() {
            violations.push("has a .dynsym (dynamic symbols)".into());
        }
        // Index 0 is the reserved null symbol, undefined by definition.
        for symbol in symbols.iter().skip(1) {
            if symbol.is_undefined(endian) {
                let name = symbols.symbol_name(endian, symbol).map(String::from_utf8_lossy).unwrap_or_default();
                violations.push(format!("undefined symbol {name:?} in {table}"));
            }
        }
    }
    violations
}
