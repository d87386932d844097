//! DiffusionInst: instance segmentation by denoising boxes, and DiffusionDet, its box-only
//! parent, run from their original detectron2 configs and checkpoints.
//!
//! The data path: [`preprocess`] (resize, normalise, pad) → `models::detection::Backbone`
//! (ResNet + FPN) → [`head`] (timestep embedding, refinement stages, mask features) driven by
//! [`sampler`] (DDIM over boxes, [`schedule`]) → [`mask_head`] (per-instance kernels) →
//! [`postprocess`] (back to the image's pixels). [`detector`] ties them together; [`config`]
//! reads the original YAML files as detectron2 does. None of it is a diffusion UNet or uses
//! the text-to-image pipeline.

pub mod agreement;
pub mod boxes;
pub mod config;
pub mod detector;
pub mod head;
pub mod mask_head;
pub mod postprocess;
pub mod preprocess;
pub mod results;
pub mod sampler;
pub mod schedule;

pub use config::{
    Activation, Architecture, BackboneConfig, ConfigWarning, DiffusionInstConfig,
    DynamicHeadConfig, FpnConfig, FuseType, ImageFormat, InputConfig, Norm, PoolerConfig,
    PoolerType, ResNetConfig, SwinConfig, SwinSize,
};
pub use detector::{DetectOptions, DiffusionInst, ImageFeatures};
#[cfg(test)]
mod tests;
pub use postprocess::Detection;
