//! The VAE's training objective: reconstruction of a posterior sample plus a weighted KL
//! divergence to the standard normal.

use burn::tensor::Tensor;

use super::noising::mse_loss;
use crate::models::diffusion::vae::AutoencoderKL;

/// The terms of [`vae_loss`], each `[1]`.
#[derive(Debug, Clone)]
pub struct VaeLoss {
    /// `reconstruction + kl_weight · kl`.
    pub total: Tensor<1>,
    /// `F.mse_loss(decode(z), x)` with `z = mean + std·ε`.
    pub reconstruction: Tensor<1>,
    /// `posterior.kl().mean()`: the KL summed over a latent, averaged over the batch.
    pub kl: Tensor<1>,
}

/// The VAE's loss on `image` (in [-1, 1]) with posterior noise `eps`, as diffusers'
/// `DiagonalGaussianDistribution` computes its sample and KL.
///
/// # Shapes
/// `image`: `[B, 3, H, W]`, `eps`: `[B, latent_channels, H/f, W/f]`
pub fn vae_loss(vae: &AutoencoderKL, image: Tensor<4>, eps: Tensor<4>, kl_weight: f64) -> VaeLoss {
    let posterior = vae.encode(image.clone());
    let l = posterior.mean.dims()[1];
    let logvar = posterior.moments.clone().narrow(1, l, l).clamp(-30.0, 20.0);
    let z = posterior.mean.clone() + posterior.std * eps;
    let reconstruction = mse_loss(vae.decode(z), image);
    let per_item = (posterior.mean.clone() * posterior.mean + logvar.clone().exp() - 1.0 - logvar)
        .sum_dim(3)
        .sum_dim(2)
        .sum_dim(1)
        * 0.5;
    let kl = per_item.mean();
    let total = reconstruction.clone() + kl.clone() * kl_weight;
    VaeLoss {
        total,
        reconstruction,
        kl,
    }
}
