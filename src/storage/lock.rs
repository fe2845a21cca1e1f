//! The data directory's lock: one process at a time (the server, or one of
//! the offline commands) may use a data directory. `wal dump` reads without it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

use super::private::PRIVATE_FILE_MODE;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds an exclusive lock on `DIR/LOCK` for as long as the returned file is open.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!("{} is locked: another loyalty-ledger process uses this data directory", path.display())
    })?;
    Ok(file)
}
