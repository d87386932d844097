//! The threads the CPU fast paths' own kernels (norms, activations, attention) run on.
//!
//! When oneDNN is loaded ([`super::onednn`]) its convolutions and sgemm run on an OpenMP
//! team whose workers spin for a while after each parallel region, waiting for the next.
//! Kernels on rayon's separate threads then share the cores with those spinning workers,
//! which slowed the CLIP text encoder markedly. So with OpenMP available, these kernels run
//! on the same OpenMP team (through the runtime's `GOMP_parallel`), as PyTorch's do;
//! otherwise on rayon.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::onednn::{OpenMp, onednn};

/// The pool [`for_each`] uses in this process.
pub enum Pool {
    /// oneDNN's OpenMP team.
    OpenMp(&'static OpenMp),
    /// rayon's global pool.
    Rayon,
}

/// OpenMP when oneDNN is loaded on an OpenMP runtime, else rayon.
pub fn pool() -> Pool {
    match onednn().ok().and_then(|dnn| dnn.openmp()) {
        Some(omp) => Pool::OpenMp(omp),
        None => Pool::Rayon,
    }
}

/// Calls `f(i)` for every `i` in `0..tasks`, spread over the pool's threads (tasks are
/// handed out one at a time, so uneven tasks balance), and returns when all are done. A
/// panic in `f` is raised again here once the other threads have stopped.
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    match (tasks, pool()) {
        (0, _) => {}
        (1, _) => f(0),
        (_, Pool::OpenMp(omp)) => {
            let job = Job {
                next: AtomicUsize::new(0),
                tasks,
                f: &f,
                panic: Mutex::new(None),
            };
            // SAFETY: `run` catches every panic and only shares `job` through `&`; `job`
            // outlives the region, which has ended when `parallel` returns.
            unsafe { omp.parallel(run, &job as *const Job as *mut c_void) };
            if let Some(panic) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
                resume_unwind(panic);
            }
        }
        (_, Pool::Rayon) => (0..tasks).into_par_iter().for_each(&f),
    }
}

/// Splits `out` into chunks of `chunk` elements (the last may be shorter) and calls
/// `f(index, chunk)` for each as in [`for_each`].
///
/// # Panics
/// If `chunk` is 0 and `out` is not empty.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if out.is_empty() {
        return;
    }
    assert!(chunk > 0, "for_each_chunk_mut: chunk of 0");
    let len = out.len();
    let base = SendPtr(out.as_mut_ptr());
    for_each(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        // SAFETY: each index is handed out once, so the chunks are disjoint, and all lie
        // inside `out`, which is borrowed mutably for the whole call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
        f(i, part)
    });
}

/// `kernel(dst, src)` over chunks of `x` in parallel: an element-wise map into a new vector.
///
/// # Shapes
/// `x`: any → same
pub fn map_elementwise(x: &[f32], kernel: fn(&mut [f32], &[f32])) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut out = vec![0.0f32; x.len()];
    for_each_chunk_mut(&mut out, CHUNK, |i, dst| {
        kernel(dst, &x[i * CHUNK..][..dst.len()])
    });
    out
}

/// A pointer that may cross threads; users guarantee disjoint access.
pub struct SendPtr<T>(pub *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: see the type's documentation.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// One [`for_each`] call on OpenMP, shared by the team's threads.
struct Job<'a> {
    next: AtomicUsize,
    tasks: usize,
    f: &'a (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Each OpenMP thread takes tasks until none are left.
unsafe extern "C" fn run(data: *mut c_void) {
    // SAFETY: `for_each` passes a `Job` that outlives the parallel region.
    let job = unsafe { &*(data as *const Job) };
    loop {
        let i = job.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.tasks {
            return;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (job.f)(i))) {
            job.next.store(job.tasks, Ordering::Relaxed);
            let mut slot = job.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(panic);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for_each(counts.len(), |i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        let mut out = vec![0usize; 1001];
        for_each_chunk_mut(&mut out, 10, |i, part| {
            for (j, v) in part.iter_mut().enumerate() {
                *v = i * 10 + j;
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == i));
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let caught = catch_unwind(|| {
            for_each(64, |i| {
                if i == 17 {
                    panic!("task 17");
                }
            })
        });
        let message = caught.expect_err("the panic is raised again");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"task 17"));
        // The pool still works afterwards.
        let sum = AtomicUsize::new(0);
        for_each(10, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.into_inner(), 45);
    }

    /// CI installs oneDNN, whose OpenMP runtime must then be found.
    #[test]
    fn openmp_is_used_with_onednn() {
        if onednn().is_ok() {
            assert!(matches!(pool(), Pool::OpenMp(_)));
        }
    }
}
