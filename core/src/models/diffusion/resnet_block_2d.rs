//! diffusers' `resnet.py` blocks shared by the UNet and the VAE: `ResnetBlock2D`, `Downsample2D`,
//! `Upsample2D`.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm, Linear, conv2d, group_norm, linear};
use crate::weights::VarBuilder;

/// diffusers' `ResnetBlock2D` with the default time-embedding handling (`time_emb_proj` added
/// after `conv1`). The VAE's blocks have no time embedding.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

/// Sizes of a [`ResnetBlock2D`].
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding, `None` for the VAE.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Reads the block's weights (`norm1`, `conv1`, `time_emb_proj`, `norm2`, `conv2`, `conv_shortcut`).
    pub fn load(vb: &VarBuilder, c: ResnetConfig) -> Result<Self> {
        let (i, o) = (c.in_channels, c.out_channels);
        Ok(Self {
            norm1: group_norm(&vb.pp("norm1"), c.groups, i, c.eps)?,
            conv1: conv2d(&vb.pp("conv1"), i, o, 3, 1, 1)?,
            time_emb_proj: c
                .temb_channels
                .map(|t| linear(&vb.pp("time_emb_proj"), t, o, true))
                .transpose()?,
            norm2: group_norm(&vb.pp("norm2"), c.groups, o, c.eps)?,
            conv2: conv2d(&vb.pp("conv2"), o, o, 3, 1, 1)?,
            conv_shortcut: (i != o)
                .then(|| conv2d(&vb.pp("conv_shortcut"), i, o, 1, 1, 0))
                .transpose()?,
            output_scale_factor: c.output_scale_factor,
        })
    }

    /// # Shapes
    /// `x`: `[B, C_in, H, W]`, `temb`: `[B, T]` → `[B, C_out, H, W]`
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(silu(temb.clone()));
            h = h + t.unsqueeze_dims::<4>(&[2, 3]);
        }
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        let out = shortcut + h;
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}

/// `Downsample2D` with a strided 3×3 convolution. The UNet pads by 1 on every side; the VAE
/// (`padding=0`) pads only bottom and right by 1.
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    /// Reads `conv`; `symmetric_padding` is true for the UNet, false for the VAE encoder.
    pub fn load(vb: &VarBuilder, channels: usize, symmetric_padding: bool) -> Result<Self> {
        let mut conv = conv2d(&vb.pp("conv"), channels, channels, 3, 2, 1)?;
        if !symmetric_padding {
            conv = conv.with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1));
        }
        Ok(Self { conv })
    }

    /// # Shapes
    /// `[B, C, H, W]` → `[B, C, ⌈H/2⌉, ⌈W/2⌉]` (UNet) or `[B, C, H/2, W/2]` (VAE)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// `Upsample2D`: nearest-neighbour interpolation, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Reads `conv`.
    pub fn load(vb: &VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            conv: conv2d(&vb.pp("conv"), channels, channels, 3, 1, 1)?,
        })
    }

    /// Upsamples to `size` (the skip connection's size in the UNet), or by 2.
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `[B, C, size.0, size.1]` or `[B, C, 2H, 2W]`
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([2 * h, 2 * w]);
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
        );
        self.conv.forward(x)
    }
}
