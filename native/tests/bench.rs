//! `maskforge bench --count-dispatches`: the kernels of one UNet call on wgpu (lavapipe in CI),
//! counted from CubeCL's execution log, and the device allocator's peak; both null on the CPU;
//! the backend stack that ran, shader compiler included; and each part's first call apart from
//! the median, logged as it goes; and, with `persistence`, autotuning once per machine.

mod common;

use std::path::Path;

use common::{fixtures, maskforge_in};

/// `maskforge bench` on the tiny model at 64², the UNet alone, run in `cwd` (where CubeCL
/// looks for its `cubecl.toml`); its JSON report.
fn bench(device: &str, cwd: &Path, extra: &[&str]) -> serde_json::Value {
    let model = fixtures().join("tiny-sd15");
    let mut args = vec![
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
    ];
    args.extend(extra);
    let out = maskforge_in(cwd, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("bench: UNet: first call"), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn counts_the_kernels_and_the_peak_memory_of_a_unet_call() {
    // CubeCL's environment (autotune results) in a folder of this test's own, and its tuning
    // decisions written down, one JSON line each.
    let dir = tempfile::tempdir().unwrap();
    let decisions = dir.path().join("decisions.jsonl");
    std::fs::write(
        dir.path().join("cubecl.toml"),
        format!(
            "[environment]\npath = {{ directory = {:?} }}\n\n[autotune.decisions]\nfile = {:?}\n",
            dir.path().join("environment"),
            decisions,
        ),
    )
    .unwrap();
    let tuned = || {
        std::fs::read_to_string(&decisions)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let cpu = bench("cpu", dir.path(), &["--count-dispatches"]);
    assert!(cpu["dispatches_per_unet_call"].is_null());
    assert!(cpu["peak_device_mb"].is_null());
    let first = &cpu["first_call_ms"];
    assert!(first["unet"].as_f64().is_some_and(|ms| ms > 0.0), "{first}");
    assert!(
        first["vae_decode"].is_null() && first["text_encode"].is_null(),
        "{first}"
    );
    let wgpu = bench("wgpu", dir.path(), &["--count-dispatches"]);
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
    // The tiny UNet has 3 blocks down and up with attention: hundreds of kernels, not a few,
    // and not the thousand of group norms left to burn's nine kernels each.
    assert!((200..800).contains(&n), "{n} dispatches");

    // The second process finds every autotune result of the first in the environment and
    // tunes nothing; compiling its kernels is all its first call pays.
    let first_run = tuned();
    assert!(first_run > 0, "the first run tuned nothing");
    if cfg!(feature = "persistence") {
        bench("wgpu", dir.path(), &[]);
        assert_eq!(tuned(), first_run, "the second run tuned again");
    }
}
