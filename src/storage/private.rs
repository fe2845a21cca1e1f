//! File modes of the data directory. The WAL, snapshots and stored
//! idempotent responses hold webhook signing secrets and customer emails,
//! and `secret_key` is the API key itself: nobody but the server's user may
//! read them. New files and directories are created private
//! (`storage::fs`); `make_private` also closes up a directory made by an
//! older version, at every start.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mode of the data directory and every directory in it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file in the data directory.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// How deep `make_private` goes below the data directory (`wal/`, `snapshots/`).
const PRIVATE_DEPTH_MAX: usize = 2;

/// Makes every file and directory this process creates from now on private
/// (umask 077): history's engine creates its own files, deeper than
/// `make_private` goes, and they hold the same secrets.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Sets the data directory to 0700, and every directory below it to 0700
/// and every file to 0600 (symbolic links are left alone). Returns how many
/// modes it changed.
pub fn make_private(data_dir: &Path) -> io::Result<usize> {
    walk(data_dir, 0)
}

fn walk(dir: &Path, depth: usize) -> io::Result<usize> {
    let mut changed = set_mode(dir, PRIVATE_DIR_MODE)?;
    if depth >= PRIVATE_DEPTH_MAX {
        return Ok(changed);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            changed += walk(&entry.path(), depth + 1)?;
        } else if kind.is_file() {
            changed += set_mode(&entry.path(), PRIVATE_FILE_MODE)?;
        }
    }
    Ok(changed)
}

/// Sets `path`'s permission bits to `mode` if they differ; 1 if it changed them.
fn set_mode(path: &Path, mode: u32) -> io::Result<usize> {
    let current = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(0);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_directory_is_closed_up() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        fs::create_dir(&wal).unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(wal.join("00000000000000000001.wal"), b"x").unwrap();
        fs::set_permissions(wal.join("00000000000000000001.wal"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.path().join("secret_key"), b"k").unwrap();
        assert!(make_private(dir.path()).unwrap() >= 2);
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&wal), 0o700);
        assert_eq!(mode(&wal.join("00000000000000000001.wal")), 0o600);
        assert_eq!(mode(&dir.path().join("secret_key")), 0o600);
        assert_eq!(make_private(dir.path()).unwrap(), 0, "nothing left to change");
    }

    #[test]
    fn the_seam_creates_private_directories_and_files() {
        use crate::storage::fs::{FileSystem, RealFs};
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        RealFs.create_dir_all(&deep).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        RealFs.create_new(&deep.join("f")).unwrap();
        assert_eq!(mode(&deep.join("f")), 0o600);
    }
}
