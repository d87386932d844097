//! burn layers built from stored weights, with PyTorch's parameter names and layouts.

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::silu;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor};

use crate::error::Result;
use crate::weights::VarBuilder;

/// CLIP's `quick_gelu`, `x · sigmoid(1.702·x)`, fused on the CPU backend.
///
/// # Shapes
/// any → same
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    if let Some(y) = crate::cpu::quick_gelu(&x) {
        return y;
    }
    x.clone() * burn::tensor::activation::sigmoid(x * 1.702)
}

/// Multi-head scaled dot-product attention over `heads` heads of the channels, as
/// diffusers' and transformers' attention layers compute it between their projections;
/// with `causal`, token `i` sees tokens `0..=i` only. With `upcast`, scores and softmax run
/// in f32 whatever the inputs' dtype. Fused on the CPU backend (see [`crate::cpu::attention`]).
///
/// # Shapes
/// `q`: `[B, N, H·D]`, `k`, `v`: `[B, M, H·D]` → `[B, N, H·D]`
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    causal: bool,
    upcast: bool,
) -> Tensor<3> {
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    if let Some(out) = crate::cpu::attention(&q, &k, &v, heads, causal) {
        return out;
    }
    let [b, n, c] = q.dims();
    let split = |t: Tensor<3>| {
        let len = t.dims()[1];
        t.reshape([b, len, heads, c / heads]).swap_dims(1, 2)
    };
    let dtype = q.dtype();
    let compute = if upcast { DType::F32 } else { dtype };
    let options = AttentionModuleOptions {
        is_causal: causal,
        ..Default::default()
    };
    let out = burn::tensor::module::attention(
        split(q.cast(compute)),
        split(k.cast(compute)),
        split(v.cast(compute)),
        None,
        None,
        options,
    );
    out.cast(dtype).swap_dims(1, 2).reshape([b, n, c])
}

/// The exact (erf) GELU, fused on the CPU backend.
///
/// # Shapes
/// any → same
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    if let Some(y) = crate::cpu::gelu(&x) {
        return y;
    }
    burn::tensor::activation::gelu(x)
}

/// `nn.Linear(d_in, d_out)`: PyTorch stores the weight as `[d_out, d_in]`, burn as `[d_in, d_out]`.
pub fn linear(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    let weight = vb.get_transposed("weight", [d_out, d_in])?;
    let bias = if bias {
        Some(Param::from_tensor(vb.get("bias", [d_out])?))
    } else {
        None
    };
    Ok(Linear {
        linear: burn::nn::Linear {
            weight: Param::from_tensor(weight),
            bias,
        },
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
    conv2d_with(
        vb,
        c_in,
        c_out,
        kernel,
        Conv2dOptions {
            stride,
            padding,
            ..Conv2dOptions::default()
        },
    )
}

/// The arguments of `nn.Conv2d` beyond channels and kernel size (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: usize,
    /// Symmetric, on every side.
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }
}

/// `nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias)`: the weight is
/// `[c_out, c_in / groups, kernel, kernel]`.
pub fn conv2d_with(
    vb: &VarBuilder,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    o: Conv2dOptions,
) -> Result<Conv2d> {
    let bias = if o.bias {
        Some(Param::from_tensor(vb.get("bias", [c_out])?))
    } else {
        None
    };
    let p = o.padding;
    Ok(Conv2d {
        conv: burn::nn::conv::Conv2d {
            weight: Param::from_tensor(channels_last(
                vb.get("weight", [c_out, c_in / o.groups, kernel, kernel])?,
            )),
            bias,
            stride: [o.stride, o.stride],
            kernel_size: [kernel, kernel],
            dilation: [o.dilation, o.dilation],
            groups: o.groups,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
        },
        prepared: PreparedWeights::default(),
    })
}

/// A convolution weight as burn's CubeCL convolutions read it: on CubeCL devices stored
/// channels-last (the same values, `[O, kh, kw, I]` in memory), which they would otherwise
/// copy it into on every call; elsewhere unchanged.
///
/// # Shapes
/// `[O, I, kh, kw]` → `[O, I, kh, kw]`
fn channels_last(weight: Tensor<4>) -> Tensor<4> {
    if !maskforge_shaders::resample::is_cube_device(&weight.device()) {
        return weight;
    }
    let [o, i, kh, kw] = weight.dims();
    // Reshaping the permuted view copies it in that order; the rest are views.
    weight
        .permute([0, 2, 3, 1])
        .reshape([o, kh * kw * i])
        .reshape([o, kh, kw, i])
        .permute([0, 3, 1, 2])
}

/// `nn.Linear`: burn's layer, multiplied through [`crate::cpu`]'s sgemm on the CPU backend.
#[derive(Module, Debug)]
pub struct Linear {
    linear: burn::nn::Linear,
}

impl Linear {
    /// # Shapes
    /// `[..., d_in]` → `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
        if let Some(y) = crate::cpu::linear(&self.linear, &x) {
            return y;
        }
        self.linear.forward(x)
    }
}

/// `nn.Conv2d`: burn's layer, run through [`crate::cpu`]'s sgemm convolution on the CPU
/// backend when it has stride 1.
#[derive(Module, Debug)]
pub struct Conv2d {
    conv: burn::nn::conv::Conv2d,
    #[module(skip)]
    prepared: PreparedWeights,
}

/// A layer's weights as a backend prepared them for itself (oneDNN's layout on the CPU
/// backend), made on first use and shared by clones of the layer.
#[derive(Clone, Default)]
#[cfg_attr(
    any(not(feature = "native"), target_arch = "wasm32"),
    expect(dead_code, reason = "only the native CPU convolution reads it")
)]
pub struct PreparedWeights(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for PreparedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedWeights")
    }
}

impl Conv2d {
    /// The same convolution with other padding.
    pub fn with_padding(mut self, padding: PaddingConfig2d) -> Self {
        self.conv.padding = padding;
        self
    }

    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, H_out, W_out]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
        if let Some(y) = crate::cpu::conv2d(&self.conv, &x, &self.prepared.0) {
            return y;
        }
        self.conv.forward(x)
    }
}

/// `nn.GroupNorm(groups, channels, eps)` with affine parameters.
pub fn group_norm(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
    Ok(GroupNorm {
        norm: burn::nn::GroupNorm {
            gamma: Some(Param::from_tensor(vb.get("weight", [channels])?)),
            beta: Some(Param::from_tensor(vb.get("bias", [channels])?)),
            num_groups: groups,
            num_channels: channels,
            epsilon: eps,
            affine: true,
        },
    })
}

/// `nn.GroupNorm`: burn's layer, fused with the SiLU that usually follows it into one pass on
/// the CPU backend (see [`crate::cpu::group_norm`]) and into one kernel on CubeCL devices (see
/// [`maskforge_shaders::group_norm`]).
#[derive(Module, Debug)]
pub struct GroupNorm {
    norm: burn::nn::GroupNorm,
}

impl GroupNorm {
    /// # Shapes
    /// `[B, C, ...]` → `[B, C, ...]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.fused(x, false) {
            Ok(y) => y,
            Err(x) => self.norm.forward(x),
        }
    }

    /// `silu(self.forward(x))`.
    ///
    /// # Shapes
    /// `[B, C, ...]` → `[B, C, ...]`
    pub fn forward_silu<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.fused(x, true) {
            Ok(y) => y,
            Err(x) => silu(self.norm.forward(x)),
        }
    }

    /// The norm (then SiLU when `silu`) in one pass where a backend has one, else `x` back.
    fn fused<const D: usize>(
        &self,
        x: Tensor<D>,
        silu: bool,
    ) -> std::result::Result<Tensor<D>, Tensor<D>> {
        #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
        if let Some(y) = crate::cpu::group_norm(&self.norm, &x, silu) {
            return Ok(y);
        }
        let (Some(gamma), Some(beta)) = (&self.norm.gamma, &self.norm.beta) else {
            return Err(x);
        };
        let params = maskforge_shaders::group_norm::GroupNormParams {
            groups: self.norm.num_groups,
            epsilon: self.norm.epsilon,
            silu,
        };
        match maskforge_shaders::group_norm::group_norm(x.clone(), gamma.val(), beta.val(), params)
        {
            Some(y) => Ok(y),
            None => Err(x),
        }
    }
}

/// `nn.LayerNorm(d, eps)` over the last dimension, in one fused pass on the CPU backend.
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
        let (weight, bias) = (self.weight.val(), self.bias.val());
        #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
        if let Some(y) = crate::cpu::layer_norm(&x, &weight, &bias, self.eps) {
            return y;
        }
        burn::tensor::module::layer_norm(x, weight, Some(bias), self.eps)
    }
}

/// `nn.MultiheadAttention(d, heads)` (batch second in PyTorch, batch first here): the packed
/// input projection `in_proj_weight` `[3d, d]` / `in_proj_bias` `[3d]` (q, k, v stacked) and
/// `out_proj`.
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl MultiheadAttention {
    /// Reads `in_proj_weight`, `in_proj_bias` and `out_proj.*` for `d` channels.
    pub fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        let weight = vb.get_transposed("in_proj_weight", [3 * d, d])?;
        let bias = vb.get("in_proj_bias", [3 * d])?;
        Ok(Self {
            in_proj: Linear {
                linear: burn::nn::Linear {
                    weight: Param::from_tensor(weight),
                    bias: Some(Param::from_tensor(bias)),
                },
            },
            out_proj: linear(&vb.pp("out_proj"), d, d, true)?,
            heads,
        })
    }

    /// Self-attention among the `N` tokens of each batch item.
    ///
    /// # Shapes
    /// `[B, N, d]` → `[B, N, d]`
    pub fn forward_self(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        let qkv = self.in_proj.forward(x);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(2, i * d, d));
        self.out_proj
            .forward(attention(q, k, v, self.heads, false, false))
    }
}
