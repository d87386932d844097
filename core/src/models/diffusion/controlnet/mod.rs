//! diffusers' `ControlNetModel` (SD 1.x/2.x and SDXL): the UNet's down path plus a
//! conditioning-image encoder, producing residuals for the UNet's skip connections.

mod conditioning_embedding;
mod config;
mod controlnet_model;

pub use conditioning_embedding::ControlNetConditioningEmbedding;
pub use config::ControlNetConfig;
pub use controlnet_model::ControlNetModel;
