//! Power loss mid-batch (invariant 6 of docs/reliability.md), tried on the
//! real server's own WAL: a group commit that spans several pages may reach the disk in any order. Damage confined to
//! the final batch starts with every record before it (the final batch was
//! never acknowledged), its bytes kept in a `.torn` file beside the segment;
//! damage to an earlier batch refuses to start, naming file and offset.
//!
//! Also here: the data directory's file modes (issue 18, item 4) and
//! `wal dump` on a directory whose oldest segments a snapshot deleted.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{batch_offsets, cli, copy_dir, records_end, wal_segments, Server};
use serde_json::{json, Value};

const PAGE: usize = 4096;

/// A data directory whose WAL ends with acknowledged customers, each its
/// own batch, and then one final batch of one customer with metadata large
/// enough to span several pages. Returns the directory, the earlier ids and
/// the final one.
fn data_with_a_big_final_batch() -> (tempfile::TempDir, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path());
    let ids: Vec<String> = (0..5)
        .map(|i| s.ok("/v1/customers", json!({"name": format!("n{i}")}))["id"].as_str().unwrap().to_string())
        .collect();
    let metadata: serde_json::Map<String, Value> =
        (0..40).map(|k| (format!("key{k}"), Value::String("x".repeat(400)))).collect();
    let last = s.ok("/v1/customers", json!({"name": "big", "metadata": metadata}))["id"].as_str().unwrap().to_string();
    s.kill9();
    (dir, ids, last)
}

fn segment_of(data: &Path) -> (PathBuf, Vec<u8>) {
    let seg = wal_segments(data).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    (seg, bytes)
}

/// The page-aligned pieces of `range` (the first and last may be partial pages).
fn pages(range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let next = ((at / PAGE) + 1) * PAGE;
        out.push(at..next.min(range.end));
        at = next;
    }
    out
}

/// Starts on a copy of `orig` whose newest segment `damage` changed; the copy's directory.
fn damaged_copy(orig: &Path, damage: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(orig, dir.path());
    let (seg, mut bytes) = segment_of(dir.path());
    damage(&mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    (dir, seg, bytes)
}

fn torn_files(data: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".torn"))
        .collect();
    found.sort();
    found
}

#[test]
fn damage_confined_to_the_final_batch_starts_with_every_record_before_it() {
    let (orig, ids, last) = data_with_a_big_final_batch();
    let (_, bytes) = segment_of(orig.path());
    let final_batch = *batch_offsets(&bytes).last().unwrap();
    let end = records_end(&bytes);
    let pieces = pages(final_batch..end);
    assert!(pieces.len() >= 3, "the final batch spans several pages: {pieces:?}");
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let first = pieces[0].clone();
    let middle = pieces[pieces.len() / 2].clone();
    let tail_page = pieces[pieces.len() - 1].clone();
    let cases: Vec<(&str, Damage)> = vec![
        ("first page zeroed, later pages present", Box::new(move |b| b[first.clone()].fill(0))),
        (
            "a middle page zeroed",
            Box::new({
                let m = middle.clone();
                move |b| b[m.clone()].fill(0)
            }),
        ),
        (
            "a middle page of garbage",
            Box::new({
                let m = middle.clone();
                move |b| b[m.clone()].iter_mut().enumerate().for_each(|(i, x)| *x = (i * 31 + 7) as u8)
            }),
        ),
        ("the last page missing", Box::new(move |b| b.truncate(tail_page.start))),
        (
            "first page garbage and last page missing",
            Box::new({
                let (f, t) = (pieces[0].clone(), pieces[pieces.len() - 1].clone());
                move |b| {
                    b[f.clone()].fill(0xa5);
                    b.truncate(t.start);
                }
            }),
        ),
    ];
    for (name, damage) in cases {
        let (dir, seg, damaged) = damaged_copy(orig.path(), |b| damage(b));
        let mut s =
            Server::try_start_in(dir.path(), &[]).unwrap_or_else(|f| panic!("{name}: refused to start:\n{}", f.log));
        for id in &ids {
            assert_eq!(s.get(&format!("/v1/customers/{id}")).status, 200, "{name}: lost {id}");
        }
        assert_eq!(s.get(&format!("/v1/customers/{last}")).status, 404, "{name}: the torn batch is not replayed");
        assert!(s.log().contains("torn tail"), "{name}: a warning is logged");
        // The cut bytes are kept beside the segment, not destroyed.
        let kept = torn_files(dir.path());
        assert_eq!(kept.len(), 1, "{name}: {kept:?}");
        let aside = std::fs::read(&kept[0]).unwrap();
        let cut = &damaged[final_batch..];
        let cut = &cut[..cut.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1)];
        assert_eq!(aside, cut, "{name}: the set-aside file holds the cut bytes");
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, final_batch.max(records_end(&damaged)));
        // New writes go after the cut and survive another restart.
        let fresh = s.ok("/v1/customers", json!({"name": "after"}))["id"].as_str().unwrap().to_string();
        s.restart();
        assert_eq!(s.get(&format!("/v1/customers/{fresh}")).status, 200, "{name}");
        assert_eq!(s.get(&format!("/v1/customers/{}", ids[4])).status, 200, "{name}");
        assert!(!s.log().contains("torn tail"), "{name}: the second start is clean");
    }
}

#[test]
fn garbage_after_the_last_record_starts_with_every_record() {
    let (orig, ids, last) = data_with_a_big_final_batch();
    let (_, bytes) = segment_of(orig.path());
    let end = records_end(&bytes);
    let (dir, _, _) = damaged_copy(orig.path(), |b| {
        let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 131 + 17) as u8).collect();
        b[end..end + garbage.len()].copy_from_slice(&garbage);
    });
    let s = Server::try_start_in(dir.path(), &[]).unwrap_or_else(|f| panic!("refused to start:\n{}", f.log));
    for id in ids.iter().chain([&last]) {
        assert_eq!(s.get(&format!("/v1/customers/{id}")).status, 200, "lost {id}");
    }
    assert!(s.log().contains("torn tail"));
    assert_eq!(torn_files(dir.path()).len(), 1);
}

#[test]
fn a_flipped_bit_in_an_earlier_batch_refuses_to_start_and_changes_nothing() {
    let (orig, _, _) = data_with_a_big_final_batch();
    let (seg, bytes) = segment_of(orig.path());
    let batches = batch_offsets(&bytes);
    // In the header of the third batch, in its first record's length, and in the
    // payload of the batch before the final one.
    let third = batches[2];
    let before_final = batches[batches.len() - 2];
    for at in [third + 5, third + 28, before_final + 50] {
        let (dir, copy, damaged) = damaged_copy(orig.path(), |b| b[at] ^= 0x10);
        let failed = match Server::try_start_in(dir.path(), &[]) {
            Ok(_) => panic!("a flipped bit at byte {at} was accepted"),
            Err(f) => f,
        };
        assert!(!failed.status.success());
        let name = seg.file_name().unwrap().to_str().unwrap();
        assert!(failed.log.contains(name), "names the file: {}", failed.log);
        assert!(failed.log.contains("offset "), "names the offset: {}", failed.log);
        assert!(failed.log.contains("good batch follows"), "says why it is not a torn tail: {}", failed.log);
        assert_eq!(std::fs::read(&copy).unwrap(), damaged, "nothing was cut");
        assert!(torn_files(dir.path()).is_empty());
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_directory_and_everything_in_it_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Without LEDGER_SECRET_KEY the server writes DIR/secret_key.
    let s = Server::start_in(&data);
    s.ok("/v1/customers", json!({"email": "private@example.com"}));
    s.ok("/v1/admin/snapshot", json!({}));
    let snap_path = std::fs::read_dir(data.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a snapshot file");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("wal")), 0o700);
    assert_eq!(mode(&data.join("snapshots")), 0o700);
    for seg in wal_segments(&data) {
        assert_eq!(mode(&seg), 0o600, "{}", seg.display());
    }
    assert_eq!(mode(&snap_path), 0o600);
    assert_eq!(mode(&data.join("LOCK")), 0o600);
    if data.join("secret_key").exists() {
        assert_eq!(mode(&data.join("secret_key")), 0o600);
    }
    s.kill9();

    // A directory made readable by others (an older version, a careless copy)
    // is closed up at the next start.
    for p in [data.clone(), data.join("wal"), data.join("snapshots")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for seg in wal_segments(&data) {
        std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&snap_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Server::start_in(&data);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("wal")), 0o700);
    assert_eq!(mode(&data.join("snapshots")), 0o700);
    for seg in wal_segments(&data) {
        assert_eq!(mode(&seg), 0o600);
    }
    assert_eq!(mode(&snap_path), 0o600);
    assert!(s.log().contains("now 0700"), "the change is logged:\n{}", s.log());
}

#[test]
fn wal_dump_starts_where_the_log_starts_after_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path());
    let mut ids = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            ids.push(
                s.ok("/v1/customers", json!({"name": format!("r{round}-{i}")}))["id"].as_str().unwrap().to_string(),
            );
        }
        s.ok("/v1/admin/snapshot", json!({}));
    }
    let after = s.ok("/v1/customers", json!({"name": "after the snapshots"}))["id"].as_str().unwrap().to_string();
    drop(s);
    let first_segment = wal_segments(dir.path()).first().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    assert_ne!(first_segment, "00000000000000000001.wal", "a snapshot deleted the oldest segments");
    let out = cli(&["wal", "dump", "--data", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wal dump failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("missing") && !stderr.contains("missing"), "{stdout}\n{stderr}");
    let first_lsn: u64 = first_segment.trim_end_matches(".wal").parse().unwrap();
    let first_line = stdout.lines().next().unwrap();
    assert!(first_line.starts_with(&format!("lsn={first_lsn} ")), "starts at the oldest segment: {first_line}");
    assert!(stdout.contains(&after), "the newest record is dumped");
    assert!(stdout.contains(&format!("records {first_lsn} to ")), "{stdout}");
    let verify = cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
