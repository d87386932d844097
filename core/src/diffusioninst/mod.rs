//! DiffusionInst: instance segmentation by denoising boxes, and DiffusionDet, its box-only
//! parent, run from their original detectron2 configs and checkpoints.
//!
//! So far this folder holds the configuration ([`config`]): the original YAML files read as
//! detectron2 reads them, typed, with every default inference uses, and the test-time input
//! path ([`preprocess`]). The backbone is `models::detection::Backbone`; the dynamic head, the
//! box sampler and the mask head come next; none of it is a diffusion UNet or uses the
//! text-to-image pipeline.

pub mod config;
pub mod preprocess;

pub use config::{
    Activation, Architecture, BackboneConfig, ConfigWarning, DiffusionInstConfig,
    DynamicHeadConfig, FpnConfig, FuseType, ImageFormat, InputConfig, Norm, PoolerConfig,
    PoolerType, ResNetConfig, SwinConfig, SwinSize,
};
