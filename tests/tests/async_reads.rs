//! The asynchronous reads the browser uses (a WebGPU device cannot block) give exactly what the
//! blocking reads give, on the CPU backend.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::tensor::Device;
use maskforge_core::dataset::parse_categories;
use maskforge_core::mosaic::MosaicFusion;
use maskforge_core::mosaic::denoise::MosaicParams;
use maskforge_core::mosaic::sample::GenerateConfig;
use maskforge_core::pipelines::{Txt2ImgParams, image_to_rgb8, image_to_rgb8_async};
use maskforge_core::readback::Readback;
use maskforge_tests::{load_pipeline, mosaic_reference_plan};

/// Polls `f` to completion (the CPU backend's reads are ready at once).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[test]
fn async_sample_equals_blocking_sample() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let plan = mosaic_reference_plan(&sd);
    let config = GenerateConfig {
        denoise: MosaicParams {
            steps: 3,
            ..MosaicParams::default()
        },
        ..GenerateConfig::default()
    };
    let categories = parse_categories(b"cat\n", "categories").unwrap();
    let mosaic = MosaicFusion::new(&sd, config, &categories, &[0], 0);
    let blocking = mosaic.generate(&plan, |_, _| {}).unwrap();
    let mut steps = 0;
    let denoised = block_on(mosaic.denoise(&plan, Readback::Async, |_, _| steps += 1)).unwrap();
    assert_eq!(steps, 4, "PNDM's 3 steps are 4 UNet evaluations");
    let sample = mosaic.finish(&plan, denoised).unwrap();
    assert_eq!(sample.rgb, blocking.rgb);
    assert_eq!(sample.record, blocking.record);
    assert!(!sample.record.details.annotations.is_empty() || !sample.record.kept);
}

#[test]
fn async_image_read_equals_blocking_read() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let params = Txt2ImgParams {
        prompt: "a photo of a single cat".into(),
        negative_prompt: None,
        height: 64,
        width: 96,
        steps: 2,
        guidance: 7.5,
        scheduler: None,
        karras_sigmas: false,
        seed: 5,
        latents: None,
        clip_skip: None,
        controls: Vec::new(),
    };
    let out = sd.txt2img(&params, |_, _| {}).unwrap();
    let blocking = image_to_rgb8(out.image.clone()).unwrap();
    let read = block_on(image_to_rgb8_async(out.image)).unwrap();
    assert_eq!(read.len(), 64 * 96 * 3);
    assert_eq!(read, blocking);
}
