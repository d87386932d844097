//! `bench --count-dispatches`: how many kernels one UNet call launches on a CubeCL (wgpu)
//! device, read from CubeCL's execution log (profiling level `minimal`: one `Executing …`
//! line per launch).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cubecl::config::profiling::ProfilingLogLevel;
use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

/// The execution log of this process, once [`enable`] has set it up.
pub struct DispatchLog {
    path: PathBuf,
}

/// Turns on CubeCL's execution log; must run before the first device is opened.
pub fn enable() -> Result<DispatchLog> {
    let path =
        std::env::temp_dir().join(format!("maskforge-dispatches-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // The configuration CubeCL would load itself (`cubecl.toml`, `CUBECL_*`), plus the log.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.profiling.logger.level = ProfilingLogLevel::Minimal;
    config.profiling.logger.file = Some(path.clone());
    config.profiling.logger.append = true;
    if !CubeClRuntimeConfig::try_set(config) {
        bail!("--count-dispatches: CubeCL was configured before the device opened");
    }
    Ok(DispatchLog { path })
}

impl DispatchLog {
    /// Kernel launches logged so far. The log is written by a background task: this waits
    /// until the count stops changing.
    pub fn launches(&self) -> Result<usize> {
        let mut last = None;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let n = text.lines().filter(|l| l.contains("Executing")).count();
            if last == Some(n) {
                return Ok(n);
            }
            last = Some(n);
        }
    }

    /// Launches of one call of `f` (after `f` has run once, so compilation and autotuning
    /// are done), waited for on `device`.
    pub fn count(&self, device: &burn::tensor::Device, mut f: impl FnMut()) -> Result<usize> {
        f();
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        let before = self.launches()?;
        f();
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        let after = self.launches().context("reading CubeCL's execution log")?;
        Ok(after - before)
    }
}

impl Drop for DispatchLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
