//! `UNet2DConditionModel`'s `config.json`, normalised (per-block lists, head counts).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::weights::ldm::UNetLayout;

/// A value that diffusers accepts either once for all blocks or once per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn expand(&self, n: usize, key: &str, file: &str) -> Result<Vec<usize>> {
        match self {
            PerBlock::One(v) => Ok(vec![*v; n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => Err(Error::config(
                file,
                format!("`{key}` has {} entries for {n} blocks", v.len()),
            )),
        }
    }
}

/// The fields of diffusers' `UNet2DConditionModel` config that SD 1.x/2.x and SDXL use.
#[derive(Debug, Clone, Deserialize)]
pub struct UNet2DConditionConfig {
    #[serde(default = "d_4")]
    pub in_channels: usize,
    #[serde(default = "d_4")]
    pub out_channels: usize,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    /// Empty in ControlNet configs (no up path).
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_layers")]
    pub layers_per_block: PerBlock,
    #[serde(default = "d_one")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default = "d_32")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    pub cross_attention_dim: usize,
    /// In SD configs this is the number of heads (a historical misnomer diffusers keeps).
    #[serde(default = "d_heads")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default, deserialize_with = "null_is_false")]
    pub use_linear_projection: bool,
    #[serde(default, deserialize_with = "null_is_false")]
    pub upcast_attention: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Heads of the `"text"` addition embedding's attention pooling (diffusers' default 64).
    #[serde(default)]
    pub addition_embed_type_num_heads: Option<usize>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default = "d_f1")]
    pub mid_block_scale_factor: f64,
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default, deserialize_with = "null_is_false")]
    pub center_input_sample: bool,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
}

/// Real configs write `null` for some flags (SDXL base: `"upcast_attention": null`); diffusers
/// reads it as false.
fn null_is_false<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

fn d_4() -> usize {
    4
}
fn d_true() -> bool {
    true
}
fn d_layers() -> PerBlock {
    PerBlock::One(2)
}
fn d_one() -> PerBlock {
    PerBlock::One(1)
}
fn d_32() -> usize {
    32
}
fn d_eps() -> f64 {
    1e-5
}
fn d_heads() -> PerBlock {
    PerBlock::One(8)
}
fn d_f1() -> f64 {
    1.0
}

/// Per-block sizes derived from the config, as diffusers derives them in `__init__`.
#[derive(Debug, Clone)]
pub struct BlockSizes {
    pub heads: Vec<usize>,
    pub layers: Vec<usize>,
    pub transformer_layers: Vec<usize>,
}

impl UNet2DConditionConfig {
    /// Parses and checks `unet/config.json` (named `file` in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let c: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_file(file, format!("invalid UNet config: {e}")))?;
        if c.up_block_types.len() != c.block_out_channels.len() {
            return Err(Error::config(
                file,
                "block_out_channels and up_block_types must have the same length",
            ));
        }
        c.check(file)?;
        Ok(c)
    }

    /// Checks the down path, mid block and embeddings (what a ControlNet shares with the UNet).
    pub fn check(&self, file: &str) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n {
            return Err(Error::config(
                file,
                "block_out_channels and down_block_types must have the same length",
            ));
        }
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if !matches!(
                t.as_str(),
                "CrossAttnDownBlock2D" | "DownBlock2D" | "CrossAttnUpBlock2D" | "UpBlock2D"
            ) {
                return Err(Error::config(file, format!("unsupported block type `{t}`")));
            }
        }
        if let Some(m) = &self.mid_block_type
            && m != "UNetMidBlock2DCrossAttn"
        {
            return Err(Error::config(file, format!("unsupported mid block `{m}`")));
        }
        if self.class_embed_type.is_some() || self.time_cond_proj_dim.is_some() {
            return Err(Error::config(
                file,
                "class embeddings and time_cond_proj_dim are not supported",
            ));
        }
        match self.addition_embed_type.as_deref() {
            None => {}
            Some("text_time") => {
                if self.addition_time_embed_dim.is_none()
                    || self.projection_class_embeddings_input_dim.is_none()
                {
                    return Err(Error::config(
                        file,
                        "text_time embeddings need addition_time_embed_dim and projection_class_embeddings_input_dim",
                    ));
                }
            }
            Some("text") => {
                let heads = self.text_pooling_heads();
                if heads == 0 || self.cross_attention_dim % heads != 0 {
                    return Err(Error::config(
                        file,
                        format!(
                            "text embeddings: cross_attention_dim {} does not split into \
                             addition_embed_type_num_heads {heads}",
                            self.cross_attention_dim
                        ),
                    ));
                }
            }
            Some(other) => {
                return Err(Error::config(
                    file,
                    format!("unsupported addition_embed_type `{other}`"),
                ));
            }
        }
        let sizes = self.block_sizes(file)?;
        for (i, (&ch, &h)) in self.block_out_channels.iter().zip(&sizes.heads).enumerate() {
            if h == 0 || ch % h != 0 || ch % self.norm_num_groups != 0 {
                return Err(Error::config(
                    file,
                    format!(
                        "block {i}: {ch} channels do not split into {h} heads and {} groups",
                        self.norm_num_groups
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Heads, resnet layers and transformer depth of each down block (`file` for errors).
    pub fn block_sizes(&self, file: &str) -> Result<BlockSizes> {
        let n = self.block_out_channels.len();
        let heads = self
            .num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .expand(n, "attention_head_dim", file)?;
        Ok(BlockSizes {
            heads,
            layers: self.layers_per_block.expand(n, "layers_per_block", file)?,
            transformer_layers: self.transformer_layers_per_block.expand(
                n,
                "transformer_layers_per_block",
                file,
            )?,
        })
    }

    /// The numbers the LDM single-file key layout of this UNet depends on.
    pub fn ldm_layout(&self, file: &str) -> Result<UNetLayout> {
        Ok(UNetLayout {
            layers_per_block: self.block_sizes(file)?.layers[0],
            up_block_has_attention: self
                .up_block_types
                .iter()
                .map(|t| t.starts_with("CrossAttn"))
                .collect(),
        })
    }

    /// Channels of the skip connections the down path produces, in order (`conv_in`'s
    /// output, then every resnet or transformer and downsampler output): what ControlNet
    /// residuals must match.
    pub fn skip_channels(&self, file: &str) -> Result<Vec<usize>> {
        let sizes = self.block_sizes(file)?;
        let ch = &self.block_out_channels;
        let mut out = vec![ch[0]];
        for (i, &c) in ch.iter().enumerate() {
            out.extend(std::iter::repeat_n(c, sizes.layers[i]));
            if i + 1 < ch.len() {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Width of the time embedding (`4 × block_out_channels[0]`).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }

    /// Heads of the `"text"` addition embedding's pooling.
    pub fn text_pooling_heads(&self) -> usize {
        self.addition_embed_type_num_heads.unwrap_or(64)
    }

    /// How much the UNet downsamples: `2^(number of downsampling blocks)`.
    pub fn downsample_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
