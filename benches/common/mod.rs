//! Helpers more than one bench uses (each includes this file: `mod common;`).

/// Resident memory (`VmRSS`) of process `pid`, or of this one for `"self"`; 0 if unknown.
pub fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}
