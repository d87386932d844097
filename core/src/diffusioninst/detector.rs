//! The whole detector: backbone, dynamic head, box sampler, mask head and post-processing,
//! from images to detections in their own pixels. One image's backbone runs at its own padded
//! size and every chain has its own generator, so a batch gives exactly what each image gives
//! alone; the head runs on the whole batch at once.

use burn::module::Module;
use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor};

use super::DiffusionInstConfig;
use super::head::DynamicHead;
use super::mask_head::instance_masks;
use super::postprocess::{Detection, ImageGeometry, postprocess};
use super::preprocess::{RgbImage, preprocess};
use super::sampler::{SamplerOptions, sample};
use crate::error::{Error, Result};
use crate::models::detection::Backbone;
use crate::readback::Readback;
use crate::weights::{KeyReport, VarBuilder, Weights};

/// A DiffusionInst or DiffusionDet checkpoint: `backbone.*` and `head.*`.
#[derive(Module, Debug)]
pub struct DiffusionInst {
    pub backbone: Backbone,
    pub head: DynamicHead,
    #[module(skip)]
    config: DiffusionInstConfig,
    #[module(skip)]
    device: Device,
}

/// What the head reads of one image.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// The pooler's levels, `[1, d, H/4, W/4]` (p2) first.
    pub pyramid: Vec<Tensor<4>>,
    /// `[1, 8, H/4, W/4]`, for mask models.
    pub mask_feat: Option<Tensor<4>>,
    pub geometry: ImageGeometry,
}

/// Options of one detection run beyond the config.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// DDIM steps; the config's `SAMPLE_STEP` when `None`.
    pub steps: Option<usize>,
    /// Boxes per image; the config's `NUM_PROPOSALS` when `None`.
    pub num_proposals: Option<usize>,
    pub seed: u64,
    /// The first noise `[N·4]`, instead of the seeded draw.
    pub initial_noise: Option<Vec<f32>>,
    pub ensemble_last_step: bool,
    /// NMS IoU; `None` for the config's (0.5 when `USE_NMS`, else none).
    pub nms_iou: Option<f32>,
    /// Detections scoring below this are dropped.
    pub score_threshold: f32,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            steps: None,
            num_proposals: None,
            seed: 0,
            initial_noise: None,
            ensemble_last_step: false,
            nms_iou: None,
            score_threshold: 0.0,
        }
    }
}

/// Keys of a DiffusionInst checkpoint the head does not read: the schedule buffers (computed
/// here in f64) and batch-norm counters.
pub fn is_unused_key(key: &str) -> bool {
    const BUFFERS: [&str; 12] = [
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    ];
    BUFFERS.contains(&key) || key.ends_with(".num_batches_tracked")
}

impl DiffusionInst {
    /// Reads the model `config` describes from a checkpoint's root. Masks are predicted when
    /// the checkpoint has the mask branch (a DiffusionDet checkpoint, or a DiffusionInst one
    /// without it, gives boxes only).
    pub fn load(vb: &VarBuilder, config: &DiffusionInstConfig) -> Result<Self> {
        Self::build(vb, config, vb.contains("head.mask_head.4.weight"))
    }

    fn build(vb: &VarBuilder, config: &DiffusionInstConfig, masks: bool) -> Result<Self> {
        Ok(Self {
            backbone: Backbone::load(&vb.pp("backbone"), config)?,
            head: DynamicHead::load(&vb.pp("head"), config, masks)?,
            config: config.clone(),
            device: vb.device().clone(),
        })
    }

    /// [`load`](Self::load) from `weights` with every key checked first: a checkpoint lacking
    /// keys the config implies is an error listing them grouped by module (`backbone.bottom_up
    /// .res5: 30 of 30 missing (…)`), not key by key. Returns the model and, when the checkpoint
    /// holds keys the model does not read (beyond the schedule buffers and batch-norm
    /// counters), their report, for a warning.
    pub fn load_checked(
        weights: Arc<dyn Weights>,
        device: &Device,
        config: &DiffusionInstConfig,
    ) -> Result<(Self, Option<KeyReport>)> {
        let vb = VarBuilder::from_weights(weights.clone(), device, DType::F32);
        let Some(present) = weights.keys() else {
            return Ok((Self::load(&vb, config)?, None));
        };
        let masks = vb.contains("head.mask_head.4.weight");
        let (probe, keys) = VarBuilder::probe();
        Self::build(&probe, config, masks)?;
        let expected = keys.lock().expect("probe keys").clone();
        let report = KeyReport::new(
            expected.iter().map(String::as_str),
            present
                .iter()
                .map(String::as_str)
                .filter(|k| !is_unused_key(k)),
        );
        report.check(&weights.origin())?;
        let model = Self::build(&vb, config, masks)?;
        Ok((model, (!report.unexpected().is_empty()).then_some(report)))
    }

    /// The config the model was built from.
    pub fn config(&self) -> &DiffusionInstConfig {
        &self.config
    }

    /// Whether detections carry masks.
    pub fn has_masks(&self) -> bool {
        self.head.has_masks()
    }

    /// Detects objects in `images`, each in its own pixels.
    pub async fn detect(
        &self,
        images: &[RgbImage<'_>],
        options: &DetectOptions,
        readback: Readback,
    ) -> Result<Vec<Vec<Detection>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let mut pyramids = Vec::with_capacity(images.len());
        let mut mask_feats = Vec::with_capacity(images.len());
        let mut geometry = Vec::with_capacity(images.len());
        for image in images {
            let features = self.features(image)?;
            pyramids.push(features.pyramid);
            mask_feats.push(features.mask_feat);
            geometry.push(features.geometry);
        }
        let head = &self.config.head;
        let sampler = SamplerOptions {
            steps: options.steps.unwrap_or(head.sample_step),
            num_proposals: options.num_proposals.unwrap_or(head.num_proposals),
            snr_scale: head.snr_scale,
            seed: options.seed,
            initial_noise: options.initial_noise.clone(),
            ensemble_last_step: options.ensemble_last_step,
            nms_iou: options
                .nms_iou
                .or(head.use_nms.then_some(super::sampler::NMS_IOU)),
        };
        let sizes: Vec<(usize, usize)> = geometry.iter().map(|g| g.resized).collect();
        let sampled = sample(&self.head, &pyramids, &sizes, &sampler, readback).await?;
        let mut out = Vec::with_capacity(images.len());
        for ((found, mask_feat), geometry) in sampled.into_iter().zip(mask_feats).zip(geometry) {
            let keep: Vec<usize> = (0..found.candidates.scores.len())
                .filter(|&i| found.candidates.scores[i] >= options.score_threshold)
                .collect();
            let candidates = found.candidates.select(&keep);
            let probs = match mask_feat {
                Some(feat) if !candidates.boxes.is_empty() => {
                    let [_, c, h, w] = feat.dims();
                    let masks = instance_masks(feat.reshape([c, h, w]), &candidates.kernels);
                    Some((readback.read_f32(masks).await?, h, w))
                }
                _ => None,
            };
            let probs = probs.as_ref().map(|(p, h, w)| (p.as_slice(), *h, *w));
            out.push(postprocess(&candidates, probs, geometry));
        }
        Ok(out)
    }

    /// One image's features at its own padded size.
    pub fn features(&self, image: &RgbImage) -> Result<ImageFeatures> {
        let batch = preprocess(
            std::slice::from_ref(image),
            &self.config.input,
            self.config.size_divisibility(),
            &self.device,
        )?;
        let pyramid = self.pooler_levels(self.backbone.forward(batch.images))?;
        let [h, w] = batch.image_sizes[0];
        Ok(ImageFeatures {
            mask_feat: self.head.mask_features(&pyramid)?,
            pyramid,
            geometry: ImageGeometry {
                original: (image.height, image.width),
                resized: (h, w),
            },
        })
    }

    /// The pyramid levels the pooler reads, by name (`p2`…`p5` of `p2`…`p6`).
    fn pooler_levels(&self, pyramid: Vec<Tensor<4>>) -> Result<Vec<Tensor<4>>> {
        let names = self.backbone.fpn.out_features();
        self.config
            .pooler
            .in_features
            .iter()
            .map(|f| {
                let at = names.iter().position(|n| n == f).ok_or_else(|| {
                    Error::Invalid(format!(
                        "ROI_HEADS.IN_FEATURES names {f}, which the FPN does not output"
                    ))
                })?;
                Ok(pyramid[at].clone())
            })
            .collect()
    }
}
