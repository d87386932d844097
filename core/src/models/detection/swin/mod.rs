//! The Swin Transformer of DiffusionInst's `swintransformer.py` (after
//! Swin-Transformer-Object-Detection), module tree and keys as the checkpoint's
//! `backbone.bottom_up.`: `patch_embed.{proj,norm}`, `layers.{i}.blocks.{j}.{norm1,attn.qkv,
//! attn.proj,attn.relative_position_bias_table,norm2,mlp.fc1,mlp.fc2}`,
//! `layers.{i}.downsample.{reduction,norm}` and `norm{i}`.

mod block;
mod patch_embed;
mod patch_merging;
mod window_attention;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Tensor;

pub use block::{Mlp, SwinBlock, Windows, shifted_window_mask};
pub use patch_embed::PatchEmbed;
pub use patch_merging::PatchMerging;
pub use window_attention::{WindowAttention, relative_position_index};

use crate::diffusioninst::SwinConfig;
use crate::error::Result;
use crate::nn::LayerNorm;
use crate::weights::VarBuilder;

/// One stage (`BasicLayer`): blocks alternating plain and shifted windows (shift
/// `window / 2`), then `downsample` except in the last stage.
#[derive(Module, Debug)]
pub struct SwinLayer {
    pub blocks: Vec<SwinBlock>,
    pub downsample: Option<PatchMerging>,
    #[module(skip)]
    window: usize,
}

impl SwinLayer {
    /// Reads `blocks.{j}.*` and, with `downsample`, `downsample.*`.
    pub fn load(
        vb: &VarBuilder,
        dim: usize,
        depth: usize,
        heads: usize,
        window: usize,
        downsample: bool,
    ) -> Result<Self> {
        let blocks = (0..depth)
            .map(|j| {
                let shift = if j % 2 == 0 { 0 } else { window / 2 };
                SwinBlock::load(&vb.pp("blocks").pp(j), dim, heads, window, shift)
            })
            .collect::<Result<_>>()?;
        let downsample = if downsample {
            Some(PatchMerging::load(&vb.pp("downsample"), dim)?)
        } else {
            None
        };
        Ok(Self {
            blocks,
            downsample,
            window,
        })
    }

    /// The stage's output and the next stage's input (the output again in the last stage).
    ///
    /// # Shapes
    /// `[B, H, W, C]` → (`[B, H, W, C]`, `[B, ⌈H/2⌉, ⌈W/2⌉, 2C]`)
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [_, h, w, _] = x.dims();
        let ws = self.window;
        let plain = Windows::new(h, w, ws, 0, &x.device());
        let shifted = Windows::new(h, w, ws, ws / 2, &x.device());
        let x = self.blocks.iter().fold(x, |x, b| {
            let windows = if b.shift() > 0 { &shifted } else { &plain };
            b.forward(x, windows)
        });
        match &self.downsample {
            Some(down) => (x.clone(), down.forward(x)),
            None => (x.clone(), x),
        }
    }
}

/// The Swin Transformer backbone (`SwinTransformer` as `build_swintransformer_backbone` makes
/// it): patch size 4, MLP ratio 4, qkv bias, patch norm, no absolute position embedding;
/// outputs `swin{i}` for `i` in `out_indices`, each through its own LayerNorm `norm{i}`, with
/// `embed_dim · 2^i` channels at stride `4 · 2^i`.
#[derive(Module, Debug)]
pub struct Swin {
    pub patch_embed: PatchEmbed,
    pub layers: Vec<SwinLayer>,
    /// `norm{i}` for the outputs, by stage.
    pub norms: Vec<Option<LayerNorm>>,
}

impl Swin {
    /// Reads `patch_embed.*`, `layers.{i}.*` and `norm{i}.*` below `vb` (detectron2's
    /// `bottom_up`). Checkpoints' `relative_position_index` buffers are not read.
    pub fn load(vb: &VarBuilder, c: &SwinConfig) -> Result<Self> {
        let patch_embed = PatchEmbed::load(&vb.pp("patch_embed"), 3, c.embed_dim, 4)?;
        let stages = c.depths.len();
        let layers = (0..stages)
            .map(|i| {
                SwinLayer::load(
                    &vb.pp("layers").pp(i),
                    c.embed_dim << i,
                    c.depths[i],
                    c.num_heads[i],
                    c.window_size,
                    i + 1 < stages,
                )
            })
            .collect::<Result<_>>()?;
        let norms = (0..stages)
            .map(|i| {
                c.out_indices
                    .contains(&i)
                    .then(|| LayerNorm::load(&vb.pp(format!("norm{i}")), c.embed_dim << i, 1e-5))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            patch_embed,
            layers,
            norms,
        })
    }

    /// Channels of the output `name` (`swin0`…`swin3`) of a Swin built from `c`.
    pub fn out_channels(c: &SwinConfig, name: &str) -> Option<usize> {
        let stage: usize = name.strip_prefix("swin")?.parse().ok()?;
        c.out_indices
            .contains(&stage)
            .then_some(c.embed_dim << stage)
    }

    /// The outputs `swin{i}` (channels first), by name.
    ///
    /// # Shapes
    /// `[B, 3, H, W]` → `swin{i}`: `[B, embed_dim·2^i, H/2^(i+2), W/2^(i+2)]` (sizes rounded
    /// up at each stage)
    pub fn forward(&self, x: Tensor<4>) -> HashMap<String, Tensor<4>> {
        let mut x = self.patch_embed.forward(x);
        let mut out = HashMap::new();
        for (i, (layer, norm)) in self.layers.iter().zip(&self.norms).enumerate() {
            let (stage, next) = layer.forward(x);
            if let Some(norm) = norm {
                out.insert(
                    format!("swin{i}"),
                    norm.forward(stage).permute([0, 3, 1, 2]),
                );
            }
            x = next;
        }
        out
    }
}
