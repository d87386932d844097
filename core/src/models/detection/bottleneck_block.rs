//! detectron2's `BottleneckBlock` (ResNet-50/101/152, ResNeXt).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::ConvNorm;
use crate::diffusioninst::Norm;
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::weights::VarBuilder;

/// Sizes of a [`BottleneckBlock`].
#[derive(Debug, Clone, Copy)]
pub struct BottleneckConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub bottleneck_channels: usize,
    pub stride: usize,
    /// Groups of the 3×3 convolution.
    pub groups: usize,
    /// The stride in the first 1×1 convolution (MSRA) rather than the 3×3 (torchvision).
    pub stride_in_1x1: bool,
    /// Dilation (and padding) of the 3×3 convolution.
    pub dilation: usize,
    pub norm: Norm,
}

/// 1×1 `conv1`, 3×3 `conv2` (grouped, dilated), 1×1 `conv3`, each with its norm and ReLU
/// between, plus the input or its 1×1 `shortcut` convolution when the channels change; ReLU
/// at the end.
#[derive(Module, Debug)]
pub struct BottleneckBlock {
    conv1: ConvNorm,
    conv2: ConvNorm,
    conv3: ConvNorm,
    shortcut: Option<ConvNorm>,
}

impl BottleneckBlock {
    /// Reads `conv1`, `conv2`, `conv3` and, when the channels change, `shortcut`.
    pub fn load(vb: &VarBuilder, c: BottleneckConfig) -> Result<Self> {
        let (i, b, o) = (c.in_channels, c.bottleneck_channels, c.out_channels);
        let (stride_1x1, stride_3x3) = if c.stride_in_1x1 {
            (c.stride, 1)
        } else {
            (1, c.stride)
        };
        let plain = |stride| Conv2dOptions {
            stride,
            bias: false,
            ..Conv2dOptions::default()
        };
        let conv3x3 = Conv2dOptions {
            padding: c.dilation,
            dilation: c.dilation,
            groups: c.groups,
            ..plain(stride_3x3)
        };
        Ok(Self {
            conv1: ConvNorm::load(&vb.pp("conv1"), i, b, 1, plain(stride_1x1), c.norm)?,
            conv2: ConvNorm::load(&vb.pp("conv2"), b, b, 3, conv3x3, c.norm)?,
            conv3: ConvNorm::load(&vb.pp("conv3"), b, o, 1, plain(1), c.norm)?,
            shortcut: (i != o)
                .then(|| ConvNorm::load(&vb.pp("shortcut"), i, o, 1, plain(c.stride), c.norm))
                .transpose()?,
        })
    }

    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(self.conv1.forward(x.clone()));
        let h = relu(self.conv2.forward(h));
        let h = self.conv3.forward(h);
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        relu(h + shortcut)
    }
}
