//! Host work of dataset samples on a blocking thread pool, overlapped with the next sample's
//! device work.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use maskforge_core::dataset::HostPool;

/// Runs host work on up to `in_flight` threads; at most `in_flight` jobs wait.
pub struct WriterPool {
    runtime: tokio::runtime::Runtime,
    pending: VecDeque<tokio::task::JoinHandle<maskforge_core::Result<()>>>,
    in_flight: usize,
    /// How long the device waited for host work.
    pub device_wait: Duration,
}

impl WriterPool {
    /// A pool of `in_flight` (at least 1) threads.
    pub fn new(in_flight: usize) -> Result<Self> {
        let in_flight = in_flight.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(in_flight)
            .build()
            .context("starting the writer pool")?;
        Ok(Self {
            runtime,
            pending: Default::default(),
            in_flight,
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
        while self.pending.len() >= self.in_flight {
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
