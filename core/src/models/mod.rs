//! The models, grouped by family; each model mirrors its reference implementation's module
//! tree, so weight paths read as field paths.
//!
//! - [`diffusion`]: Stable Diffusion's UNet, ControlNet and VAE (diffusers).
//! - detection (to come): detectron2's ResNet/FPN backbone and the DiffusionInst heads.

pub mod diffusion;
