//! The allocator, and handing memory back to the OS after startup.
//!
//! mimalloc replaces glibc malloc for every binary that links this crate
//! (the server, the tests, the benches): the ledger allocates and frees many
//! small objects on several threads (request bodies, records decoded on one
//! thread and applied on another), where glibc's per-arena locking and
//! cross-thread frees cost about a third of replay (docs/performance.md).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands free heap pages back to the OS after replay or a snapshot load:
/// decoding leaves freed buffers (a whole snapshot file, say) between the
/// long-lived objects, which the allocator would otherwise keep.
pub fn release_free_memory() {
    // SAFETY: mi_collect only frees memory mimalloc holds and no one uses.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    // (Anything allocated before mimalloc took over, or by C libraries, lives there.)
    unsafe {
        libc::malloc_trim(0);
    }
}
