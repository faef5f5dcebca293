//! The validator: which byte strings may run as a typed function without `unsafe`.
//!
//! Invariant owned here: a byte string that `structural` accepts decodes, from its
//! first byte, into instructions of the accepted subset that cover every byte exactly
//! once, whose direct transfers land on those instructions' starts inside the code,
//! whose only call is to the code's own start, which reach no `int3`, never fall off the
//! end, and contain no system, trapping or I/O instruction, no indirect or far transfer
//! and no segment override, `lock` or `rep` prefix. A byte string that the checks behind
//! `crate::jit::compile` accept for a signature `F` satisfies all that and, run as `F`
//! from a call that follows the System V ABI, touches no memory but its own stack frame
//! (at most [`FRAME_LIMIT`] bytes below the return address, plus the 128-byte red zone
//! below `rsp`) and its own bytes (read only), returns with `rsp` back at the return
//! address and `rbx`, `rbp`, `r12`-`r15` restored, reads no argument register `F` does
//! not define, and writes the return register on every path. `docs/validator.md`
//! describes the subset and the rules.
//!
//! [`Violation`] and [`Rule`] are plain data compiled with or without the `validate`
//! feature, so that [`crate::Error::Rejected`] and matches on it do not depend on
//! features; the decoder and the rules are behind the feature.

use core::fmt;

#[cfg(feature = "validate")]
mod abi;
#[cfg(feature = "validate")]
pub(crate) mod decode;
#[cfg(all(test, feature = "validate"))]
mod reference;
#[cfg(feature = "validate")]
mod rules;
#[cfg(feature = "validate")]
mod scratch;

#[cfg(feature = "validate")]
pub use abi::{Abi, Class, Scalar, ValidSignature};

/// How far below the return address a function's frame may reach (pushes, `sub rsp`
/// and `rbp` frames included; the red zone comes on top). It keeps every access of one
/// activation within 4 KiB of the return address its call wrote, so a runaway recursion
/// touches the stack's guard page rather than skipping it.
pub const FRAME_LIMIT: usize = 2048;

/// The longest code the validator examines (4 MiB).
pub const MAX_LEN: usize = 4 << 20;

/// Which rule a byte string broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The code is empty.
    Empty,
    /// The code is longer than [`MAX_LEN`].
    TooLarge,
    /// An instruction runs past the end of the code.
    Truncated,
    /// An instruction outside the accepted subset (or no instruction at all).
    Unknown,
    /// A system, trapping or I/O instruction: `syscall`, `sysenter`, `int n`, `hlt`,
    /// `in`/`out`, `cpuid`, `ud2`, ...
    Forbidden,
    /// A segment override, `lock` or `rep` prefix.
    Prefix,
    /// An indirect or far jump or call.
    Indirect,
    /// A call to somewhere other than the code's own start.
    CallTarget,
    /// A jump that lands inside an instruction.
    JumpIntoInstruction,
    /// A jump that lands outside the code.
    JumpOutside,
    /// A path runs past the last instruction without returning.
    FallsOffEnd,
    /// An `int3` that a path reaches.
    Trap,
    /// A memory operand outside the frame, the red zone and the code's own bytes, or a
    /// write to the code, or a misaligned aligned-SSE access.
    Memory,
    /// `rsp` changed by an amount not known statically (`sub rsp, rax`, `mov rsp, ..`).
    StackUnknown,
    /// Two paths meet with different stack depths.
    StackMismatch,
    /// The frame reaches more than [`FRAME_LIMIT`] bytes below the return address, or
    /// `rsp` moves above it.
    FrameTooLarge,
    /// A call made with `rsp` not 16-byte aligned.
    CallAlignment,
    /// A `ret` with `rsp` not at the return address.
    Unbalanced,
    /// A `ret` with `rbx`, `rbp` or `r12`-`r15` not holding the caller's value.
    CalleeSaved,
    /// An argument register read that the signature does not define, before a write.
    ArgumentUndefined,
    /// A `ret` on a path where the return register was never written.
    ReturnUndefined,
    /// The scratch memory for the check could not be mapped.
    NoScratch,
}

impl Rule {
    /// What the rule says, in a few words.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Rule::Empty => "no code",
            Rule::TooLarge => "code longer than 4 MiB",
            Rule::Truncated => "instruction runs past the end of the code",
            Rule::Unknown => "instruction outside the accepted subset",
            Rule::Forbidden => "system, trapping or I/O instruction",
            Rule::Prefix => "segment override, lock or rep prefix",
            Rule::Indirect => "indirect or far jump or call",
            Rule::CallTarget => "call to somewhere other than the function's own start",
            Rule::JumpIntoInstruction => "jump into the middle of an instruction",
            Rule::JumpOutside => "jump outside the function",
            Rule::FallsOffEnd => "falls off the end of the code",
            Rule::Trap => "reachable int3",
            Rule::Memory => "memory operand outside the frame, the red zone and the function's own bytes",
            Rule::StackUnknown => "rsp changed by an amount not known statically",
            Rule::StackMismatch => "paths meet with different stack depths",
            Rule::FrameTooLarge => "stack frame deeper than 2048 bytes or above the return address",
            Rule::CallAlignment => "call with rsp not 16-byte aligned",
            Rule::Unbalanced => "ret with rsp not at the return address",
            Rule::CalleeSaved => "ret with a callee-saved register (rbx, rbp, r12-r15) not restored",
            Rule::ArgumentUndefined => "reads an argument register the signature does not define",
            Rule::ReturnUndefined => "ret before the return register is written",
            Rule::NoScratch => "scratch memory for the check could not be mapped",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Where a byte string broke which rule: the offset of the instruction (or byte) at
/// fault, from the start of the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Byte offset from the start of the code.
    pub offset: usize,
    /// The rule broken.
    pub rule: Rule,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.rule)
    }
}

/// Checks the structural rules only: decoding, control flow and forbidden instructions,
/// without the memory and ABI rules. For code sealed with the `unsafe`
/// [`crate::Page::seal`] that legitimately touches memory: it proves the bytes cannot
/// escape their own control flow or enter the kernel, not that they are safe to call.
///
/// Syscalls: none for code up to 8 KiB that a first sweep decides with two bitmaps on
/// the stack (at most 2 KiB): code that breaks a decoding or jump-range rule, or whose
/// jumps all land on instruction starts, that holds no `int3` and whose last instruction
/// is a `ret` or `jmp`; none either for code up to 512 bytes and 128 instructions
/// (scratch on the stack: at most about 19 KiB of it in use at once). Longer code uses a scratch mapping (116 bytes per code byte, touched
/// only per instruction); one mapping of up to 1 MiB (code up to about 9 KiB) is kept
/// process-wide for the next check, so only the first such check, or one that needs a
/// larger mapping, makes an `mmap` (and `munmap`).
///
/// ```
/// use wildx::validate::{Rule, structural};
/// assert_eq!(structural(&[0x89, 0xf8, 0x01, 0xf0, 0xc3]), Ok(()));
/// let err = structural(&[0x0f, 0x05, 0xc3]).unwrap_err(); // syscall; ret
/// assert_eq!((err.offset, err.rule), (0, Rule::Forbidden));
/// ```
///
/// # Errors
/// The first [`Violation`] found: the offset and the [`Rule`].
#[cfg(feature = "validate")]
pub fn structural(code: &[u8]) -> Result<(), Violation> {
    rules::check(code, None)
}

/// Checks every rule for a function of signature `F`: what [`crate::jit::compile`]
/// runs before sealing.
///
/// Syscalls: none for code up to 512 bytes and 128 instructions (scratch on the stack,
/// at most about 19 KiB of it in use at once); longer code uses the scratch mapping
/// [`structural`] describes. Code up to 512 bytes is first checked in one pass that
/// decodes and applies each instruction at once (about 4 KiB of that stack); where
/// that pass cannot accept, the full check decides, so the verdict and its offset never
/// depend on which one ran.
///
/// # Errors
/// The first [`Violation`] found.
#[cfg(feature = "validate")]
pub fn function<F: ValidSignature>(code: &[u8]) -> Result<(), Violation> {
    rules::check(code, Some(F::ABI))
}

#[cfg(feature = "validate")]
#[doc(hidden)]
pub use decode::{Flow as __Flow, Insn as __Insn};

/// The decoder, for the differential tests only; not part of the API.
#[cfg(feature = "validate")]
#[doc(hidden)]
pub fn __decode_for_tests(code: &[u8], at: usize) -> Result<__Insn, Rule> {
    decode::decode(code, at)
}
