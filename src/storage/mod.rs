//! The data directory on disk, below the WAL and snapshots:
//!
//! - `fs`: the file-system seam everything durable is written through (a
//!   trait, so tests can put a fault-injecting one underneath).
//! - `lock`: the exclusive `DIR/LOCK` a server or offline command holds.
//! - `private`: file modes: the directory 0700, everything in it 0600.

pub mod fs;
pub mod lock;
pub mod private;
