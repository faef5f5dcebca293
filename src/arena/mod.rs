//! Code arenas: many functions in one reserved address range that never moves, placed at
//! addresses known before they are assembled, published in batches.
//!
//! Invariants owned here (the page lifecycle of [`crate::Page`], kept per page of the
//! arena):
//! - no page of an arena is ever writable and executable at once, and a page that held
//!   published code is never writable again: pushes after a publish go to fresh pages;
//! - every published function has the FNV-1a 64 hash of exactly its own bytes, recorded
//!   before its pages became executable;
//! - a function can be entered through wildx only while it is published and not
//!   retired: an [`Entry`] keeps it so (retiring a function with live entries is
//!   refused), and once every record on a page is retired the page goes back to the
//!   kernel, inaccessible, so a stale raw pointer faults instead of running old code;
//! - the arena's tables live in memory wildx maps itself, never the global allocator.
//!
//! ```
//! use wildx::Arena;
//!
//! let arena = Arena::new(1 << 20)?;                 // 1 MiB of address space, no memory yet
//! let add = arena.push(&[0x8d, 0x04, 0x37, 0xc3])?; // lea eax, [rdi + rsi]; ret
//! arena.publish()?;                                 // hashed, then R|X: one mprotect
//! // SAFETY: the bytes implement `extern "sysv64" fn(i32, i32) -> i32`.
//! let entry = unsafe { arena.entry::<extern "sysv64" fn(i32, i32) -> i32>(add) }?;
//! assert_eq!(entry.call((40, 2)), 42);
//! drop(entry);
//! arena.retire(add)?;                               // its page goes back to the kernel
//! # Ok::<(), wildx::Error>(())
//! ```

mod handle;
mod shared;
mod table;

pub use handle::{Arena, Entry, FnId};
pub(crate) use handle::{inspect, live_functions, verify};
pub(crate) use shared::Shared;
#[cfg(feature = "capi")]
pub(crate) use shared::with_handle;
