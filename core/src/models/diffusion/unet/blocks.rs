//! The UNet's down, mid and up blocks (`CrossAttnDownBlock2D`, `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`, `UpBlock2D`).

use burn::module::Module;
use burn::tensor::Tensor;

use super::attention::{Transformer2DConfig, Transformer2DModel};
use super::config::{BlockSizes, UNet2DConditionConfig};
use super::probe::CrossAttentionProbe;
use crate::error::Result;
use crate::models::diffusion::resnet_block_2d::{
    Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D,
};
use crate::weights::VarBuilder;

/// What every block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct BlockCommon {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub context_dim: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl BlockCommon {
    /// What the blocks of a UNet (or ControlNet) of config `c` share.
    pub fn from_config(c: &UNet2DConditionConfig) -> Self {
        Self {
            temb_channels: c.time_embed_dim(),
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            context_dim: c.cross_attention_dim,
            linear_projection: c.use_linear_projection,
            upcast_attention: c.upcast_attention,
        }
    }

    fn resnet(&self, in_channels: usize, out_channels: usize, scale: f64) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: self.eps,
            output_scale_factor: scale,
        }
    }

    fn transformer(&self, channels: usize, heads: usize, layers: usize) -> Transformer2DConfig {
        Transformer2DConfig {
            channels,
            heads,
            layers,
            context_dim: self.context_dim,
            groups: self.groups,
            linear_projection: self.linear_projection,
            upcast_attention: self.upcast_attention,
        }
    }
}

/// Sizes of one down or up block.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Up blocks only: the channels coming from the block below.
    pub prev_out_channels: usize,
    pub layers: usize,
    /// Attention heads, `None` for blocks without cross-attention.
    pub heads: Option<usize>,
    pub transformer_layers: usize,
    /// Down blocks: downsample at the end; up blocks: upsample at the end.
    pub resample: bool,
}

/// The down path of config `c`: `down_blocks.{i}` and `mid_block` below `vb`, shared by the
/// UNet and the ControlNet.
pub fn load_down_path(
    vb: &VarBuilder,
    c: &UNet2DConditionConfig,
    sizes: &BlockSizes,
) -> Result<(Vec<DownBlock>, MidBlock)> {
    let common = BlockCommon::from_config(c);
    let ch = &c.block_out_channels;
    let n = ch.len();
    let mut down_blocks = Vec::with_capacity(n);
    for (i, kind) in c.down_block_types.iter().enumerate() {
        down_blocks.push(DownBlock::load(
            &vb.pp("down_blocks").pp(i),
            &common,
            BlockConfig {
                in_channels: if i == 0 { ch[0] } else { ch[i - 1] },
                out_channels: ch[i],
                prev_out_channels: 0,
                layers: sizes.layers[i],
                heads: kind.starts_with("CrossAttn").then_some(sizes.heads[i]),
                transformer_layers: sizes.transformer_layers[i],
                resample: i + 1 < n,
            },
        )?);
    }
    let mid_block = MidBlock::load(
        &vb.pp("mid_block"),
        &common,
        ch[n - 1],
        sizes.heads[n - 1],
        sizes.transformer_layers[n - 1],
        c.mid_block_scale_factor,
    )?;
    Ok((down_blocks, mid_block))
}

/// A down block: `resnets.{i}` (each followed by `attentions.{i}` if it has cross-attention),
/// then `downsamplers.0`.
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsamplers_0: Option<Downsample2D>,
}

impl DownBlock {
    pub fn load(vb: &VarBuilder, common: &BlockCommon, c: BlockConfig) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..c.layers {
            let cin = if i == 0 {
                c.in_channels
            } else {
                c.out_channels
            };
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i),
                common.resnet(cin, c.out_channels, 1.0),
            )?);
            if let Some(heads) = c.heads {
                attentions.push(Transformer2DModel::load(
                    &vb.pp("attentions").pp(i),
                    common.transformer(c.out_channels, heads, c.transformer_layers),
                )?);
            }
        }
        let downsamplers_0 = c
            .resample
            .then(|| Downsample2D::load(&vb.pp("downsamplers.0"), c.out_channels, true))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            downsamplers_0,
        })
    }

    /// Runs the block, pushing every intermediate output onto `skips` (the up path's inputs).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
        mut probe: Option<&mut CrossAttentionProbe>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context, probe.as_deref_mut());
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsamplers_0 {
            x = down.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
#[derive(Module, Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions_0: Transformer2DModel,
}

impl MidBlock {
    pub fn load(
        vb: &VarBuilder,
        common: &BlockCommon,
        channels: usize,
        heads: usize,
        transformer_layers: usize,
        scale: f64,
    ) -> Result<Self> {
        Ok(Self {
            resnets: vec![
                ResnetBlock2D::load(
                    &vb.pp("resnets.0"),
                    common.resnet(channels, channels, scale),
                )?,
                ResnetBlock2D::load(
                    &vb.pp("resnets.1"),
                    common.resnet(channels, channels, scale),
                )?,
            ],
            attentions_0: Transformer2DModel::load(
                &vb.pp("attentions.0"),
                common.transformer(channels, heads, transformer_layers),
            )?,
        })
    }

    pub fn forward(
        &self,
        x: Tensor<4>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
        probe: Option<&mut CrossAttentionProbe>,
    ) -> Tensor<4> {
        let x = self.resnets[0].forward(x, Some(temb));
        let x = self.attentions_0.forward(x, context, probe);
        self.resnets[1].forward(x, Some(temb))
    }
}

/// An up block: `resnets.{i}` on the input concatenated with a skip connection (each followed
/// by `attentions.{i}` if it has cross-attention), then `upsamplers.0`.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsamplers_0: Option<Upsample2D>,
}

impl UpBlock {
    pub fn load(vb: &VarBuilder, common: &BlockCommon, c: BlockConfig) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..c.layers {
            let skip = if i == c.layers - 1 {
                c.in_channels
            } else {
                c.out_channels
            };
            let cin = if i == 0 {
                c.prev_out_channels
            } else {
                c.out_channels
            };
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i),
                common.resnet(cin + skip, c.out_channels, 1.0),
            )?);
            if let Some(heads) = c.heads {
                attentions.push(Transformer2DModel::load(
                    &vb.pp("attentions").pp(i),
                    common.transformer(c.out_channels, heads, c.transformer_layers),
                )?);
            }
        }
        let upsamplers_0 = c
            .resample
            .then(|| Upsample2D::load(&vb.pp("upsamplers.0"), c.out_channels))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            upsamplers_0,
        })
    }

    /// Number of skip connections the block consumes.
    pub fn num_skips(&self) -> usize {
        self.resnets.len()
    }

    /// Runs the block on `skips` (in the order the down path produced them); the upsampler
    /// targets `upsample_size`, the spatial size of the next block's skips.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        mut skips: Vec<Tensor<4>>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
        upsample_size: Option<[usize; 2]>,
        mut probe: Option<&mut CrossAttentionProbe>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip connection per resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context, probe.as_deref_mut());
            }
        }
        match &self.upsamplers_0 {
            Some(up) => up.forward(x, upsample_size),
            None => x,
        }
    }
}
