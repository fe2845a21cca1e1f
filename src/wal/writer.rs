//! The group-commit writer: one thread owns the open segment.
//!
//! Callers encode and frame their record on their own thread, then hand it
//! over a bounded queue. The writer takes everything that is waiting (up to
//! `WAL_BATCH_RECORDS_MAX` / `WAL_BATCH_BYTES_MAX`), writes it with one
//! `write` and one `fdatasync`, and hands the synced batch to the apply
//! thread (`applier`), which applies the records to the in-memory state in
//! LSN order and only then answers each caller. Records that arrive while a
//! sync is in flight form the next batch, so batches grow with load; under
//! load the writer also waits about one sync time after a batch's first
//! record for more to join it (`gather`).
//!
//! A failed write or sync poisons the log: the batch and everything after it
//! answer `storage_unavailable`, and the writer never syncs again, since a
//! retried fsync can report success for data the kernel already dropped.
//!
//! A *barrier* (`Wal::barrier`) runs a function between two batches, on the
//! apply thread: every record before it is applied and none after it is, so
//! the state is exactly at one LSN while the function runs. Snapshots use it,
//! and the writer first rolls to a new segment there, so every older segment
//! is wholly before the snapshot and can be deleted once it is durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::applier::{self, Stage, Synced};
use super::error::WalError;
use super::format::{self, segment_file_name, SegmentHeader};
use super::gather::Gather;
use super::reader::LogEnd;
use super::record::Record;
use super::Lsn;
use crate::storage::fs::{AppendFile, FileSystem};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::config::{
    WAL_APPLY_QUEUE_BATCHES, WAL_BATCH_BYTES_MAX, WAL_BATCH_RECORDS_MAX, WAL_PREALLOCATE_BYTES, WAL_QUEUE_BYTES_MAX,
    WAL_QUEUE_RECORDS_MAX, WAL_RECORD_BYTES_MAX,
};
use crate::error::StorageError;

/// Applies a durable record to the in-memory state (the writer calls it in LSN order).
pub type ApplyFn = Box<dyn FnMut(Lsn, Record) -> Result<(), StorageError> + Send>;

/// What the writer measures, for `/metrics` and the benches. The handles are
/// cheap clones of shared atomics; `metrics::Metrics` registers the same ones.
#[derive(Debug, Clone)]
pub struct WalStats {
    /// Records written (and fdatasync'd).
    pub records: Counter,
    /// Group commits: one write and one fdatasync each.
    pub batches: Counter,
    /// Bytes written, frames included.
    pub bytes: Counter,
    pub sync_micros_total: Counter,
    /// LSN of the last record written and applied.
    pub last_lsn: Gauge,
    /// Time of one write + fdatasync, in seconds.
    pub sync_seconds: Histogram,
    /// Records in one group commit.
    pub batch_records: Histogram,
    /// Time the apply thread takes to apply and answer one synced batch.
    pub apply_seconds: Histogram,
}

impl Default for WalStats {
    fn default() -> Self {
        WalStats {
            records: Counter::default(),
            batches: Counter::default(),
            bytes: Counter::default(),
            sync_micros_total: Counter::default(),
            last_lsn: Gauge::default(),
            // 20 us .. ~1.3 s
            sync_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 17)),
            // 1 .. 4096 (WAL_BATCH_RECORDS_MAX)
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 20 us .. ~1.3 s, as the sync
            apply_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 17)),
        }
    }
}

/// A function run on the writer thread between two batches (see the module
/// doc). It gets the LSN the state is at, or why the barrier could not be set.
pub type BarrierFn = Box<dyn FnOnce(Result<u64, StorageError>) + Send>;

enum Job {
    Append(Append),
    Barrier(BarrierFn),
}

struct Append {
    framed: Vec<u8>,
    record: Record,
    reply: oneshot::Sender<Result<Lsn, StorageError>>,
}

/// The handle callers append through. Cheap to share.
pub struct Wal {
    tx: SyncSender<Job>,
    poisoned: Arc<AtomicBool>,
    /// Framed bytes waiting in the queue (bounded by `WAL_QUEUE_BYTES_MAX`,
    /// as the queue itself is by `WAL_QUEUE_RECORDS_MAX`).
    queued_bytes: Arc<AtomicUsize>,
    pub stats: Arc<WalStats>,
}

impl Wal {
    /// Starts the writer thread after `end` (the result of reading the log).
    /// Segments are closed past `segment_bytes_max`.
    pub fn start(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        end: &LogEnd,
        segment_bytes_max: u64,
        stats: WalStats,
        apply: ApplyFn,
    ) -> Result<Wal, StorageError> {
        let segment = match end.segments.last() {
            Some(seg) if seg.header.batched() => {
                let f = fs.open_append(&seg.path, seg.valid_len).map_err(|e| StorageError::io(&seg.path, e))?;
                OpenSegment { file: f, path: seg.path.clone(), len: seg.valid_len, salt: seg.header.salt }
            }
            // A segment of the older format is never appended to: batches go
            // to a new one (docs/formats.md, "Upgrading"). One that holds no
            // record would have the new one's name: it goes first.
            Some(old) => {
                if old.records == 0 {
                    fs.remove(&old.path).map_err(|e| StorageError::io(&old.path, e))?;
                }
                create_segment(fs.as_ref(), dir, end.next_lsn)?
            }
            None => create_segment(fs.as_ref(), dir, end.next_lsn)?,
        };
        let (tx, rx) = mpsc::sync_channel(WAL_QUEUE_RECORDS_MAX);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let poisoned = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(stats);
        stats.last_lsn.set(end.next_lsn.before() as i64);
        let (to_applier, staged) = mpsc::sync_channel(WAL_APPLY_QUEUE_BATCHES);
        let reserved = segment.len;
        let mut writer = Writer {
            fs,
            dir: dir.to_path_buf(),
            segment,
            reserved,
            queued_bytes: queued_bytes.clone(),
            next_lsn: end.next_lsn,
            segment_bytes_max,
            poisoned: poisoned.clone(),
            stats: stats.clone(),
            applier: to_applier,
            gather: Gather::default(),
        };
        let (apply_poisoned, apply_stats) = (poisoned.clone(), stats.clone());
        std::thread::Builder::new()
            .name("wal-apply".into())
            .spawn(move || applier::run(staged, apply, apply_poisoned, apply_stats))
            .map_err(|e| StorageError::io(dir, e))?;
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::io(dir, e))?;
        Ok(Wal { tx, poisoned, queued_bytes, stats })
    }

    /// Appends `record`; resolves once it is on disk and applied. Returns its LSN.
    pub async fn append(&self, record: Record) -> Result<Lsn, WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Unavailable);
        }
        let payload = record.encode()?;
        if payload.len() > WAL_RECORD_BYTES_MAX {
            return Err(WalError::RecordTooLarge { bytes: payload.len(), max: WAL_RECORD_BYTES_MAX });
        }
        let mut framed = Vec::with_capacity(payload.len() + format::FRAME_HEADER_BYTES);
        format::frame_into(&payload, &mut framed);
        let bytes = framed.len();
        if self.queued_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > WAL_QUEUE_BYTES_MAX {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(WalError::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        let refused = match self.tx.try_send(Job::Append(Append { framed, record, reply })) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => Some(WalError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Some(WalError::Unavailable),
        };
        if let Some(e) = refused {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        match rx.await {
            Ok(Ok(lsn)) => Ok(lsn),
            Ok(Err(StorageError::Inconsistent(reason))) => Err(WalError::Unapplied(reason)),
            Ok(Err(_)) | Err(_) => Err(WalError::Unavailable),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Runs `f` on the writer thread between two batches, with the LSN the
    /// state is then exactly at, after rolling to a fresh segment (see the
    /// module doc). The answer arrives on the returned channel (`.await` it,
    /// or `blocking_recv` outside a runtime). `f` stalls every append while it
    /// runs: keep it short.
    pub fn barrier<R: Send + 'static>(
        &self,
        f: impl FnOnce(u64) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<R, StorageError>>, WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Unavailable);
        }
        let (reply, rx) = oneshot::channel();
        let job: BarrierFn = Box::new(move |at: Result<u64, StorageError>| {
            let _ = reply.send(at.map(f));
        });
        match self.tx.try_send(Job::Barrier(job)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(WalError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(WalError::Unavailable),
        }
    }
}

/// The segment the writer appends to.
struct OpenSegment {
    file: Box<dyn AppendFile>,
    path: PathBuf,
    /// Bytes of good data in it: where the next batch goes.
    len: u64,
    /// Its header's salt, mixed into each batch header's checksum.
    salt: u32,
}

/// Creates the segment whose first record will be `first_lsn`, with a fresh
/// salt, and makes its header and name durable.
fn create_segment(fs: &dyn FileSystem, dir: &Path, first_lsn: Lsn) -> Result<OpenSegment, StorageError> {
    let path = dir.join(segment_file_name(first_lsn.get()));
    let mut file = fs.create_new(&path).map_err(|e| StorageError::io(&path, e))?;
    let salt = rand::random::<u32>();
    let header = SegmentHeader::new(first_lsn.get(), salt).encode();
    file.append(&header).map_err(|e| StorageError::io(&path, e))?;
    file.sync_data().map_err(|e| StorageError::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    Ok(OpenSegment { file, path, len: header.len() as u64, salt })
}

struct Writer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment: OpenSegment,
    /// How far the open segment is zero-filled ahead (`AppendFile::reserve`).
    reserved: u64,
    /// Shared with `Wal`: the writer subtracts what it takes off the queue.
    queued_bytes: Arc<AtomicUsize>,
    next_lsn: Lsn,
    segment_bytes_max: u64,
    poisoned: Arc<AtomicBool>,
    stats: Arc<WalStats>,
    /// Synced batches and barriers go to the apply thread, in log order.
    applier: SyncSender<Stage>,
    /// How long a batch waits for company before its sync.
    gather: Gather,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Append> = Vec::with_capacity(WAL_BATCH_RECORDS_MAX);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return, // every sender is gone: shutting down
                },
            };
            let first = match first {
                Job::Append(job) => self.taken(job),
                Job::Barrier(f) => {
                    self.barrier(f);
                    continue;
                }
            };
            let mut bytes = first.framed.len();
            batch.push(first);
            if let Some(wait) = self.gather.wait() {
                std::thread::sleep(wait);
            }
            while batch.len() < WAL_BATCH_RECORDS_MAX {
                match rx.try_recv() {
                    // A barrier ends the batch: it runs after this batch is applied.
                    Ok(job @ Job::Barrier(_)) => {
                        carry = Some(job);
                        break;
                    }
                    Ok(Job::Append(job)) if bytes + job.framed.len() > WAL_BATCH_BYTES_MAX => {
                        carry = Some(Job::Append(job));
                        break;
                    }
                    Ok(Job::Append(job)) => {
                        bytes += job.framed.len();
                        batch.push(self.taken(job));
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, &mut buf);
        }
    }

    /// `job`, taken off the queue: its bytes no longer count against it.
    fn taken(&self, job: Append) -> Append {
        self.queued_bytes.fetch_sub(job.framed.len(), Ordering::AcqRel);
        job
    }

    /// Rolls to a fresh segment (unless the open one holds no record yet),
    /// then runs `f` with the LSN of the last applied record.
    fn barrier(&mut self, f: BarrierFn) {
        if self.poisoned.load(Ordering::Acquire) {
            return f(Err(StorageError::Poisoned));
        }
        if self.segment.len > format::SEGMENT_HEADER_BYTES as u64 {
            match create_segment(self.fs.as_ref(), &self.dir, self.next_lsn) {
                Ok(segment) => self.switch_to(segment),
                Err(e) => {
                    // A half-made segment cannot be left behind a live one: stop, like any write fault.
                    tracing::error!(error = %e, "storage fault while starting a new WAL segment; the write path is stopped until restart");
                    self.poisoned.store(true, Ordering::Release);
                    return f(Err(e));
                }
            }
        }
        self.stage(Stage::Barrier(f, self.next_lsn.before()));
    }

    /// Hands `stage` to the apply thread (blocking while its queue is full).
    fn stage(&mut self, stage: Stage) {
        if let Err(mpsc::SendError(stage)) = self.applier.send(stage) {
            // The apply thread is gone (it panicked): nothing can be applied or answered.
            tracing::error!("the WAL apply thread is gone; the write path is stopped until restart");
            self.poisoned.store(true, Ordering::Release);
            match stage {
                Stage::Batch(batch) => {
                    for job in batch {
                        let _ = job.reply.send(Err(StorageError::Poisoned));
                    }
                }
                Stage::Barrier(f, _) => f(Err(StorageError::Poisoned)),
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Append>, buf: &mut Vec<u8>) {
        if self.poisoned.load(Ordering::Acquire) {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(StorageError::Poisoned));
            }
            return;
        }
        format::begin_batch(buf);
        for job in batch.iter() {
            buf.extend_from_slice(&job.framed);
        }
        let started = Instant::now();
        if let Err(e) = self.write_and_sync(buf, batch.len()) {
            tracing::error!(error = %e, "storage fault: the write path is stopped until restart; nothing in this batch was acknowledged");
            self.poisoned.store(true, Ordering::Release);
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(StorageError::Poisoned));
            }
            return;
        }
        let sync = started.elapsed();
        self.gather.synced(batch.len(), sync);
        self.stats.sync_micros_total.inc_by(sync.as_micros() as u64);
        self.stats.sync_seconds.observe(sync.as_secs_f64());
        self.stats.batch_records.observe(batch.len() as f64);
        self.stats.batches.inc();
        self.stats.records.inc_by(batch.len() as u64);
        self.stats.bytes.inc_by(buf.len() as u64);
        let mut synced = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            synced.push(Synced { lsn: self.next_lsn, record: job.record, reply: job.reply });
            self.next_lsn = self.next_lsn.next();
        }
        self.stage(Stage::Batch(synced));
    }

    /// Appends go to `segment` from now on.
    fn switch_to(&mut self, segment: OpenSegment) {
        self.reserved = segment.len;
        self.segment = segment;
    }

    /// Seals the batch in `buf` (`format::begin_batch`, then `records` frames)
    /// for the segment it goes to, writes it and syncs it.
    fn write_and_sync(&mut self, buf: &mut [u8], records: usize) -> Result<(), StorageError> {
        if self.segment.len > format::SEGMENT_HEADER_BYTES as u64
            && self.segment.len + buf.len() as u64 > self.segment_bytes_max
        {
            let segment = create_segment(self.fs.as_ref(), &self.dir, self.next_lsn)?;
            self.switch_to(segment);
        }
        format::seal_batch(buf, self.segment.salt, self.next_lsn.get(), records as u32);
        let end = self.segment.len + buf.len() as u64;
        if end > self.reserved {
            // Zero-fill ahead, within the segment's size: the sync below covers it.
            let target = (end + WAL_PREALLOCATE_BYTES).min(self.segment_bytes_max.max(end));
            self.segment.file.reserve(target).map_err(|e| StorageError::io(&self.segment.path, e))?;
            self.reserved = target;
        }
        self.segment.file.append(buf).map_err(|e| StorageError::io(&self.segment.path, e))?;
        self.segment.len += buf.len() as u64;
        self.segment.file.sync_data().map_err(|e| StorageError::io(&self.segment.path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The writer on a faulty file system: a failed write or sync acknowledges
    //! nothing, and nothing is written or synced after it (no fsync retry).

    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::storage::fs::RealFs;
    use crate::test_hooks::faults::{Fault, FaultKind, FaultOp, Faults, FaultyFs, OpStatus};
    use crate::wal::reader::{read_log, Mode, ReadFrom};

    struct Rig {
        dir: tempfile::TempDir,
        fs: Arc<dyn FileSystem>,
        faults: Arc<Faults>,
        wal: Wal,
        applied: Arc<Mutex<Vec<u64>>>,
        rt: tokio::runtime::Runtime,
    }

    fn rig() -> Rig {
        rig_with(crate::config::WAL_SEGMENT_BYTES_MAX, None, Duration::ZERO)
    }

    /// A writer whose apply fails at `fail_at` (a record that cannot be
    /// applied) and takes `apply_time` per record.
    fn rig_with(segment_bytes_max: u64, fail_at: Option<u64>, apply_time: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let fs: Arc<dyn FileSystem> = Arc::new(FaultyFs::new(RealFs, faults.clone()));
        let end = read_log(fs.as_ref(), dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair, |_, _| Ok(())).unwrap();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let sink = applied.clone();
        let wal = Wal::start(
            fs.clone(),
            dir.path(),
            &end,
            segment_bytes_max,
            WalStats::default(),
            Box::new(move |lsn, _| {
                std::thread::sleep(apply_time);
                let lsn = lsn.get();
                if Some(lsn) == fail_at {
                    return Err(StorageError::Inconsistent(format!("record {lsn} contradicts the state")));
                }
                sink.lock().unwrap().push(lsn);
                Ok(())
            }),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Rig { dir, fs, faults, wal, applied, rt }
    }

    fn record(i: i64) -> Record {
        Record { time: i, idem: None, changes: Vec::new() }
    }

    impl Rig {
        fn append(&self, i: i64) -> Result<u64, WalError> {
            self.rt.block_on(self.wal.append(record(i))).map(Lsn::get)
        }
        fn op(&self, op: FaultOp) -> OpStatus {
            self.faults.status().into_iter().find(|s| s.op == op).unwrap()
        }
        /// Record times found on disk, and whether a torn tail was seen.
        fn on_disk(&self) -> (Vec<i64>, bool) {
            let mut times = Vec::new();
            let end = read_log(&RealFs, self.dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::ReadOnly, |_, p| {
                times.push(Record::decode(p).unwrap().time);
                Ok(())
            })
            .unwrap();
            (times, end.torn.is_some())
        }
    }

    fn check_fault(kind: FaultKind, op: FaultOp) -> Rig {
        let r = rig();
        for i in 1..=3 {
            assert_eq!(r.append(i).unwrap(), i as u64);
        }
        r.faults.arm(op, Fault { kind, after: 0, times: 1 });
        let err = r.append(4).unwrap_err();
        assert!(matches!(err, WalError::Unavailable), "{kind:?} on {op:?}: {err}");
        assert!(r.wal.is_poisoned());
        // The fault fired once and is gone; the disk would work again.
        assert_eq!(r.op(op).armed, None);
        let (appends, syncs) = (r.op(FaultOp::Append).calls, r.op(FaultOp::Sync).calls);
        for i in 5..=8 {
            assert!(matches!(r.append(i).unwrap_err(), WalError::Unavailable));
        }
        assert_eq!(r.op(FaultOp::Append).calls, appends, "nothing is written after a fault");
        assert_eq!(r.op(FaultOp::Sync).calls, syncs, "a failed sync is never retried");
        assert_eq!(*r.applied.lock().unwrap(), vec![1, 2, 3], "nothing failed is applied");
        r
    }

    #[test]
    fn eio_and_enospc_on_append_acknowledge_nothing() {
        for kind in [FaultKind::Eio, FaultKind::Enospc] {
            let r = check_fault(kind, FaultOp::Append);
            assert_eq!(r.on_disk(), (vec![1, 2, 3], false));
        }
    }

    #[test]
    fn a_torn_append_leaves_a_torn_tail_that_recovery_cuts() {
        let r = check_fault(FaultKind::Torn, FaultOp::Append);
        assert_eq!(r.on_disk(), (vec![1, 2, 3], true));
    }

    #[test]
    fn a_failed_sync_is_never_retried() {
        for kind in [FaultKind::Eio, FaultKind::Enospc] {
            let r = check_fault(kind, FaultOp::Sync);
            // The record reached the page cache: after a restart it may be there
            // (it was never acknowledged, so either way is correct).
            let (times, torn) = r.on_disk();
            assert_eq!(times, vec![1, 2, 3, 4]);
            assert!(!torn);
        }
        let r = check_fault(FaultKind::Torn, FaultOp::Sync);
        assert_eq!(r.on_disk(), (vec![1, 2, 3], false));
    }

    /// After a sync fails, the kernel may keep the unsynced pages readable
    /// (marked clean) although the device never got them. The next start
    /// must read the device, not replay them (issue: "no resurrection").
    #[test]
    fn a_lost_sync_is_not_resurrected_by_the_next_start() {
        let r = check_fault(FaultKind::Lost, FaultOp::Sync);
        let cached = std::fs::read(r.dir.path().join(segment_file_name(1))).unwrap();
        let (_, scan) = format::scan_segment(&cached, crate::config::WAL_RECORD_BYTES_MAX).unwrap();
        assert_eq!(scan.payloads.len(), 4, "the cache still shows record 4");
        let mut times = Vec::new();
        let end = read_log(r.fs.as_ref(), r.dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair, |_, p| {
            times.push(Record::decode(p).unwrap().time);
            Ok(())
        })
        .unwrap();
        assert_eq!(times, vec![1, 2, 3], "record 4 never reached the device");
        assert_eq!(end.next_lsn, Lsn::new(4));
    }

    /// A directory from before batches: its version 1 segments are read and
    /// kept as they are, and new records go to a new version 2 segment.
    #[test]
    fn a_version_1_segment_is_never_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = |first_lsn: u64, payloads: &[Vec<u8>]| {
            let header = SegmentHeader { version: format::FORMAT_VERSION_UNBATCHED, first_lsn, salt: 0 };
            let mut buf = header.encode().to_vec();
            for p in payloads {
                format::frame_into(p, &mut buf);
            }
            buf
        };
        let old = v1(1, &[record(1).encode().unwrap(), record(2).encode().unwrap()]);
        let old_path = dir.path().join(segment_file_name(1));
        std::fs::write(&old_path, &old).unwrap();
        // An empty version 1 segment after it (a roll just before the upgrade).
        std::fs::write(dir.path().join(segment_file_name(3)), v1(3, &[])).unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
        let end = read_log(fs.as_ref(), dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair, |_, _| Ok(())).unwrap();
        assert_eq!(end.next_lsn, Lsn::new(3));
        let wal = Wal::start(
            fs,
            dir.path(),
            &end,
            crate::config::WAL_SEGMENT_BYTES_MAX,
            WalStats::default(),
            Box::new(|_, _| Ok(())),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(wal.append(record(3))).unwrap(), Lsn::new(3));
        assert_eq!(std::fs::read(&old_path).unwrap(), old, "the old segment is untouched");
        let new = std::fs::read(dir.path().join(segment_file_name(3))).unwrap();
        let (header, scan) = format::scan_segment(&new, crate::config::WAL_RECORD_BYTES_MAX).unwrap();
        assert!(header.batched(), "the empty version 1 segment was replaced by a version 2 one");
        assert_eq!(scan.payloads.len(), 1);
        let mut times = Vec::new();
        read_log(&RealFs, dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::ReadOnly, |_, p| {
            times.push(Record::decode(p).unwrap().time);
            Ok(())
        })
        .unwrap();
        assert_eq!(times, vec![1, 2, 3]);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        // A slow sync holds the writer while appends pile up in the queue.
        let r = rig();
        r.faults.arm(FaultOp::Sync, Fault { kind: FaultKind::Slow(Duration::from_millis(300)), after: 0, times: 1 });
        let big = |i: i64| Record {
            time: i,
            idem: Some(crate::wal::IdemEntry {
                key: format!("k{i}"),
                fingerprint: [0; 32],
                status: 200,
                body: Arc::from(vec![b'x'; 3 << 20]),
            }),
            changes: Vec::new(),
        };
        let results: Vec<Result<Lsn, WalError>> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..40)
                .map(|i| {
                    let wal = &r.wal;
                    scope.spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        rt.block_on(wal.append(big(i)))
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let refused = results.iter().filter(|x| matches!(x, Err(WalError::Overloaded))).count();
        assert!(refused > 0, "40 x 3 MiB is more than the queue's {WAL_QUEUE_BYTES_MAX} bytes");
        assert!(results.iter().all(|x| x.is_ok() || matches!(x, Err(WalError::Overloaded))));
        assert_eq!(r.wal.queued_bytes.load(Ordering::Acquire), 0, "every byte counted in is counted out");
    }

    #[test]
    fn a_fault_under_concurrent_appends_acknowledges_only_what_was_synced() {
        let r = rig();
        r.faults.arm(FaultOp::Sync, Fault { kind: FaultKind::Eio, after: 10, times: 1 });
        // Eight clients appending one after another: many batches, the fault in the middle.
        let results: Vec<Result<Lsn, WalError>> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..8)
                .map(|t| {
                    let wal = &r.wal;
                    scope.spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        (0..50).map(|i| rt.block_on(wal.append(record(t * 100 + i)))).collect::<Vec<_>>()
                    })
                })
                .collect();
            clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
        });
        let acked: Vec<u64> = results.iter().filter_map(|x| x.as_ref().ok().map(|l| l.get())).collect();
        assert!(results.iter().any(|x| x.is_err()), "the fault fired");
        for e in results.iter().filter_map(|x| x.as_ref().err()) {
            assert!(matches!(e, WalError::Unavailable), "{e}");
        }
        let mut applied = r.applied.lock().unwrap().clone();
        applied.sort();
        let mut sorted = acked.clone();
        sorted.sort();
        assert_eq!(applied, sorted, "exactly the acknowledged records are applied");
        let (on_disk, _) = r.on_disk();
        for lsn in &acked {
            assert!(on_disk.len() as u64 >= *lsn, "acknowledged record {lsn} is on disk");
        }
    }

    #[test]
    fn a_record_that_cannot_be_applied_answers_an_error_and_stops_the_write_path() {
        let r = rig_with(crate::config::WAL_SEGMENT_BYTES_MAX, Some(2), Duration::ZERO);
        assert_eq!(r.append(1).unwrap(), 1);
        let err = r.append(2).unwrap_err();
        assert!(matches!(err, WalError::Unapplied(_)), "{err:?}");
        assert!(r.wal.is_poisoned());
        let appends = r.op(FaultOp::Append).calls;
        assert!(matches!(r.append(3).unwrap_err(), WalError::Unavailable));
        assert_eq!(r.op(FaultOp::Append).calls, appends, "nothing is written after it");
        assert_eq!(*r.applied.lock().unwrap(), vec![1]);
        // A barrier after it cannot run on a state that is not at one LSN.
        let barrier = r.wal.barrier(|lsn| lsn);
        assert!(barrier.is_err() || r.rt.block_on(barrier.unwrap()).unwrap().is_err());
    }

    #[test]
    fn a_barrier_runs_with_every_record_before_it_applied() {
        // A slow apply, so that synced batches wait to be applied when a barrier comes.
        let r = rig_with(crate::config::WAL_SEGMENT_BYTES_MAX, None, Duration::from_micros(300));
        for round in 0..20 {
            let answers: Vec<_> = std::thread::scope(|scope| {
                let clients: Vec<_> = (0..4)
                    .map(|t| {
                        let wal = &r.wal;
                        scope.spawn(move || {
                            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                            (0..10).map(|i| rt.block_on(wal.append(record(t * 10 + i))).unwrap()).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                // Barriers land between (and among) the appends of the clients.
                let seen: Vec<(u64, Vec<u64>)> = (0..5)
                    .map(|_| {
                        let applied = r.applied.clone();
                        let rx = r.wal.barrier(move |lsn| (lsn, applied.lock().unwrap().clone())).unwrap();
                        r.rt.block_on(rx).unwrap().unwrap()
                    })
                    .collect();
                for c in clients {
                    c.join().unwrap();
                }
                seen
            });
            for (lsn, applied) in answers {
                // Exactly the records before the barrier, in LSN order, and none after.
                assert_eq!(applied, (1..=lsn).collect::<Vec<_>>(), "round {round}");
            }
        }
    }

    #[test]
    fn the_open_segment_is_zero_filled_ahead_but_never_past_its_size() {
        for segment_bytes_max in [4096, crate::config::WAL_SEGMENT_BYTES_MAX] {
            let r = rig_with(segment_bytes_max, None, Duration::ZERO);
            for i in 1..=3 {
                r.append(i).unwrap();
            }
            let seg = r.dir.path().join(segment_file_name(1));
            let bytes = std::fs::read(&seg).unwrap();
            let (_, scan) = format::scan_segment(&bytes, crate::config::WAL_RECORD_BYTES_MAX).unwrap();
            assert_eq!(scan.payloads.len(), 3);
            assert!(bytes[scan.valid_end..].iter().all(|&b| b == 0));
            // The first batch filled ahead; the next two fit in what it filled.
            let first_end = scan.payloads[0].end as u64;
            assert_eq!(bytes.len() as u64, segment_bytes_max.min(first_end + WAL_PREALLOCATE_BYTES));
            assert_eq!(r.on_disk(), (vec![1, 2, 3], false), "the filled space reads as the end of the log");
        }
    }
}
