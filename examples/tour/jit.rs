//! An expression JIT on one wildx arena: what wildx is for, in one run.
//!
//! It compiles hundreds of integer expressions of `x` (`(x - 3) * x + isqrt(x * x + 7)`)
//! to x86-64 functions `fn(i64) -> i64`, all in one arena, calling a host function
//! (`isqrt`) through an import slot. It shows the arena's pages go from writable to
//! executable in `/proc/self/maps`, calls every function and checks it against an
//! interpreter, publishes a second batch while another thread keeps calling the first,
//! catches a function tampered with through `/proc/self/mem`, retires the first batch
//! (its pages go back to the kernel), and prints the accounting in words.
//!
//! Run: `cargo run --example jit`.
//!
//! `unsafe` appears once: `Arena::entry`, whose contract (the bytes implement
//! `fn(i64) -> i64`) is what the compiler below guarantees.

#![allow(unsafe_code)]

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wildx::{Arena, Error, FnId};

type Jitted = extern "sysv64" fn(i64) -> i64;

// ---------------------------------------------------------------------------------
// The language: integers, `x`, + - *, unary minus, parentheses, isqrt(e).

#[derive(Debug, Clone)]
enum Expr {
    Num(i64),
    X,
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Isqrt(Box<Expr>),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
}

/// The host function the JIT calls through an import slot: the integer square root of
/// `|v|`.
extern "sysv64" fn isqrt(v: i64) -> i64 {
    let n = v.unsigned_abs();
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|sq| sq <= n) {
        r += 1;
    }
    r as i64
}

fn eval(e: &Expr, x: i64) -> i64 {
    match e {
        Expr::Num(n) => *n,
        Expr::X => x,
        Expr::Neg(a) => eval(a, x).wrapping_neg(),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, x), eval(b, x));
            match op {
                Op::Add => a.wrapping_add(b),
                Op::Sub => a.wrapping_sub(b),
                Op::Mul => a.wrapping_mul(b),
            }
        }
        Expr::Isqrt(a) => isqrt(eval(a, x)),
    }
}

fn show(e: &Expr) -> String {
    match e {
        Expr::Num(n) => n.to_string(),
        Expr::X => "x".into(),
        Expr::Neg(a) => format!("-{}", show(a)),
        Expr::Bin(op, a, b) => {
            let sym = match op {
                Op::Add => "+",
                Op::Sub => "-",
                Op::Mul => "*",
            };
            format!("({} {sym} {})", show(a), show(b))
        }
        Expr::Isqrt(a) => format!("isqrt({})", show(a)),
    }
}

/// A small random expression (deterministic: a seeded xorshift).
fn random_expr(rng: &mut u64, depth: u32) -> Expr {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let pick = next() % if depth == 0 { 2 } else { 8 };
    let n = (next() % 19) as i64 - 9;
    match pick {
        0 => Expr::Num(n),
        1 => Expr::X,
        2 => Expr::Neg(Box::new(random_expr(rng, depth - 1))),
        3 => Expr::Isqrt(Box::new(random_expr(rng, depth - 1))),
        k => {
            let op = [Op::Add, Op::Sub, Op::Mul, Op::Mul][k as usize - 4];
            Expr::Bin(op, Box::new(random_expr(rng, depth - 1)), Box::new(random_expr(rng, depth - 1)))
        }
    }
}

// ---------------------------------------------------------------------------------
// The compiler: a stack machine. `x` lives in rbx (callee-saved, so host calls keep it);
// each value ends in rax; intermediates are pushed. Position-dependent: a host call is
// `call [rip + disp32]` to the import slot, so the code is emitted for its final address.

struct Emitter {
    code: Vec<u8>,
    at: usize,
    slot: usize,
    /// 8-byte words pushed since entry (the return address counts one).
    depth: usize,
}

impl Emitter {
    fn bytes(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Num(n) => {
                self.bytes(&[0x48, 0xb8]); // mov rax, imm64
                self.bytes(&n.to_le_bytes());
            }
            Expr::X => self.bytes(&[0x48, 0x89, 0xd8]), // mov rax, rbx
            Expr::Neg(a) => {
                self.expr(a);
                self.bytes(&[0x48, 0xf7, 0xd8]); // neg rax
            }
            Expr::Bin(op, a, b) => {
                self.expr(a);
                self.bytes(&[0x50]); // push rax
                self.depth += 1;
                self.expr(b);
                self.bytes(&[0x48, 0x89, 0xc1, 0x58]); // mov rcx, rax; pop rax
                self.depth -= 1;
                match op {
                    Op::Add => self.bytes(&[0x48, 0x01, 0xc8]),       // add rax, rcx
                    Op::Sub => self.bytes(&[0x48, 0x29, 0xc8]),       // sub rax, rcx
                    Op::Mul => self.bytes(&[0x48, 0x0f, 0xaf, 0xc1]), // imul rax, rcx
                }
            }
            Expr::Isqrt(a) => {
                self.expr(a);
                self.bytes(&[0x48, 0x89, 0xc7]); // mov rdi, rax
                // The System V ABI wants rsp 16-byte aligned at a call.
                let pad = self.depth % 2 == 1;
                if pad {
                    self.bytes(&[0x48, 0x83, 0xec, 0x08]); // sub rsp, 8
                }
                self.bytes(&[0xff, 0x15]); // call [rip + disp32]
                let next = self.at + self.code.len() + 4;
                let disp = i32::try_from(self.slot as i64 - next as i64).expect("the slot is in the arena");
                self.bytes(&disp.to_le_bytes());
                if pad {
                    self.bytes(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
                }
            }
        }
    }
}

/// `e` as machine code for address `at`, reaching `isqrt` through the slot at `slot`.
fn compile(e: &Expr, at: usize, slot: usize) -> Vec<u8> {
    // push rbx; mov rbx, rdi
    let mut em = Emitter { code: vec![0x53, 0x48, 0x89, 0xfb], at, slot, depth: 2 };
    em.expr(e);
    em.bytes(&[0x5b, 0xc3]); // pop rbx; ret
    em.code
}

/// Compiles every expression into the arena (not yet callable) with `push_with`, which
/// hands over each function's final address.
fn push_all(arena: &Arena, exprs: &[Expr], slot: usize) -> Result<Vec<FnId>, Error> {
    exprs
        .iter()
        .map(|e| {
            let len = compile(e, slot, slot).len(); // the length does not depend on the address
            arena.push_with(len, |at, bytes| bytes.copy_from_slice(&compile(e, at, slot)))
        })
        .collect()
}

/// The `/proc/self/maps` line of the mapping holding `addr`.
fn maps_line(addr: usize) -> String {
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or("");
            let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
            let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap_or(0), usize::from_str_radix(hi, 16).unwrap_or(0));
            (lo..hi).contains(&addr)
        })
        .unwrap_or("(not mapped)")
        .to_string()
}

const INPUTS: [i64; 9] = [0, 1, -1, 2, 7, -13, 100, 12345, i64::MAX];

fn check_batch(arena: &Arena, exprs: &[Expr], ids: &[FnId]) -> Result<usize, Error> {
    let mut calls = 0;
    for (e, &id) in exprs.iter().zip(ids) {
        // SAFETY: `compile` emits a System V `fn(i64) -> i64` that keeps rbx and rsp,
        // touches only its own stack, and calls `isqrt` (a safe `fn(i64) -> i64`).
        let f = unsafe { arena.entry::<Jitted>(id) }?;
        for x in INPUTS {
            assert_eq!(f.call((x,)), eval(e, x), "{} at x = {x}", show(e));
            calls += 1;
        }
    }
    Ok(calls)
}

/// The whole run; `Err` if wildx refuses a step, a panic if a result is wrong.
///
/// # Errors
/// The first wildx error.
pub fn main() -> Result<(), Error> {
    println!("wildx: an expression JIT on one arena\n");
    let arena = Arena::new(1 << 20)?;
    println!("1. reserved 1 MiB of address space at {:#x}: no memory, no access yet", arena.base());
    let slot = arena.import(isqrt as *const () as usize)?;
    println!("   host function isqrt imported: its address sits in the arena at {slot:#x}");

    let mut rng = 0x2545_f491_4f6c_dd1d;
    let first: Vec<Expr> = (0..300).map(|_| random_expr(&mut rng, 4)).collect();
    let first_ids = push_all(&arena, &first, slot)?;
    let f0 = arena.addr(first_ids[0])?;
    println!("\n2. compiled {} expressions at their final addresses, e.g.", first.len());
    println!("   f0(x) = {}  at {f0:#x}", show(&first[0]));
    println!("   pending code is writable, never executable:\n   {}", maps_line(f0));
    arena.publish()?;
    println!("   after publish (hashed, then one mprotect):\n   {}", maps_line(f0));

    let calls = check_batch(&arena, &first, &first_ids)?;
    println!(
        "\n3. called all {} functions on {} inputs: {calls} calls, every one equal to the interpreter",
        first.len(),
        INPUTS.len()
    );

    // A second batch, compiled and published while another thread calls the first.
    let second: Vec<Expr> = (0..300).map(|_| random_expr(&mut rng, 5)).collect();
    let stop = AtomicBool::new(false);
    let background = AtomicU64::new(0);
    let second_ids = std::thread::scope(|s| -> Result<Vec<FnId>, Error> {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let n = check_batch(&arena, &first, &first_ids).expect("first batch stays callable");
                background.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        let ids = push_all(&arena, &second, slot)?;
        arena.publish()?;
        let n = check_batch(&arena, &second, &ids)?;
        println!("\n4. second batch of {} published on fresh pages ({n} calls checked)", second.len());
        stop.store(true, Ordering::Relaxed);
        Ok(ids)
    })?;
    println!("   meanwhile another thread made {} calls into the first batch", background.load(Ordering::Relaxed));

    arena.verify_all()?;
    println!("\n5. verify_all: every function matches its hash, every padding byte is int3");
    let victim = second_ids[7];
    let at = arena.addr(victim)?;
    // A debugger, or an attacker who can open it, writes through /proc/self/mem, which
    // ignores page protection.
    fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .and_then(|mem| std::os::unix::fs::FileExt::write_all_at(&mem, &[0x90], at as u64 + 4))
        .expect("write /proc/self/mem");
    match arena.verify(victim) {
        Err(e) => println!("   one byte of f{} changed behind the arena's back: {e}", first.len() + 7),
        Ok(()) => panic!("tampering went unnoticed"),
    }

    for &id in &first_ids {
        arena.retire(id)?;
    }
    println!("\n6. retired the first batch: its page went back to the kernel (the import slot's page");
    println!("   stays, it holds the slot):\n   {}", maps_line(arena.addr(first_ids[150])?));
    let s = wildx::stats();
    println!(
        "\n7. now: {} arena, {} live functions, {} bytes accessible (of 1 MiB reserved), quota {} bytes",
        s.arenas, s.arena_functions, s.arena_bytes, s.quota
    );
    drop(arena);
    let s = wildx::stats();
    println!(
        "   after drop: {} arenas, {} functions, {} bytes mapped: everything went back",
        s.arenas, s.arena_functions, s.live_bytes
    );
    Ok(())
}
