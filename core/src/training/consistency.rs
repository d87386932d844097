//! ControlNet++'s consistency reward (Li et al., ECCV 2024), with the shapes world's
//! saturation rule as its segmenter: the image a ControlNet steers towards should segment
//! back into the colour map it was given.
//!
//! As ControlNet++'s efficient reward fine-tuning, the image is not sampled: the batch items
//! whose timestep is at most `max_timestep` (lightly noised training latents) are denoised in
//! one step (the scheduler's `pred_original_sample`) and decoded by the frozen VAE. The
//! segmenter is the rule the truth benchmark scores by: a pixel is an object's when its HSV
//! saturation is at least [`SATURATION_THRESHOLD`]; softened, its logit is
//! `(saturation − threshold) / TEMPERATURE`. The reward loss is the binary cross-entropy of
//! those logits against the colour map's labelled (non-black) pixels, averaged over pixels
//! and rewarded items, and weighted beside the denoising loss.

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::noising::Noising;
use crate::models::diffusion::vae::AutoencoderKL;

/// The saturation from which a pixel counts as an object's (`bench --truth`'s rule).
pub const SATURATION_THRESHOLD: f32 = 0.4;
/// The softening of the segmenter's threshold, in saturation.
pub const TEMPERATURE: f32 = 0.05;
/// A colour-map pixel is labelled when one of its channels exceeds this (black is
/// unlabelled).
const LABELLED: f32 = 0.02;

/// The reward's settings and the frozen VAE that decodes the one-step predictions.
#[derive(Debug, Clone, Copy)]
pub struct ConsistencyReward<'a> {
    pub vae: &'a AutoencoderKL,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub vae_dtype: DType,
    /// Weight of the reward loss beside the denoising loss.
    pub weight: f32,
    /// Only items with a timestep at most this are rewarded.
    pub max_timestep: usize,
}

impl ConsistencyReward<'_> {
    /// The batch items the reward scores: those whose timestep is at most `max_timestep`.
    pub fn rewarded(&self, timesteps: &[usize]) -> Vec<usize> {
        (0..timesteps.len())
            .filter(|&i| timesteps[i] <= self.max_timestep)
            .collect()
    }

    /// The one-step predictions of the items `rewarded`, decoded.
    ///
    /// # Shapes
    /// `noisy`, `pred`: `[B, C, h, w]` → `[rewarded, 3, H, W]` in about [0, 1]
    pub fn predicted_images(
        &self,
        noising: &Noising,
        noisy: Tensor<4>,
        pred: Tensor<4>,
        timesteps: &[usize],
        rewarded: &[usize],
    ) -> Tensor<4> {
        let index = rows(rewarded, &noisy.device());
        let ts: Vec<usize> = rewarded.iter().map(|&i| timesteps[i]).collect();
        let x0 =
            noising.predicted_sample(&noisy.select(0, index.clone()), &pred.select(0, index), &ts);
        let mut z = x0 / self.scaling_factor;
        if let Some(shift) = self.shift_factor {
            z = z + shift;
        }
        self.vae.decode(z.cast(self.vae_dtype)).cast(DType::F32) / 2.0 + 0.5
    }

    /// The weighted reward loss of one micro-batch, or `None` when no item's timestep is
    /// low enough.
    ///
    /// # Shapes
    /// `noisy`, `pred`: `[B, C, h, w]`, `colors`: `[B, 3, H, W]` in [0, 1] → `[1]`
    pub fn loss(
        &self,
        noising: &Noising,
        noisy: Tensor<4>,
        pred: Tensor<4>,
        timesteps: &[usize],
        colors: &Tensor<4>,
    ) -> Option<Tensor<1>> {
        let rewarded = self.rewarded(timesteps);
        if rewarded.is_empty() {
            return None;
        }
        let image = self.predicted_images(noising, noisy, pred, timesteps, &rewarded);
        let target = labelled(&colors.clone().select(0, rows(&rewarded, &colors.device())));
        Some(saturation_bce(image, target) * self.weight)
    }
}

/// `indices` as an index tensor for `select`.
fn rows(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(indices.iter().map(|&i| i as i64).collect(), [indices.len()]),
        device,
    )
}

/// The soft segmenter's logits: `(saturation − threshold) / temperature` per pixel, with
/// HSV saturation `(max − min) / max` over the channels.
///
/// # Shapes
/// `[B, 3, H, W]` in about [0, 1] → `[B, 1, H, W]`
pub fn saturation_logits(image: Tensor<4>) -> Tensor<4> {
    let max = image.clone().max_dim(1);
    let min = image.min_dim(1);
    let saturation = (max.clone() - min) / max.clamp_min(1e-3);
    (saturation - SATURATION_THRESHOLD) / TEMPERATURE
}

/// The labelled pixels of colour maps, 1 or 0.
///
/// # Shapes
/// `[B, 3, H, W]` in [0, 1] → `[B, 1, H, W]`
pub fn labelled(colors: &Tensor<4>) -> Tensor<4> {
    colors.clone().max_dim(1).greater_elem(LABELLED).float()
}

/// `F.binary_cross_entropy_with_logits(saturation_logits(image), target)`, the mean over
/// pixels.
///
/// # Shapes
/// `image`: `[B, 3, H, W]`, `target`: `[B, 1, H, W]` → `[1]`
pub fn saturation_bce(image: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let z = saturation_logits(image);
    let loss = -(target.clone() * log_sigmoid(z.clone()) + (-target + 1.0) * log_sigmoid(-z));
    loss.mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(pixels: &[[f32; 3]]) -> Tensor<4> {
        let n = pixels.len();
        let mut data = vec![0.0; 3 * n];
        for (i, p) in pixels.iter().enumerate() {
            for c in 0..3 {
                data[c * n + i] = p[c];
            }
        }
        Tensor::from_data(TensorData::new(data, [1, 3, 1, n]), &Device::default())
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    #[test]
    fn logits_follow_hsv_saturation() {
        // saturations 1, 0.5, 0 (grey) and 0 (black)
        let img = image(&[[1.0, 0.0, 0.0], [0.8, 0.4, 0.6], [0.5, 0.5, 0.5], [0.0; 3]]);
        let z = values(saturation_logits(img));
        let expect = [0.6 / TEMPERATURE, 0.1 / TEMPERATURE, -8.0, -8.0];
        for (a, b) in z.iter().zip(expect) {
            assert!((a - b).abs() < 1e-4, "{z:?}");
        }
    }

    #[test]
    fn labelled_pixels_are_the_non_black_ones() {
        let colors = image(&[[0.0; 3], [0.0, 0.0, 0.5], [0.9, 0.1, 0.3]]);
        assert_eq!(values(labelled(&colors)), [0.0, 1.0, 1.0]);
    }

    #[test]
    fn bce_matches_a_hand_computed_case() {
        // one saturated pixel labelled, one grey pixel unlabelled: both agree
        let img = image(&[[0.8, 0.4, 0.6], [0.5, 0.5, 0.5]]);
        let target = Tensor::from_data(
            TensorData::new(vec![1.0f32, 0.0], [1, 1, 1, 2]),
            &Device::default(),
        );
        let got: f32 = saturation_bce(img.clone(), target.clone()).into_scalar();
        let softplus = |x: f32| (1.0 + x.exp()).ln();
        let expect = (softplus(-0.1 / TEMPERATURE) + softplus(-8.0)) / 2.0;
        assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
        // the same pixels with the labels swapped cost more
        let swapped = Tensor::from_data(
            TensorData::new(vec![0.0f32, 1.0], [1, 1, 1, 2]),
            &Device::default(),
        );
        let worse: f32 = saturation_bce(img, swapped).into_scalar();
        assert!(worse > got + 1.0, "{worse} vs {got}");
    }
}
