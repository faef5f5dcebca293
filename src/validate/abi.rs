//! Which signatures `compile` accepts, and the registers each one defines.
//!
//! Invariant owned here: [`ValidSignature::ABI`] names exactly the registers in which
//! the System V AMD64 ABI passes `F`'s arguments and returns its value: integer
//! arguments in `rdi`, `rsi`, `rdx`, `rcx`, `r8`, `r9` in order, floating-point ones in
//! `xmm0`-`xmm7` in order, an integer result in `rax`, a floating-point one in `xmm0`.

use super::decode::{gpr, xmm};
use crate::SafeSignature;

/// Where one argument or result travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A general-purpose register.
    Int,
    /// An XMM register.
    Float,
    /// Nothing (`()` as a result).
    Unit,
}

/// The register picture of a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abi {
    /// Registers the arguments define (GPR bits 0..=15, XMM bits 16..=31).
    pub args: u32,
    /// The result register's bit, 0 for `()`.
    pub ret: u32,
}

/// Integer argument registers in order: rdi, rsi, rdx, rcx, r8, r9.
const INT_ARGS: [u8; 6] = [7, 6, 2, 1, 8, 9];

impl Abi {
    /// The picture for arguments of `classes` and a result of `ret`.
    #[must_use]
    pub const fn of(classes: &[Class], ret: Class) -> Abi {
        let mut args = 0;
        let (mut ints, mut floats, mut i) = (0, 0, 0);
        while i < classes.len() {
            match classes[i] {
                Class::Int => {
                    args |= gpr(INT_ARGS[ints]);
                    ints += 1;
                }
                Class::Float => {
                    args |= xmm(floats);
                    floats += 1;
                }
                Class::Unit => {}
            }
            i += 1;
        }
        let ret = match ret {
            Class::Int => gpr(0),
            Class::Float => xmm(0),
            Class::Unit => 0,
        };
        Abi { args, ret }
    }

    /// Every register that can carry an argument under the ABI.
    pub(crate) const ARG_REGS: u32 = gpr(7) | gpr(6) | gpr(2) | gpr(1) | gpr(8) | gpr(9) | 0x00ff_0000;
}

mod sealed {
    pub trait Sealed {}
}

/// A value type the validator can pass or return: `i8`..`i64`, `u8`..`u64`, `isize`,
/// `usize`, `f32`, `f64` (and `()` as a result). Not `bool` or `char`, whose invalid bit
/// patterns would be undefined behaviour, and not pointers.
pub trait Scalar: sealed::Sealed {
    /// Where it travels.
    const CLASS: Class;
}

macro_rules! scalar {
    ($class:ident: $($t:ty),*) => {
        $(
            impl sealed::Sealed for $t {}
            impl Scalar for $t {
                const CLASS: Class = Class::$class;
            }
        )*
    };
}

scalar!(Int: i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);
scalar!(Float: f32, f64);
scalar!(Unit: ());

/// A signature [`crate::jit::compile`] can prove code implements:
/// `extern "sysv64" fn(A, ..) -> R` or `extern "C" fn(A, ..) -> R` (the same convention
/// on x86-64 Linux) with up to six [`Scalar`] arguments and a [`Scalar`] result (or
/// none). Only safe fn types: what is proven needs no precondition from the caller.
///
/// Implemented by wildx only.
pub trait ValidSignature: SafeSignature {
    /// The registers the signature defines and returns in.
    const ABI: Abi;
}

macro_rules! valid {
    ($($arg:ident),*) => {
        impl<R: Scalar $(, $arg: Scalar)*> ValidSignature for extern "sysv64" fn($($arg),*) -> R {
            const ABI: Abi = Abi::of(&[$($arg::CLASS),*], R::CLASS);
        }
        impl<R: Scalar $(, $arg: Scalar)*> ValidSignature for extern "C" fn($($arg),*) -> R {
            const ABI: Abi = Abi::of(&[$($arg::CLASS),*], R::CLASS);
        }
    };
}

valid!();
valid!(A);
valid!(A, B);
valid!(A, B, C);
valid!(A, B, C, D);
valid!(A, B, C, D, E);
valid!(A, B, C, D, E, G);
