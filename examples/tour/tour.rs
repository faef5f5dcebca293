//! A tour of wildx: a tiny JIT that compiles arithmetic expressions over `x` and `y` to
//! x86-64 machine code, and what wildx does with that code at each step.
//!
//! Run with `cargo run --example tour`.
//!
//! 1. compile an expression to machine bytes (plain Rust, no wildx yet);
//! 2. load the bytes into a writable page, seal it, and watch the page's permissions go
//!    from `-w-p` to `r-xp` in `/proc/self/maps`: never writable and executable at once;
//! 3. call the sealed code as a typed Rust function;
//! 4. verify it: re-hash the bytes and compare with the hash recorded at seal;
//! 5. tamper with it the way an attacker with a write primitive would (through
//!    `/proc/self/mem`, which ignores page permissions) and see verify catch it;
//! 6. free everything and read the accounting.
//!
//! `unsafe` is allowed here for one thing: sealing bytes as a function type, whose
//! contract (the bytes really are that function) the compiler below keeps.

#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;

use wildx::{Code, Error, Page};

/// The type of every compiled expression: `f(x, y)`, System V calling convention.
type Expr = extern "C" fn(i64, i64) -> i64;

fn main() -> ExitCode {
    match tour() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tour failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Every step; an `Err` says which step did not do what it printed.
pub fn tour() -> Result<(), String> {
    let source = "(x + 3) * y - 7";
    let before = wildx::stats();

    // 1. Compile.
    let bytes = compile(source)?;
    println!("compiled `{source}` to {} bytes of x86-64:", bytes.len());
    println!("  {}", hex(&bytes));

    // 2. Load and seal: one page per function, the simplest way in.
    let mut page = Page::new(bytes.len()).map_err(|e| format!("alloc: {e}"))?;
    page.as_mut_slice().copy_from_slice(&bytes);
    let addr = page.as_ptr();
    println!("\nloaded into a writable page at {addr:p}; /proc/self/maps says:");
    println!("  {}", maps_line(addr)?);
    // SAFETY: `compile` emits exactly a function of type `Expr`: it reads x from rdi and
    // y from rsi, keeps rsp balanced, touches no memory but its own stack slots, and
    // returns the value in rax.
    let f: Code<Expr> = unsafe { page.seal() }.map_err(|e| format!("seal: {e}"))?;
    println!("sealed: the same page, now executable and no longer writable:");
    println!("  {}", maps_line(addr)?);
    println!("  seal hash {:#018x} (FNV-1a 64 of the {} bytes)", f.seal_hash(), f.len());

    // 3. Call.
    println!("\ncalling it:");
    for (x, y) in [(1, 2), (4, 10), (-3, 5)] {
        let got = f.call((x, y));
        let want = (x + 3) * y - 7;
        println!("  f({x}, {y}) = {got}");
        if got != want {
            return Err(format!("f({x}, {y}) returned {got}, expected {want}"));
        }
    }

    // 4. Verify.
    f.verify().map_err(|e| format!("verify of untouched code: {e}"))?;
    println!("\nverify: the bytes are still the ones sealed");

    // 5. Tamper: /proc/self/mem writes through page protection (the kernel does it as a
    // debugger would), so this is what a memory-corruption attacker or a buggy debugger
    // can do. Change the constant 3 into 4; the code is not called again after this.
    let mov_3 = [0x48, 0xc7, 0xc0, 3, 0, 0, 0]; // mov rax, 3
    let offset = bytes.windows(mov_3.len()).position(|w| w == mov_3).ok_or("no `mov rax, 3` in the code")? + 3;
    tamper(addr, offset, 4)?;
    println!("tampered: byte {offset} changed from 3 to 4 through /proc/self/mem");
    println!("  {}", maps_line(addr)?);
    match f.verify() {
        Err(Error::IntegrityMismatch { sealed, now }) => {
            println!("verify: caught it, the bytes hash to {now:#018x}, sealed as {sealed:#018x}");
        }
        other => return Err(format!("verify after tampering returned {other:?}")),
    }
    println!(
        "  (built with `--features verify-on-call`, every call re-hashes first and a call \
         into tampered code aborts the process instead of running it)"
    );

    // 6. Free and count.
    f.free().map_err(|e| format!("free: {e}"))?;
    if wildx::inspect(addr).is_some() {
        return Err("the page is still registered after free".into());
    }
    println!("\nfreed: the page is unmapped and forgotten");
    let after = wildx::stats();
    println!("accounting for this run:");
    println!(
        "  {} page allocated, {} sealed, {} freed",
        after.allocs - before.allocs,
        after.seals - before.seals,
        after.frees - before.frees
    );
    println!("  {} pages and {} bytes still mapped", after.live_pages, after.live_bytes);
    println!("  at most {} bytes were mapped at once, under a quota of {} MiB", after.peak_bytes, after.quota >> 20);
    println!("  {} requests refused", after.refusals - before.refusals);
    if after.live_pages != before.live_pages {
        return Err("pages left mapped".into());
    }
    Ok(())
}

/// Compiles an expression over `x` and `y` (integers, `+ - *`, parentheses) into a
/// function of type [`Expr`]: each subexpression leaves its value in rax, a binary
/// operator keeps its left operand on the stack while the right one is computed.
fn compile(source: &str) -> Result<Vec<u8>, String> {
    let tokens: Vec<char> = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut parser = Parser { tokens: &tokens, at: 0, code: Vec::new() };
    parser.sum()?;
    if parser.at != tokens.len() {
        return Err(format!("unexpected `{}`", tokens[parser.at]));
    }
    parser.code.push(0xc3); // ret
    Ok(parser.code)
}

struct Parser<'a> {
    tokens: &'a [char],
    at: usize,
    code: Vec<u8>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.at).copied()
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<(), String> {
        self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            self.operand(Self::product)?;
            // add rax, rcx / sub rax, rcx
            self.code.extend_from_slice(if op == '+' { &[0x48, 0x01, 0xc8] } else { &[0x48, 0x29, 0xc8] });
        }
        Ok(())
    }

    /// product := atom ('*' atom)*
    fn product(&mut self) -> Result<(), String> {
        self.atom()?;
        while self.peek() == Some('*') {
            self.at += 1;
            self.operand(Self::atom)?;
            self.code.extend_from_slice(&[0x48, 0x0f, 0xaf, 0xc1]); // imul rax, rcx
        }
        Ok(())
    }

    /// Computes the right operand with the left one saved: afterwards the left is in rax
    /// and the right in rcx.
    fn operand(&mut self, parse: fn(&mut Self) -> Result<(), String>) -> Result<(), String> {
        self.code.push(0x50); // push rax
        parse(self)?;
        self.code.extend_from_slice(&[0x48, 0x89, 0xc1]); // mov rcx, rax
        self.code.push(0x58); // pop rax
        Ok(())
    }

    /// atom := 'x' | 'y' | integer | '(' sum ')'
    fn atom(&mut self) -> Result<(), String> {
        match self.peek() {
            Some('x') => self.code.extend_from_slice(&[0x48, 0x89, 0xf8]), // mov rax, rdi
            Some('y') => self.code.extend_from_slice(&[0x48, 0x89, 0xf0]), // mov rax, rsi
            Some('(') => {
                self.at += 1;
                self.sum()?;
                if self.peek() != Some(')') {
                    return Err("missing `)`".into());
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                let digits: String = self.tokens[start..self.at].iter().collect();
                let value: i32 = digits.parse().map_err(|_| format!("{digits} does not fit in 32 bits"))?;
                self.code.extend_from_slice(&[0x48, 0xc7, 0xc0]); // mov rax, imm32
                self.code.extend_from_slice(&value.to_le_bytes());
                return Ok(());
            }
            Some(c) => return Err(format!("unexpected `{c}`")),
            None => return Err("unexpected end".into()),
        }
        self.at += 1;
        Ok(())
    }
}

/// The line of `/proc/self/maps` whose range contains `addr`.
fn maps_line(addr: *const u8) -> Result<String, String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read /proc/self/maps: {e}"))?;
    let addr = addr as usize;
    maps.lines()
        .find(|line| {
            let range = line.split(' ').next().unwrap_or("");
            let (start, end) = range.split_once('-').unwrap_or(("", ""));
            let parse = |s| usize::from_str_radix(s, 16).unwrap_or(0);
            (parse(start)..parse(end)).contains(&addr)
        })
        .map(str::to_owned)
        .ok_or_else(|| format!("no mapping contains {addr:#x}"))
}

/// Writes `byte` at `addr + offset` through `/proc/self/mem`, whatever the page's
/// protection says.
fn tamper(addr: *const u8, offset: usize, byte: u8) -> Result<(), String> {
    let mem = OpenOptions::new().write(true).open("/proc/self/mem").map_err(|e| format!("open /proc/self/mem: {e}"))?;
    mem.write_all_at(&[byte], addr as u64 + offset as u64).map_err(|e| format!("write /proc/self/mem: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}
