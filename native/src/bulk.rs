//! What bulk dataset runs share in the shell: the progress bar and the pool that finishes
//! samples (masks, encoding, files) while the device denoises the next one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use maskforge_core::dataset::{HostPool, Progress};

/// A bar over `samples` samples, hidden when `quiet`.
pub fn sample_bar(samples: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    indicatif::ProgressBar::new(samples as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples {per_sec} {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    )
}

/// Shows a run's progress on an indicatif bar.
pub struct Bar(pub indicatif::ProgressBar);

impl Progress for Bar {
    fn step(&self, step: usize, total: usize) {
        self.0.set_message(format!("step {step}/{total}"));
    }

    fn sample_done(&self) {
        self.0.inc(1);
    }
}

/// Host work of samples on a blocking pool, overlapped with the next sample's denoising; at
/// most `IN_FLIGHT` wait.
pub struct WriterPool {
    runtime: tokio::runtime::Runtime,
    pending: std::collections::VecDeque<tokio::task::JoinHandle<maskforge_core::Result<()>>>,
    /// How long the device waited for host work.
    pub device_wait: Duration,
}

const IN_FLIGHT: usize = 2;

impl WriterPool {
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(IN_FLIGHT)
            .build()
            .context("starting the writer pool")?;
        Ok(Self {
            runtime,
            pending: Default::default(),
            device_wait: Duration::ZERO,
        })
    }

    fn wait_one(&mut self) -> maskforge_core::Result<()> {
        let task = self.pending.pop_front().expect("called with pending work");
        self.runtime
            .block_on(task)
            .map_err(|e| maskforge_core::Error::Invalid(format!("writer task failed: {e}")))?
    }
}

impl HostPool for WriterPool {
    fn submit(
        &mut self,
        job: Box<dyn FnOnce() -> maskforge_core::Result<()> + Send>,
    ) -> maskforge_core::Result<()> {
        let waited = Instant::now();
        while self.pending.len() >= IN_FLIGHT {
            self.wait_one()?;
        }
        self.device_wait += waited.elapsed();
        self.pending.push_back(self.runtime.spawn_blocking(job));
        Ok(())
    }

    fn finish(&mut self) -> maskforge_core::Result<()> {
        while !self.pending.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }
}
