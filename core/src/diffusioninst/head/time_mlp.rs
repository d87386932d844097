//! DiffusionDet's timestep embedding, `head.time_mlp`: `SinusoidalPositionEmbeddings(d)`, then
//! `Linear(d, 4d)` (`time_mlp.1`), GELU and `Linear(4d, 4d)` (`time_mlp.3`).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;
use crate::nn::{Linear, gelu, linear};
use crate::weights::VarBuilder;

/// `head.time_mlp`: the timestep's sinusoidal features through a two-layer MLP.
#[derive(Module, Debug)]
pub struct TimeMlp {
    /// `time_mlp.1`
    linear1: Linear,
    /// `time_mlp.3`
    linear2: Linear,
    dim: usize,
}

impl TimeMlp {
    /// Reads `1.*` and `3.*` below `vb` for the head's hidden size `dim`.
    pub fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            linear1: linear(&vb.pp("1"), dim, 4 * dim, true)?,
            linear2: linear(&vb.pp("3"), 4 * dim, 4 * dim, true)?,
            dim,
        })
    }

    /// The embedding of each image's timestep.
    ///
    /// # Shapes
    /// `t`: `[B]` → `[B, 4·dim]`
    pub fn forward(&self, t: &[i64], device: &Device) -> Tensor<2> {
        let features = sinusoidal_embedding(t, self.dim);
        let x = Tensor::<2>::from_data(TensorData::new(features, [t.len(), self.dim]), device);
        self.linear2.forward(gelu(self.linear1.forward(x)))
    }
}

/// `SinusoidalPositionEmbeddings(dim)(t)` in f32 as PyTorch computes it: frequency `i` is
/// `exp(i · −ln(10000)/(dim/2 − 1))`, and each row is `[sin(t·f), cos(t·f)]`.
///
/// # Shapes
/// `t`: `[B]` → `[B·dim]` (row-major `[B, dim]`)
pub fn sinusoidal_embedding(t: &[i64], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let step = -(10000f64.ln() / (half as f64 - 1.0)) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * step).exp()).collect();
    let mut out = Vec::with_capacity(t.len() * dim);
    for &t in t {
        let args: Vec<f32> = freqs.iter().map(|f| t as f32 * f).collect();
        out.extend(args.iter().map(|a| a.sin()));
        out.extend(args.iter().map(|a| a.cos()));
    }
    out
}
