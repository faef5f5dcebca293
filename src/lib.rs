#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "wildx supports only x86-64 Linux: it issues raw x86-64 Linux syscalls and emits \
     x86-64 machine code"
);

mod sys;
#[cfg(test)]
mod test_support;

/// The narrow runtime path for freestanding programs: exit, stderr, abort.
pub mod rt;

#[cfg(feature = "capi")]
pub mod capi;

pub mod arena;
mod error;
#[allow(dead_code)] // the arena (issue 14) is its user
mod execmem;
mod fork;
mod global;
mod hash;
pub mod jit;
mod lock;
mod page;
mod placement;
pub mod profiling;
pub mod raw;
mod registry;
pub mod signal_safe;
mod typed;
pub mod validate;

/// The long-form documentation, `docs/*.md` in the repository, rendered here so that the
/// README's links work on docs.rs and crates.io alike. Pages only, no items.
pub mod docs {
    #[doc = include_str!("../docs/contract.md")]
    pub mod contract {}
    #[doc = include_str!("../docs/c.md")]
    pub mod c {}
    #[doc = include_str!("../docs/freestanding.md")]
    pub mod freestanding {}
    #[doc = include_str!("../docs/performance.md")]
    pub mod performance {}
    #[doc = include_str!("../docs/reliability.md")]
    pub mod reliability {}
    #[doc = include_str!("../docs/profiling.md")]
    pub mod profiling {}
    #[doc = include_str!("../docs/validator.md")]
    pub mod validator {}
    #[doc = include_str!("../docs/hardening.md")]
    pub mod hardening {}
}

#[cfg(feature = "validate")]
pub use arena::CheckedFn;
pub use arena::{Arena, Entry, FnId};

pub use error::Error;
pub use execmem::{ExecMode, exec_mode, use_memfd};
pub use fork::{atfork_child, atfork_parent, atfork_prepare};
pub use global::MmapAlloc;
pub use hash::fnv1a64;
pub use page::{PageInfo, Stats, inspect, quota, set_quota, stats};
pub use registry::{DEFAULT_QUOTA, State};
pub use sys::{Errno, PAGE_SIZE};
pub use typed::{Code, FnRef, FreeError, Page, SafeSignature, SealError, Signature};
