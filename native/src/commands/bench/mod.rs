//! `maskforge bench`: median time of the UNet, VAE decoder and text encoder, and optionally
//! of MosaicFusion and SegGen samples beside the runs they wrap, and of a training step.

mod dispatches;
mod memory;
mod seggen;
mod train;
mod truth;

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Distribution, Tensor};
use clap::Args;
use maskforge_core::arch::Arch;
use maskforge_core::mosaic::MosaicOptions;
use maskforge_core::mosaic::options::MODEL_SETTINGS;
use maskforge_core::pipelines::StableDiffusion;

use crate::device::{self, DTypeArg, DeviceArg};
use crate::model;

/// Arguments of `maskforge bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A model to load (folder, single file or repo id); default: the embedded model.
    #[arg(long, conflicts_with = "arch")]
    pub model: Option<String>,
    /// A real architecture with random weights: sd15, sd21 or sdxl.
    #[arg(long)]
    pub arch: Option<String>,
    /// Default: the model's own region size (its `mosaic.json`), else 512.
    #[arg(long)]
    pub height: Option<usize>,
    /// Default: the model's own region size (its `mosaic.json`), else 512.
    #[arg(long)]
    pub width: Option<usize>,
    /// UNet batch (2 = one image with classifier-free guidance).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Timed calls after one warm-up call.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Also time one 4-region MosaicFusion sample with regions of HxW and this many steps,
    /// one plain text-to-image run of the same canvas size and steps, and the bilateral solver
    /// per region.
    #[arg(long)]
    pub mosaic_steps: Option<usize>,
    /// Also time SegGen: decoding a 1024² colour map on the host and on the device, and, with
    /// --controlnet, one ImgSyn sample of HxW with this many steps against the ControlNet
    /// text-to-image run it wraps.
    #[arg(long)]
    pub seggen_steps: Option<usize>,
    /// The ControlNet of the ImgSyn timing and of `--text2mask` (diffusers folder or
    /// .safetensors, or a ControlNet pipeline folder).
    #[arg(long)]
    pub controlnet: Option<std::path::PathBuf>,
    /// Also time one training step of the UNet (forward, backward, AdamW) with batch
    /// `--batch` at HxW, as `train unet` runs it (`train_step_ms`).
    #[arg(long)]
    pub train: bool,
    /// Also score this many MosaicFusion samples (regions of HxW, `--truth-steps` steps,
    /// the shapes world's classes, the model's own `mosaic.json` settings)
    /// against the saturation truth of their own images: the mean mask IoU
    /// (`truth.mean_iou`). Meaningful on a model of the shapes world. `--truth` alone: 16.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "16")]
    pub truth: Option<usize>,
    /// Denoising steps of the `--truth` samples. Default: the model's own (`mosaic.json`),
    /// else 20.
    #[arg(long)]
    pub truth_steps: Option<usize>,
    /// With `--truth` and `--controlnet` (Mask2Img on `--model`, else on the ControlNet
    /// pipeline's own model, else on the embedded one): also score MaskSyn with this
    /// Text2Mask model (`truth.masksyn`), on scene captions of the shapes world at HxW, and
    /// (square sizes) Mask2Img alone on the world's own label maps (`truth.imgsyn`).
    #[arg(long, requires = "truth")]
    pub text2mask: Option<String>,
    /// Also count the kernels one UNet call launches on wgpu (`dispatches_per_unet_call`,
    /// from CubeCL's execution log; null on the CPU).
    #[arg(long)]
    pub count_dispatches: bool,
    /// Parts not to time, reported as null: any of `unet`, `vae`, `text`, comma-separated.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub skip: Vec<Part>,
    /// Print one JSON line (the only output format; kept for scripts that pass it).
    #[arg(long)]
    pub json: bool,
}

/// A timed part of `bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Unet,
    Vae,
    Text,
}

/// The band neighbouring `--truth` regions share along a side of `size` pixels: an eighth of
/// it, in whole multiples of 16.
fn overlap(size: usize) -> usize {
    (size / 8).max(16) / 16 * 16
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    // The model's own settings (as `generate` reads them): the default size and truth steps.
    let settings = match &args.arch {
        Some(_) => serde_json::Map::new(),
        None => model::mosaic_settings(args.model.as_deref())?,
    };
    let (own_size, own_steps) = (
        settings.contains_key("region_size"),
        settings.contains_key("steps"),
    );
    let options: MosaicOptions = serde_json::from_value(settings.into())
        .map_err(|e| anyhow::anyhow!("the model's {MODEL_SETTINGS}: {e}"))?;
    let (height, width) = match (args.height, args.width) {
        (Some(h), Some(w)) => (h, w),
        (h, w) if own_size => (
            h.unwrap_or(options.region_size.0),
            w.unwrap_or(options.region_size.1),
        ),
        (h, w) => (h.unwrap_or(512), w.unwrap_or(512)),
    };
    let truth_steps = args
        .truth_steps
        .unwrap_or(if own_steps { options.steps } else { 20 });
    if height % 8 != 0 || width % 8 != 0 || height == 0 || width == 0 {
        bail!("--height and --width must be positive multiples of 8");
    }
    if args.batch == 0 || args.iters == 0 {
        bail!("--batch and --iters must be at least 1");
    }
    let dispatch_log = args.count_dispatches.then(dispatches::enable).transpose()?;
    let selected = device::select(args.device, args.dtype)?;
    let built = Instant::now();
    let (sd, label) = match (&args.model, &args.arch) {
        (Some(m), _) => (
            model::load_logged(m, None, &selected.device, selected.dtype)?,
            m.clone(),
        ),
        (None, Some(a)) => {
            let arch = Arch::from_name(a)
                .ok_or_else(|| anyhow::anyhow!("--arch {a}: one of sd15, sd21, sdxl"))?;
            (
                StableDiffusion::random(&arch.configs(), &selected.device, selected.dtype)?,
                a.clone(),
            )
        }
        (None, None) => (
            crate::embedded::load(&selected.device, selected.dtype)?,
            crate::embedded::NAME.to_string(),
        ),
    };
    let device = &selected.device;
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
    tracing::info!(
        "bench: {label} on {} in {:.1} s",
        selected.runtime(),
        built.elapsed().as_secs_f64()
    );
    let f = sd.vae_config.scale_factor();
    let (h, w) = (height / f, width / f);

    let prompts: Vec<&str> =
        vec!["a photo of a single cat, a small domesticated carnivorous mammal"; args.batch];
    let timed = |part: Part| !args.skip.contains(&part);
    let text_encode = timed(Part::Text)
        .then(|| {
            time_logged("text encoder", args.iters, device, || {
                drop(sd.encode_text(&prompts, None));
            })
        })
        .transpose()?;
    // SDXL's pooled text and time ids. SD 1.x/2.x have none, so a run that skips the text
    // encoder never calls it (the UNet's context below is random).
    let added = match sd.text_encoder_2 {
        Some(_) => sd.encode_text(&prompts, None).added_cond(height, width),
        None => None,
    };

    let latent_channels = sd.unet_config.in_channels;
    let noise = |shape: [usize; 4]| {
        Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            (device, selected.dtype),
        )
    };
    let sample = noise([args.batch, latent_channels, h, w]);
    let context = Tensor::<3>::random(
        [args.batch, 77, sd.unet_config.cross_attention_dim],
        Distribution::Normal(0.0, 1.0),
        (device, selected.dtype),
    );
    let unet = timed(Part::Unet)
        .then(|| {
            time_logged("UNet", args.iters, device, || {
                drop(
                    sd.unet
                        .forward(sample.clone(), 500.0, &context, added.as_ref()),
                );
            })
        })
        .transpose()?;

    let dispatches_per_unet_call = match &dispatch_log {
        Some(log) if selected.name != "cpu" => Some(log.count(device, || {
            drop(
                sd.unet
                    .forward(sample.clone(), 500.0, &context, added.as_ref()),
            );
        })?),
        _ => None,
    };
    // After the UNet calls: weights, activations and attention at their largest.
    let peak_device_mb = memory::peak_device_mb(device);

    let latents = noise([1, sd.vae_config.latent_channels, h, w]);
    let vae_decode = timed(Part::Vae)
        .then(|| {
            time_logged("VAE decoder", args.iters, device, || {
                drop(sd.decode_latents(latents.clone()));
            })
        })
        .transpose()?;

    let mosaic = match args.mosaic_steps {
        Some(steps) => Some(bench_mosaic(&sd, height, width, steps, device)?),
        None => None,
    };

    let seggen = match args.seggen_steps {
        Some(steps) => {
            let net = match &args.controlnet {
                Some(path) => Some(crate::control::load_controlnet(&sd, path)?),
                None => None,
            };
            Some(seggen::bench_seggen(
                &sd,
                net,
                [height, width],
                steps,
                device,
            )?)
        }
        None => None,
    };

    let train_step_ms = args
        .train
        .then(|| train::train_step_ms(&sd, args.batch, h, w, args.iters, device))
        .transpose()?;

    let mut truth = args
        .truth
        .map(|n| {
            // The model's own settings at HxW.
            let mut options = options;
            options.region_size = (height, width);
            options.overlap = (overlap(height), overlap(width));
            options.steps = truth_steps;
            let mut t = truth::mosaic_truth(&sd, &options, n)?;
            let [color, shape] =
                truth::prompt_following(&sd, [height, width], truth_steps, options.guidance, n)?;
            t["color_following"] = color;
            t["shape_following"] = shape;
            anyhow::Ok(t)
        })
        .transpose()?;
    if let (Some(t), Some(text2mask), Some(n)) = (truth.as_mut(), &args.text2mask, args.truth) {
        let Some(controlnet) = &args.controlnet else {
            bail!("--text2mask needs --controlnet (the Mask2Img ControlNet on --model)");
        };
        let drawer = model::load_logged(text2mask, None, device, selected.dtype)?;
        // A ControlNet pipeline brings its base model, unless --model names one.
        let pipeline = match args.model {
            Some(_) => None,
            None => crate::control::controlnet_base(controlnet)?
                .map(|m| model::load_logged(&m, None, device, selected.dtype))
                .transpose()?,
        };
        let base = pipeline.as_ref().unwrap_or(&sd);
        let net = std::sync::Arc::new(crate::control::load_controlnet(base, controlnet)?);
        base.check_controlnet(&net)?;
        let own = crate::control::controlnet_settings(controlnet)?;
        if height == width {
            t["imgsyn"] = truth::imgsyn_truth(base, net.clone(), own, height, truth_steps, n)?;
        }
        t["masksyn"] =
            truth::masksyn_truth(&drawer, base, net, own, [height, width], truth_steps, n)?;
    }

    let mut report = serde_json::json!({
        "model": label,
        "device": selected.name,
        // burn's backend stack, shader compiler included (`wgpu<wgsl>`, `wgpu<spirv>`, `cuda`).
        "runtime": selected.runtime(),
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "height": height,
        "width": width,
        "batch": args.batch,
        "iters": args.iters,
        "unet_ms": unet.as_ref().map(|t| t.median_ms),
        "vae_decode_ms": vae_decode.as_ref().map(|t| t.median_ms),
        "text_encode_ms": text_encode.as_ref().map(|t| t.median_ms),
        // The warm-up calls: on a GPU, kernel compilation and autotuning included.
        "first_call_ms": {
            "unet": unet.as_ref().map(|t| t.first_ms),
            "vae_decode": vae_decode.as_ref().map(|t| t.first_ms),
            "text_encode": text_encode.as_ref().map(|t| t.first_ms),
        },
        "train_step_ms": train_step_ms,
        "dispatches_per_unet_call": dispatches_per_unet_call,
        // The device allocator's peak through the UNet calls (null on the CPU).
        "peak_device_mb": peak_device_mb,
        // Which GEMM the CPU backend's convolutions and linear layers used.
        "cpu_gemm": maskforge_core::cpu::sgemm::provider().describe(),
        // Which library the CPU backend's convolutions used.
        "cpu_conv": maskforge_core::cpu::describe_conv(),
    });
    if let Some(m) = mosaic {
        report["mosaic"] = m;
    }
    if let Some(s) = seggen {
        report["seggen"] = s;
    }
    if let Some(t) = truth {
        report["truth"] = t;
    }
    println!("{report}");
    Ok(())
}

/// Median milliseconds of `iters` calls of `f` after one warm-up, each waited for on `device`.
fn time(iters: usize, device: &Device, f: impl FnMut()) -> Result<f64> {
    Ok(time_parts(iters, device, f)?.median_ms)
}

/// The warm-up call and the median of the calls after it.
struct Timing {
    /// The first call: on a GPU, kernel compilation and autotuning included.
    first_ms: f64,
    median_ms: f64,
}

/// Times `f` as [`time`] does, logging each phase, so a run cut short shows where it was.
fn time_logged(part: &str, iters: usize, device: &Device, f: impl FnMut()) -> Result<Timing> {
    tracing::info!("bench: {part}: first call");
    let timing = time_parts(iters, device, f)?;
    tracing::info!(
        "bench: {part}: first call {:.0} ms, median of {iters} after it {:.1} ms",
        timing.first_ms,
        timing.median_ms
    );
    Ok(timing)
}

/// One warm-up call of `f` and `iters` more, each waited for on `device`.
fn time_parts(iters: usize, device: &Device, mut f: impl FnMut()) -> Result<Timing> {
    let mut run = || -> Result<f64> {
        let start = Instant::now();
        f();
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let first_ms = run()?;
    let mut times = (0..iters).map(|_| run()).collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        first_ms,
        median_ms: times[times.len() / 2],
    })
}

/// One 4-region sample (regions `h × w`, split at 1.1 and 0.9, the overlap an eighth of the
/// region) against one txt2img image of the canvas size, and the bilateral solver per region.
fn bench_mosaic(
    sd: &StableDiffusion,
    h: usize,
    w: usize,
    steps: usize,
    device: &Device,
) -> Result<serde_json::Value> {
    use maskforge_core::dataset::categories::parse_categories;
    use maskforge_core::masks::{BilateralSolverParams, refine_mask};
    use maskforge_core::mosaic::MosaicFusion;
    use maskforge_core::mosaic::layout::{Layout, LayoutConfig, LayoutDraws};
    use maskforge_core::mosaic::plan::{PlanConfig, plan_sample};
    use maskforge_core::mosaic::sample::{GenerateConfig, Refine, crop_rgb};
    use maskforge_core::pipelines::{Txt2ImgParams, image_to_rgb8};

    let layout = LayoutConfig {
        region_height: h,
        region_width: w,
        overlap_height: h / 8 / 16 * 16,
        overlap_width: w / 8 / 16 * 16,
        ..LayoutConfig::default()
    };
    let categories = parse_categories(b"cat\ndog\nteapot\nbicycle\n", "<bench categories>")?;
    let plan_config = PlanConfig {
        layout,
        ..PlanConfig::default()
    };
    plan_config.validate()?;
    let mut plan = plan_sample(
        0,
        0,
        &categories,
        &[0, 1, 2, 3],
        &plan_config,
        &sd.tokenizer,
    )?;
    plan.draws = LayoutDraws::Four {
        ratio_x: 1.1,
        ratio_y: 0.9,
    };
    plan.layout = Layout::new(&layout, &plan.draws);
    for (r, b) in plan.regions.iter_mut().zip(&plan.layout.regions) {
        r.bbox = *b;
    }
    let mut config = GenerateConfig {
        plan: plan_config,
        refine: Refine::None,
        ..GenerateConfig::default()
    };
    config.denoise.steps = steps;
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        f()?;
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let mosaic = MosaicFusion::new(sd, config.clone(), &categories, &[0, 1, 2, 3], 0);
    let mut sample = None;
    let mosaic_ms = timed(&mut || {
        sample = Some(mosaic.generate(&plan, |_, _| {})?);
        Ok(())
    })?;
    let sample = sample.expect("set by the timed run");
    let params = Txt2ImgParams {
        prompt: plan.regions[0].prompt.clone(),
        negative_prompt: None,
        height: plan.layout.canvas_height,
        width: plan.layout.canvas_width,
        steps,
        guidance: 7.5,
        scheduler: None,
        karras_sigmas: false,
        seed: 0,
        latents: None,
        clip_skip: None,
        controls: Vec::new(),
    };
    let txt2img_ms = timed(&mut || {
        image_to_rgb8(sd.txt2img(&params, |_, _| {})?.image)?;
        Ok(())
    })?;
    let mut solver_ms = Vec::new();
    for (r, mask) in plan.regions.iter().zip(&sample.region_masks) {
        let b = r.bbox;
        let crop = crop_rgb(&sample.rgb, sample.width, [b.y1, b.y2, b.x1, b.x2]);
        let start = Instant::now();
        refine_mask(
            &crop,
            b.height(),
            b.width(),
            mask,
            &BilateralSolverParams::default(),
            2,
            0.5,
        )?;
        solver_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(serde_json::json!({
        "steps": steps,
        "canvas": [plan.layout.canvas_height, plan.layout.canvas_width],
        "sample_ms": mosaic_ms,
        "txt2img_canvas_ms": txt2img_ms,
        "sample_over_txt2img": mosaic_ms / txt2img_ms,
        "bilateral_solver_region_ms": solver_ms,
    }))
}
