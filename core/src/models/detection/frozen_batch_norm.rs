//! detectron2's `FrozenBatchNorm2d`: batch norm with fixed statistics and affine parameters.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::error::Result;
use crate::weights::VarBuilder;

/// detectron2's `FrozenBatchNorm2d` (`weight`, `bias`, `running_mean`, `running_var`), folded
/// as detectron2 folds it at inference: `scale = weight · (running_var + eps)^-½`,
/// `shift = bias − running_mean · scale`, `y = x · scale + shift`. A `BatchNorm2d` in eval mode
/// computes the same (its `num_batches_tracked` is not read).
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d {
    scale: Param<Tensor<4>>,
    shift: Param<Tensor<4>>,
}

impl FrozenBatchNorm2d {
    /// detectron2's epsilon.
    pub const EPS: f64 = 1e-5;

    /// Reads the four `[channels]` buffers.
    pub fn load(vb: &VarBuilder, channels: usize) -> Result<Self> {
        let weight = vb.get("weight", [channels])?;
        let bias = vb.get("bias", [channels])?;
        let mean = vb.get("running_mean", [channels])?;
        let var = vb.get("running_var", [channels])?;
        let scale = weight * (var + Self::EPS).sqrt().recip();
        let shift = bias - mean * scale.clone();
        Ok(Self {
            scale: Param::from_tensor(scale.reshape([1, channels, 1, 1])),
            shift: Param::from_tensor(shift.reshape([1, channels, 1, 1])),
        })
    }

    /// # Shapes
    /// `[B, C, H, W]` → same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        x * self.scale.val() + self.shift.val()
    }
}
