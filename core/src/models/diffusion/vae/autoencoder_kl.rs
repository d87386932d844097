//! `AutoencoderKL`: encoder and `quant_conv` to a diagonal Gaussian, `post_quant_conv` and
//! decoder back to pixels.

use burn::module::Module;
use burn::tensor::Tensor;

use super::config::AutoencoderKLConfig;
use super::decoder::Decoder;
use super::encoder::Encoder;
use crate::error::Result;
use crate::nn::{Conv2d, conv2d};
use crate::weights::VarBuilder;

/// The encoder's output distribution over latents.
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    /// `[B, latent_channels, h, w]`
    pub mean: Tensor<4>,
    /// `exp(logvar / 2)` with logvar clamped to [-30, 20], as diffusers: same shape as `mean`.
    pub std: Tensor<4>,
    /// `quant_conv`'s output `[mean | logvar]`: `[B, 2·latent_channels, h, w]`.
    pub moments: Tensor<4>,
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKL {
    /// Builds the VAE of `config` from `vb`.
    pub fn load(vb: &VarBuilder, config: &AutoencoderKLConfig) -> Result<Self> {
        let l = config.latent_channels;
        Ok(Self {
            encoder: Encoder::load(&vb.pp("encoder"), config)?,
            decoder: Decoder::load(&vb.pp("decoder"), config)?,
            quant_conv: config
                .use_quant_conv
                .then(|| conv2d(&vb.pp("quant_conv"), 2 * l, 2 * l, 1, 1, 0))
                .transpose()?,
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| conv2d(&vb.pp("post_quant_conv"), l, l, 1, 1, 0))
                .transpose()?,
        })
    }

    /// The same VAE with the encoder and `quant_conv` left out of training (their parameters
    /// no longer record gradients): fine-tuning then moves only the decoder, so the latent
    /// space, and every UNet trained on it, stays as it was (how Stability fine-tuned
    /// `sd-vae-ft-mse`).
    pub fn freeze_encoder(self) -> Self {
        Self {
            encoder: self.encoder.no_grad(),
            quant_conv: self.quant_conv.map(|q| q.no_grad()),
            ..self
        }
    }

    /// Encodes images in [-1, 1].
    ///
    /// # Shapes
    /// `[B, 3, H, W]` → distribution over `[B, latent_channels, H/f, W/f]`
    pub fn encode(&self, image: Tensor<4>) -> LatentDistribution {
        let mut moments = self.encoder.forward(image);
        if let Some(q) = &self.quant_conv {
            moments = q.forward(moments);
        }
        let [mean, logvar] = moments
            .clone()
            .chunk(2, 1)
            .try_into()
            .expect("moments split into mean and logvar");
        let std = (logvar.clamp(-30.0, 20.0) * 0.5).exp();
        LatentDistribution { mean, std, moments }
    }

    /// Decodes unscaled latents (already divided by `scaling_factor`) to images in about [-1, 1].
    ///
    /// # Shapes
    /// `[B, latent_channels, h, w]` → `[B, 3, h·f, w·f]`
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        self.decode_traced(z).2
    }

    /// [`decode`](Self::decode) returning also the `post_quant_conv` and mid-block outputs.
    pub fn decode_traced(&self, z: Tensor<4>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(z),
            None => z,
        };
        let (mid, image) = self.decoder.forward_with_mid(z.clone());
        (z, mid, image)
    }
}
