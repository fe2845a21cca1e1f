//! The allocator, and handing memory back to the OS after startup.
//!
//! mimalloc replaces glibc malloc for every binary that links this crate
//! (the server, the tests, the benches): the ledger allocates and frees many
//! small objects on several threads (request bodies, records decoded on one
//! thread and applied on another), where glibc's per-arena locking and
//! cross-thread frees made replay markedly slower (docs/performance.md, "Changes").

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for the rest of this process's life
/// (pages already huge stay so). Called once startup has loaded the state.
///
/// mimalloc asks for huge pages on its segments (`MADV_HUGEPAGE`), and on
/// the virtual machines this runs on the first touch of a 2 MiB page is one
/// slow fault that holds up a whole batch on the WAL's apply thread; loading
/// in bulk is faster with them, so startup keeps them and only serving goes
/// without (docs/performance.md, "Slow applies").
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map.
    unsafe {
        if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
            tracing::debug!("transparent huge pages could not be turned off; allocating with them");
        }
    }
}

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
