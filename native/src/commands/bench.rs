//! `maskforge bench`: median time of the UNet, VAE decoder and text encoder.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Distribution, Tensor};
use clap::Args;
use maskforge_core::arch::Arch;
use maskforge_core::pipelines::StableDiffusion;

use crate::device::{self, DTypeArg, DeviceArg};
use crate::model;

/// Arguments of `maskforge bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A model to load (folder, single file or repo id).
    #[arg(long, conflicts_with = "arch", required_unless_present = "arch")]
    pub model: Option<String>,
    /// A real architecture with random weights: sd15, sd21 or sdxl.
    #[arg(long)]
    pub arch: Option<String>,
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    #[arg(long, default_value_t = 512)]
    pub width: usize,
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
    /// Print one JSON line (the only output format; kept for scripts that pass it).
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.height % 8 != 0 || args.width % 8 != 0 || args.height == 0 || args.width == 0 {
        bail!("--height and --width must be positive multiples of 8");
    }
    if args.batch == 0 || args.iters == 0 {
        bail!("--batch and --iters must be at least 1");
    }
    let selected = device::select(args.device, args.dtype)?;
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
        (None, None) => bail!("give --model or --arch"),
    };
    let device = &selected.device;
    let f = sd.vae_config.scale_factor();
    let (h, w) = (args.height / f, args.width / f);

    let prompts: Vec<&str> =
        vec!["a photo of a single cat, a small domesticated carnivorous mammal"; args.batch];
    let text_encode_ms = time(args.iters, device, || {
        drop(sd.encode_prompts(&prompts, None));
    })?;

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
    let unet_ms = time(args.iters, device, || {
        drop(sd.unet.forward(sample.clone(), 500.0, &context, None));
    })?;

    let latents = noise([1, sd.vae_config.latent_channels, h, w]);
    let vae_decode_ms = time(args.iters, device, || {
        drop(sd.decode_latents(latents.clone()));
    })?;

    let report = serde_json::json!({
        "model": label,
        "device": selected.name,
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "height": args.height,
        "width": args.width,
        "batch": args.batch,
        "iters": args.iters,
        "unet_ms": unet_ms,
        "vae_decode_ms": vae_decode_ms,
        "text_encode_ms": text_encode_ms,
    });
    println!("{report}");
    Ok(())
}

/// Median milliseconds of `iters` calls of `f` after one warm-up, each waited for on `device`.
fn time(iters: usize, device: &Device, mut f: impl FnMut()) -> Result<f64> {
    let mut run = || -> Result<f64> {
        let start = Instant::now();
        f();
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    run()?;
    let mut times = (0..iters).map(|_| run()).collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
