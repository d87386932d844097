//! The denoising loss of a text-to-image UNet, alone or steered by a ControlNet.

use burn::module::Module;
use burn::tensor::Tensor;

use super::consistency::ConsistencyReward;
use super::grounding::{GroundingTargets, grounding_loss};
use super::noising::{Noising, mse_loss};
use crate::error::Result;
use crate::models::diffusion::controlnet::ControlNetModel;
use crate::models::diffusion::unet::{
    CrossAttentionProbe, UNet2DConditionConfig, UNet2DConditionModel, UNetHooks,
};
use crate::text::clip::{ClipTextConfig, ClipTextModel};
use crate::weights::VarBuilder;

/// What `train unet` trains: the UNet, and the text encoder with `--train-text-encoder`.
/// Parameter keys are `unet.…` and `text_encoder.…`, the pipeline folder's component names.
#[derive(Module, Debug)]
pub struct TextToImage {
    pub unet: UNet2DConditionModel,
    pub text_encoder: Option<ClipTextModel>,
}

impl TextToImage {
    /// Reads `unet.*` and, given its config, `text_encoder.*` below `vb`.
    pub fn load(
        vb: &VarBuilder,
        unet: &UNet2DConditionConfig,
        text_encoder: Option<&ClipTextConfig>,
        unet_file: &str,
    ) -> Result<Self> {
        Ok(Self {
            unet: UNet2DConditionModel::load(&vb.pp("unet"), unet, unet_file)?,
            text_encoder: text_encoder
                .map(|c| ClipTextModel::load(&vb.pp("text_encoder"), c))
                .transpose()?,
        })
    }
}

/// One micro-batch, encoded: latents, text embeddings, and the noise and timesteps drawn.
#[derive(Debug, Clone)]
pub struct DenoisingBatch {
    /// VAE latents, already scaled: `[B, C, h, w]`.
    pub latents: Tensor<4>,
    /// Text encoder hidden states: `[B, 77, D]`.
    pub context: Tensor<3>,
    /// `[B, C, h, w]`
    pub noise: Tensor<4>,
    /// `[B]` in `0..num_train_timesteps`.
    pub timesteps: Vec<usize>,
    /// Name tokens and object masks, when the loss includes token grounding.
    pub grounding: Option<GroundingTargets>,
}

impl DenoisingBatch {
    /// The noised latents and the timesteps as the UNet takes them.
    ///
    /// # Shapes
    /// → (`[B, C, h, w]`, `B` timesteps)
    pub fn noisy(&self, noising: &Noising) -> (Tensor<4>, Vec<f32>) {
        let noisy = noising.add_noise(&self.latents, &self.noise, &self.timesteps);
        (noisy, self.timesteps.iter().map(|&t| t as f32).collect())
    }
}

/// diffusers' `train_text_to_image` loss: the MSE between the UNet's prediction on the
/// noised latents and the objective's target; plus, with `batch.grounding`, the weighted
/// [`grounding_loss`] of the same call's cross-attention.
///
/// # Shapes
/// → `[1]`
pub fn unet_loss(
    unet: &UNet2DConditionModel,
    noising: &Noising,
    batch: &DenoisingBatch,
) -> Tensor<1> {
    let (noisy, t) = batch.noisy(noising);
    let mut probe = batch
        .grounding
        .as_ref()
        .map(|g| CrossAttentionProbe::new(g.tokens.clone()));
    let hooks = UNetHooks {
        probe: probe.as_mut(),
        ..UNetHooks::default()
    };
    let pred = unet.forward_per_sample(noisy, &t, &batch.context, None, hooks);
    let denoising = mse_loss(
        pred,
        noising.target(&batch.latents, &batch.noise, &batch.timesteps),
    );
    match (&batch.grounding, probe) {
        (Some(targets), Some(probe)) if !targets.masks.is_empty() => {
            denoising + grounding_loss(&probe.maps, targets) * targets.weight
        }
        _ => denoising,
    }
}

/// diffusers' `train_controlnet` loss: as [`unet_loss`], the UNet steered by `controlnet`
/// on `image` (`[B, 3, H, W]` in [0, 1]); plus, with `reward`, ControlNet++'s weighted
/// [`ConsistencyReward`] of the same call's prediction.
///
/// # Shapes
/// → `[1]`
pub fn controlnet_loss(
    unet: &UNet2DConditionModel,
    controlnet: &ControlNetModel,
    image: &Tensor<4>,
    noising: &Noising,
    batch: &DenoisingBatch,
    reward: Option<&ConsistencyReward>,
) -> Tensor<1> {
    let (noisy, t) = batch.noisy(noising);
    let control =
        controlnet.forward_per_sample(noisy.clone(), &t, &batch.context, None, image, 1.0);
    let hooks = UNetHooks {
        control: Some(&control),
        ..UNetHooks::default()
    };
    let pred = unet.forward_per_sample(noisy.clone(), &t, &batch.context, None, hooks);
    let denoising = mse_loss(
        pred.clone(),
        noising.target(&batch.latents, &batch.noise, &batch.timesteps),
    );
    match reward.and_then(|r| r.loss(noising, noisy, pred, &batch.timesteps, image)) {
        Some(reward) => denoising + reward,
        None => denoising,
    }
}
