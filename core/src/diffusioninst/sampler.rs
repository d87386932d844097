//! DiffusionDet's DDIM sampler over boxes (`ddim_sample`), one chain per image: noise boxes
//! in `[-scale, scale]` (centre–size), a head call per step, box renewal, DDIM (η = 1) to the
//! next time, refill with fresh noise, and an ensemble of the steps' detections.
//!
//! Every number follows the original's dtype flow so that `--seed S` reproduces
//! `torch.manual_seed(S)` and its `torch.randn` calls: the first step's boxes are f32; the
//! predicted noise is f64 (the schedule buffers are f64), so from the first DDIM update on
//! the chain is f64, its DDIM noise is drawn in f64 after the first step, and refills in f32.
//! Each image's chain has its own generator and head calls, so a batch gives exactly what
//! each image gives alone.

use burn::tensor::Tensor;

use super::boxes::{Xyxy, batched_nms};
use super::head::{DynamicHead, KERNEL_PARAMS};
use super::schedule::{TIMESTEPS, alphas_cumprod, time_pairs};
use crate::error::{Error, Result};
use crate::readback::Readback;
use crate::rng::TorchRng;

/// Box renewal keeps proposals whose best class probability exceeds this.
const RENEWAL_THRESHOLD: f32 = 0.5;
/// The original's IoU of the class-aware NMS.
pub const NMS_IOU: f32 = 0.5;

/// How the boxes are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerOptions {
    /// DDIM steps (the config's `SAMPLE_STEP` by default).
    pub steps: usize,
    /// Boxes denoised per image.
    pub num_proposals: usize,
    /// `SNR_SCALE`.
    pub snr_scale: f64,
    /// Seed of each image's generator.
    pub seed: u64,
    /// The initial noise `[N·4]` instead of the generator's first draw.
    pub initial_noise: Option<Vec<f32>>,
    /// Also ensemble the last step's detections (the original leaves them out).
    pub ensemble_last_step: bool,
    /// IoU of the class-aware NMS; none without NMS (`USE_NMS: False`).
    pub nms_iou: Option<f32>,
}

/// Detections of one image before post-processing, in the resized image's pixels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    pub boxes: Vec<Xyxy>,
    pub scores: Vec<f32>,
    /// 0-based class indices.
    pub labels: Vec<usize>,
    /// `[K·153]` mask-head parameters, empty for box-only heads.
    pub kernels: Vec<f32>,
}

impl Candidates {
    fn extend(&mut self, other: Candidates) {
        self.boxes.extend(other.boxes);
        self.scores.extend(other.scores);
        self.labels.extend(other.labels);
        self.kernels.extend(other.kernels);
    }

    /// The candidates at `keep`, in that order.
    pub fn select(&self, keep: &[usize]) -> Candidates {
        let kernels = if self.kernels.is_empty() {
            Vec::new()
        } else {
            keep.iter()
                .flat_map(|&i| &self.kernels[i * KERNEL_PARAMS..(i + 1) * KERNEL_PARAMS])
                .copied()
                .collect()
        };
        Candidates {
            boxes: keep.iter().map(|&i| self.boxes[i]).collect(),
            scores: keep.iter().map(|&i| self.scores[i]).collect(),
            labels: keep.iter().map(|&i| self.labels[i]).collect(),
            kernels,
        }
    }

    fn nms(self, iou: Option<f32>) -> Candidates {
        let Some(iou) = iou else {
            return self;
        };
        let keep = batched_nms(&self.boxes, &self.scores, &self.labels, iou);
        self.select(&keep)
    }
}

/// What the sampler returns for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub candidates: Candidates,
    /// Proposals kept by box renewal at each step.
    pub kept: Vec<usize>,
}

/// Samples boxes for `B` images: `pyramids[i]` holds image `i`'s pooler levels and `sizes[i]`
/// its resized, unpadded `(height, width)`.
///
/// Each image's chain calls the head on its own boxes: GEMM libraries round the last bit
/// differently for different row counts, and the renewal threshold and NMS turn such bits
/// into other detections, so batching the head would break "a batch gives what each image
/// gives alone".
pub async fn sample(
    head: &DynamicHead,
    pyramids: &[Vec<Tensor<4>>],
    sizes: &[(usize, usize)],
    options: &SamplerOptions,
    readback: Readback,
) -> Result<Vec<Sampled>> {
    let n = options.num_proposals;
    if options.steps == 0 || options.steps > TIMESTEPS {
        return Err(Error::Invalid(format!(
            "sampling steps must be 1…{TIMESTEPS}, not {}",
            options.steps
        )));
    }
    if let Some(noise) = options.initial_noise.as_ref().filter(|v| v.len() != n * 4) {
        return Err(Error::Invalid(format!(
            "the initial box noise has {} values; {n} proposals need {}",
            noise.len(),
            n * 4
        )));
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (pyramid, &size) in pyramids.iter().zip(sizes) {
        out.push(sample_one(head, pyramid, size, options, readback).await?);
    }
    Ok(out)
}

/// One image's chain.
async fn sample_one(
    head: &DynamicHead,
    pyramid: &[Tensor<4>],
    (h, w): (usize, usize),
    options: &SamplerOptions,
    readback: Readback,
) -> Result<Sampled> {
    let n = options.num_proposals;
    let scale = options.snr_scale;
    let ac = alphas_cumprod();
    let mut rng = TorchRng::new(options.seed);
    let first = match &options.initial_noise {
        Some(noise) => noise.clone(),
        None => rng.randn(n * 4),
    };
    // Noisy boxes, centre–size in [-scale, scale]; f32 values until the first DDIM update.
    let mut x: Vec<[f64; 4]> = first
        .chunks_exact(4)
        .map(|c| std::array::from_fn(|k| c[k] as f64))
        .collect();
    let mut f32_boxes = true;
    let mut ensemble = Candidates::default();
    let mut kept = Vec::new();
    let mut found = Candidates::default();
    for (t, t_next) in time_pairs(options.steps) {
        let boxes: Vec<Xyxy> = if f32_boxes {
            x.iter().map(|x| noise_to_box_f32(x, scale, w, h)).collect()
        } else {
            // detectron2's `Boxes` holds f32: the f64 boxes are rounded before pooling.
            (x.iter())
                .map(|x| noise_to_box_f64(x, scale, w, h).map(|v| v as f32))
                .collect()
        };
        let stages = head.forward(pyramid, boxes, t, readback).await?;
        let stage = stages.last().expect("the head has stages");
        let logits = readback.read_f32(stage.output.logits.clone()).await?;
        let kernels = match &stage.output.kernels {
            Some(k) => readback.read_f32(k.clone()).await?,
            None => Vec::new(),
        };
        let classes = logits.len() / n;
        let sqrt_recip = (1.0 / ac[t as usize]).sqrt();
        let sqrt_recipm1 = (1.0 / ac[t as usize] - 1.0).sqrt();
        let x0: Vec<[f32; 4]> = stage
            .boxes
            .iter()
            .map(|b| box_to_x0(b, scale, w, h))
            .collect();
        let eps: Vec<[f64; 4]> = (x.iter().zip(&x0))
            .map(|(x, x0)| {
                std::array::from_fn(|k| (sqrt_recip * x[k] - x0[k] as f64) / sqrt_recipm1)
            })
            .collect();
        let keep: Vec<usize> = (0..n)
            .filter(|&j| {
                let row = &logits[j * classes..(j + 1) * classes];
                row.iter()
                    .map(|&l| sigmoid(l))
                    .fold(f32::NEG_INFINITY, f32::max)
                    > RENEWAL_THRESHOLD
            })
            .collect();
        kept.push(keep.len());
        let is_last = t_next < 0;
        if options.steps == 1 {
            found = top_candidates(&logits, &stage.boxes, &kernels, classes, n);
        } else if !is_last || options.ensemble_last_step {
            ensemble.extend(top_candidates(&logits, &stage.boxes, &kernels, classes, n));
        }
        if is_last {
            break;
        }
        let (alpha, alpha_next) = (ac[t as usize], ac[t_next as usize]);
        let sigma = ((1.0 - alpha / alpha_next) * (1.0 - alpha_next) / (1.0 - alpha)).sqrt();
        let c = (1.0 - alpha_next - sigma * sigma).sqrt();
        let k = keep.len();
        // `sigma · noise`: drawn like the chain (f32 at first, f64 after), multiplied in it.
        let noise: Vec<f64> = if f32_boxes {
            let sigma = sigma as f32;
            rng.randn(k * 4)
                .iter()
                .map(|&z| (sigma * z) as f64)
                .collect()
        } else {
            rng.randn_f64(k * 4).iter().map(|&z| sigma * z).collect()
        };
        let sqrt_next = alpha_next.sqrt() as f32;
        let mut next: Vec<[f64; 4]> = (keep.iter().enumerate())
            .map(|(at, &j)| {
                std::array::from_fn(|q| {
                    (x0[j][q] * sqrt_next) as f64 + c * eps[j][q] + noise[at * 4 + q]
                })
            })
            .collect();
        let refill = rng.randn((n - k) * 4);
        next.extend(
            refill
                .chunks_exact(4)
                .map(|r| std::array::from_fn(|q| r[q] as f64)),
        );
        x = next;
        f32_boxes = false;
    }
    let candidates = if options.steps == 1 { found } else { ensemble };
    Ok(Sampled {
        candidates: candidates.nms(options.nms_iou),
        kept,
    })
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The original's `inference` before NMS: the `N` best (proposal, class) scores among the
/// `N × C` sigmoid probabilities, each with its proposal's box and kernel.
fn top_candidates(
    logits: &[f32],
    boxes: &[Xyxy],
    kernels: &[f32],
    classes: usize,
    n: usize,
) -> Candidates {
    let scores: Vec<f32> = logits.iter().map(|&l| sigmoid(l)).collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(n);
    let mut out = Candidates::default();
    for idx in order {
        let proposal = idx / classes;
        out.boxes.push(boxes[proposal]);
        out.scores.push(scores[idx]);
        out.labels.push(idx % classes);
        if !kernels.is_empty() {
            out.kernels.extend_from_slice(
                &kernels[proposal * KERNEL_PARAMS..(proposal + 1) * KERNEL_PARAMS],
            );
        }
    }
    out
}

/// A noise box (centre–size in `[-scale, scale]`) as pixel corners, in f32 as the original's
/// first step computes it.
fn noise_to_box_f32(x: &[f64; 4], scale: f64, w: usize, h: usize) -> Xyxy {
    let scale = scale as f32;
    let v = x.map(|v| ((v as f32).clamp(-scale, scale) / scale + 1.0) / 2.0);
    let whwh = [w as f32, h as f32, w as f32, h as f32];
    let b = [
        v[0] - 0.5 * v[2],
        v[1] - 0.5 * v[3],
        v[0] + 0.5 * v[2],
        v[1] + 0.5 * v[3],
    ];
    std::array::from_fn(|k| b[k] * whwh[k])
}

/// [`noise_to_box_f32`] in f64, as the later steps compute it.
fn noise_to_box_f64(x: &[f64; 4], scale: f64, w: usize, h: usize) -> [f64; 4] {
    let v = x.map(|v| (v.clamp(-scale, scale) / scale + 1.0) / 2.0);
    let whwh = [w as f64, h as f64, w as f64, h as f64];
    let b = [
        v[0] - 0.5 * v[2],
        v[1] - 0.5 * v[3],
        v[0] + 0.5 * v[2],
        v[1] + 0.5 * v[3],
    ];
    std::array::from_fn(|k| b[k] * whwh[k])
}

/// A predicted box back in noise space (`x_start`): normalised by the image size, centre–size,
/// scaled to `[-scale, scale]` and clamped, in f32.
fn box_to_x0(b: &Xyxy, scale: f64, w: usize, h: usize) -> [f32; 4] {
    let scale = scale as f32;
    let (w, h) = (w as f32, h as f32);
    let n = [b[0] / w, b[1] / h, b[2] / w, b[3] / h];
    let c = [
        (n[0] + n[2]) / 2.0,
        (n[1] + n[3]) / 2.0,
        n[2] - n[0],
        n[3] - n[1],
    ];
    c.map(|v| ((v * 2.0 - 1.0) * scale).clamp(-scale, scale))
}
