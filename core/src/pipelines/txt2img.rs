//! Text-to-image with classifier-free guidance, step for step as diffusers'
//! `StableDiffusionPipeline.__call__` and `StableDiffusionXLPipeline.__call__`, and their
//! ControlNet variants.

use burn::tensor::{DType, Tensor};

use super::controlnet::Control;
use super::stable_diffusion::StableDiffusion;
use crate::error::{Error, Result};
use crate::models::diffusion::unet::UNetHooks;
use crate::readback::Readback;
use crate::rng::TorchRng;
use crate::schedulers::{self, BuildOptions, SchedulerKind};

/// The arguments of one text-to-image run.
#[derive(Debug, Clone, Default)]
pub struct Txt2ImgParams {
    pub prompt: String,
    /// `None` behaves as diffusers' `negative_prompt=None`: the empty prompt, or zero embeddings
    /// for SDXL models with `force_zeros_for_empty_prompt`.
    pub negative_prompt: Option<String>,
    pub height: usize,
    pub width: usize,
    pub steps: usize,
    /// Classifier-free guidance scale; at ≤ 1 the unconditional branch is skipped, as in diffusers.
    pub guidance: f64,
    /// `None`: the model's own scheduler.
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas whatever the model's config says (diffusers' `use_karras_sigmas=True`);
    /// an error with a scheduler without them (DDIM, PNDM, Euler ancestral).
    pub karras_sigmas: bool,
    /// Seeds a torch-compatible generator: the same seed gives diffusers' noise for
    /// `generator=torch.Generator("cpu").manual_seed(seed)`.
    pub seed: u64,
    /// Initial noise `[1, 4, H/8, W/8]`, as diffusers' `latents=` (scaled by `init_noise_sigma`).
    pub latents: Option<Tensor<4>>,
    pub clip_skip: Option<usize>,
    /// ControlNets applied at every step; their residuals are summed (diffusers'
    /// `MultiControlNetModel`).
    pub controls: Vec<Control>,
}

/// The result: final latents (before VAE decoding) and the decoded image.
#[derive(Debug, Clone)]
pub struct Txt2ImgOutput {
    /// `[1, 4, H/8, W/8]`
    pub latents: Tensor<4>,
    /// `[1, 3, H, W]` in [0, 1], f32.
    pub image: Tensor<4>,
}

impl StableDiffusion {
    /// Checks that `height`×`width` can be generated: positive multiples of the VAE factor.
    pub fn check_size(&self, height: usize, width: usize) -> Result<()> {
        let f = self.vae_config.scale_factor();
        if height == 0 || width == 0 || height % f != 0 || width % f != 0 {
            return Err(Error::Invalid(format!(
                "height and width must be positive multiples of {f}, got {height}x{width}"
            )));
        }
        Ok(())
    }

    /// Runs the denoising loop and decodes the result.
    pub fn txt2img(
        &self,
        p: &Txt2ImgParams,
        mut on_step: impl FnMut(usize, usize),
    ) -> Result<Txt2ImgOutput> {
        self.check_size(p.height, p.width)?;
        if p.steps == 0 {
            return Err(Error::Invalid("steps must be at least 1".into()));
        }
        let f = self.vae_config.scale_factor();
        let shape = [1, self.unet_config.in_channels, p.height / f, p.width / f];
        let kind = p.scheduler.unwrap_or(self.default_scheduler);
        let options = BuildOptions {
            karras_sigmas: p.karras_sigmas,
        };
        let mut scheduler = schedulers::build_with(kind, &self.scheduler_config, p.steps, options)
            .map_err(|e| Error::Invalid(format!("scheduler {}: {e}", kind.cli_name())))?;

        for control in &p.controls {
            self.check_controlnet(&control.net)?;
            let [_, c, h, w] = control.image.dims();
            if [c, h, w] != [3, p.height, p.width] {
                return Err(Error::Invalid(format!(
                    "control image for {} is {c}x{h}x{w}, expected 3x{}x{}",
                    control.net.origin, p.height, p.width
                )));
            }
        }

        let cfg = p.guidance > 1.0;
        let positive = self.encode_text(&[&p.prompt], p.clip_skip);
        let embeds = if cfg {
            self.encode_negative(p.negative_prompt.as_deref(), &positive)
                .cat(positive)
        } else {
            positive
        };
        let added = embeds.added_cond(p.height, p.width);
        let context = embeds.context;

        let mut rng = TorchRng::new(p.seed);
        let noise = match &p.latents {
            Some(l) if l.dims() != shape => {
                return Err(Error::Invalid(format!(
                    "initial latents have shape {:?}, expected {shape:?}",
                    l.dims()
                )));
            }
            Some(l) => l.clone().cast(self.dtype),
            None => rng.randn_tensor(shape, &self.device).cast(self.dtype),
        };
        let mut latents = noise * scheduler.init_noise_sigma();

        let timesteps = scheduler.timesteps().to_vec();
        for (i, &t) in timesteps.iter().enumerate() {
            let input = if cfg {
                Tensor::cat(vec![latents.clone(), latents.clone()], 0)
            } else {
                latents.clone()
            };
            let input = scheduler.scale_model_input(input, i);
            let control = p
                .controls
                .iter()
                .map(|c| {
                    let net = &c.net.model;
                    net.forward(
                        input.clone(),
                        t as f32,
                        &context,
                        added.as_ref(),
                        &c.image,
                        c.scale,
                    )
                })
                .reduce(|a, b| a + b);
            let hooks = UNetHooks {
                control: control.as_ref(),
                ..UNetHooks::default()
            };
            let mut eps = self
                .unet
                .forward_with(input, t as f32, &context, added.as_ref(), hooks);
            if cfg {
                let [uncond, cond] = eps.chunk(2, 0).try_into().expect("two CFG halves");
                eps = uncond.clone() + (cond - uncond) * p.guidance;
            }
            latents = scheduler.step(eps, i, latents, &mut rng);
            on_step(i + 1, timesteps.len());
        }

        let image = self.decode_latents(latents.clone());
        Ok(Txt2ImgOutput { latents, image })
    }

    /// Decodes final latents to an image in [0, 1] (diffusers' `(x / 2 + 0.5).clamp(0, 1)`).
    ///
    /// # Shapes
    /// `[B, 4, h, w]` → `[B, 3, h·8, w·8]`
    pub fn decode_latents(&self, latents: Tensor<4>) -> Tensor<4> {
        let mut z = latents / self.vae_config.scaling_factor;
        if let Some(shift) = self.vae_config.shift_factor {
            z = z + shift;
        }
        let image = self.vae.decode(z.cast(self.vae_dtype)).cast(DType::F32);
        (image / 2.0 + 0.5).clamp(0.0, 1.0)
    }
}

/// An image tensor in [0, 1] as interleaved RGB bytes, rounded as diffusers' `numpy_to_pil`.
///
/// # Shapes
/// `[1, 3, H, W]` → `H·W·3` bytes
pub fn image_to_rgb8(image: Tensor<4>) -> Result<Vec<u8>> {
    crate::readback::now(read_rgb8(image, Readback::Blocking))
}

/// [`image_to_rgb8`] with an asynchronous read, for devices that cannot block (WebGPU).
pub async fn image_to_rgb8_async(image: Tensor<4>) -> Result<Vec<u8>> {
    read_rgb8(image, Readback::Async).await
}

/// [`image_to_rgb8`] read back as `how` says.
pub async fn read_rgb8(image: Tensor<4>, how: Readback) -> Result<Vec<u8>> {
    let data = how.read_f32(hwc(image)).await?;
    Ok(data
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect())
}

/// `[1, C, H, W]` → `[H·W·C]`, channels interleaved.
fn hwc(image: Tensor<4>) -> Tensor<1> {
    let [_, c, h, w] = image.dims();
    image.permute([0, 2, 3, 1]).reshape([h * w * c])
}
