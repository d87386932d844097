//! detectron2's `BasicStem`.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use super::ConvNorm;
use crate::diffusioninst::Norm;
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::weights::VarBuilder;

/// `conv1` (7×7, stride 2, padding 3, no bias, with norm), ReLU, then 3×3 max pooling with
/// stride 2 and padding 1: stride 4 in all.
#[derive(Module, Debug)]
pub struct BasicStem {
    conv1: ConvNorm,
}

impl BasicStem {
    /// Reads `conv1.weight` and `conv1.norm.*`.
    pub fn load(vb: &VarBuilder, c_in: usize, c_out: usize, norm: Norm) -> Result<Self> {
        let options = Conv2dOptions {
            stride: 2,
            padding: 3,
            bias: false,
            ..Conv2dOptions::default()
        };
        Ok(Self {
            conv1: ConvNorm::load(&vb.pp("conv1"), c_in, c_out, 7, options, norm)?,
        })
    }

    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, ⌈H/4⌉, ⌈W/4⌉]` (for `H`, `W` even)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.conv1.forward(x));
        max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        )
    }
}
