//! `maskforge bench --count-dispatches`: the kernels of one UNet call on wgpu (lavapipe in CI),
//! counted from CubeCL's execution log; null on the CPU.

mod common;

use common::{fixtures, maskforge};

fn dispatches(device: &str) -> serde_json::Value {
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    report["dispatches_per_unet_call"].clone()
}

#[test]
fn counts_the_kernels_of_a_unet_call() {
    assert!(dispatches("cpu").is_null());
    let n = dispatches("wgpu").as_u64().expect("a count on wgpu");
    // The tiny UNet has 3 blocks down and up with attention: hundreds of kernels, not a few.
    assert!((200..100_000).contains(&n), "{n} dispatches");
}
