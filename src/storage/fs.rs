//! The file-system seam: everything the WAL and snapshots do to disk goes
//! through `FileSystem`, so tests can put a fault-injecting implementation
//! underneath (EIO, ENOSPC on write, sync and rename; `crate::test_hooks::faults`).
//!
//! Everything it creates is private: directories 0700, files 0600
//! (`storage::private`), since the WAL and snapshots hold webhook signing
//! secrets and customer emails.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::private::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};

/// An open file that is only ever appended to and synced.
pub trait AppendFile: Send {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// fdatasync: data (and the size) reach the disk.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Zero-fills the file up to `len` bytes past its start, ahead of the
    /// appends, which then overwrite the zeros (nothing if it is that long).
    /// Readers take a run of zeros where a record would start as the end of
    /// the log. Overwriting blocks that exist makes an fdatasync write data
    /// only; appending past the end also allocates blocks and writes the
    /// inode, about twice the time per sync on this machine's disk.
    fn reserve(&mut self, len: u64) -> io::Result<()>;
}

pub trait FileSystem: Send + Sync + 'static {
    /// Creates `dir` and any missing parents (mode 0700), fsyncing the parent
    /// of each one created so that its name persists.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates `path` (mode 0600), which must not exist.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens `path` to append at byte `at` (the end of its last record, as
    /// the reader found it); what the file holds past `at` must be zeros.
    fn open_append(&self, path: &Path, at: u64) -> io::Result<Box<dyn AppendFile>>;
    /// Cuts `path` to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory, so that created, renamed and removed names persist.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes the next reads of `path` come from the device: syncs what is
    /// still dirty, then drops the file's cached pages. After a failed fsync
    /// Linux may keep pages that never reached the disk in the cache marked
    /// clean; reading them back would resurrect unsynced writes.
    fn drop_cache(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile {
    file: File,
    /// Where the next append goes.
    pos: u64,
    /// The file's length: from `pos` to here it holds zeros.
    len: u64,
}

impl RealFile {
    /// Appends go at `at`, or after what `file` holds now.
    fn open(file: File, at: Option<u64>) -> io::Result<RealFile> {
        let len = file.metadata()?.len();
        let pos = at.unwrap_or(len);
        if pos > len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("append at {pos}, past the end ({len})")));
        }
        Ok(RealFile { file, pos, len })
    }
}

impl AppendFile for RealFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.pos)?;
        self.pos += bytes.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        if len > self.len {
            let zeros = vec![0u8; (len - self.len) as usize];
            self.file.write_all_at(&zeros, self.len)?;
            self.len = len;
        }
        Ok(())
    }
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.create_dir_all(parent)?;
        match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
            Ok(()) => self.sync_dir(parent),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let f = OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE_MODE).open(path)?;
        Ok(Box::new(RealFile::open(f, None)?))
    }
    fn open_append(&self, path: &Path, at: u64) -> io::Result<Box<dyn AppendFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(RealFile::open(f, Some(at))?))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn drop_cache(&self, path: &Path) -> io::Result<()> {
        let f = File::open(path)?;
        f.sync_data()?;
        // SAFETY: a plain syscall on a file descriptor this function owns.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}

/// `dir/name` as a path.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
