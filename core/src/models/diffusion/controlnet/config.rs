//! `ControlNetModel`'s `config.json`: the UNet's down-path fields plus the conditioning encoder.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models::diffusion::unet::UNet2DConditionConfig;

/// The fields of diffusers' `ControlNetModel` config.
#[derive(Debug, Clone, Deserialize)]
pub struct ControlNetConfig {
    /// Down path, mid block and embeddings, read as the UNet's (no `up_block_types`).
    #[serde(flatten)]
    pub unet: UNet2DConditionConfig,
    #[serde(default = "d_embedding_channels")]
    pub conditioning_embedding_out_channels: Vec<usize>,
    #[serde(default = "d_3")]
    pub conditioning_channels: usize,
    /// `"rgb"` or `"bgr"`.
    #[serde(default = "d_rgb")]
    pub controlnet_conditioning_channel_order: String,
    /// Residuals averaged over space (shuffle ControlNets).
    #[serde(default)]
    pub global_pool_conditions: bool,
}

fn d_embedding_channels() -> Vec<usize> {
    vec![16, 32, 96, 256]
}
fn d_3() -> usize {
    3
}
fn d_rgb() -> String {
    "rgb".into()
}

impl ControlNetConfig {
    /// Parses and checks `config.json` of a ControlNet folder (named `file` in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let c: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_file(file, format!("invalid ControlNet config: {e}")))?;
        c.check(file)?;
        Ok(c)
    }

    /// The config of the original ControlNet release for a base model of UNet config `unet`
    /// (single-file ControlNets carry no config: they mirror their base model's down path).
    pub fn for_unet(unet: &UNet2DConditionConfig) -> Self {
        Self {
            unet: UNet2DConditionConfig {
                up_block_types: Vec::new(),
                ..unet.clone()
            },
            conditioning_embedding_out_channels: d_embedding_channels(),
            conditioning_channels: 3,
            controlnet_conditioning_channel_order: d_rgb(),
            global_pool_conditions: false,
        }
    }

    fn check(&self, file: &str) -> Result<()> {
        self.unet.check(file)?;
        if self.conditioning_embedding_out_channels.is_empty() || self.conditioning_channels == 0 {
            return Err(Error::config(
                file,
                "conditioning_embedding_out_channels and conditioning_channels must not be empty",
            ));
        }
        if !matches!(
            self.controlnet_conditioning_channel_order.as_str(),
            "rgb" | "bgr"
        ) {
            return Err(Error::config(
                file,
                format!(
                    "controlnet_conditioning_channel_order must be rgb or bgr, not `{}`",
                    self.controlnet_conditioning_channel_order
                ),
            ));
        }
        Ok(())
    }

    /// How much the conditioning encoder downsamples the control image.
    pub fn conditioning_downsample_factor(&self) -> usize {
        1 << (self.conditioning_embedding_out_channels.len() - 1)
    }

    /// Checks that this ControlNet's residuals fit a UNet of config `unet` whose latents are
    /// `vae_factor` times smaller than the image; `file` and `unet_file` name both in errors.
    pub fn check_fits(
        &self,
        file: &str,
        unet: &UNet2DConditionConfig,
        unet_file: &str,
        vae_factor: usize,
    ) -> Result<()> {
        let mine = self.unet.skip_channels(file)?;
        let theirs = unet.skip_channels(unet_file)?;
        let mismatch = |what: &str, a: String, b: String| {
            Err(Error::config(
                file,
                format!("does not fit the UNet ({unet_file}): {what} {a} here, {b} in the UNet"),
            ))
        };
        if mine != theirs {
            return mismatch(
                "skip-connection channels",
                format!("{mine:?}"),
                format!("{theirs:?}"),
            );
        }
        if self.unet.cross_attention_dim != unet.cross_attention_dim {
            return mismatch(
                "cross_attention_dim",
                self.unet.cross_attention_dim.to_string(),
                unet.cross_attention_dim.to_string(),
            );
        }
        if self.unet.in_channels != unet.in_channels {
            return mismatch(
                "in_channels",
                self.unet.in_channels.to_string(),
                unet.in_channels.to_string(),
            );
        }
        let added = |c: &UNet2DConditionConfig| {
            format!(
                "{:?}/{:?}",
                c.addition_embed_type, c.projection_class_embeddings_input_dim
            )
        };
        if added(&self.unet) != added(unet) {
            return mismatch("addition embedding", added(&self.unet), added(unet));
        }
        if self.conditioning_downsample_factor() != vae_factor {
            return mismatch(
                "image downsampling",
                self.conditioning_downsample_factor().to_string(),
                vae_factor.to_string(),
            );
        }
        Ok(())
    }
}
