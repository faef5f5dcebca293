#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "wildx supports only x86-64 Linux: it issues raw x86-64 Linux syscalls and emits \
     x86-64 machine code"
);

mod sys;

/// The narrow runtime path for freestanding programs: exit, stderr, abort.
pub mod rt;

#[cfg(feature = "capi")]
pub mod capi;

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
pub mod raw;
mod registry;
pub mod signal_safe;
mod typed;

pub use error::Error;
pub use fork::{atfork_child, atfork_parent, atfork_prepare};
pub use global::MmapAlloc;
pub use hash::fnv1a64;
pub use page::{PageInfo, Stats, inspect, quota, set_quota, stats};
pub use registry::{DEFAULT_QUOTA, State};
pub use sys::{Errno, PAGE_SIZE};
pub use typed::{Code, Page, SealError, Signature};
