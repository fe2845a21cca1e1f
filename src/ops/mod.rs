//! The offline operator commands of the one binary (README, "Operate"):
//!
//! - `snapshot`: replay a stopped server's data directory and write a
//!   snapshot of it (then compact, as the online snapshot does);
//! - `restore`: make a data directory start from a snapshot file;
//! - `history`: what history holds, or the response it remembers for a key;
//! - `verify`: check every checksum, replay everything and check the ledger
//!   invariants, with a report and exit status 1 when anything fails.
//!
//! Each takes the data directory's `LOCK`, so none runs beside a server (or
//! another command) on the same directory. Long steps log progress lines.

pub mod history;
pub mod restore;
pub mod snapshot;
pub mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};

/// `path` as answered to an operator (`POST /v1/admin/snapshot`, the
/// `snapshot` command): absolute, so it can be used from any directory,
/// whatever directory the server was started in. Resolved when answering
/// (symlinks too), and left as it is only if even that fails.
pub fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_path_buf())
}

/// Locks `data_dir`, which must exist; refuses while a server holds it.
fn lock_existing(data_dir: &Path) -> anyhow::Result<File> {
    if !data_dir.is_dir() {
        anyhow::bail!("{} is not a data directory", data_dir.display());
    }
    crate::storage::lock::lock_data_dir(data_dir)
}
