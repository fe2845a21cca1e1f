//! Fault injection under the WAL: a `FileSystem` that wraps another one
//! (normally `RealFs`) and makes chosen operations fail the way a sick disk
//! does, so tests can hold the server to invariant 7 of docs/reliability.md (a storage
//! fault acknowledges nothing, and a failed fsync is never retried into a
//! false success).
//!
//! Three operations can be faulted: `append` (a write to an open file),
//! `sync` (`sync_data` of an open file) and `rename`. Each can be armed with
//! one fault at a time:
//!
//! - `Eio` / `Enospc`: the operation does nothing and fails with that errno;
//! - `Torn`: a partial effect, then EIO. For `append`, only the first half of
//!   the bytes are written (a write cut short). For `sync`, the bytes written
//!   since the last good sync are thrown away (the file is cut back), the way
//!   a kernel may drop dirty pages after a failed writeback and then report
//!   success to a retried fsync. Not defined for `rename`;
//! - `Lost` (sync only): EIO, and the bytes written since the last good sync
//!   stay readable, as from a page cache whose failed pages were marked
//!   clean, but are not on the "device": `drop_cache` on the file zeroes them
//!   (what the device holds there: the zeros written ahead by `reserve`).
//!   This is the case recovery must not be fooled by;
//! - `Slow`: the operation succeeds after a delay (a slow disk: what makes
//!   queues fill up in the overload tests).
//!
//! A fault lets `after` operations through, then fires on the next `times`
//! ones (0: on every one until cleared). Every operation is counted whether a
//! fault is armed or not, so a test can see that nothing was synced again
//! after a failed sync.
//!
//! The server uses this file system only when started with `LEDGER_FAULTS=1`,
//! which also exposes `POST /v1/test/faults` (see `http::testing`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::storage::fs::{AppendFile, FileSystem, RealFs};

/// errno values (Linux) the faults report.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Longest delay a `Slow` fault may add to one operation.
pub const FAULT_DELAY_MAX: Duration = Duration::from_secs(10);

/// An operation that can be faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Append,
    Sync,
    Rename,
}

impl FaultOp {
    pub const ALL: [FaultOp; 3] = [FaultOp::Append, FaultOp::Sync, FaultOp::Rename];

    pub fn parse(s: &str) -> Option<FaultOp> {
        FaultOp::ALL.into_iter().find(|op| op.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultOp::Append => "append",
            FaultOp::Sync => "sync",
            FaultOp::Rename => "rename",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What an armed fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Eio,
    Enospc,
    Torn,
    Lost,
    Slow(Duration),
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Eio => "eio",
            FaultKind::Enospc => "enospc",
            FaultKind::Torn => "torn",
            FaultKind::Lost => "lost",
            FaultKind::Slow(_) => "slow",
        }
    }
}

/// A fault to arm on one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Operations let through before the fault fires.
    pub after: u64,
    /// Operations it fires on; 0 means every one until cleared.
    pub times: u64,
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    fault: Fault,
    /// Operations seen since it was armed.
    seen: u64,
    /// Operations it fired on.
    fired: u64,
}

/// Counters and the armed fault of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStatus {
    pub op: FaultOp,
    /// Operations attempted since the process started.
    pub calls: u64,
    /// Operations a fault made fail (or slowed) since the process started.
    pub fired: u64,
    /// The fault armed now, if any (cleared once it has fired `times` times).
    pub armed: Option<Fault>,
}

/// What to do with one operation.
enum Decision {
    Pass,
    Fail(FaultKind),
}

/// The switchboard tests arm faults on; shared by the file system and its files.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<[Option<Armed>; 3]>,
    /// Files with bytes only in the "page cache" after a `Lost` sync, with
    /// the length that is on the device.
    unsynced: Mutex<Vec<(PathBuf, u64)>>,
    calls: [AtomicU64; 3],
    fired: [AtomicU64; 3],
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// Arms `fault` on `op`, replacing what was armed there.
    pub fn arm(&self, op: FaultOp, fault: Fault) {
        self.armed.lock()[op.index()] = Some(Armed { fault, seen: 0, fired: 0 });
    }

    /// Disarms `op`.
    pub fn clear(&self, op: FaultOp) {
        self.armed.lock()[op.index()] = None;
    }

    pub fn status(&self) -> Vec<OpStatus> {
        let armed = self.armed.lock();
        FaultOp::ALL
            .into_iter()
            .map(|op| OpStatus {
                op,
                calls: self.calls[op.index()].load(Ordering::Relaxed),
                fired: self.fired[op.index()].load(Ordering::Relaxed),
                armed: armed[op.index()].map(|a| a.fault),
            })
            .collect()
    }

    /// Counts one `op` and decides whether a fault fires on it. A `Slow`
    /// fault sleeps here (outside the lock) and lets the operation through.
    fn check(&self, op: FaultOp) -> Decision {
        self.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        let kind = {
            let mut armed = self.armed.lock();
            let slot = &mut armed[op.index()];
            let Some(a) = slot.as_mut() else { return Decision::Pass };
            a.seen += 1;
            if a.seen <= a.fault.after {
                return Decision::Pass;
            }
            a.fired += 1;
            let kind = a.fault.kind;
            if a.fault.times != 0 && a.fired >= a.fault.times {
                *slot = None;
            }
            kind
        };
        self.fired[op.index()].fetch_add(1, Ordering::Relaxed);
        if let FaultKind::Slow(delay) = kind {
            std::thread::sleep(delay.min(FAULT_DELAY_MAX));
            return Decision::Pass;
        }
        tracing::warn!(op = op.as_str(), fault = kind.name(), "injecting a storage fault (LEDGER_FAULTS)");
        Decision::Fail(kind)
    }
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A `FileSystem` that injects the faults armed on its `Faults`.
pub struct FaultyFs<F: FileSystem = RealFs> {
    inner: F,
    faults: Arc<Faults>,
}

impl<F: FileSystem> FaultyFs<F> {
    pub fn new(inner: F, faults: Arc<Faults>) -> Self {
        FaultyFs { inner, faults }
    }

    fn wrap(&self, path: &Path, file: Box<dyn AppendFile>, len: u64) -> Box<dyn AppendFile> {
        Box::new(FaultyFile {
            inner: file,
            path: path.to_path_buf(),
            len,
            synced_len: len,
            faults: self.faults.clone(),
        })
    }
}

struct FaultyFile {
    inner: Box<dyn AppendFile>,
    path: PathBuf,
    /// Bytes in the file as this handle wrote them.
    len: u64,
    /// Bytes known to be on disk (after the last good sync).
    synced_len: u64,
    faults: Arc<Faults>,
}

impl AppendFile for FaultyFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.faults.check(FaultOp::Append) {
            Decision::Pass => {
                self.inner.append(bytes)?;
                self.len += bytes.len() as u64;
                Ok(())
            }
            Decision::Fail(FaultKind::Torn) => {
                let prefix = &bytes[..bytes.len() / 2];
                self.inner.append(prefix)?;
                self.len += prefix.len() as u64;
                Err(os_error(EIO))
            }
            Decision::Fail(FaultKind::Enospc) => Err(os_error(ENOSPC)),
            Decision::Fail(_) => Err(os_error(EIO)),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        match self.faults.check(FaultOp::Sync) {
            Decision::Pass => {
                self.inner.sync_data()?;
                self.synced_len = self.len;
                Ok(())
            }
            Decision::Fail(FaultKind::Torn) => {
                // The unsynced bytes are lost, as after a failed writeback.
                let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                f.set_len(self.synced_len)?;
                f.sync_all()?;
                self.len = self.synced_len;
                Err(os_error(EIO))
            }
            Decision::Fail(FaultKind::Lost) => {
                // Nothing reached the device; the cached bytes stay readable.
                let mut unsynced = self.faults.unsynced.lock();
                if !unsynced.iter().any(|(p, _)| *p == self.path) {
                    unsynced.push((self.path.clone(), self.synced_len));
                }
                Err(os_error(EIO))
            }
            Decision::Fail(FaultKind::Enospc) => Err(os_error(ENOSPC)),
            Decision::Fail(_) => Err(os_error(EIO)),
        }
    }

    /// Not a fault point: zero-filling ahead writes nothing a reader keeps.
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        self.inner.reserve(len)
    }
}

impl<F: FileSystem> FileSystem for FaultyFs<F> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let f = self.inner.create_new(path)?;
        Ok(self.wrap(path, f, 0))
    }
    fn open_append(&self, path: &Path, at: u64) -> io::Result<Box<dyn AppendFile>> {
        let f = self.inner.open_append(path, at)?;
        Ok(self.wrap(path, f, at))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.faults.check(FaultOp::Rename) {
            Decision::Pass => self.inner.rename(from, to),
            Decision::Fail(FaultKind::Enospc) => Err(os_error(ENOSPC)),
            Decision::Fail(_) => Err(os_error(EIO)),
        }
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    /// Drops what a `Lost` sync left only in the "cache": zeroes the file
    /// from the length the device holds.
    fn drop_cache(&self, path: &Path) -> io::Result<()> {
        let lost = {
            let mut unsynced = self.faults.unsynced.lock();
            let at = unsynced.iter().position(|(p, _)| p == path);
            at.map(|i| unsynced.swap_remove(i).1)
        };
        if let Some(device_len) = lost {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            let len = f.metadata()?.len();
            if len > device_len {
                f.write_all_at(&vec![0u8; (len - device_len) as usize], device_len)?;
            }
        }
        self.inner.drop_cache(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> (tempfile::TempDir, FaultyFs, Arc<Faults>) {
        let faults = Faults::new();
        (tempfile::tempdir().unwrap(), FaultyFs::new(RealFs, faults.clone()), faults)
    }

    fn once(kind: FaultKind, after: u64) -> Fault {
        Fault { kind, after, times: 1 }
    }

    #[test]
    fn after_and_times_count_operations() {
        let (dir, fs, faults) = fs();
        let mut f = fs.create_new(&dir.path().join("a")).unwrap();
        faults.arm(FaultOp::Append, Fault { kind: FaultKind::Enospc, after: 2, times: 2 });
        let results: Vec<_> = (0..5).map(|_| f.append(b"x").map_err(|e| e.raw_os_error())).collect();
        assert_eq!(results, vec![Ok(()), Ok(()), Err(Some(ENOSPC)), Err(Some(ENOSPC)), Ok(())]);
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"xxx");
        let append = faults.status()[0];
        assert_eq!((append.calls, append.fired, append.armed), (5, 2, None));

        faults.arm(FaultOp::Sync, Fault { kind: FaultKind::Eio, after: 0, times: 0 });
        for _ in 0..3 {
            assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        }
        faults.clear(FaultOp::Sync);
        f.sync_data().unwrap();
        assert_eq!(faults.status()[1].fired, 3);
    }

    #[test]
    fn a_torn_append_writes_a_prefix() {
        let (dir, fs, faults) = fs();
        let path = dir.path().join("a");
        let mut f = fs.create_new(&path).unwrap();
        f.append(b"head").unwrap();
        faults.arm(FaultOp::Append, once(FaultKind::Torn, 0));
        assert_eq!(f.append(b"0123456789").unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(std::fs::read(&path).unwrap(), b"head01234");
    }

    #[test]
    fn a_torn_sync_loses_what_was_not_synced() {
        let (dir, fs, faults) = fs();
        let path = dir.path().join("a");
        std::fs::write(&path, b"old").unwrap();
        let mut f = fs.open_append(&path, 3).unwrap();
        f.append(b"-one").unwrap();
        f.sync_data().unwrap();
        f.append(b"-two").unwrap();
        faults.arm(FaultOp::Sync, once(FaultKind::Torn, 0));
        assert!(f.sync_data().is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old-one");
        // The "fsyncgate" trap: a retried sync now succeeds, with "-two" gone.
        f.sync_data().unwrap();
    }

    #[test]
    fn a_lost_sync_leaves_the_bytes_readable_until_the_cache_is_dropped() {
        let (dir, fs, faults) = fs();
        let path = dir.path().join("a");
        let mut f = fs.create_new(&path).unwrap();
        f.reserve(64).unwrap();
        f.append(b"one").unwrap();
        f.sync_data().unwrap();
        f.append(b"-two").unwrap();
        faults.arm(FaultOp::Sync, once(FaultKind::Lost, 0));
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(&std::fs::read(&path).unwrap()[..7], b"one-two", "the cache still shows it");
        fs.drop_cache(&path).unwrap();
        let on_device = std::fs::read(&path).unwrap();
        assert_eq!(&on_device[..3], b"one");
        assert!(on_device[3..].iter().all(|&b| b == 0), "the device never got it");
    }

    #[test]
    fn rename_faults_leave_both_names_as_they_were() {
        let (dir, fs, faults) = fs();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, b"snap").unwrap();
        faults.arm(FaultOp::Rename, once(FaultKind::Eio, 0));
        assert_eq!(fs.rename(&from, &to).unwrap_err().raw_os_error(), Some(EIO));
        assert!(from.exists() && !to.exists());
        fs.rename(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"snap");
    }

    #[test]
    fn a_slow_fault_delays_and_succeeds() {
        let (dir, fs, faults) = fs();
        let mut f = fs.create_new(&dir.path().join("a")).unwrap();
        faults.arm(FaultOp::Sync, once(FaultKind::Slow(Duration::from_millis(30)), 0));
        let started = std::time::Instant::now();
        f.sync_data().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
