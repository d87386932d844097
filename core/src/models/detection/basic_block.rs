//! detectron2's `BasicBlock` (ResNet-18/34).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::ConvNorm;
use crate::diffusioninst::Norm;
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::weights::VarBuilder;

/// Two 3×3 convolutions with norms (`conv1` strided), ReLU between, plus the input, or a 1×1
/// `shortcut` convolution of it when the channels change; ReLU at the end.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: ConvNorm,
    conv2: ConvNorm,
    shortcut: Option<ConvNorm>,
}

impl BasicBlock {
    /// Reads `conv1`, `conv2` and, when `c_in != c_out`, `shortcut`.
    pub fn load(
        vb: &VarBuilder,
        c_in: usize,
        c_out: usize,
        stride: usize,
        norm: Norm,
    ) -> Result<Self> {
        let conv = |stride, padding| Conv2dOptions {
            stride,
            padding,
            bias: false,
            ..Conv2dOptions::default()
        };
        Ok(Self {
            conv1: ConvNorm::load(&vb.pp("conv1"), c_in, c_out, 3, conv(stride, 1), norm)?,
            conv2: ConvNorm::load(&vb.pp("conv2"), c_out, c_out, 3, conv(1, 1), norm)?,
            shortcut: (c_in != c_out)
                .then(|| ConvNorm::load(&vb.pp("shortcut"), c_in, c_out, 1, conv(stride, 0), norm))
                .transpose()?,
        })
    }

    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.conv2.forward(relu(self.conv1.forward(x.clone())));
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        relu(out + shortcut)
    }
}
