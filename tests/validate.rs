//! The validator (`--features validate`): minimal counterexamples per rule, compiler
//! idioms that must pass, real compiler output run through `compile`, differential
//! decoding against iced-x86 (random bytes and the `.text` of real binaries), bad input,
//! and execution fuzzing of accepted code in child processes on a guarded stack.
//!
//! This file needs `unsafe` for the execution fuzzer: `fork`, `mmap`/`mprotect` of the
//! guarded stack, and a call into accepted code through an assembly trampoline that
//! switches to that stack and checks the callee-saved registers.

#![allow(unsafe_code)]
#![allow(missing_docs)]

mod common;

use iced_x86::{Decoder, DecoderOptions, FlowControl, InstructionInfoFactory, OpAccess, Register};
use wildx::Error;
use wildx::jit::compile;
use wildx::validate::{Rule, Violation, structural};

type I2 = extern "sysv64" fn(i64, i64) -> i64;
type U2 = extern "sysv64" fn(u64, u64) -> u64;
type U1 = extern "sysv64" fn(u64) -> u64;
type V0 = extern "sysv64" fn();
type R0 = extern "sysv64" fn() -> u64;

fn reject<F: wildx::validate::ValidSignature>(code: &[u8]) -> Violation {
    match compile::<F>(code) {
        Err(Error::Rejected(v)) => v,
        Err(e) => panic!("{code:02x?}: not a rejection: {e}"),
        Ok(_) => panic!("{code:02x?}: accepted"),
    }
}

fn rejects<F: wildx::validate::ValidSignature>(code: &[u8], offset: usize, rule: Rule) {
    assert_eq!(reject::<F>(code), Violation { offset, rule }, "{code:02x?}");
}

// ---- One minimal counterexample per rule -------------------------------------------

#[test]
fn counterexamples_one_per_rule() {
    rejects::<V0>(&[0x0f, 0x05, 0xc3], 0, Rule::Forbidden); // syscall
    rejects::<V0>(&[0x0f, 0x34, 0xc3], 0, Rule::Forbidden); // sysenter
    rejects::<V0>(&[0xcd, 0x80, 0xc3], 0, Rule::Forbidden); // int 0x80
    rejects::<V0>(&[0xf4, 0xc3], 0, Rule::Forbidden); // hlt
    rejects::<V0>(&[0xe4, 0x60, 0xc3], 0, Rule::Forbidden); // in al, 0x60
    rejects::<V0>(&[0x0f, 0xa2, 0xc3], 0, Rule::Forbidden); // cpuid
    // jmp +1 into the middle of `mov eax, 1`
    rejects::<R0>(&[0xeb, 0x01, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3], 0, Rule::JumpIntoInstruction);
    rejects::<V0>(&[0xeb, 0x01, 0xc3], 0, Rule::JumpOutside); // jmp past the end
    rejects::<V0>(&[0xeb, 0xfc, 0xc3], 0, Rule::JumpOutside); // jmp before the start
    rejects::<R0>(&[0x31, 0xc0], 0, Rule::FallsOffEnd); // xor eax, eax; (no ret)
    rejects::<V0>(&[0x74, 0x01, 0xc3, 0x90], 3, Rule::FallsOffEnd); // je to a nop at the end
    rejects::<U1>(&[0x89, 0x07, 0xc3], 0, Rule::Memory); // mov [rdi], eax
    rejects::<U1>(&[0x8b, 0x07, 0xc3], 0, Rule::Memory); // mov eax, [rdi]
    rejects::<V0>(&[0x48, 0x89, 0x44, 0x24, 0x08, 0xc3], 0, Rule::Memory); // mov [rsp+8], rax
    rejects::<V0>(&[0x48, 0x89, 0x04, 0x24, 0xc3], 0, Rule::Memory); // mov [rsp], rax: the return address
    rejects::<V0>(&[0x48, 0x89, 0x84, 0x24, 0x70, 0xff, 0xff, 0xff, 0xc3], 0, Rule::Memory); // [rsp-0x90]: below the red zone
    rejects::<V0>(&[0x53, 0xc3], 1, Rule::Unbalanced); // push rbx without the pop
    rejects::<V0>(&[0x50, 0x5b, 0xc3], 2, Rule::CalleeSaved); // push rax; pop rbx: the caller's rbx lost
    rejects::<V0>(&[0x5b, 0xc3], 0, Rule::Memory); // pop rbx at entry pops the return address
    rejects::<V0>(&[0x31, 0xdb, 0xc3], 2, Rule::CalleeSaved); // xor ebx, ebx
    rejects::<U1>(&[0x48, 0x29, 0xc4, 0xc3], 0, Rule::StackUnknown); // sub rsp, rax
    rejects::<V0>(&[0x48, 0x89, 0xec, 0xc3], 0, Rule::StackUnknown); // mov rsp, rbp (rbp is not a frame)
    rejects::<I2>(&[0x48, 0x89, 0xd0, 0xc3], 0, Rule::ArgumentUndefined); // mov rax, rdx in fn(i64, i64)
    rejects::<V0>(&[0x89, 0xf8, 0xc3], 0, Rule::ArgumentUndefined); // mov eax, edi in fn()
    rejects::<extern "sysv64" fn(f64) -> f64>(&[0xf2, 0x0f, 0x58, 0xc1, 0xc3], 0, Rule::ArgumentUndefined); // addsd xmm0, xmm1
    rejects::<V0>(&[0x64, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xc3], 0, Rule::Prefix); // mov eax, fs:[0]
    rejects::<V0>(&[0xf0, 0x48, 0x01, 0x04, 0x24, 0xc3], 0, Rule::Prefix); // lock add [rsp], rax
    rejects::<V0>(&[0xf3, 0xc3], 0, Rule::Prefix); // rep ret
    rejects::<U1>(&[0xff, 0xe7], 0, Rule::Indirect); // jmp rdi
    rejects::<U1>(&[0xff, 0xd7, 0xc3], 0, Rule::Indirect); // call rdi
    rejects::<V0>(&[0xe8, 0x01, 0, 0, 0, 0xc3, 0xc3], 0, Rule::CallTarget); // call +1
    rejects::<R0>(&[0xc3], 0, Rule::ReturnUndefined); // ret before rax is written
    rejects::<R0>(&[0x85, 0xc0, 0x74, 0x05, 0xb8, 1, 0, 0, 0, 0xc3], 9, Rule::ReturnUndefined); // one path skips the write
    rejects::<extern "sysv64" fn() -> f64>(&[0x31, 0xc0, 0xc3], 2, Rule::ReturnUndefined);
    rejects::<V0>(&[0xcc, 0xc3], 0, Rule::Trap); // reachable int3
    rejects::<V0>(&[0x0f, 0x0b], 0, Rule::Forbidden); // ud2
    rejects::<V0>(&[0x48, 0x81, 0xec, 0x00, 0x10, 0, 0, 0xc3], 0, Rule::FrameTooLarge); // sub rsp, 4096
    // push rax; je +1; pop rcx; ... paths meet with depths -8 and -16
    rejects::<V0>(&[0x50, 0x74, 0x01, 0x50, 0x59, 0xc3], 3, Rule::StackMismatch);
    // sub rsp, 8; call 0 (rsp 0 mod 16 at the call is wrong: entry rsp is 8 mod 16)
    rejects::<V0>(
        &[0x48, 0x83, 0xec, 0x10, 0xe8, 0xf7, 0xff, 0xff, 0xff, 0x48, 0x83, 0xc4, 0x10, 0xc3],
        4,
        Rule::CallAlignment,
    );
    rejects::<V0>(&[0x0f, 0x28, 0x44, 0x24, 0xf0, 0xc3], 0, Rule::Memory); // movaps xmm0, [rsp-16]: misaligned
    rejects::<V0>(&[0xd9, 0xe8, 0xc3], 0, Rule::Unknown); // fld1: x87 is not in the subset
    rejects::<V0>(&[0x48], 0, Rule::Truncated);
    rejects::<V0>(&[], 0, Rule::Empty);
    rejects::<V0>(&[0x8b, 0x05, 0, 0, 0, 0, 0xc3], 0, Rule::Memory); // mov eax, [rip]: reads past the code
    rejects::<V0>(&[0x89, 0x05, 0xfa, 0xff, 0xff, 0xff, 0xc3], 0, Rule::Memory); // mov [rip-6], eax: writes the code
}

/// Attempts to forge the tracked state: a saved value overwritten in its slot, the
/// return address reached through an alias of rsp, a saved value in the red zone that
/// a recursive call overwrites, a stack that grows each loop iteration.
#[test]
fn adversarial_cases_are_rejected() {
    // push rbx; mov [rsp], rax; pop rbx; ret: the saved rbx was overwritten.
    rejects::<V0>(&[0x53, 0x48, 0x89, 0x04, 0x24, 0x5b, 0xc3], 6, Rule::CalleeSaved);
    // push rbx; mov dword [rsp+4], 0; pop rbx; ret: half of it overwritten.
    rejects::<V0>(&[0x53, 0xc7, 0x44, 0x24, 0x04, 0, 0, 0, 0, 0x5b, 0xc3], 10, Rule::CalleeSaved);
    // push rbx; mov rbx, rax... push rbx; pop rbx; pop rbx order swapped with r12:
    // push rbx; push r12; pop rbx; pop r12; ret
    rejects::<V0>(&[0x53, 0x41, 0x54, 0x5b, 0x41, 0x5c, 0xc3], 6, Rule::CalleeSaved);
    // mov rax, rsp; mov [rax], rbx: the return address through an alias.
    rejects::<V0>(&[0x48, 0x89, 0xe0, 0x48, 0x89, 0x18, 0xc3], 3, Rule::Memory);
    // lea rax, [rsp-4096]; mov [rax], eax: below the frame through an alias.
    rejects::<V0>(&[0x48, 0x8d, 0x84, 0x24, 0x00, 0xf0, 0xff, 0xff, 0x89, 0x00, 0xc3], 8, Rule::Memory);
    // sub rsp, 8; mov [rsp-8], rbx; call 0; mov rbx, [rsp-8]; add rsp, 8; ret: the
    // call's return address lands where rbx was kept.
    let code = [
        0x48, 0x83, 0xec, 0x08, 0x48, 0x89, 0x5c, 0x24, 0xf8, 0xe8, 0xf2, 0xff, 0xff, 0xff, 0x48, 0x8b, 0x5c, 0x24,
        0xf8, 0x48, 0x83, 0xc4, 0x08, 0xc3,
    ];
    rejects::<V0>(&code, 23, Rule::CalleeSaved);
    // l: push rax; jmp l
    rejects::<V0>(&[0x50, 0xeb, 0xfd], 1, Rule::StackMismatch);
    // mov rsp, rdi: a stack pivot.
    rejects::<U1>(&[0x48, 0x89, 0xfc, 0xc3], 0, Rule::StackUnknown);
    // add rsp, 8; ret: above the return address.
    rejects::<V0>(&[0x48, 0x83, 0xc4, 0x08, 0xc3], 0, Rule::StackUnknown);
    // mov spl, 0; ret: a byte write to rsp.
    rejects::<V0>(&[0x40, 0xb4, 0x00, 0xc3], 0, Rule::StackUnknown);
    // pop rsp (after a push)
    rejects::<V0>(&[0x50, 0x5c, 0xc3], 1, Rule::StackUnknown);
    // mov rax, [rsp+rbx]: an index makes the address unknown.
    rejects::<V0>(&[0x48, 0x8b, 0x04, 0x1c, 0xc3], 0, Rule::Memory);
    // mov rax, [0x1000]: absolute address.
    rejects::<V0>(&[0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0, 0, 0xc3], 0, Rule::Memory);
    // push rbp; mov rbp, rsp; mov rbp, rax; leave; ret: leave through a non-frame rbp.
    rejects::<V0>(&[0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xc5, 0xc9, 0xc3], 7, Rule::Memory);
    // xchg rsp, rax
    rejects::<V0>(&[0x48, 0x94, 0xc3], 0, Rule::StackUnknown);
    // 66 e8: a 16-bit call (truncates rip on some processors)
    rejects::<V0>(&[0x66, 0xe8, 0, 0, 0xc3], 0, Rule::Unknown);
    // notrack (3e) jmp rax, cs-prefixed mov
    rejects::<V0>(&[0x3e, 0xff, 0xe0], 0, Rule::Prefix);
    rejects::<V0>(&[0x2e, 0x8b, 0x04, 0x24, 0xc3], 0, Rule::Prefix);
}

/// Code reached only by a later backward jump (a loop body the code first jumps over)
/// is checked in the state that jump brings, whatever comes before it in the bytes.
#[test]
fn a_body_only_a_backward_jump_enters_is_checked_in_its_state() {
    // jmp L2; L1: ret; L2: push rax; jmp L1: the ret runs with rsp 8 bytes down.
    rejects::<V0>(&[0xeb, 0x01, 0xc3, 0x50, 0xeb, 0xfc], 2, Rule::Unbalanced);
    // Balanced in the state before the jmp that leaves over it, not in the one the
    // backward jump brings.
    // push rax; jmp L2; L1: pop rcx; ret; L2: pop rcx; push rax; push rax; jmp L1
    rejects::<V0>(&[0x50, 0xeb, 0x02, 0x59, 0xc3, 0x59, 0x50, 0x50, 0xeb, 0xf9], 4, Rule::Unbalanced);
    // jmp L2; L1: mov rax, rdx; ret; L2: xor edx, edx; jmp L1: rdx is defined where
    // the body runs, though not at the first jmp.
    let body = [0xeb, 0x04, 0x48, 0x89, 0xd0, 0xc3, 0x31, 0xd2, 0xeb, 0xf8];
    assert_eq!(compile::<U1>(&body).map(|c| c.call((7,))), Ok(0));
    // Without the xor, rdx is read undefined.
    rejects::<U1>(&[0xeb, 0x04, 0x48, 0x89, 0xd0, 0xc3, 0x90, 0x90, 0xeb, 0xf8], 2, Rule::ArgumentUndefined);
    // A loop whose back edge loses what its head knew: rbx is the caller's on entry,
    // clobbered in the body, and the exit after the loop returns it clobbered.
    // L: test rdi, rdi; je out; mov ebx, 1; dec rdi; jmp L; out: ret
    let loop_clobbers = [0x48, 0x85, 0xff, 0x74, 0x0a, 0xbb, 1, 0, 0, 0, 0x48, 0xff, 0xcf, 0xeb, 0xf1, 0xc3];
    rejects::<extern "sysv64" fn(u64)>(&loop_clobbers, 15, Rule::CalleeSaved);
}

#[test]
fn display_says_offset_and_rule() {
    let err = compile::<R0>(&[0xeb, 0x01, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3]).unwrap_err();
    assert_eq!(err.to_string(), "offset 0: jump into the middle of an instruction");
    let v = structural(&[0x90, 0x90, 0x0f, 0x05, 0xc3]).unwrap_err();
    assert_eq!(v.to_string(), "offset 2: system, trapping or I/O instruction");
}

#[test]
fn structural_skips_memory_and_abi_rules() {
    structural(&[0x89, 0x07, 0xc3]).unwrap(); // mov [rdi], eax
    structural(&[0x53, 0xc3]).unwrap(); // push rbx; ret
    assert_eq!(structural(&[0xff, 0xe0]).unwrap_err().rule, Rule::Indirect);
    assert_eq!(structural(&[0x31, 0xc0]).unwrap_err().rule, Rule::FallsOffEnd);
}

/// `structural` first runs a sweep that keeps no instruction (code up to 8 KiB) and
/// hands over to the full check where that is not enough: the verdicts and offsets must
/// be the full check's, for short code, mid-size code and code past that sweep's limit
/// (nops in front of each case move it).
#[test]
fn structural_verdicts_where_the_quick_sweep_hands_over() {
    type Case<'a> = (&'a [u8], Option<(usize, Rule)>);
    let cases: [Case; 9] = [
        (&[0xc3], None),
        (&[0xeb, 0xfe], None), // jmp to itself: the last instruction never falls through
        (&[0x74, 0x01, 0x90, 0xc3], None), // je over a nop to the ret
        (&[0xeb, 0x01, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3], Some((0, Rule::JumpIntoInstruction))),
        // Two jumps into the mov; the first in address order is reported, though the
        // second's target comes first.
        (&[0x74, 0x05, 0xeb, 0x01, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3], Some((0, Rule::JumpIntoInstruction))),
        (&[0xc3, 0xcc], None),                              // an int3 no path reaches
        (&[0xcc, 0xc3], Some((0, Rule::Trap))),             // an int3 the entry reaches
        (&[0xeb, 0x01, 0xc3, 0xcc], Some((3, Rule::Trap))), // jumped to
        (&[0x90, 0x31, 0xc0], Some((1, Rule::FallsOffEnd))),
    ];
    for pad in [0, 600, 9000] {
        for (case, want) in &cases {
            let mut code = vec![0x90; pad];
            code.extend_from_slice(case);
            let got = structural(&code).map_err(|v| (v.offset, v.rule));
            let want = want.map_or(Ok(()), |(offset, rule)| Err((pad + offset, rule)));
            assert_eq!(got, want, "pad {pad}, case {case:02x?}");
        }
    }
}

// ---- Compiler idioms that must pass -----------------------------------------------

fn accepts<F: wildx::validate::ValidSignature>(code: &[u8]) -> wildx::Code<F> {
    compile::<F>(code).unwrap_or_else(|e| panic!("{code:02x?}: {e}"))
}

#[test]
fn compiler_idioms_are_accepted() {
    // nop forms with prefixes, endbr64, then xor eax, eax; ret
    let nops: &[u8] = &[
        0xf3, 0x0f, 0x1e, 0xfa, 0x90, 0x66, 0x90, 0x0f, 0x1f, 0x00, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x66, 0x2e, 0x0f,
        0x1f, 0x84, 0, 0, 0, 0, 0, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0, 0x31, 0xc0, 0xc3,
    ];
    assert_eq!(accepts::<R0>(nops).call(()), 0);
    // zeroing idioms on undefined argument registers: xor edx, edx; sub ecx, ecx; pxor xmm1, xmm1; xorps xmm2, xmm2
    let _ = accepts::<V0>(&[0x31, 0xd2, 0x29, 0xc9, 0x66, 0x0f, 0xef, 0xc9, 0x0f, 0x57, 0xd2, 0xc3]);
    // div after xor edx, edx: mov rax, rdi; xor edx, edx; div rsi; ret
    let d = accepts::<U2>(&[0x48, 0x89, 0xf8, 0x31, 0xd2, 0x48, 0xf7, 0xf6, 0xc3]);
    assert_eq!(d.call((100, 7)), 14);
    // cvtsi2sd xmm0, rdi (merges into undefined xmm0); sqrtsd xmm0, xmm0; ret
    let s = accepts::<extern "sysv64" fn(i64) -> f64>(&[0xf2, 0x48, 0x0f, 0x2a, 0xc7, 0xf2, 0x0f, 0x51, 0xc0, 0xc3]);
    assert_eq!(s.call((49,)), 7.0);
    // movsxd rax, edi; cdqe; movabs rcx, imm64; add rax, rcx; cmovs rax, rcx; ret
    let m = accepts::<extern "sysv64" fn(i32) -> i64>(&[
        0x48, 0x63, 0xc7, 0x48, 0x98, 0x48, 0xb9, 1, 0, 0, 0, 1, 0, 0, 0, 0x48, 0x01, 0xc8, 0x48, 0x0f, 0x48, 0xc1,
        0xc3,
    ]);
    assert_eq!(m.call((5,)), (1i64 << 32) + 6);
    // rbp frame with red-zone stores, no sub rsp; leave:
    // push rbp; mov rbp, rsp; mov [rbp-8], rdi; mov rax, [rbp-8]; leave; ret
    let f = accepts::<U1>(&[0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0x7d, 0xf8, 0x48, 0x8b, 0x45, 0xf8, 0xc9, 0xc3]);
    assert_eq!(f.call((77,)), 77);
    // rbp frame with pop rbp, callee-saved pushes and sub rsp:
    // push rbp; mov rbp,rsp; push rbx; sub rsp,24; mov [rsp], rdi; mov rbx,[rsp]; lea rax,[rbx+1]; add rsp,24; pop rbx; pop rbp; ret
    let g = accepts::<U1>(&[
        0x55, 0x48, 0x89, 0xe5, 0x53, 0x48, 0x83, 0xec, 0x18, 0x48, 0x89, 0x3c, 0x24, 0x48, 0x8b, 0x1c, 0x24, 0x48,
        0x8d, 0x43, 0x01, 0x48, 0x83, 0xc4, 0x18, 0x5b, 0x5d, 0xc3,
    ]);
    assert_eq!(g.call((41,)), 42);
}

/// fact(n) = n <= 1 ? 1 : n * fact(n - 1), with a recursive call to its own start.
const FACT: &[u8] = &[
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x48, 0x83, 0xff, 0x01, // cmp rdi, 1
    0x76, 0x12, // jbe ret
    0x53, // push rbx (rsp now 16-aligned for the call)
    0x48, 0x89, 0xfb, // mov rbx, rdi
    0x48, 0x8d, 0x7f, 0xff, // lea rdi, [rdi-1]
    0xe8, 0xe8, 0xff, 0xff, 0xff, // call 0
    0x48, 0x0f, 0xaf, 0xc3, // imul rax, rbx
    0x5b, // pop rbx
    0xc3, // ret
];

#[test]
fn recursive_call_to_own_start() {
    let fact = accepts::<U1>(FACT);
    assert_eq!(fact.call((10,)), 3_628_800);
    assert_eq!(fact.call((0,)), 1);
}

// ---- Real compiler output ---------------------------------------------------------

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/validate/", $name, ".bin"))
    };
}

#[test]
fn gcc_and_rustc_output_runs_with_right_results() {
    let add = accepts::<extern "sysv64" fn(i32, i32) -> i32>(fixture!("add_i32.gcc"));
    assert_eq!(add.call((i32::MAX, 1)), i32::MIN);
    let ma = accepts::<extern "sysv64" fn(i64, i64, i64) -> i64>(fixture!("mul_add.gcc"));
    assert_eq!(ma.call((6, 7, -2)), 40);
    let ud = accepts::<U2>(fixture!("udiv.gcc"));
    assert_eq!((ud.call((100, 7)), ud.call((5, 0))), (14, 0));
    let sd = accepts::<I2>(fixture!("sdiv.gcc"));
    assert_eq!((sd.call((-100, 7)), sd.call((i64::MIN, -1))), (-14, 0));
    let st = accepts::<U1>(fixture!("sum_to.gcc"));
    let sum_to = |n: u64| (0..n).fold(0u64, |s, i| s.wrapping_add(i.wrapping_mul(i) ^ (s >> 3)));
    assert_eq!(st.call((1000,)), sum_to(1000));
    let cz = accepts::<extern "sysv64" fn(u64) -> u32>(fixture!("collatz.gcc"));
    assert_eq!(cz.call((27,)), 111);
    let cl = accepts::<extern "sysv64" fn(i32, i32, i32) -> i32>(fixture!("clamp.gcc"));
    assert_eq!((cl.call((-5, 0, 10)), cl.call((5, 0, 10)), cl.call((50, 0, 10))), (0, 5, 10));
    let m6 = accepts::<extern "sysv64" fn(i64, i64, i64, i64, i64, i64) -> i64>(fixture!("max6.gcc"));
    assert_eq!(m6.call((1, 9, 3, -4, 5, 8)), 9);
    let le = accepts::<extern "sysv64" fn(f64, f64, f64) -> f64>(fixture!("lerp.gcc"));
    assert_eq!(le.call((1.0, 3.0, 0.5)), 2.0);
    let mx = accepts::<extern "sysv64" fn(f32, f32, i32) -> f32>(fixture!("mixf.gcc"));
    assert_eq!(mx.call((1.5, 0.5, 4)), 5.5);
    let po = accepts::<extern "sysv64" fn(f64, i64) -> f64>(fixture!("poly.gcc"));
    assert_eq!(po.call((2.0, 4)), 11.0); // ((0*2+1)*2+2)*2+3
    let fi = accepts::<extern "sysv64" fn(f64) -> i64>(fixture!("f64_to_i64.gcc"));
    assert_eq!(fi.call((-7.9,)), -7);
    let pc = accepts::<U1>(fixture!("popcount_loop.gcc"));
    assert_eq!(pc.call((0xf0f0,)), 8);

    let radd = accepts::<extern "sysv64" fn(i32, i32) -> i32>(fixture!("r_add_i32.rustc"));
    assert_eq!(radd.call((40, 2)), 42);
    let gcd = accepts::<U2>(fixture!("r_gcd.rustc"));
    assert_eq!(gcd.call((1071, 462)), 21);
    let ssq = accepts::<extern "sysv64" fn(u32) -> u64>(fixture!("r_sum_sq.rustc"));
    assert_eq!(ssq.call((10,)), 285);
    let sel = accepts::<extern "sysv64" fn(i64, i64, i64) -> i64>(fixture!("r_select.rustc"));
    assert_eq!((sel.call((5, 1, 2)), sel.call((1, 5, 2))), (3, 7));
    let hy = accepts::<extern "sysv64" fn(f64, f64) -> f64>(fixture!("r_hypot2.rustc"));
    assert_eq!(hy.call((3.0, 4.0)), 25.0);
    let sc = accepts::<extern "sysv64" fn(f32, i32) -> f32>(fixture!("r_scale.rustc"));
    assert_eq!(sc.call((1.5, 4)), 6.0);
    let mix = accepts::<extern "sysv64" fn(u64, u64, u64, u64) -> u64>(fixture!("r_mix.rustc"));
    let (a, b, c, d) = (1u64, 2u64, 3u64, 4u64);
    assert_eq!(mix.call((a, b, c, d)), a.rotate_left(13) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (c >> 7) ^ d);
}

// ---- Bad input never panics ---------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn bad_input_is_rejected_without_panic() {
    assert_eq!(structural(&[]).unwrap_err().rule, Rule::Empty);
    // Every strict prefix of real instructions is truncated, never a panic or an accept.
    for code in [FACT, fixture!("collatz.gcc"), &[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 0xc3]] {
        for cut in 1..code.len() {
            let v = structural(&code[..cut]).unwrap_err();
            assert!(matches!(v.rule, Rule::Truncated | Rule::FallsOffEnd | Rule::JumpOutside), "{cut}: {v}");
        }
    }
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut big = vec![0u8; 1 << 20];
    rng.fill(&mut big);
    let v = structural(&big).unwrap_err();
    assert!(v.offset < big.len());
    let v = wildx::validate::function::<U2>(&big).unwrap_err();
    assert!(v.offset < big.len());
    // 1 MiB that decodes: nops then ret (exercises the mapped scratch path).
    let mut nops = vec![0x90u8; 1 << 20];
    *nops.last_mut().unwrap() = 0xc3;
    structural(&nops).unwrap();
    let f = accepts::<V0>(&nops);
    f.call(());
    let too_big = vec![0x90u8; wildx::validate::MAX_LEN + 1];
    assert_eq!(structural(&too_big).unwrap_err().rule, Rule::TooLarge);
}

/// Every strict prefix of every fixture function is rejected by `function` (the path
/// `compile` takes: code this short is first tried in the one pass, which decodes from
/// a copy of the code padded with zeros). Where `structural` finds the cut inside an
/// instruction, `function` reports that same offset and rule, whatever the padding
/// after the cut would decode to.
#[test]
fn every_cut_of_the_fixture_is_rejected() {
    type U6 = extern "sysv64" fn(u64, u64, u64, u64, u64, u64) -> u64;
    // Besides the fixture: a jmp rel8 whose displacement is cut off (were the padding
    // 0xfe, it would read as a jump to itself, the one way a cut instruction could end
    // a path).
    let all: [&[u8]; 21] = [
        &[0x31, 0xc0, 0xeb, 0x00],
        fixture!("add_i32.gcc"),
        fixture!("clamp.gcc"),
        fixture!("collatz.gcc"),
        fixture!("f64_to_i64.gcc"),
        fixture!("lerp.gcc"),
        fixture!("max6.gcc"),
        fixture!("mixf.gcc"),
        fixture!("mul_add.gcc"),
        fixture!("poly.gcc"),
        fixture!("popcount_loop.gcc"),
        fixture!("r_add_i32.rustc"),
        fixture!("r_gcd.rustc"),
        fixture!("r_hypot2.rustc"),
        fixture!("r_mix.rustc"),
        fixture!("r_scale.rustc"),
        fixture!("r_select.rustc"),
        fixture!("r_sum_sq.rustc"),
        fixture!("sdiv.gcc"),
        fixture!("sum_to.gcc"),
        fixture!("udiv.gcc"),
    ];
    let mut truncated = 0;
    for code in all {
        for cut in 1..code.len() {
            let part = &code[..cut];
            let found = wildx::validate::function::<U6>(part).unwrap_err();
            let sweep = structural(part).unwrap_err();
            if sweep.rule == Rule::Truncated {
                truncated += 1;
                assert_eq!(found, sweep, "{part:02x?}");
            }
        }
    }
    assert!(truncated > 150, "only {truncated} cuts inside an instruction");
}

// ---- Differential decoding against iced-x86 ----------------------------------------

/// The full register number of an iced register: GPRs 0..=15, XMM 16..=31, else None.
fn bit(r: Register) -> Option<u32> {
    if r.is_gpr() {
        Some(1 << r.full_register().number())
    } else if r.is_xmm() {
        Some(1 << (16 + r.number()))
    } else {
        None
    }
}

/// Compares our decoding of `bytes` (at offset `at`) with iced's; returns whether ours
/// accepted it.
fn compare(bytes: &[u8], at: usize, factory: &mut InstructionInfoFactory) -> bool {
    let Ok(ours) = wildx::validate::__decode_for_tests(bytes, at) else { return false };
    let mut dec = Decoder::with_ip(64, &bytes[at..], at as u64, DecoderOptions::NONE);
    let ins = dec.decode();
    let ctx = || {
        format!("{:02x?} at {at}: ours {ours:?}, iced {ins} ({:?})", &bytes[at..(at + 15).min(bytes.len())], ins.code())
    };
    assert!(!ins.is_invalid(), "iced: invalid; {}", ctx());
    assert_eq!(usize::from(ours.len), ins.len(), "length; {}", ctx());
    let target = ins.near_branch_target() as i64;
    let flow_ok = match (ours.flow, ins.flow_control()) {
        (wildx::validate::__Flow::Next, FlowControl::Next) => true,
        (wildx::validate::__Flow::Jump(t), FlowControl::UnconditionalBranch) => t == target,
        (wildx::validate::__Flow::Branch(t), FlowControl::ConditionalBranch) => t == target,
        (wildx::validate::__Flow::Call(t), FlowControl::Call) => t == target,
        (wildx::validate::__Flow::Ret, FlowControl::Return) => true,
        (wildx::validate::__Flow::Trap, FlowControl::Interrupt) => true,
        _ => false,
    };
    assert!(flow_ok, "flow; {}", ctx());
    let info = factory.info(&ins);
    let mut writes = 0u32;
    let mut reads = 0u32;
    for u in info.used_registers() {
        let Some(b) = bit(u.register()) else { continue };
        match u.access() {
            OpAccess::Write | OpAccess::CondWrite => writes |= b,
            OpAccess::ReadWrite | OpAccess::ReadCondWrite => {
                writes |= b;
                reads |= b
            }
            OpAccess::Read | OpAccess::CondRead => reads |= b,
            _ => {}
        }
    }
    assert_eq!(ours.writes, writes, "written registers {:#x} vs {:#x}; {}", ours.writes, writes, ctx());
    // Every register iced says is read is read by ours, except where ours writes it
    // (zeroing idioms and merged scalar destinations are deliberately not reads).
    let missing = reads & !ours.reads & !ours.writes;
    assert_eq!(missing, 0, "read registers missing {missing:#x}; {}", ctx());
    let mems: Vec<_> = info.used_memory().iter().filter(|m| m.access() != OpAccess::NoMemAccess).collect();
    let ours_mem = ours.mem.filter(|m| m.read || m.write);
    match (ours_mem, mems.as_slice()) {
        (None, []) => {}
        (Some(m), [im]) => {
            let reg = |r: u8| match r {
                0xff => Register::None,
                0xfe => Register::None, // iced gives RIP-relative operands as absolute addresses
                n => Register::RAX + u32::from(n),
            };
            let disp = if m.base == 0xfe {
                (at as i64 + ours.len as i64 + m.disp as i64) as u64
            } else {
                m.disp as i64 as u64
            };
            assert_eq!(reg(m.base), im.base(), "base; {}", ctx());
            assert_eq!(reg(m.index), im.index(), "index; {}", ctx());
            if m.index != 0xff {
                assert_eq!(u32::from(m.scale), im.scale(), "scale; {}", ctx());
            }
            assert_eq!(disp, im.displacement(), "displacement; {}", ctx());
            assert_eq!(m.size as usize, im.memory_size().size(), "size; {}", ctx());
            let (r, w) = match im.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                _ => (true, true),
            };
            assert_eq!((m.read, m.write), (r, w), "memory access; {}", ctx());
        }
        _ => panic!("memory operands differ: {:?}; {}", mems, ctx()),
    }
    true
}

#[test]
fn differential_random_bytes_against_iced() {
    let n: u64 = std::env::var("WILDX_DIFF_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n);
    let mut factory = InstructionInfoFactory::new();
    let mut buf = [0u8; 16];
    let mut accepted = 0u64;
    let prefixes = [0x66, 0xf2, 0xf3, 0x2e, 0x48, 0x4c, 0x41, 0x49, 0x40, 0x4d];
    for i in 0..n {
        rng.fill(&mut buf);
        // Half plain random bytes; half steered into the interesting maps: a few
        // prefixes, a REX, and the 0F map half the time.
        if i % 2 == 1 {
            let mut k = 0;
            for _ in 0..rng.below(3) {
                buf[k] = prefixes[rng.below(prefixes.len() as u64) as usize];
                k += 1;
            }
            if rng.below(2) == 0 {
                buf[k] = 0x0f;
            }
        }
        if compare(&buf, 0, &mut factory) {
            accepted += 1;
        }
    }
    println!("{n} random strings, {accepted} accepted and compared");
    assert!(accepted > n / 10, "too few accepted to mean anything: {accepted}");
}

fn text_of(path: &str) -> Option<Vec<u8>> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let text = file.section_by_name(".text")?;
    Some(text.data().ok()?.to_vec())
}

#[test]
fn differential_real_binaries_against_iced() {
    let exe = std::env::current_exe().unwrap();
    let mut paths = vec![exe.to_string_lossy().into_owned()];
    for libc in ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"] {
        if std::path::Path::new(libc).exists() {
            paths.push(libc.into());
            break;
        }
    }
    assert!(paths.len() == 2, "no libc found");
    let mut factory = InstructionInfoFactory::new();
    for path in paths {
        let text = text_of(&path).expect(".text");
        let mut dec = Decoder::with_ip(64, &text, 0, DecoderOptions::NONE);
        let (mut total, mut accepted) = (0u64, 0u64);
        let mut at = 0usize;
        while dec.can_decode() {
            let ins = dec.decode();
            if compare(&text, at, &mut factory) {
                accepted += 1;
            }
            total += 1;
            at += ins.len();
        }
        println!("{path}: {total} instructions, {accepted} in the subset and compared");
        assert!(accepted > total / 4, "{path}: too few in the subset: {accepted} of {total}");
    }
}

// ---- Execution fuzzing -------------------------------------------------------------

// The trampoline: rdi = code, rsi = context. Context: [0..48) six integer arguments,
// [48..112) xmm0-7 (f64), [112] stack top (16-aligned), [120] rax out, [128] xmm0 out,
// [136] mask of callee-saved registers that changed. It sets rbx, rbp, r12-r15 to
// distinct known values, switches to the given stack, calls the code and compares.
std::arch::global_asm!(
    ".globl wildx_validate_trampoline",
    "wildx_validate_trampoline:",
    "push rbx; push rbp; push r12; push r13; push r14; push r15",
    "mov r11, rdi",
    "mov rax, rsp",
    "mov rsp, [rsi + 112]",
    "push rax",
    "push rsi",
    "movabs rbx, 0x1111111111111111",
    "movabs rbp, 0x2222222222222222",
    "movabs r12, 0x3333333333333333",
    "movabs r13, 0x4444444444444444",
    "movabs r14, 0x5555555555555555",
    "movabs r15, 0x6666666666666666",
    "movsd xmm0, [rsi + 48]; movsd xmm1, [rsi + 56]; movsd xmm2, [rsi + 64]; movsd xmm3, [rsi + 72]",
    "movsd xmm4, [rsi + 80]; movsd xmm5, [rsi + 88]; movsd xmm6, [rsi + 96]; movsd xmm7, [rsi + 104]",
    "mov rdi, [rsi]; mov rdx, [rsi + 16]; mov rcx, [rsi + 24]; mov r8, [rsi + 32]; mov r9, [rsi + 40]",
    "mov rsi, [rsi + 8]",
    "call r11",
    "pop rsi",
    "mov [rsi + 120], rax",
    "movsd [rsi + 128], xmm0",
    "xor ecx, ecx",
    "movabs rdx, 0x1111111111111111; cmp rbx, rdx; setne dl; movzx edx, dl; or ecx, edx",
    "movabs rdx, 0x2222222222222222; cmp rbp, rdx; setne dl; movzx edx, dl; shl edx, 1; or ecx, edx",
    "movabs rdx, 0x3333333333333333; cmp r12, rdx; setne dl; movzx edx, dl; shl edx, 2; or ecx, edx",
    "movabs rdx, 0x4444444444444444; cmp r13, rdx; setne dl; movzx edx, dl; shl edx, 3; or ecx, edx",
    "movabs rdx, 0x5555555555555555; cmp r14, rdx; setne dl; movzx edx, dl; shl edx, 4; or ecx, edx",
    "movabs rdx, 0x6666666666666666; cmp r15, rdx; setne dl; movzx edx, dl; shl edx, 5; or ecx, edx",
    "mov [rsi + 136], rcx",
    "pop rax",
    "mov rsp, rax",
    "pop r15; pop r14; pop r13; pop r12; pop rbp; pop rbx",
    "ret",
);

unsafe extern "sysv64" {
    fn wildx_validate_trampoline(code: *const u8, ctx: *mut [u64; 18]);
}

/// A random function from the accepted subset: a prologue saving some callee-saved
/// registers and reserving a frame, a body of random instructions over all registers
/// (stores and loads in the frame, arithmetic, SSE, forward branches, division), and the
/// matching epilogue.
fn random_function(rng: &mut Rng) -> Vec<u8> {
    let mut c = Vec::new();
    let saved: Vec<u8> = [3u8, 5, 12, 13, 14, 15].into_iter().filter(|_| rng.below(3) == 0).collect();
    for &r in &saved {
        if r >= 8 {
            c.push(0x41);
        }
        c.push(0x50 + (r & 7));
    }
    let frame = (rng.below(8) * 16) as u8;
    if frame > 0 {
        c.extend([0x48, 0x83, 0xec, frame]);
    }
    // Define rax (the result) and the argument registers fn(u64, u64) leaves undefined: rdx, rcx, r8, r9
    // (mov r32, imm32) and xmm0-xmm7 (cvtsi2sd xmm, rsi).
    for r in [0u8, 2, 1, 8, 9] {
        if r >= 8 {
            c.push(0x41);
        }
        c.push(0xb8 + (r & 7));
        c.extend((rng.next() as u32).to_le_bytes());
    }
    for x in 0..8u8 {
        c.extend([0xf2, 0x48, 0x0f, 0x2a, 0xc6 | (x << 3)]);
    }
    // Registers the body may freely clobber: the caller-saved ones and those saved.
    let mut free: Vec<u8> = vec![0, 1, 2, 6, 7, 8, 9, 10, 11];
    free.extend(saved.iter().copied());
    let mut pending_branch: Option<usize> = None;
    for _ in 0..rng.below(24) + 1 {
        let r = free[rng.below(free.len() as u64) as usize];
        let s = free[rng.below(free.len() as u64) as usize];
        let rex = 0x48 | ((r >> 3) << 2) | (s >> 3);
        let modrm = 0xc0 | ((r & 7) << 3) | (s & 7);
        match rng.below(14) {
            0 => c.extend([rex, 0x01 + 8 * rng.below(8) as u8, modrm]), // alu r/m, r
            1 => c.extend([rex, 0x0f, 0xaf, modrm]),                    // imul r, r/m
            2 => c.extend([0x48 | (r >> 3), 0xb8 + (r & 7)].into_iter().chain(rng.next().to_le_bytes())), // movabs
            3 if frame > 0 => {
                // mov [rsp + d], r / mov r, [rsp + d] with d inside the frame
                let d = (rng.below(u64::from(frame) / 8) * 8) as u8;
                c.extend([
                    0x48 | ((r >> 3) << 2),
                    if rng.below(2) == 0 { 0x89 } else { 0x8b },
                    0x44 | ((r & 7) << 3),
                    0x24,
                    d,
                ]);
            }
            4 => c.extend([
                0x48 | ((r >> 3) << 2),
                0x89,
                0x44 | ((r & 7) << 3),
                0x24,
                (0x100 - 8 * (rng.below(16) + 1)) as u8,
            ]), // red zone below rsp
            5 => c.extend([
                0x48 | (s >> 3),
                0xd1 + 2 * rng.below(2) as u8,
                0xe0 | (rng.below(8) as u8 & 7) << 3 | (s & 7),
            ]),
            6 => {
                // xor edx, edx; mov rax, r; div s (SIGFPE on zero is allowed)
                if !free.contains(&2) || !free.contains(&0) {
                    continue;
                }
                c.extend([0x31, 0xd2, 0x48 | ((r >> 3) << 2), 0x89, 0xc0 | ((r & 7) << 3)]);
                c.extend([0x48 | (s >> 3), 0xf7, 0xf0 | (s & 7)]);
            }
            7 => {
                c.extend([0xf2, 0x0f, 0x58 + rng.below(2) as u8, 0xc0 | (rng.below(8) as u8) << 3 | rng.below(8) as u8])
            } // addsd/mulsd
            8 => c.extend([0xf2, 0x48 | (s >> 3), 0x0f, 0x2a, 0xc0 | (rng.below(8) as u8) << 3 | (s & 7)]), // cvtsi2sd xmm, s
            9 if pending_branch.is_none() => {
                c.extend([0x74 + rng.below(4) as u8 * 2, 0x00]);
                pending_branch = Some(c.len());
            }
            10 => c.extend([rex, 0x0f, 0x44 + rng.below(8) as u8, modrm]), // cmovcc
            11 => {
                c.extend([rex | ((s >> 3) << 1), 0x8d, 0x44 | ((r & 7) << 3), (s & 7) << 3 | (s & 7), rng.next() as u8])
            } // lea r, [s + s + d8]
            12 => c.extend([0x0f, 0x1f, 0x44, 0x00, 0x00]),
            _ => c.extend([0x48 | (s >> 3), 0xf7, 0xd8 | (s & 7)]), // neg
        }
        if let Some(p) = pending_branch {
            if c.len() - p > 20 {
                let d = c.len() - p;
                c[p - 1] = d as u8;
                pending_branch = None;
            }
        }
    }
    if let Some(p) = pending_branch {
        c[p - 1] = (c.len() - p) as u8;
    }
    if frame > 0 {
        c.extend([0x48, 0x83, 0xc4, frame]);
    }
    for &r in saved.iter().rev() {
        if r >= 8 {
            c.push(0x41);
        }
        c.push(0x58 + (r & 7));
    }
    c.push(0xc3);
    c
}

fn mutate(rng: &mut Rng, code: &mut Vec<u8>) {
    for _ in 0..rng.below(3) + 1 {
        let i = rng.below(code.len() as u64) as usize;
        match rng.below(4) {
            0 => code[i] ^= 1 << rng.below(8),
            1 => code[i] = rng.next() as u8,
            2 => code.insert(i, rng.next() as u8),
            _ if code.len() > 1 => {
                code.remove(i);
            }
            _ => {}
        }
    }
}

const STACK: usize = 256 << 10;
const GUARD: usize = 64 << 10;

/// Runs `code` on a fresh stack between PROT_NONE guards, in a forked process with a
/// time limit; returns how that process ended. In the process: canaries above the
/// return address and a canary buffer whose address is passed in every integer
/// argument must be unchanged, and every callee-saved register restored.
fn run_guarded(code: &wildx::Code<U2>, rng: &mut Rng, canary: &mut [u8]) -> i32 {
    let args: [u64; 6] = std::array::from_fn(|i| if i % 2 == 0 { canary.as_ptr() as u64 + 64 } else { rng.next() });
    let fargs: [f64; 8] = std::array::from_fn(|_| rng.next() as i64 as f64);
    // SAFETY: fork in a child test process with one thread; the forked process only
    // calls the trampoline and async-signal-safe functions, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: mapping fresh memory and protecting parts of it we own.
        unsafe {
            let timer = libc::itimerval {
                it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
                it_value: libc::timeval { tv_sec: 0, tv_usec: 200_000 },
            };
            libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK + 2 * GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            libc::mprotect(base as *mut _, GUARD, libc::PROT_NONE);
            libc::mprotect(base.add(GUARD + STACK) as *mut _, GUARD, libc::PROT_NONE);
            let stack = base.add(GUARD);
            std::ptr::write_bytes(stack, 0xa5, STACK);
            let top = stack.add(STACK - 4096); // 4 KiB of canaries above the return address
            let mut ctx = [0u64; 18];
            ctx[..6].copy_from_slice(&args);
            for (i, f) in fargs.iter().enumerate() {
                ctx[6 + i] = f.to_bits();
            }
            ctx[14] = top as u64;
            wildx_validate_trampoline(code.as_ptr(), &mut ctx);
            // The trampoline's own two pushes sit just below `top`; everything from
            // `top` up is canary.
            let above = std::slice::from_raw_parts(top, 4096);
            let ok_stack = above.iter().all(|&b| b == 0xa5);
            let ok_heap = canary.iter().all(|&b| b == 0x5a);
            let code = if ctx[17] != 0 {
                3
            } else if !ok_stack {
                4
            } else if !ok_heap {
                5
            } else {
                0
            };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

#[test]
fn execution_fuzzing_in_child() {
    let name = "execution_fuzzing_in_child";
    let out = common::run_in_child(name, || {
        let n: u64 = std::env::var("WILDX_EXEC_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
        let mut rng = Rng(0xdead_beef_cafe_f00d ^ n);
        let mut canary = vec![0x5au8; 256];
        let (mut ran, mut fpe, mut timeout, mut rejected) = (0, 0, 0, 0);
        let mut rules = std::collections::BTreeMap::<String, u64>::new();
        for i in 0..n {
            let mut code = random_function(&mut rng);
            if i % 2 == 1 {
                mutate(&mut rng, &mut code);
            }
            let f = match compile::<U2>(&code) {
                Ok(f) => f,
                Err(Error::Rejected(v)) => {
                    rejected += 1;
                    *rules.entry(format!("{:?}", v.rule)).or_default() += 1;
                    if i % 2 == 0 {
                        panic!("generated function rejected: {v}: {code:02x?}");
                    }
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let status = run_guarded(&f, &mut rng, &mut canary);
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                ran += 1;
            } else if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGFPE {
                fpe += 1;
            } else if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
                timeout += 1;
            } else {
                panic!("accepted code broke the promise (status {status:#x}): {code:02x?}");
            }
        }
        println!(
            "{n} functions: {ran} returned, {fpe} SIGFPE, {timeout} timed out, {rejected} mutants rejected {rules:?}"
        );
        assert!(ran > n / 3, "too few ran: {ran}");
    });
    if let Some(out) = out {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn extern_c_signature_compiles() {
    let add = accepts::<extern "C" fn(i32, i32) -> i32>(fixture!("add_i32.gcc"));
    assert_eq!(add.call((40, 2)), 42);
    rejects::<extern "C" fn(u64) -> u64>(&[0x89, 0x07, 0xc3], 0, Rule::Memory);
}
