//! Swin's `WindowAttention`: multi-head self-attention inside each window, with a learned bias
//! per relative position.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::Result;
use crate::nn::{Linear, linear};
use crate::weights::VarBuilder;

/// `qkv` (with bias), `proj` and `relative_position_bias_table`
/// `[(2·window − 1)², heads]`. The original's `relative_position_index` buffer (stored in
/// checkpoints) is recomputed here, not read: [`relative_position_index`].
#[derive(Module, Debug)]
pub struct WindowAttention {
    pub qkv: Linear,
    pub proj: Linear,
    pub relative_position_bias_table: Param<Tensor<2>>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    window: usize,
}

/// For tokens `i`, `j` of a `window × window` window (row-major), the row of the bias table
/// for their offset: `(y_i − y_j + window − 1) · (2·window − 1) + (x_i − x_j + window − 1)`.
pub fn relative_position_index(window: usize) -> Vec<i64> {
    let n = window * window;
    let span = 2 * window as i64 - 1;
    let w = window as i64;
    let mut index = Vec::with_capacity(n * n);
    for i in 0..n as i64 {
        for j in 0..n as i64 {
            let (dy, dx) = (i / w - j / w + w - 1, i % w - j % w + w - 1);
            index.push(dy * span + dx);
        }
    }
    index
}

impl WindowAttention {
    /// Reads `qkv.*`, `proj.*` and `relative_position_bias_table` for `dim` channels.
    pub fn load(vb: &VarBuilder, dim: usize, heads: usize, window: usize) -> Result<Self> {
        let rows = (2 * window - 1) * (2 * window - 1);
        Ok(Self {
            qkv: linear(&vb.pp("qkv"), dim, 3 * dim, true)?,
            proj: linear(&vb.pp("proj"), dim, dim, true)?,
            relative_position_bias_table: Param::from_tensor(
                vb.get("relative_position_bias_table", [rows, heads])?,
            ),
            heads,
            window,
        })
    }

    /// The bias of every query/key pair per head, from the table.
    ///
    /// # Shapes
    /// → `[1, heads, N, N]`, `N = window²`
    fn relative_position_bias(&self) -> Tensor<4> {
        let table = self.relative_position_bias_table.val();
        let n = self.window * self.window;
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(relative_position_index(self.window), [n * n]),
            &table.device(),
        );
        table
            .select(0, index)
            .reshape([n, n, self.heads])
            .permute([2, 0, 1])
            .unsqueeze_dim(0)
    }

    /// Attention among the `N` tokens of each window; `mask` (0 or −100, per window of the
    /// image, the windows of every batch item in turn) is added to the scores.
    ///
    /// # Shapes
    /// `x`: `[B·nW, N, C]`, `mask`: `[nW, N, N]` → `[B·nW, N, C]`
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        let [b_, n, c] = x.dims();
        let (h, d) = (self.heads, c / self.heads);
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b_, n, 3, h, d])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b_, h, n, d]);
        let (q, k, v) = (part(0), part(1), part(2));
        let scale = (d as f64).powf(-0.5);
        let mut attn = (q * scale).matmul(k.swap_dims(2, 3)) + self.relative_position_bias();
        if let Some(mask) = mask {
            let nw = mask.dims()[0];
            let mask: Tensor<5> = mask.reshape([1, nw, 1, n, n]);
            attn = (attn.reshape([b_ / nw, nw, h, n, n]) + mask).reshape([b_, h, n, n]);
        }
        let out = softmax(attn, 3).matmul(v);
        self.proj.forward(out.swap_dims(1, 2).reshape([b_, n, c]))
    }
}
