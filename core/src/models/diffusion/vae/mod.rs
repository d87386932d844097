//! diffusers' `AutoencoderKL`: the VAE between images and latents.

mod autoencoder_kl;
mod blocks;
mod config;
mod decoder;
mod encoder;

pub use autoencoder_kl::{AutoencoderKL, LatentDistribution};
pub use config::AutoencoderKLConfig;
