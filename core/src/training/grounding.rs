//! Token grounding (TokenCompose, Wang et al., CVPR 2024): the cross-attention of an
//! object's name token is trained to fall on the object's pixels, the same maps MosaicFusion
//! later reads as masks.
//!
//! Per cross-attention layer, with `A` the token's probabilities (mean over heads) and `M`
//! the object's mask pooled to the layer's grid:
//! - `L_token = (1 − Σ A·M / Σ A)²`: the share of the token's attention outside the object;
//! - `L_pixel = BCE(A, M)` per pixel, which spreads the attention over the whole object
//!   rather than one pixel of it.
//!
//! The loss is `L_token + PIXEL_WEIGHT · L_pixel`, averaged over layers and items, the
//! ratio of TokenCompose's weights.

use burn::tensor::{Device, Tensor, TensorData};

use crate::models::diffusion::unet::ProbeMap;

/// `L_pixel`'s weight against `L_token` (TokenCompose's 5e-5 against 1e-3).
pub const PIXEL_WEIGHT: f32 = 0.05;

/// What grounds one micro-batch: the name token and object mask of each item.
#[derive(Debug, Clone)]
pub struct GroundingTargets {
    /// Token index per batch item; `None` leaves the item out (e.g. an empty caption).
    pub tokens: Vec<Option<usize>>,
    /// One mask per grounded item, in batch order: row-major `height × width`, in [0, 1].
    pub masks: Vec<Vec<f32>>,
    /// Size of the masks (the training images).
    pub height: usize,
    pub width: usize,
    /// Weight of the grounding loss beside the denoising loss.
    pub weight: f32,
}

impl GroundingTargets {
    /// The masks average-pooled to an `h × w` grid, which must divide the masks' size.
    ///
    /// # Shapes
    /// → `[items, h·w]`
    fn pooled(&self, h: usize, w: usize, device: &Device) -> Tensor<2> {
        let (fy, fx) = (self.height / h, self.width / w);
        let area = (fy * fx) as f32;
        let mut data = Vec::with_capacity(self.masks.len() * h * w);
        for mask in &self.masks {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0.0;
                    for dy in 0..fy {
                        let row = (y * fy + dy) * self.width;
                        sum += mask[row + x * fx..row + (x + 1) * fx].iter().sum::<f32>();
                    }
                    data.push(sum / area);
                }
            }
        }
        Tensor::from_data(TensorData::new(data, [self.masks.len(), h * w]), device)
    }
}

/// The grounding loss of the maps one probed UNet call recorded, unweighted.
///
/// # Shapes
/// each map's `probs`: `[items, h·w]` with `items == targets.masks.len()` → `[1]`
pub fn grounding_loss(maps: &[ProbeMap], targets: &GroundingTargets) -> Tensor<1> {
    let eps = 1e-6;
    let per_layer: Vec<Tensor<1>> = maps
        .iter()
        .map(|map| {
            let device = map.probs.device();
            let mask = targets.pooled(map.height, map.width, &device);
            let probs = map.probs.clone();
            let inside = (probs.clone() * mask.clone()).sum_dim(1);
            let total = probs.clone().sum_dim(1) + eps;
            let outside = inside.div(total).neg() + 1.0;
            let token = (outside.clone() * outside).mean();
            let p = probs.clamp(eps, 1.0 - eps);
            let bce = (mask.clone() * p.clone().log() + (mask.neg() + 1.0) * (p.neg() + 1.0).log())
                .neg()
                .mean();
            token + bce * PIXEL_WEIGHT
        })
        .collect();
    let layers = per_layer.len().max(1) as f32;
    Tensor::cat(per_layer, 0).sum() / layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::diffusion::unet::UNetLocation;

    fn map(probs: Vec<f32>, h: usize, w: usize) -> ProbeMap {
        let device = Device::flex();
        let items = probs.len() / (h * w);
        ProbeMap {
            location: UNetLocation::Up,
            height: h,
            width: w,
            probs: Tensor::from_data(TensorData::new(probs, [items, h * w]), &device),
        }
    }

    fn targets(mask: Vec<f32>, size: usize) -> GroundingTargets {
        GroundingTargets {
            tokens: vec![Some(5)],
            masks: vec![mask],
            height: size,
            width: size,
            weight: 1.0,
        }
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().try_to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn masks_pool_by_area() {
        // 4×4 mask, left column and the top-right pixel: pooled to 2×2.
        let mut mask = vec![0.0; 16];
        for y in 0..4 {
            mask[y * 4] = 1.0;
        }
        mask[3] = 1.0;
        let pooled = targets(mask, 4).pooled(2, 2, &Device::flex());
        let got = pooled.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got, vec![0.5, 0.25, 0.5, 0.0]);
    }

    #[test]
    fn matches_a_hand_computed_case() {
        // 2×2 grid, mask on the first two pixels, attention 0.6, 0.2, 0.1, 0.1.
        let probs = vec![0.6, 0.2, 0.1, 0.1];
        let loss = scalar(grounding_loss(
            &[map(probs.clone(), 2, 2)],
            &targets(vec![1.0, 1.0, 0.0, 0.0], 2),
        ));
        let token = (1.0f32 - 0.8 / 1.0).powi(2);
        let bce = -(0.6f32.ln() + 0.2f32.ln() + 0.9f32.ln() + 0.9f32.ln()) / 4.0;
        let want = token + PIXEL_WEIGHT * bce;
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
    }

    #[test]
    fn attention_on_the_object_costs_less_than_off_it() {
        let mask = vec![1.0, 1.0, 0.0, 0.0];
        let on = scalar(grounding_loss(
            &[map(vec![0.9, 0.9, 0.01, 0.01], 2, 2)],
            &targets(mask.clone(), 2),
        ));
        let off = scalar(grounding_loss(
            &[map(vec![0.01, 0.01, 0.9, 0.9], 2, 2)],
            &targets(mask.clone(), 2),
        ));
        // One pixel of the object only: L_token is as low, L_pixel is not.
        let dot = scalar(grounding_loss(
            &[map(vec![0.9, 0.01, 0.01, 0.01], 2, 2)],
            &targets(mask, 2),
        ));
        assert!(on < dot && dot < off, "on {on}, dot {dot}, off {off}");
    }
}
