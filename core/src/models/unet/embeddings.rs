//! Sinusoidal timestep features (`Timesteps`) and their MLP (`TimestepEmbedding`).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::Result;
use crate::nn::linear;
use crate::weights::VarBuilder;

/// diffusers' `get_timestep_embedding`, computed in f32 on the host exactly as PyTorch does.
///
/// # Shapes
/// `timesteps`: `[B]` → `[B, dim]`
pub fn timestep_features(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    let half = dim / 2;
    let ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| ((ln * i as f32) / (half as f32 - freq_shift as f32)).exp())
        .collect();
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            data.extend(cos.chain(sin));
        } else {
            data.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_data(
        TensorData::new(data, [timesteps.len(), dim]),
        (device, dtype),
    )
}

/// `TimestepEmbedding`: `linear_1`, SiLU, `linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    /// Reads `linear_1` (`d_in → d_out`) and `linear_2` (`d_out → d_out`).
    pub fn load(vb: &VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Self {
            linear_1: linear(&vb.pp("linear_1"), d_in, d_out, true)?,
            linear_2: linear(&vb.pp("linear_2"), d_out, d_out, true)?,
        })
    }

    /// # Shapes
    /// `[B, d_in]` → `[B, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
