//! The diffusion models, each mirroring its diffusers/transformers module tree.

pub mod controlnet;
pub mod resnet;
pub mod unet;
pub mod vae;
