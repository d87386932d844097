//! `AutoencoderKL`'s `config.json`.

use serde::Deserialize;

use crate::error::{Error, Result};

/// The fields of diffusers' `AutoencoderKL` config.
#[derive(Debug, Clone, Deserialize)]
pub struct AutoencoderKLConfig {
    #[serde(default = "d_3")]
    pub in_channels: usize,
    #[serde(default = "d_3")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_1")]
    pub layers_per_block: usize,
    #[serde(default = "d_4")]
    pub latent_channels: usize,
    #[serde(default = "d_32")]
    pub norm_num_groups: usize,
    #[serde(default = "d_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "d_true")]
    pub force_upcast: bool,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
}

fn d_1() -> usize {
    1
}
fn d_3() -> usize {
    3
}
fn d_4() -> usize {
    4
}
fn d_32() -> usize {
    32
}
fn d_scale() -> f64 {
    0.18215
}
fn d_true() -> bool {
    true
}

impl AutoencoderKLConfig {
    /// Parses and checks `vae/config.json` (named `file` in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let c: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_file(file, format!("invalid VAE config: {e}")))?;
        if c.block_out_channels.is_empty()
            || c.block_out_channels
                .iter()
                .any(|ch| ch % c.norm_num_groups != 0)
        {
            return Err(Error::config(
                file,
                "block_out_channels must be non-empty multiples of norm_num_groups",
            ));
        }
        Ok(c)
    }

    /// Pixels per latent pixel: `2^(len(block_out_channels) - 1)` (8 for SD).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
