//! diffusers' `UNet2DConditionModel` (SD 1.x, 2.x and SDXL).

mod attention;
pub(crate) mod blocks;
mod config;
mod embeddings;
mod probe;
mod text_time_embedding;
mod unet_2d_condition;

pub use attention::{Attention, Transformer2DConfig, Transformer2DModel};
pub use config::{BlockSizes, PerBlock, UNet2DConditionConfig};
pub use embeddings::{
    AddedCond, AdditionEmbedding, ConditioningEmbedding, TimestepEmbedding, timestep_features,
};
pub use probe::{CrossAttentionProbe, ProbeMap, UNetLocation};
pub use text_time_embedding::{AttentionPooling, TextTimeEmbedding};
pub use unet_2d_condition::{ControlResiduals, UNet2DConditionModel, UNetHooks, UNetTrace};
