//! detectron2's detection layers as DiffusionInst uses them: the ResNet + FPN backbone of
//! `build_resnet_fpn_backbone` and the Swin + FPN backbone of
//! `build_swintransformer_fpn_backbone`, module trees and keys as the checkpoints' state dicts
//! (`backbone.bottom_up.res2.0.conv1.norm.running_var`,
//! `backbone.bottom_up.layers.0.blocks.1.attn.qkv.weight`, `backbone.fpn_lateral2.weight`),
//! and the head's box pooler (`ROIPooler` with torchvision's ROIAlign).

mod backbone;
mod basic_block;
mod bottleneck_block;
mod conv;
mod fpn;
mod frozen_batch_norm;
mod pooler;
mod resnet;
pub mod roi_align;
mod stem;
pub mod swin;

#[cfg(test)]
mod roi_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use backbone::{Backbone, BottomUp};
pub use basic_block::BasicBlock;
pub use bottleneck_block::{BottleneckBlock, BottleneckConfig};
pub use conv::ConvNorm;
pub use fpn::{Fpn, FpnInput};
pub use frozen_batch_norm::FrozenBatchNorm2d;
pub use pooler::RoiPooler;
pub use resnet::{ResNet, Stage};
pub use stem::BasicStem;
pub use swin::Swin;
