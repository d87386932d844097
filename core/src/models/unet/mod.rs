//! diffusers' `UNet2DConditionModel` (SD 1.x, 2.x and SDXL).

mod attention;
mod blocks;
mod config;
mod embeddings;
mod probe;
mod unet_2d_condition;

pub use attention::{Attention, Transformer2DConfig, Transformer2DModel};
pub use config::{PerBlock, UNet2DConditionConfig};
pub use embeddings::{TimestepEmbedding, timestep_features};
pub use probe::{CrossAttentionProbe, ProbeMap, UNetLocation};
pub use unet_2d_condition::{AddedCond, UNet2DConditionModel, UNetTrace};
