//! The models, grouped by family; each model mirrors its reference implementation's module
//! tree, so weight paths read as field paths. Entry `i` of a fixed-length `ModuleList` `name`
//! (`to_out.0`, `ff.net.2`, `downsamplers.0`) is the field `name_i`.
//!
//! - [`diffusion`]: Stable Diffusion's UNet, ControlNet and VAE (diffusers).
//! - [`detection`]: detectron2's ResNet/FPN backbone for DiffusionInst (its heads to come).

pub mod detection;
pub mod diffusion;
