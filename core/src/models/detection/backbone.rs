//! DiffusionInst's backbone: `build_resnet_fpn_backbone` (a ResNet under an FPN).

use burn::module::Module;
use burn::tensor::Tensor;

use super::{Fpn, FpnInput, ResNet};
use crate::diffusioninst::{BackboneConfig, DiffusionInstConfig};
use crate::error::{Error, Result};
use crate::weights::VarBuilder;

/// detectron2's `FPN` module with its `bottom_up` ResNet, as a checkpoint stores it under
/// `backbone.`: `bottom_up.stem.*`, `bottom_up.res{k}.{i}.*`, `fpn_lateral{l}.*`,
/// `fpn_output{l}.*`.
#[derive(Module, Debug)]
pub struct Backbone {
    pub bottom_up: ResNet,
    pub fpn: Fpn,
}

impl Backbone {
    /// Builds the backbone `config` describes, reading its weights below `vb` (the checkpoint's
    /// `backbone.`). Swin backbones are not supported yet.
    pub fn load(vb: &VarBuilder, config: &DiffusionInstConfig) -> Result<Self> {
        let BackboneConfig::ResNet(resnet) = &config.backbone else {
            return Err(Error::Invalid(
                "Swin backbones are not supported yet".to_string(),
            ));
        };
        let inputs = config
            .fpn
            .in_features
            .iter()
            .map(|name| {
                let missing = || Error::Invalid(format!("FPN input {name} is not a ResNet output"));
                Ok(FpnInput {
                    name: name.clone(),
                    channels: ResNet::out_channels(resnet, name).ok_or_else(missing)?,
                    stride: config.backbone.output_stride(name).ok_or_else(missing)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            bottom_up: ResNet::load(&vb.pp("bottom_up"), resnet)?,
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
