//! The OpenMP bridge: the runtime oneDNN runs on, reached through oneDNN's library handle,
//! so that [`crate::cpu::parallel`] can run kernels on the same team.

use std::ffi::{c_uint, c_void};

/// libgomp's `GOMP_parallel(fn, data, num_threads, flags)`: runs `fn(data)` on every thread
/// of a team (`num_threads` 0: the default size) and returns when all have finished.
type GompParallel =
    unsafe extern "C" fn(unsafe extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

/// The OpenMP runtime's entry point for parallel regions.
pub struct OpenMp {
    parallel: GompParallel,
}

impl OpenMp {
    /// `GOMP_parallel` from oneDNN's `library`, when its OpenMP runtime exports it: `dlsym`
    /// on oneDNN's handle also searches the libraries it depends on.
    pub(super) fn find(library: &libloading::Library) -> Option<Self> {
        // SAFETY: `GOMP_parallel` has this signature in every runtime that exports it.
        unsafe { library.get::<GompParallel>(b"GOMP_parallel\0") }
            .ok()
            .map(|parallel| Self {
                parallel: *parallel,
            })
    }

    /// Runs `work(data)` on each thread of an OpenMP team of the default size, as
    /// `#pragma omp parallel` does, and returns when all are done. Inside another parallel
    /// region the team has one thread.
    ///
    /// # Safety
    /// `work` must not unwind, and must be safe to call from several threads at once with
    /// `data`.
    pub unsafe fn parallel(&self, work: unsafe extern "C" fn(*mut c_void), data: *mut c_void) {
        // SAFETY: the caller's contract; `GOMP_parallel` has this signature in every runtime
        // that exports it.
        unsafe { (self.parallel)(work, data, 0, 0) }
    }
}
