//! `loyalty-ledger restore SNAPSHOT_FILE --data DIR [--force]`: make DIR
//! start from a snapshot file.
//!
//! The file is proved good first (every checksum, every item decoded and
//! applied to a scratch state), before anything in DIR changes but a temp
//! copy of it, written and synced while the proof runs. DIR must hold
//! no WAL segment, no snapshot and no history, unless `--force`, which
//! replaces `wal/` and `snapshots/` and deletes `history/` (and nothing else:
//! `secret_key` stays). History belongs to the log it was fed from: the first
//! start after a restore makes it again from the snapshot (`History::catch_up`). While `wal/` and
//! `snapshots/` are being replaced a `RESTORING` marker is in DIR, so a crash
//! half-way leaves a directory that refuses to start instead of one that
//! starts empty; running the restore again finishes it.

use std::path::Path;

use anyhow::Context;

use crate::history::HISTORY_DIR;
use crate::recovery::RESTORING_FILE;
use crate::snapshot::{format, load, SNAPSHOT_DIR};
use crate::state::State;
use crate::storage::fs::{FileSystem, RealFs};
use crate::wal::WAL_DIR;

pub fn run(file: &Path, data_dir: &Path, force: bool) -> anyhow::Result<()> {
    let fs = RealFs;
    fs.create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _lock = super::lock_existing(data_dir)?;
    let wal_dir = data_dir.join(WAL_DIR);
    let snap_dir = data_dir.join(SNAPSHOT_DIR);
    let marker = data_dir.join(RESTORING_FILE);
    let interrupted = fs.read(&marker).is_ok();
    let history_dir = data_dir.join(HISTORY_DIR);
    let existing = files_in(&fs, &wal_dir)?.len() + files_in(&fs, &snap_dir)?.len() + usize::from(history_dir.exists());
    if existing > 0 && !force && !interrupted {
        anyhow::bail!(
            "{} already holds data ({existing} files in wal/ and snapshots/, or history/); pass --force to replace them",
            data_dir.display()
        );
    }

    tracing::info!(file = %file.display(), "checking the snapshot (every checksum, every item)");
    let unusable = || format!("{} is not a usable snapshot", file.display());
    let (bytes, checked) = load::read_checked(&fs, file).with_context(unusable)?;
    let header = checked.header;
    // The copy is written and synced on another thread while every item is
    // decoded and applied to a scratch state. Only the temp file exists until
    // the proof holds (a start removes one that a crash leaves behind).
    fs.create_dir_all(&snap_dir).with_context(|| format!("creating {}", snap_dir.display()))?;
    let tmp_name = format::temp_file_name(header.lsn);
    let tmp = snap_dir.join(&tmp_name);
    let _ = fs.remove(&tmp);
    let (proved, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_synced(&fs, &tmp, &bytes));
        let state = State::new();
        let proved = load::load_snapshot(&state, file, &bytes, &checked, None).map(|_| state.accounts.len());
        // The scratch state only proves the file good. Freeing its objects one
        // by one takes about as long as loading them, and this command ends
        // right after: the OS takes the memory back at exit.
        std::mem::forget(state);
        (proved, writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let accounts = match proved {
        Ok(accounts) => accounts,
        Err(e) => {
            let _ = fs.remove(&tmp);
            return Err(anyhow::Error::new(e).context(unusable()));
        }
    };
    written?;
    tracing::info!(lsn = header.lsn, items = header.items, accounts, "the snapshot is good");

    // From here until the marker is gone, a start refuses (recovery::load).
    if !interrupted {
        let mut m = fs.create_new(&marker).with_context(|| format!("creating {}", marker.display()))?;
        m.append(format!("restoring {}\n", file.display()).as_bytes())?;
        m.sync_data()?;
        fs.sync_dir(data_dir)?;
    }
    for dir in [&wal_dir, &snap_dir] {
        fs.create_dir_all(dir)?;
        let names: Vec<String> = files_in(&fs, dir)?.into_iter().filter(|n| *n != tmp_name).collect();
        for name in &names {
            let path = dir.join(name);
            fs.remove(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        fs.sync_dir(dir)?;
        if !names.is_empty() {
            tracing::info!(dir = %dir.display(), files = names.len(), "removed the old files");
        }
    }
    if history_dir.exists() {
        std::fs::remove_dir_all(&history_dir).with_context(|| format!("removing {}", history_dir.display()))?;
        tracing::info!(dir = %history_dir.display(), "removed the old history");
    }
    fs.sync_dir(data_dir)?;
    let path = snap_dir.join(format::file_name(header.lsn));
    fs.rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    fs.sync_dir(&snap_dir)?;
    fs.remove(&marker).with_context(|| format!("removing {}", marker.display()))?;
    fs.sync_dir(data_dir)?;
    tracing::info!(snapshot = %path.display(), lsn = header.lsn, "restored: the next start loads this snapshot");
    println!(
        "{}",
        serde_json::json!({
            "object": "restore",
            "path": path.display().to_string(),
            "lsn": header.lsn,
            "items": header.items,
            "created": header.created,
        })
    );
    Ok(())
}

/// Writes `bytes` to the new file `path` and syncs it.
fn write_synced(fs: &RealFs, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs.create_new(path).with_context(|| format!("creating {}", path.display()))?;
    f.append(bytes).with_context(|| format!("writing {}", path.display()))?;
    f.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Names of the entries of `dir` (none if it does not exist).
fn files_in(fs: &RealFs, dir: &Path) -> anyhow::Result<Vec<String>> {
    match fs.list(dir) {
        Ok(names) => {
            if let Some(sub) = names.iter().find(|n| dir.join(n).is_dir()) {
                anyhow::bail!("{} holds a directory ({sub}); move it away first", dir.display());
            }
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}
