//! burn layers built from stored weights, with PyTorch's parameter names and layouts.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::Tensor;

use crate::error::Result;
use crate::weights::VarBuilder;

/// `nn.Linear(d_in, d_out)`: PyTorch stores the weight as `[d_out, d_in]`, burn as `[d_in, d_out]`.
pub fn linear(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    let weight = vb.get_transposed("weight", [d_out, d_in])?;
    let bias = if bias {
        Some(Param::from_tensor(vb.get("bias", [d_out])?))
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias,
    })
}

/// `nn.Conv2d(c_in, c_out, kernel, stride, padding)` with symmetric padding and a bias.
pub fn conv2d(
    vb: &VarBuilder,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Conv2d> {
    Ok(Conv2d {
        weight: Param::from_tensor(vb.get("weight", [c_out, c_in, kernel, kernel])?),
        bias: Some(Param::from_tensor(vb.get("bias", [c_out])?)),
        stride: [stride, stride],
        kernel_size: [kernel, kernel],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    })
}

/// `nn.GroupNorm(groups, channels, eps)` with affine parameters.
pub fn group_norm(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
    Ok(GroupNorm {
        gamma: Some(Param::from_tensor(vb.get("weight", [channels])?)),
        beta: Some(Param::from_tensor(vb.get("bias", [channels])?)),
        num_groups: groups,
        num_channels: channels,
        epsilon: eps,
        affine: true,
    })
}

/// `nn.LayerNorm(d, eps)` over the last dimension.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[d]`
    pub weight: Param<Tensor<1>>,
    /// `[d]`
    pub bias: Param<Tensor<1>>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Reads `weight` and `bias` of size `d`.
    pub fn load(vb: &VarBuilder, d: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: Param::from_tensor(vb.get("weight", [d])?),
            bias: Param::from_tensor(vb.get("bias", [d])?),
            eps,
        })
    }

    /// # Shapes
    /// `[..., d]` → `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::module::layer_norm(x, self.weight.val(), Some(self.bias.val()), self.eps)
    }
}
