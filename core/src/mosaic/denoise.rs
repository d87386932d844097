//! Multi-region denoising as Mixture of Diffusers (MosaicFusion's `MosaicFusionPipeline`):
//! one shared canvas latent, each region's crop through the UNet with its own prompt, noise
//! predictions merged with Gaussian weights, one scheduler step on the whole canvas; meanwhile
//! each region's category token's cross-attention is captured.

use std::collections::BTreeMap;

use burn::tensor::{DType, Tensor, TensorData};

use super::plan::SamplePlan;
use crate::error::{Error, Result};
use crate::models::diffusion::unet::{CrossAttentionProbe, UNetHooks, UNetLocation};
use crate::pipelines::StableDiffusion;
use crate::readback::{self, Readback};
use crate::rng::TorchRng;
use crate::schedulers::{self, BuildOptions, SchedulerKind};

/// Denoising and capture settings; defaults are MosaicFusion's.
#[derive(Debug, Clone)]
pub struct MosaicParams {
    pub steps: usize,
    pub guidance: f64,
    /// `None`: the model's own scheduler (PNDM for SD 1.x, as in MosaicFusion).
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas whatever the model's config says (diffusers' `use_karras_sigmas=True`).
    pub karras_sigmas: bool,
    /// Most UNet batch items per call (regions × guidance halves); regions of equal size share
    /// a call up to this.
    pub max_batch: usize,
    /// UNet evaluations `start_step..end_step` (0-based; `None` = `steps`) contribute
    /// attention. PNDM's 50 steps make 51 evaluations; the last is left out, as in the original.
    /// Heun's `n` steps make `2n − 1`, of which `None` keeps the first `n`.
    pub start_step: usize,
    pub end_step: Option<usize>,
}

impl Default for MosaicParams {
    fn default() -> Self {
        Self {
            steps: 50,
            guidance: 7.5,
            scheduler: None,
            karras_sigmas: false,
            max_batch: 8,
            start_step: 0,
            end_step: None,
        }
    }
}

/// A region's cross-attention at one resolution, averaged over heads, layers (down and up
/// blocks) and captured steps.
#[derive(Debug, Clone)]
pub struct AttentionMap {
    /// 8 for 1/8 of the region (the latent size with SD's VAE), 16, 32, 64.
    pub denominator: usize,
    pub height: usize,
    pub width: usize,
    /// Row-major `height × width`.
    pub values: Vec<f32>,
}

/// The result of one mosaic, with the attention maps `M` on the host ([`AttentionMap`]) or
/// still on the device ([`PendingMap`]).
#[derive(Debug, Clone)]
pub struct MosaicOutput<M = AttentionMap> {
    /// `[1, 4, H/8, W/8]`
    pub latents: Tensor<4>,
    /// `[1, 3, H, W]` in [0, 1], f32.
    pub image: Tensor<4>,
    /// Per region, per captured resolution (finest first).
    pub attention: Vec<Vec<M>>,
    /// Wall time spent in UNet calls (on asynchronous devices: submitting them; zero on wasm).
    pub unet_time: std::time::Duration,
}

/// The region's attention resolutions: the latent size, then repeatedly halved rounding up, as
/// the UNet's down path (`[(h, w) at 1/8, 1/16, 1/32, 1/64]`).
pub fn attention_resolutions(latent_h: usize, latent_w: usize) -> [(usize, usize); 4] {
    let mut r = [(latent_h, latent_w); 4];
    for i in 1..4 {
        r[i] = (r[i - 1].0.div_ceil(2), r[i - 1].1.div_ceil(2));
    }
    r
}

/// Mixture of Diffusers' Gaussian weights over a region of `h × w` latent pixels
/// (σ = 0.1 × size along each axis, centred).
///
/// # Shapes
/// → `h·w` row-major
pub fn gaussian_weights(h: usize, w: usize) -> Vec<f32> {
    let var = 0.01f64;
    let axis = |n: usize| -> Vec<f64> {
        let mid = (n as f64 - 1.0) / 2.0;
        (0..n)
            .map(|x| {
                let d = x as f64 - mid;
                (-d * d / (n * n) as f64 / (2.0 * var)).exp()
                    / (2.0 * std::f64::consts::PI * var).sqrt()
            })
            .collect()
    };
    let (ys, xs) = (axis(h), axis(w));
    ys.iter()
        .flat_map(|y| xs.iter().map(move |x| (y * x) as f32))
        .collect()
}

/// Per region and resolution: the running sum of captured maps and how many were added.
struct Capture {
    sums: Vec<BTreeMap<usize, (Tensor<2>, usize)>>,
    /// The VAE's downsampling factor: the denominator of the latent resolution.
    vae_factor: usize,
}

/// A region's averaged attention at one resolution, still on the device.
#[derive(Debug, Clone)]
pub struct PendingMap {
    /// 8 for 1/8 of the region, 16, 32, 64 (4, 8, … with a VAE that downsamples 4×).
    pub denominator: usize,
    pub height: usize,
    pub width: usize,
    /// `[1, height·width]` row-major, f32.
    pub mean: Tensor<2>,
}

impl PendingMap {
    /// Reads the map back to the host.
    pub async fn read(self, how: Readback) -> Result<AttentionMap> {
        Ok(AttentionMap {
            denominator: self.denominator,
            height: self.height,
            width: self.width,
            values: how.read_f32(self.mean).await?,
        })
    }
}

/// [`MosaicOutput`] with the attention still on the device.
pub type PendingOutput = MosaicOutput<PendingMap>;

impl PendingOutput {
    /// Reads every attention map back to the host.
    pub async fn read(self, how: Readback) -> Result<MosaicOutput> {
        let mut attention = Vec::new();
        for maps in self.attention {
            let mut region = Vec::new();
            for m in maps {
                region.push(m.read(how).await?);
            }
            attention.push(region);
        }
        Ok(MosaicOutput {
            latents: self.latents,
            image: self.image,
            attention,
            unet_time: self.unet_time,
        })
    }
}

/// Denoises `plan`'s canvas on `sd` from `noise` (`[1, 4, H/8, W/8]`; drawn from the plan's
/// seed when `None`) and decodes it, capturing each region's attention (read back to the host).
pub fn mosaic(
    sd: &StableDiffusion,
    plan: &SamplePlan,
    params: &MosaicParams,
    noise: Option<Tensor<4>>,
    on_step: impl FnMut(usize, usize),
) -> Result<MosaicOutput> {
    readback::now(mosaic_on_device(sd, plan, params, noise, on_step)?.read(Readback::Blocking))
}

/// [`mosaic`] with asynchronous reads, for devices that cannot block (WebGPU).
pub async fn mosaic_async(
    sd: &StableDiffusion,
    plan: &SamplePlan,
    params: &MosaicParams,
    noise: Option<Tensor<4>>,
    on_step: impl FnMut(usize, usize),
) -> Result<MosaicOutput> {
    mosaic_on_device(sd, plan, params, noise, on_step)?
        .read(Readback::Async)
        .await
}

/// [`mosaic`] leaving the attention on the device.
pub fn mosaic_on_device(
    sd: &StableDiffusion,
    plan: &SamplePlan,
    params: &MosaicParams,
    noise: Option<Tensor<4>>,
    mut on_step: impl FnMut(usize, usize),
) -> Result<PendingOutput> {
    let layout = &plan.layout;
    sd.check_size(layout.canvas_height, layout.canvas_width)?;
    if params.steps == 0 {
        return Err(Error::Invalid("steps must be at least 1".into()));
    }
    if params.max_batch < 2 {
        return Err(Error::Invalid("max batch must be at least 2".into()));
    }
    let f = sd.vae_config.scale_factor();
    let shape = [
        1,
        sd.unet_config.in_channels,
        layout.canvas_height / f,
        layout.canvas_width / f,
    ];
    let kind = params.scheduler.unwrap_or(sd.default_scheduler);
    let options = BuildOptions {
        karras_sigmas: params.karras_sigmas,
    };
    let mut scheduler =
        schedulers::build_with(kind, &sd.scheduler_config, params.steps, options)
            .map_err(|e| Error::Invalid(format!("scheduler {}: {e}", kind.cli_name())))?;
    let cfg = params.guidance > 1.0;

    // Rows [uncond, region 0, region 1, …]; the unconditional row is the empty prompt's, or
    // zeros for SDXL (`force_zeros_for_empty_prompt`), as MosaicFusion's SDXL pipeline.
    let prompts: Vec<&str> = plan.regions.iter().map(|r| r.prompt.as_str()).collect();
    let regions = sd.encode_text(&prompts, None);
    let embeddings = sd.encode_negative(None, &regions.rows(0..1)).cat(regions);

    let mut rng = TorchRng::new(plan.seed);
    let noise = match noise {
        Some(n) if n.dims() != shape => {
            return Err(Error::Invalid(format!(
                "initial latents have shape {:?}, expected {shape:?}",
                n.dims()
            )));
        }
        Some(n) => n.cast(sd.dtype),
        None => rng.randn_tensor(shape, &sd.device).cast(sd.dtype),
    };
    let mut latents = noise * scheduler.init_noise_sigma();

    // Latent boxes, Gaussian weights and their normaliser over the canvas.
    let boxes: Vec<[usize; 4]> = plan
        .regions
        .iter()
        .map(|r| [r.bbox.y1 / f, r.bbox.y2 / f, r.bbox.x1 / f, r.bbox.x2 / f])
        .collect();
    let weights: Vec<Tensor<4>> = boxes
        .iter()
        .map(|&[y1, y2, x1, x2]| {
            let (h, w) = (y2 - y1, x2 - x1);
            Tensor::<4>::from_data(
                TensorData::new(gaussian_weights(h, w), [1, 1, h, w]),
                &sd.device,
            )
            .cast(sd.dtype)
        })
        .collect();
    let mut total = Tensor::<4>::zeros([1, 1, shape[2], shape[3]], &sd.device).cast(sd.dtype);
    for (b, w) in boxes.iter().zip(&weights) {
        let r = [0..1, 0..1, b[0]..b[1], b[2]..b[3]];
        total = total
            .clone()
            .slice_assign(r.clone(), total.slice(r) + w.clone());
    }
    // Zero where no region contributes (`nan_to_num` in the original).
    let inverse_total = total.clone().recip().mask_fill(total.equal_elem(0.0), 0.0);

    let groups = region_groups(&boxes, params.max_batch / 2);
    let mut capture = Capture {
        sums: vec![BTreeMap::new(); boxes.len()],
        vae_factor: f,
    };
    let end_step = params.end_step.unwrap_or(params.steps);

    #[cfg_attr(target_family = "wasm", allow(unused_mut))]
    let mut unet_time = std::time::Duration::ZERO;
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        let mut merged = Tensor::<4>::zeros(shape, &sd.device).cast(sd.dtype);
        let capturing = i >= params.start_step && i < end_step;
        for group in &groups {
            let k = group.len();
            let crops: Vec<Tensor<4>> = group
                .iter()
                .map(|&r| {
                    let [y1, y2, x1, x2] = boxes[r];
                    latents.clone().slice([0..1, 0..shape[1], y1..y2, x1..x2])
                })
                .collect();
            let mut inputs = Vec::new();
            let mut rows = Vec::new();
            let mut tokens = Vec::new();
            if cfg {
                inputs.extend(crops.iter().cloned());
                rows.extend(group.iter().map(|_| 0));
                tokens.extend(group.iter().map(|_| None));
            }
            inputs.extend(crops);
            rows.extend(group.iter().map(|&r| r + 1));
            tokens.extend(group.iter().map(|&r| Some(plan.regions[r].token_index)));
            let input = scheduler.scale_model_input(Tensor::cat(inputs, 0), i);
            let conditioning = embeddings.select_rows(&rows);
            // SDXL: each region is generated as an image of its own size.
            let [y1, y2, x1, x2] = boxes[group[0]];
            let added = conditioning.added_cond((y2 - y1) * f, (x2 - x1) * f);
            let mut probe = CrossAttentionProbe::new(tokens);
            // `Instant` is not available on wasm32-unknown-unknown.
            #[cfg(not(target_family = "wasm"))]
            let unet_start = std::time::Instant::now();
            let hooks = UNetHooks {
                probe: capturing.then_some(&mut probe),
                ..UNetHooks::default()
            };
            let eps = sd.unet.forward_with(
                input,
                t as f32,
                &conditioning.context,
                added.as_ref(),
                hooks,
            );
            #[cfg(not(target_family = "wasm"))]
            {
                unet_time += unet_start.elapsed();
            }
            let eps = if cfg {
                let uncond = eps.clone().slice([0..k]);
                let cond = eps.slice([k..2 * k]);
                uncond.clone() + (cond - uncond) * params.guidance
            } else {
                eps
            };
            for (j, &r) in group.iter().enumerate() {
                let [y1, y2, x1, x2] = boxes[r];
                let region = [0..1, 0..shape[1], y1..y2, x1..x2];
                let contribution = eps.clone().slice([j..j + 1]) * weights[r].clone();
                merged = merged
                    .clone()
                    .slice_assign(region.clone(), merged.slice(region) + contribution);
            }
            if capturing {
                capture.add(group, &boxes[group[0]], probe);
            }
        }
        let eps = merged * inverse_total.clone();
        latents = scheduler.step(eps, i, latents, &mut rng);
        on_step(i + 1, timesteps.len());
    }

    let attention = capture.finish(&boxes);
    let image = sd.decode_latents(latents.clone());
    Ok(PendingOutput {
        latents,
        image,
        attention,
        unet_time,
    })
}

/// Regions of equal latent size, in order, in groups of at most `max_regions`.
fn region_groups(boxes: &[[usize; 4]], max_regions: usize) -> Vec<Vec<usize>> {
    let mut by_size: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (r, b) in boxes.iter().enumerate() {
        by_size
            .entry((b[1] - b[0], b[3] - b[2]))
            .or_default()
            .push(r);
    }
    let mut groups: Vec<Vec<usize>> = by_size
        .into_values()
        .flat_map(|rs| {
            rs.chunks(max_regions.max(1))
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    groups.sort();
    groups
}

impl Capture {
    /// Adds the down- and up-block maps of one UNet call; row `j` of each map is region
    /// `group[j]`. The mid block is left out, as in MosaicFusion.
    fn add(&mut self, group: &[usize], latent_box: &[usize; 4], probe: CrossAttentionProbe) {
        let res =
            attention_resolutions(latent_box[1] - latent_box[0], latent_box[3] - latent_box[2]);
        for map in probe.maps {
            if map.location == UNetLocation::Mid {
                continue;
            }
            let Some(level) = res.iter().position(|&r| r == (map.height, map.width)) else {
                continue;
            };
            let denominator = self.vae_factor << level;
            for (j, &r) in group.iter().enumerate() {
                let row = map.probs.clone().slice([j..j + 1]);
                let entry = self.sums[r].entry(denominator);
                match entry {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert((row, 1));
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        let (sum, n) = o.get_mut();
                        *sum = sum.clone() + row;
                        *n += 1;
                    }
                }
            }
        }
    }

    fn finish(self, boxes: &[[usize; 4]]) -> Vec<Vec<PendingMap>> {
        let factor = self.vae_factor;
        self.sums
            .into_iter()
            .zip(boxes)
            .map(|(sums, b)| {
                let res = attention_resolutions(b[1] - b[0], b[3] - b[2]);
                sums.into_iter()
                    .map(|(denominator, (sum, n))| {
                        let level = (denominator / factor).trailing_zeros() as usize;
                        let (height, width) = res[level];
                        PendingMap {
                            denominator,
                            height,
                            width,
                            mean: (sum / n as f64).cast(DType::F32),
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_halve_rounding_up() {
        // Region 408×544 → latent 51×68 (MosaicFusion's worked example).
        assert_eq!(
            attention_resolutions(51, 68),
            [(51, 68), (26, 34), (13, 17), (7, 9)]
        );
    }

    #[test]
    fn gaussian_weights_peak_in_the_middle() {
        let w = gaussian_weights(3, 5);
        let peak = 1.0 / (2.0 * std::f64::consts::PI * 0.01);
        assert!((w[7] as f64 - peak).abs() < 1e-4 * peak);
        // x = 0 at mid 2, width 5: exp(-4/25/0.02) = exp(-8)
        let edge = (-8.0f64).exp() * (-1.0f64 / 9.0 / 0.02).exp() * peak;
        assert!((w[0] as f64 - edge).abs() < 1e-6 * peak);
    }

    #[test]
    fn equal_sizes_share_a_call() {
        let boxes = [[0, 4, 0, 6], [0, 4, 4, 8], [2, 6, 0, 6], [2, 6, 4, 8]];
        assert_eq!(region_groups(&boxes, 4), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(
            region_groups(&boxes, 1),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
    }
}
