//! `loyalty-ledger history --data DIR [--idempotency-key KEY]`: what a
//! stopped server's history holds, without opening the store by hand
//! (docs/operations.md, "History on disk").
//!
//! Without a key it prints history's LSN (every record up to it is in
//! history), how many responses and cold objects it holds and its size on disk; with one,
//! the response remembered for that key (its status, the LSN and time of the
//! record that stored it, and the body as it was answered).

use std::path::Path;

use anyhow::Context;

use crate::history::{FjallHistory, HistoryStore, HISTORY_DIR};

pub fn run(data_dir: &Path, idempotency_key: Option<&str>) -> anyhow::Result<()> {
    let _lock = super::lock_existing(data_dir)?;
    let dir = data_dir.join(HISTORY_DIR);
    if !dir.is_dir() {
        anyhow::bail!("{} has no history yet (a server creates it at its first start)", data_dir.display());
    }
    let store = FjallHistory::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let out = match idempotency_key {
        None => serde_json::json!({
            "object": "history",
            "lsn": store.lsn()?,
            "idempotency_responses": store.remembered_count()?,
            "objects": store.objects_count()?,
            "disk_bytes": store.disk_bytes(),
        }),
        Some(key) => match store.remembered(key)? {
            None => anyhow::bail!("history remembers no response for idempotency key {key:?}"),
            Some(r) => {
                let body = serde_json::from_slice::<serde_json::Value>(&r.entry.body)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&r.entry.body).into_owned().into());
                serde_json::json!({
                    "object": "idempotency_response",
                    "key": r.entry.key,
                    "lsn": r.lsn,
                    "created": r.created,
                    "status": r.entry.status,
                    "body": body,
                })
            }
        },
    };
    println!("{out}");
    Ok(())
}
