//! The process's memory allocator settings, applied before any thread starts.

/// glibc gives each thread that allocates under contention an arena of its own (up to 8 per
/// core), and each keeps its freed memory. Two arenas hold the service's allocations with less
/// retained memory: with SQLite at 256 users, 5 MiB less peak RSS (BENCHMARKS.md) and the same
/// flows/s. Only glibc has this knob; other C libraries are left as they are.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ARENAS: libc::c_int = 2;
        // SAFETY: mallopt only changes the allocator's parameters; it is called from `main`
        // before the runtime starts its threads, as glibc asks for M_ARENA_MAX.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
