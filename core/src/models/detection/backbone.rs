//! DiffusionInst's backbones: `build_resnet_fpn_backbone` (a ResNet under an FPN) and
//! `build_swintransformer_fpn_backbone` (a Swin Transformer under the same FPN).

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Tensor;

use super::{Fpn, FpnInput, ResNet, Swin};
use crate::diffusioninst::{BackboneConfig, DiffusionInstConfig};
use crate::error::{Error, Result};
use crate::weights::VarBuilder;

/// The network under the FPN (the checkpoint's `backbone.bottom_up.`).
#[derive(Module, Debug)]
pub enum BottomUp {
    ResNet(ResNet),
    Swin(Swin),
}

impl BottomUp {
    /// Builds the network `config` describes, reading its weights below `vb`
    /// (`backbone.bottom_up.`).
    pub fn load(vb: &VarBuilder, config: &BackboneConfig) -> Result<Self> {
        Ok(match config {
            BackboneConfig::ResNet(c) => BottomUp::ResNet(ResNet::load(vb, c)?),
            BackboneConfig::Swin(c) => BottomUp::Swin(Swin::load(vb, c)?),
        })
    }

    /// Channels of the output `name` of the network `config` describes.
    pub fn out_channels(config: &BackboneConfig, name: &str) -> Option<usize> {
        match config {
            BackboneConfig::ResNet(c) => ResNet::out_channels(c, name),
            BackboneConfig::Swin(c) => Swin::out_channels(c, name),
        }
    }

    /// The outputs (`res2`…`res5` or `swin0`…`swin3`), by name.
    ///
    /// # Shapes
    /// `[B, 3, H, W]` → `[B, C_k, H/s_k, W/s_k]` per output
    pub fn forward(&self, x: Tensor<4>) -> HashMap<String, Tensor<4>> {
        match self {
            BottomUp::ResNet(resnet) => resnet.forward(x),
            BottomUp::Swin(swin) => swin.forward(x),
        }
    }
}

/// detectron2's `FPN` module with its `bottom_up` network, as a checkpoint stores it under
/// `backbone.`: `bottom_up.stem.*`, `bottom_up.res{k}.{i}.*` (ResNet) or
/// `bottom_up.patch_embed.*`, `bottom_up.layers.{i}.*`, `bottom_up.norm{i}.*` (Swin), then
/// `fpn_lateral{l}.*`, `fpn_output{l}.*`.
#[derive(Module, Debug)]
pub struct Backbone {
    pub bottom_up: BottomUp,
    pub fpn: Fpn,
}

impl Backbone {
    /// Builds the backbone `config` describes, reading its weights below `vb` (the checkpoint's
    /// `backbone.`).
    pub fn load(vb: &VarBuilder, config: &DiffusionInstConfig) -> Result<Self> {
        let inputs = config
            .fpn
            .in_features
            .iter()
            .map(|name| {
                let missing =
                    || Error::Invalid(format!("FPN input {name} is not an output of the backbone"));
                Ok(FpnInput {
                    name: name.clone(),
                    channels: BottomUp::out_channels(&config.backbone, name).ok_or_else(missing)?,
                    stride: config.backbone.output_stride(name).ok_or_else(missing)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            bottom_up: BottomUp::load(&vb.pp("bottom_up"), &config.backbone)?,
            fpn: Fpn::load(vb, &config.fpn, &inputs)?,
        })
    }

    /// The pyramid, finest first (`p2`…`p6` for DiffusionInst's configs; names in
    /// [`Fpn::out_features`]).
    ///
    /// # Shapes
    /// `[B, 3, H, W]` (`H`, `W` multiples of 32) → `[B, C, H/4, W/4]`, …, `[B, C, H/64, W/64]`
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        self.fpn.forward(&self.bottom_up.forward(x))
    }
}
