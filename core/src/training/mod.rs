//! Training on burn's autodiff: the denoising objective of text-to-image UNets and
//! ControlNets, the VAE's reconstruction + KL objective, AdamW with diffusers' learning-rate schedules, EMA, and checkpoints keyed by
//! the diffusers parameter names, so that a trained model is a diffusers folder again.
//!
//! Models train in the same modules inference uses: built on an autodiff device, their CPU
//! fast paths step aside (they only take plain flex tensors) and burn's differentiable
//! kernels run instead. [`ParamNames`] recovers each parameter's stored key by building the
//! model once from [`VarBuilder::tagged`](crate::weights::VarBuilder::tagged).

pub mod adamw;
mod autoencoder;
pub mod checkpoint;
pub mod consistency;
pub mod controlnet_init;
pub mod ema;
pub mod grounding;
pub mod lr_schedule;
pub mod noising;
pub mod optimizer;
pub mod param_names;
mod text_to_image;
pub mod unet_init;

pub use adamw::{AdamW, AdamWConfig};
pub use autoencoder::{VaeLoss, vae_loss};
pub use consistency::ConsistencyReward;
pub use controlnet_init::controlnet_from_unet;
pub use ema::Ema;
pub use grounding::{GroundingTargets, grounding_loss};
pub use lr_schedule::{LrSchedule, LrScheduleKind};
pub use noising::{Noising, mse_loss};
pub use optimizer::ModelOptimizer;
pub use param_names::ParamNames;
pub use text_to_image::{DenoisingBatch, TextToImage, controlnet_loss, unet_loss};
pub use unet_init::unet_from_model;
