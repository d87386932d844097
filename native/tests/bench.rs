//! `maskforge bench --count-dispatches`: the kernels of one UNet call on wgpu (lavapipe in CI),
//! counted from CubeCL's execution log, and the device allocator's peak; both null on the CPU;
//! the backend stack that ran, shader compiler included; and each part's first call apart from
//! the median, logged as it goes.

mod common;

use common::{fixtures, maskforge};

fn bench(device: &str) -> serde_json::Value {
    let model = fixtures().join("tiny-sd15");
    let out = maskforge(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--height",
        "64",
        "--width",
        "64",
        "--iters",
        "1",
        "--skip",
        "vae,text",
        "--device",
        device,
        "--count-dispatches",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("bench: UNet: first call"), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn counts_the_kernels_and_the_peak_memory_of_a_unet_call() {
    let cpu = bench("cpu");
    assert!(cpu["dispatches_per_unet_call"].is_null());
    assert!(cpu["peak_device_mb"].is_null());
    let first = &cpu["first_call_ms"];
    assert!(first["unet"].as_f64().is_some_and(|ms| ms > 0.0), "{first}");
    assert!(
        first["vae_decode"].is_null() && first["text_encode"].is_null(),
        "{first}"
    );
    let wgpu = bench("wgpu");
    // lavapipe is a Vulkan driver: WGSL in the default build, SPIR-V with the `vulkan` feature.
    let compiler = if cfg!(feature = "vulkan") {
        "wgpu<spirv>"
    } else {
        "wgpu<wgsl>"
    };
    let runtime = wgpu["runtime"].as_str().expect("the runtime named");
    // The first call compiles and autotunes the kernels; the timed calls reuse them.
    let first = wgpu["first_call_ms"]["unet"]
        .as_f64()
        .expect("a first call");
    let median = wgpu["unet_ms"].as_f64().expect("a median");
    assert!(first > median, "first call {first} ms, median {median} ms");
    assert!(runtime.contains(compiler), "{runtime}");
    // At least the tiny UNet's weights (8.3 MB in f32); its activations at 64² are far smaller.
    let mb = wgpu["peak_device_mb"].as_f64().expect("a peak on wgpu");
    assert!((8.0..1024.0).contains(&mb), "{mb} MB");
    let n = wgpu["dispatches_per_unet_call"]
        .as_u64()
        .expect("a count on wgpu");
    // The tiny UNet has 3 blocks down and up with attention: hundreds of kernels, not a few.
    assert!((200..100_000).contains(&n), "{n} dispatches");
}
