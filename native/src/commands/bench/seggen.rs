//! `bench --seggen-steps`: SegGen's costs beside what they add to. Decoding a 1024² colour map
//! on the host and, on a wgpu device, with the kernel; and one ImgSyn sample (colouring the
//! label map, ControlNet denoising, PNG files and record) against the plain ControlNet
//! text-to-image run it wraps.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::Device;
use maskforge_core::dataset::{
    DatasetRun, Inline, MemoryStorage, Progress, Quiet, RunFile, Shard, generate_samples,
};
use maskforge_core::pipelines::{ControlNet, StableDiffusion, image_to_rgb8};
use maskforge_core::readback::{Readback, now};
use maskforge_core::seggen::mask2img::mask_control;
use maskforge_core::seggen::{
    ColorMap, DecodeOptions, ImgSyn, ImgSynPrompt, LabelMap, Palette, SynthesisOptions, decode,
    decode_on_device,
};

/// The decoding benchmark's map side.
const DECODE_SIDE: usize = 1024;

/// Times decoding and, with a ControlNet, an ImgSyn sample of `height × width` in `steps` steps.
pub fn bench_seggen(
    sd: &StableDiffusion,
    controlnet: Option<ControlNet>,
    [height, width]: [usize; 2],
    steps: usize,
    device: &Device,
) -> Result<serde_json::Value> {
    let palette = Palette::ade20k();
    let map = noisy_map(&palette, DECODE_SIDE);
    let options = DecodeOptions::for_palette(&palette);
    let start = Instant::now();
    let host = decode(&palette, &map, &options)?;
    let decode_cpu_ms = start.elapsed().as_secs_f64() * 1e3;
    // The first kernel call compiles it: time the second.
    let mut decode_device_ms = None;
    for _ in 0..2 {
        let start = Instant::now();
        let Some(decoded) = now(decode_on_device(
            &palette,
            &map,
            &options,
            device,
            Readback::Blocking,
        )) else {
            break;
        };
        anyhow::ensure!(
            decoded? == host,
            "the kernel's labels differ from the host's"
        );
        decode_device_ms = Some(start.elapsed().as_secs_f64() * 1e3);
    }

    let imgsyn = match controlnet {
        Some(net) => Some(bench_imgsyn(
            sd,
            net,
            palette,
            [height, width],
            steps,
            device,
        )?),
        None => None,
    };
    Ok(serde_json::json!({
        "decode_side": DECODE_SIDE,
        "decode_cpu_ms": decode_cpu_ms,
        "decode_device_ms": decode_device_ms,
        "imgsyn": imgsyn,
    }))
}

/// ADE20K classes in 32-pixel squares, each pixel moved by up to ±12 per channel, so decoding
/// sees many distinct colours as in a drawn map.
fn noisy_map(palette: &Palette, side: usize) -> ColorMap {
    let entries = palette.entries();
    let mut state = 0x2545_f491_u32;
    let mut rgb = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            let color = entries[(y / 32 * 7 + x / 32) % entries.len()].color;
            for c in color {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state % 25) as i32 - 12;
                rgb.push((c as i32 + noise).clamp(0, 255) as u8);
            }
        }
    }
    ColorMap::new(side, side, rgb).expect("side² pixels")
}

fn bench_imgsyn(
    sd: &StableDiffusion,
    net: ControlNet,
    palette: Palette,
    [height, width]: [usize; 2],
    steps: usize,
    device: &Device,
) -> Result<serde_json::Value> {
    sd.check_controlnet(&net)?;
    let labels = LabelMap::new(
        width,
        height,
        (0..height * width)
            .map(|i| 1 + ((i / width) * 4 / height * 4 + (i % width) * 4 / width) as u16)
            .collect(),
    )?;
    let net = Arc::new(net);
    let palette = Arc::new(palette);
    let options = SynthesisOptions {
        steps,
        ..Default::default()
    };
    let prompts = [ImgSynPrompt {
        labels: "bench.png".into(),
        caption: "a living room with a sofa and a window".into(),
    }];
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        f()?;
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };

    let (control, _) = mask_control(net.clone(), &palette, &labels, 1.0, device)?;
    let params = options.params(
        &prompts[0].caption,
        [height, width],
        steps,
        0,
        vec![control],
    );
    let txt2img = || -> Result<()> {
        image_to_rgb8(sd.txt2img(&params, |_, _| {})?.image)?;
        Ok(())
    };
    // One warm-up run, then both timed.
    txt2img()?;
    let txt2img_ms = timed(&mut || txt2img())?;

    let load = |_: &str| Ok(labels.clone());
    let generator = ImgSyn {
        sd,
        controlnet: net,
        palette,
        prompts: &prompts,
        per_mask: 1,
        options: &options,
        model: "bench".into(),
        controlnet_name: "bench".into(),
        labels: &load,
    };
    let progress: Arc<dyn Progress> = Arc::new(Quiet);
    let imgsyn_ms = timed(&mut || {
        let storage = Arc::new(MemoryStorage::new());
        let run_file = RunFile {
            model: "bench".into(),
            num_images: 1,
            seed: 0,
            categories: vec![],
            settings: serde_json::json!({}),
        };
        let run = DatasetRun::open(storage, &run_file)?;
        generate_samples(
            &generator,
            &run,
            run_file.samples(Shard::WHOLE),
            &mut Inline,
            &progress,
        )?;
        Ok(())
    })?;
    Ok(serde_json::json!({
        "size": [height, width],
        "steps": steps,
        "sample_ms": imgsyn_ms,
        "controlnet_txt2img_ms": txt2img_ms,
        "sample_over_txt2img": imgsyn_ms / txt2img_ms,
    }))
}
