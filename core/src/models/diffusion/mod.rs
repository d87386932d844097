//! The diffusion models, each mirroring its diffusers module tree.

pub mod controlnet;
pub mod resnet_block_2d;
pub mod unet;
pub mod vae;
