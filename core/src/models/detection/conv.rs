//! detectron2's `layers.Conv2d`: a convolution with an optional normalisation (`conv.norm`).

use burn::module::Module;
use burn::tensor::Tensor;

use super::FrozenBatchNorm2d;
use crate::diffusioninst::Norm;
use crate::error::{Error, Result};
use crate::nn::{Conv2d, Conv2dOptions, conv2d_with};
use crate::weights::VarBuilder;

/// detectron2's `Conv2d` wrapper: `nn.Conv2d` whose `norm` child (keys `<conv>.norm.*`) is
/// applied to its output. Activations are left to the caller, as the ResNet blocks do.
#[derive(Module, Debug)]
pub struct ConvNorm {
    conv: Conv2d,
    norm: Option<FrozenBatchNorm2d>,
}

impl ConvNorm {
    /// Reads `weight` (and `bias` when `options.bias`) and, unless `norm` is none, `norm.*`.
    /// Frozen and eval-mode batch norms are supported; GN and LN are refused.
    pub fn load(
        vb: &VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        options: Conv2dOptions,
        norm: Norm,
    ) -> Result<Self> {
        let norm = match norm {
            Norm::None => None,
            Norm::FrozenBatchNorm | Norm::BatchNorm => {
                Some(FrozenBatchNorm2d::load(&vb.pp("norm"), c_out)?)
            }
            Norm::GroupNorm | Norm::LayerNorm => {
                return Err(Error::Invalid(format!(
                    "{}: {norm:?} normalisation is not supported in detectron2 convolutions",
                    vb.path("norm")
                )));
            }
        };
        Ok(Self {
            conv: conv2d_with(vb, c_in, c_out, kernel, options)?,
            norm,
        })
    }

    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, H_out, W_out]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.norm {
            Some(norm) => norm.forward(y),
            None => y,
        }
    }
}
