//! Heap settings for tensor-sized allocations.

/// Keeps freed tensor buffers in the heap for reuse. By default glibc serves blocks over
/// 128 KiB (rising to at most 32 MiB) with fresh `mmap`s and returns them on `free`, so every
/// tensor operation on the CPU backend page-faults its output buffer in again. Raising the
/// thresholds to their maximum cuts that (measured in README, Performance). Elsewhere this
/// does nothing.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; called before any other thread
    // starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
