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
//! The rest of this page is `docs/arena.md`.
//!
#![doc = include_str!("../../docs/arena.md")]

mod handle;
mod shared;
mod table;

#[cfg(feature = "validate")]
pub use handle::CheckedFn;
pub use handle::{Arena, Entry, FnId};
pub(crate) use handle::{inspect, live_functions, try_inspect, try_verify, verify};
pub(crate) use shared::Shared;
#[cfg(feature = "capi")]
pub(crate) use shared::with_handle;
