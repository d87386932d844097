//! `bench`'s `peak_device_mb`: the most memory the device allocator held, read from burn's
//! pool report. CubeCL's dynamic pools keep a high-water mark of their pages; the memory outside
//! them (the persistent pool with the weights, dedicated allocations) is what is reserved now.

use burn::backend::{Backend, Dispatch};
use burn::tensor::Device;

/// Mebibytes at the allocator's peak so far; `None` on a device without pools (the CPU).
pub fn peak_device_mb(device: &Device) -> Option<f64> {
    let device = device.as_dispatch();
    let pools = Dispatch::memory_pool_report(device)?;
    let usage = Dispatch::memory_pool_usage(device)?;
    let held: u64 = pools.iter().map(|p| p.page_size * p.pages).sum();
    let peak: u64 = pools.iter().map(|p| p.page_size * p.pages_peak).sum();
    let outside = usage.bytes_reserved.saturating_sub(held);
    Some((peak + outside) as f64 / (1u64 << 20) as f64)
}
