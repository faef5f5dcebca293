//! The C ABI as C programs see it: build `libwildx.a` (package `wildx-capi`) with a
//! nested cargo, compile the programs in `tests/c` against it and `include/wildx.h` with
//! gcc / g++, run them, and assert how each one ends (exit status or signal).
//!
//! Each C program checks its own expectations and exits with the number of the first
//! check that failed (printed on stderr), so a non-zero status points at one line.
//!
//! The library is built once per test binary and per variant (plain, and with
//! `verify-on-call`) into `$CARGO_TARGET_TMPDIR/capi`, a target dir of its own: the outer
//! cargo holds the lock on its target dir while tests run, so the nested build cannot
//! share it. It is a release build, the one the C guide's (docs/c.md) link line names.
//!
//! This file needs `unsafe` only in `exports_from_rust`, which calls the two exports
//! that are `unsafe extern "C" fn` (a call into a page, a write through an out-pointer).

#![allow(unsafe_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};

const SIGSEGV: i32 = 11;
const SIGTRAP: i32 = 5;
const SIGABRT: i32 = 6;

/// The workspace root (the `wildx` package).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the nested build, the library copies and the compiled programs go.
fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// `cargo build --release -p wildx-capi`
    Plain,
    /// `cargo build --release -p wildx-capi --features verify-on-call`
    VerifyOnCall,
    /// `CARGO_PROFILE_RELEASE_LTO=fat cargo build --release -p wildx-capi`, docs/c.md's
    /// build for the smallest programs, in a target dir of its own (profile settings
    /// would otherwise rebuild the shared dependencies back and forth).
    Lto,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::VerifyOnCall => "verify-on-call",
            Variant::Lto => "lto",
        }
    }
}

/// Serialises the nested builds: both variants share one target dir (so the
/// dependencies are built once), and each copies `release/libwildx.a` out before the
/// other may overwrite it.
static NESTED_CARGO: Mutex<()> = Mutex::new(());

/// The directory holding `libwildx.a` for `variant`, built on first use.
fn lib_dir(variant: Variant) -> &'static Path {
    static PLAIN: OnceLock<PathBuf> = OnceLock::new();
    static VERIFY_ON_CALL: OnceLock<PathBuf> = OnceLock::new();
    static LTO: OnceLock<PathBuf> = OnceLock::new();
    let cell = match variant {
        Variant::Plain => &PLAIN,
        Variant::VerifyOnCall => &VERIFY_ON_CALL,
        Variant::Lto => &LTO,
    };
    cell.get_or_init(|| build_lib(variant))
}

/// Environment the nested cargo must not inherit from the outer `cargo test`:
/// - where to build: set explicitly below, or the nested build would contend for the
///   outer build's locked directory;
/// - compiler flags: meant for the outer build (coverage instrumentation, sanitizers,
///   `-C target-cpu`); coverage or sanitizer flags would make the archive need a
///   runtime that a plain `gcc ... -lwildx` link cannot supply;
/// - a cross target, wrappers that only make sense for the outer workspace build (clippy,
///   coverage), and the jobserver of a parent make.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

fn build_lib(variant: Variant) -> PathBuf {
    let _serial = NESTED_CARGO.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let target = work_dir().join(if variant == Variant::Lto { "target-lto" } else { "target" });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args(["build", "--release", "-p", "wildx-capi", "--message-format=short"]);
    if variant == Variant::VerifyOnCall {
        cmd.args(["--features", "verify-on-call"]);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        // Cargo's internal variables, and per-target flags such as
        // CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS.
        if key.starts_with("__CARGO") || (key.starts_with("CARGO_TARGET_") && key.ends_with("RUSTFLAGS")) {
            cmd.env_remove(&*key);
        }
    }
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    cmd.env("CARGO_TARGET_DIR", &target).env("CARGO_BUILD_BUILD_DIR", &target);
    if variant == Variant::Lto {
        cmd.env("CARGO_PROFILE_RELEASE_LTO", "fat").env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    }
    let out = cmd.output().expect("run the nested cargo");
    assert!(
        out.status.success(),
        "nested `cargo build --release -p wildx-capi` ({}) failed: {:?}\n{}",
        variant.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = work_dir().join(variant.name());
    std::fs::create_dir_all(&dir).expect("create the library dir");
    std::fs::copy(target.join("release").join("libwildx.a"), dir.join("libwildx.a")).expect("copy libwildx.a");
    dir
}

/// A C (or C++) compile-and-link of one program from `tests/c` against `libwildx.a`.
struct Build {
    /// The output binary's name, unique per test (tests run in parallel).
    name: String,
    compiler: &'static str,
    source: &'static str,
    variant: Variant,
    /// Flags before the source (language, warnings, codegen).
    cflags: Vec<&'static str>,
    /// Flags after `-lwildx` (link mode).
    ldflags: Vec<&'static str>,
}

/// The flags every program is built with unless a test says otherwise.
const STRICT_C: &[&str] = &["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"];

impl Build {
    /// `gcc -std=c11 -O2 -Wall -Wextra -Werror -I include tests/c/<source> -L <plain> -lwildx`.
    fn c(name: impl Into<String>, source: &'static str) -> Build {
        Build {
            name: name.into(),
            compiler: "gcc",
            source,
            variant: Variant::Plain,
            cflags: STRICT_C.to_vec(),
            ldflags: Vec::new(),
        }
    }

    fn compiler(self, compiler: &'static str) -> Build {
        Build { compiler, ..self }
    }

    fn variant(self, variant: Variant) -> Build {
        Build { variant, ..self }
    }

    fn cflags(self, cflags: &[&'static str]) -> Build {
        Build { cflags: cflags.to_vec(), ..self }
    }

    fn ldflags(self, ldflags: &[&'static str]) -> Build {
        Build { ldflags: ldflags.to_vec(), ..self }
    }

    /// Compiles and links; panics with the compiler's output on failure.
    fn run(&self) -> PathBuf {
        let lib = lib_dir(self.variant);
        let bin_dir = work_dir().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("create the bin dir");
        let out = bin_dir.join(format!("{}-{}", self.name, self.variant.name()));
        let mut cmd = Command::new(self.compiler);
        cmd.args(&self.cflags)
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join("tests").join("c").join(self.source))
            .arg("-L")
            .arg(lib)
            .arg("-lwildx")
            .args(&self.ldflags)
            .arg("-o")
            .arg(&out);
        let result = cmd.output().unwrap_or_else(|e| panic!("run {} (is it installed?): {e}", self.compiler));
        assert!(
            result.status.success(),
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        out
    }
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("run {}: {e}", bin.display()))
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_exit0(bin: &Path, args: &[&str]) -> Output {
    let out = run(bin, args);
    assert_eq!(out.status.code(), Some(0), "{} {args:?}: {}", bin.display(), describe(&out));
    out
}

fn assert_signal(bin: &Path, args: &[&str], signal: i32) -> Output {
    let out = run(bin, args);
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "{} {args:?}: expected signal {signal}, {}",
        bin.display(),
        describe(&out)
    );
    out
}

/// Builds `source` with the strict flags against the plain library and asserts it exits 0.
fn c_program_passes(source: &'static str) {
    let name = source.trim_end_matches(".c");
    assert_exit0(&Build::c(name, source).run(), &[]);
}

#[test]
fn smoke() {
    c_program_passes("smoke.c");
}

/// The link line of `docs/c.md` exactly (`cc prog.c -Iinclude -L... -lwildx`, no extra flags),
/// and the one it recommends (`-Wl,--gc-sections`), which must drop the unused parts of
/// core and alloc that the archive carries.
#[test]
fn readme_link_lines() {
    let plain = Build::c("smoke-readme", "smoke.c").compiler("cc").cflags(&[]).run();
    assert_exit0(&plain, &[]);
    let gc = Build::c("smoke-gc", "smoke.c").compiler("cc").cflags(&[]).ldflags(&["-Wl,--gc-sections"]).run();
    assert_exit0(&gc, &[]);
    let (plain_len, gc_len) = (std::fs::metadata(&plain).unwrap().len(), std::fs::metadata(&gc).unwrap().len());
    assert!(gc_len <= plain_len, "--gc-sections grew the program ({gc_len} > {plain_len} bytes)");
}

/// The LTO build of the library is self-contained: a plain dynamic link needs no
/// libgcc_s (no `_Unwind_Resume` left to resolve), and a `-nostdlib` link needs no
/// `--gc-sections`.
#[test]
fn lto_library() {
    let dynamic = Build::c("smoke-lto", "smoke.c").compiler("cc").cflags(&[]).variant(Variant::Lto).run();
    assert_exit0(&dynamic, &[]);
    let data = std::fs::read(&dynamic).expect("read the program");
    let file = object::File::parse(&*data).expect("parse the program");
    let undefined: Vec<&str> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok())
        .collect();
    assert!(!undefined.contains(&"_Unwind_Resume"), "{undefined:?}");
    assert!(!undefined.contains(&"rust_eh_personality"), "{undefined:?}");
    let nostdlib = Build::c("nostdlib-lto", "nostdlib.c")
        .cflags(NOSTDLIB_CFLAGS)
        .ldflags(&["-nostdlib", "-static"])
        .variant(Variant::Lto)
        .run();
    assert_static_wx(&nostdlib);
    assert_eq!(assert_exit0(&nostdlib, &[]).stdout, b"nostdlib: ok\n");
}

/// The example of `docs/c.md`, built with the link line it gives.
#[test]
fn readme_example() {
    let bin = Build::c("readme", "readme.c").compiler("cc").ldflags(&["-Wl,--gc-sections"]).run();
    let out = assert_exit0(&bin, &[]);
    let expected = "42\nthe page is not in the state the operation needs (already sealed, or not sealed)\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn two_pages() {
    c_program_passes("two_pages.c");
}

/// The memfd fallback from C: under a seccomp filter that refuses PROT_EXEC on
/// anonymous memory, pages and arenas work as memfd views; a later filter refusing
/// PROT_EXEC everywhere makes seal and publish fail with WILDX_E_EXEC_DENIED.
#[cfg(feature = "memfd")]
#[test]
fn memfd_fallback() {
    c_program_passes("memfd.c");
}

#[test]
fn arena() {
    c_program_passes("arena.c");
}

#[test]
fn second_seal_refused() {
    c_program_passes("seal_twice.c");
}

/// The compatibility names are the same functions as their `wildx_*` names.
#[test]
fn compatibility_names() {
    c_program_passes("compat.c");
}

/// Every refusal through a `*_ex` call stores its reason (`errors.c` checks each one
/// from C), and the header's codes, messages and version are the library's.
#[test]
fn error_codes_and_messages() {
    let out = assert_exit0(&Build::c("errors", "errors.c").run(), &[]);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 24 + 1, "{stdout}");
    let version = lines.last().unwrap();
    assert_eq!(*version, format!("WILDX_VERSION {}", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "capi")]
    {
        use wildx::capi::{self, wildx_strerror};
        let rust: &[(&str, i32)] = &[
            ("WILDX_OK", capi::WILDX_OK),
            ("WILDX_E_ZERO_LENGTH", capi::WILDX_E_ZERO_LENGTH),
            ("WILDX_E_LENGTH_OVERFLOW", capi::WILDX_E_LENGTH_OVERFLOW),
            ("WILDX_E_QUOTA", capi::WILDX_E_QUOTA),
            ("WILDX_E_NULL", capi::WILDX_E_NULL),
            ("WILDX_E_NOT_REGISTERED", capi::WILDX_E_NOT_REGISTERED),
            ("WILDX_E_WRONG_STATE", capi::WILDX_E_WRONG_STATE),
            ("WILDX_E_TOO_SMALL", capi::WILDX_E_TOO_SMALL),
            ("WILDX_E_HELD_BY_HANDLE", capi::WILDX_E_HELD_BY_HANDLE),
            ("WILDX_E_INTEGRITY", capi::WILDX_E_INTEGRITY),
            ("WILDX_E_REGISTRY_STORAGE", capi::WILDX_E_REGISTRY_STORAGE),
            ("WILDX_E_NO_MEMORY", capi::WILDX_E_NO_MEMORY),
            ("WILDX_E_DENIED", capi::WILDX_E_DENIED),
            ("WILDX_E_OS", capi::WILDX_E_OS),
            ("WILDX_E_ARENA_FULL", capi::WILDX_E_ARENA_FULL),
            ("WILDX_E_FOREIGN_FN", capi::WILDX_E_FOREIGN_FN),
            ("WILDX_E_RETIRED", capi::WILDX_E_RETIRED),
            ("WILDX_E_ENTRY_ALIVE", capi::WILDX_E_ENTRY_ALIVE),
            ("WILDX_E_REENTRANT", capi::WILDX_E_REENTRANT),
            ("WILDX_E_REJECTED", capi::WILDX_E_REJECTED),
            ("WILDX_E_READ_IMPLIES_EXEC", capi::WILDX_E_READ_IMPLIES_EXEC),
            ("WILDX_E_WOULD_BLOCK", capi::WILDX_E_WOULD_BLOCK),
            ("WILDX_E_EXEC_DENIED", capi::WILDX_E_EXEC_DENIED),
            ("WILDX_E_INHERITED", capi::WILDX_E_INHERITED),
        ];
        for (line, &(name, value)) in lines.iter().zip(rust) {
            // SAFETY: wildx_strerror returns a static NUL-terminated string.
            let message = unsafe { std::ffi::CStr::from_ptr(wildx_strerror(value)) }.to_str().unwrap();
            assert_eq!(*line, format!("{name} {value} {message}"), "header vs library");
        }
        assert_eq!(capi::wildx_version(), 1 << 8, "0.1.0");
    }
}

/// The mapping from `wildx::Error` to C codes, for the kernel refusals a C program
/// cannot easily provoke here (a denied `PROT_EXEC` is provoked for real in
/// `tests/faults.rs`).
#[cfg(feature = "capi")]
#[test]
fn kernel_refusals_map_to_their_codes() {
    use wildx::capi::{self, error_code};
    use wildx::{Errno, Error};
    assert_eq!(error_code(Error::Os(Errno::ENOMEM)), capi::WILDX_E_NO_MEMORY);
    assert_eq!(error_code(Error::Os(Errno::EACCES)), capi::WILDX_E_DENIED);
    assert_eq!(error_code(Error::Os(Errno::EPERM)), capi::WILDX_E_DENIED);
    assert_eq!(error_code(Error::Os(Errno::EINVAL)), capi::WILDX_E_OS);
    let denied = Error::ExecDenied { anonymous: Errno::EACCES, memfd: Some(Errno::EPERM) };
    assert_eq!(error_code(denied), capi::WILDX_E_EXEC_DENIED);
    assert_eq!(error_code(Error::Inherited), capi::WILDX_E_INHERITED);
    assert_eq!(error_code(Error::Os(Errno::from_raw(75))), capi::WILDX_E_OS);
    assert_eq!(error_code(Error::RegistryStorage), capi::WILDX_E_REGISTRY_STORAGE);
    assert_eq!(error_code(Error::HeldByHandle), capi::WILDX_E_HELD_BY_HANDLE);
    assert_eq!(error_code(Error::QuotaExceeded { requested: 1, live: 2, quota: 3 }), capi::WILDX_E_QUOTA);
}

#[test]
fn double_free() {
    c_program_passes("double_free.c");
}

#[test]
fn foreign_null_and_interior_pointers() {
    c_program_passes("bad_pointers.c");
}

#[test]
fn alloc_zero_and_size_max() {
    c_program_passes("alloc_edges.c");
}

#[test]
fn quota_loop() {
    c_program_passes("quota.c");
}

#[test]
fn threads() {
    let bin = Build::c("threads", "threads.c").ldflags(&["-pthread"]).run();
    assert_exit0(&bin, &[]);
}

/// How each fault run of `faults.c` must end against `variant`: `None` means exit 0.
fn expected_fault(variant: Variant, mode: &str) -> Option<i32> {
    let verify = variant == Variant::VerifyOnCall;
    match mode {
        "write-sealed" => Some(SIGSEGV),
        "int3" => Some(SIGTRAP),
        "call-writable" | "call-freed" | "call-foreign" => Some(if verify { SIGABRT } else { SIGSEGV }),
        "tamper" => verify.then_some(SIGABRT),
        _ => unreachable!("unknown mode {mode}"),
    }
}

const FAULT_MODES: &[&str] = &["write-sealed", "int3", "call-writable", "call-freed", "call-foreign", "tamper"];

/// The plain library: the MMU does the refusing (a sealed page is not writable, a
/// writable, freed or foreign page not executable), an unwritten byte is int3, and a
/// tampered page runs its changed bytes (no verify-on-call), though `wildx_verify` sees it.
#[test]
fn faults_plain() {
    let bin = Build::c("faults", "faults.c").run();
    for mode in FAULT_MODES {
        match expected_fault(Variant::Plain, mode) {
            Some(signal) => assert_signal(&bin, &[mode], signal),
            None => assert_exit0(&bin, &[mode]),
        };
    }
}

/// The `verify-on-call` library: `wildx_call_i32_i32` goes through
/// `wildx::jit::call_i32_i32`, so a tampered page, a writable one, a freed one and a
/// foreign pointer abort with SIGABRT and one line on stderr before any byte runs.
#[test]
fn faults_verify_on_call() {
    let bin = Build::c("faults", "faults.c").variant(Variant::VerifyOnCall).run();
    for mode in FAULT_MODES {
        let out = match expected_fault(Variant::VerifyOnCall, mode) {
            Some(signal) => assert_signal(&bin, &[mode], signal),
            None => assert_exit0(&bin, &[mode]),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = match *mode {
            "tamper" => "wildx: integrity check failed for page 0x",
            "call-writable" => "wildx: refusing call into page 0x",
            "call-freed" | "call-foreign" => "not a live wildx page",
            _ => continue,
        };
        assert!(stderr.contains(expected), "{mode}: stderr lacks {expected:?}:\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{mode}: one diagnostic line expected:\n{stderr}");
        if *mode == "tamper" {
            // The page named is the one the program called, and the length is its 64 bytes.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let page = stdout.trim().rsplit(' ').next().expect("the program prints the page address");
            assert!(stderr.contains(&format!("page {page}:")), "{stderr} does not name {page}");
            assert!(stderr.trim_end().ends_with("(64 bytes)"), "{stderr}");
        }
    }
}

/// The happy paths are unchanged by verify-on-call.
#[test]
fn verify_on_call_happy_paths() {
    for source in ["smoke.c", "two_pages.c", "seal_twice.c", "compat.c", "arena.c"] {
        let name = format!("{}-voc", source.trim_end_matches(".c"));
        let bin = Build::c(name, source).variant(Variant::VerifyOnCall).run();
        assert_exit0(&bin, &[]);
    }
}

/// Reads an ELF64 file's program headers: (type, flags) of each.
fn program_headers(path: &Path) -> Vec<(u32, u32)> {
    let data = std::fs::read(path).expect("read the program");
    let header = FileHeader64::<Endianness>::parse(&*data).expect("an ELF64 file");
    let endian = header.endian().expect("a known endianness");
    header
        .program_headers(endian, &*data)
        .expect("program headers")
        .iter()
        .map(|ph| (ph.p_type(endian).0, ph.p_flags(endian).0))
        .collect()
}

/// Static: no interpreter, no dynamic section, and no segment both writable and
/// executable.
fn assert_static_wx(path: &Path) {
    let headers = program_headers(path);
    assert!(!headers.iter().any(|&(t, _)| t == elf::PT_INTERP.0), "{} has an interpreter", path.display());
    assert!(!headers.iter().any(|&(t, _)| t == elf::PT_DYNAMIC.0), "{} is dynamic", path.display());
    for &(t, flags) in &headers {
        let wx = elf::PF_W.0 | elf::PF_X.0;
        assert!(t != elf::PT_LOAD.0 || flags & wx != wx, "{} has a W+X segment", path.display());
    }
    assert!(headers.iter().any(|&(t, _)| t == elf::PT_GNU_STACK.0), "no PT_GNU_STACK: the stack may be executable");
}

#[test]
fn gcc_static() {
    for source in ["smoke.c", "two_pages.c"] {
        let name = format!("{}-static", source.trim_end_matches(".c"));
        let bin = Build::c(name, source).ldflags(&["-static"]).run();
        assert_static_wx(&bin);
        assert_exit0(&bin, &[]);
    }
}

/// A freestanding program: no hosted headers' promises, and no stack protector (its
/// canary lives in TLS, which nothing sets up without libc).
const NOSTDLIB_CFLAGS: &[&str] =
    &["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-fno-stack-protector"];

/// `-nostdlib`: no libc, no crt, no libgcc; its own `_start`. `--gc-sections` is needed
/// because the archive's copy of `liballoc` was built to unwind: its unused functions
/// name `_Unwind_Resume`, which only libgcc defines.
#[test]
fn nostdlib_own_start() {
    let bin = Build::c("nostdlib", "nostdlib.c")
        .cflags(NOSTDLIB_CFLAGS)
        .ldflags(&["-nostdlib", "-static", "-Wl,--gc-sections"])
        .run();
    assert_static_wx(&bin);
    let data = std::fs::read(&bin).expect("read the program");
    let file = object::File::parse(&*data).expect("parse the program");
    let undefined: Vec<_> = file.symbols().filter(|s| s.is_undefined() && !s.name().unwrap_or("").is_empty()).collect();
    assert!(undefined.is_empty(), "undefined symbols: {:?}", undefined.iter().map(|s| s.name()).collect::<Vec<_>>());
    let names: Vec<&str> = file.symbols().filter_map(|s| s.name().ok()).collect();
    for libc_symbol in ["__libc_start_main", "malloc", "printf", "_init"] {
        assert!(!names.contains(&libc_symbol), "{libc_symbol} linked into a -nostdlib program");
    }
    assert!(names.contains(&"wildx_alloc") && names.contains(&"_start"));
    let out = assert_exit0(&bin, &[]);
    assert_eq!(out.stdout, b"nostdlib: ok\n");
}

/// The header as C and as C++, strict, in several standards; each build links and runs.
#[test]
fn header_compiles_as_c_and_cxx() {
    const C_WARNINGS: &[&str] = &["-Wstrict-prototypes", "-Wmissing-prototypes", "-Wc++-compat"];
    const CXX_WARNINGS: &[&str] = &["-Wold-style-cast", "-Wzero-as-null-pointer-constant"];
    let builds: &[(&'static str, &'static str, &[&'static str])] = &[
        ("gcc", "-std=c99", C_WARNINGS),
        ("gcc", "-std=c11", C_WARNINGS),
        ("gcc", "-std=c17", C_WARNINGS),
        ("g++", "-std=c++11", CXX_WARNINGS),
        ("g++", "-std=c++17", CXX_WARNINGS),
        ("g++", "-std=c++20", CXX_WARNINGS),
    ];
    for &(compiler, std, extra) in builds {
        let mut cflags: Vec<&'static str> = Vec::new();
        if compiler == "g++" {
            cflags.extend(["-x", "c++"]);
        }
        cflags.extend([std, "-pedantic", "-Wall", "-Wextra", "-Werror"]);
        cflags.extend(extra);
        let name = format!("header-{}", std.trim_start_matches("-std="));
        let bin = Build::c(name, "header.c").compiler(compiler).cflags(&cflags).run();
        assert_exit0(&bin, &[]);
    }
}

/// `layout.c` prints the header's struct layout and constants; they must be Rust's.
#[test]
fn layout_matches_rust() {
    let out = assert_exit0(&Build::c("layout", "layout.c").run(), &[]);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let c: std::collections::HashMap<String, i64> = stdout
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("`key value` lines");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    assert_eq!(c.len(), 2 + 2 * 14 + 4 + 4, "{stdout}");
    assert_eq!(c["const WILDX_DEFAULT_QUOTA"], wildx::DEFAULT_QUOTA as i64);
    #[cfg(feature = "capi")]
    {
        use core::mem::{align_of, offset_of, size_of};
        use wildx::capi::{self, WildxStats};
        assert_eq!(c["sizeof wildx_stats"], size_of::<WildxStats>() as i64);
        assert_eq!(c["alignof wildx_stats"], align_of::<WildxStats>() as i64);
        macro_rules! field {
            ($f:ident) => {
                let (offset, size) = (concat!("offsetof ", stringify!($f)), concat!("sizeof ", stringify!($f)));
                assert_eq!(c[offset], offset_of!(WildxStats, $f) as i64, "{offset}: C vs Rust");
                assert_eq!(c[size], size_of_val(&WildxStats::default().$f) as i64, "{size}: C vs Rust");
            };
        }
        field!(live_pages);
        field!(live_bytes);
        field!(peak_bytes);
        field!(quota);
        field!(allocs);
        field!(seals);
        field!(frees);
        field!(refusals);
        field!(registry_bytes);
        field!(registry_capacity);
        field!(arenas);
        field!(arena_functions);
        field!(arena_bytes);
        field!(exec_mode);
        assert_eq!(c["const WILDX_EXEC_UNDETECTED"], capi::WILDX_EXEC_UNDETECTED as i64);
        assert_eq!(c["const WILDX_EXEC_ANONYMOUS"], capi::WILDX_EXEC_ANONYMOUS as i64);
        assert_eq!(c["const WILDX_EXEC_MEMFD"], capi::WILDX_EXEC_MEMFD as i64);
        assert_eq!(c["const WILDX_EXEC_DENIED"], capi::WILDX_EXEC_DENIED as i64);
        assert_eq!(c["const WILDX_STATE_NOT_REGISTERED"], capi::WILDX_STATE_NOT_REGISTERED.into());
        assert_eq!(c["const WILDX_STATE_WRITABLE"], capi::WILDX_STATE_WRITABLE.into());
        assert_eq!(c["const WILDX_STATE_EXECUTABLE"], capi::WILDX_STATE_EXECUTABLE.into());
    }
}

/// The exports called from Rust: the same functions the archive carries, with the
/// `capi` feature on (as `cargo test --workspace` builds wildx, for wildx-capi's sake).
#[cfg(feature = "capi")]
#[test]
fn exports_from_rust() {
    use wildx::capi::*;
    let p = wildx_alloc(64);
    assert!(!p.is_null());
    assert_eq!(wildx_state(p), WILDX_STATE_WRITABLE);
    assert_eq!(wildx_install_add_i32(p), 0);
    assert_eq!(wildx_seal(p), 0);
    assert_eq!(wildx_seal(p), -1);
    assert_eq!(wildx_state(p), WILDX_STATE_EXECUTABLE);
    assert_eq!(wildx_verify(p), 0);
    // SAFETY: `p` is a live sealed page holding ADD_I32, freed only after the call.
    assert_eq!(unsafe { wildx_call_i32_i32(p, 40, 2) }, 42);
    // SAFETY: as above; the compatibility name is the same function.
    assert_eq!(unsafe { npk_jit_call_i32_i32(p, 1, 2) }, 3);
    let mut stats = WildxStats::default();
    // SAFETY: `stats` is a valid, aligned WildxStats.
    unsafe { wildx_stats(&mut stats) };
    assert_eq!(stats, wildx::stats());
    assert!(stats.live_pages >= 1);
    // SAFETY: null is allowed and ignored.
    unsafe { wildx_stats(std::ptr::null_mut()) };
    assert_eq!(wildx_quota(), wildx::quota());
    assert_eq!(npk_wildx_free(p), 0);
    assert_eq!(wildx_free(p), -1);
    let mut err = -99;
    // SAFETY: `err` is a valid i32.
    assert_eq!(unsafe { wildx_free_ex(p, &mut err) }, -1);
    assert_eq!(err, WILDX_E_NOT_REGISTERED);
    // SAFETY: as above.
    assert!(unsafe { wildx_alloc_ex(0, &mut err) }.is_null());
    assert_eq!(err, WILDX_E_ZERO_LENGTH);
    assert_eq!(wildx_state(p), WILDX_STATE_NOT_REGISTERED);
    assert_eq!(wildx_state(std::ptr::null()), WILDX_STATE_NOT_REGISTERED);
    assert!(wildx_alloc(0).is_null());
    assert!(wildx_alloc(usize::MAX).is_null());
}
