//! Sparse R-CNN's `DynamicConv` (`inst_interact`): each proposal's feature generates two
//! matrices that mix its pooled ROI features, then a linear layer summarises them.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::Result;
use crate::nn::{LayerNorm, Linear, linear};
use crate::weights::VarBuilder;

/// PyTorch's `nn.LayerNorm` epsilon.
pub(super) const LN_EPS: f64 = 1e-5;

/// `inst_interact`: `dynamic_layer` (hidden → 2·hidden·dim_dynamic), `norm1` (dim_dynamic),
/// `norm2` (hidden), `out_layer` (hidden·S² → hidden) and `norm3`.
#[derive(Module, Debug)]
pub struct DynamicConv {
    dynamic_layer: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    out_layer: Linear,
    norm3: LayerNorm,
    hidden: usize,
    dim_dynamic: usize,
}

impl DynamicConv {
    /// Reads the layers for `hidden` channels, `dim_dynamic` and a `resolution²` ROI.
    pub fn load(
        vb: &VarBuilder,
        hidden: usize,
        dim_dynamic: usize,
        resolution: usize,
    ) -> Result<Self> {
        Ok(Self {
            dynamic_layer: linear(
                &vb.pp("dynamic_layer"),
                hidden,
                2 * hidden * dim_dynamic,
                true,
            )?,
            norm1: LayerNorm::load(&vb.pp("norm1"), dim_dynamic, LN_EPS)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), hidden, LN_EPS)?,
            out_layer: linear(
                &vb.pp("out_layer"),
                hidden * resolution * resolution,
                hidden,
                true,
            )?,
            norm3: LayerNorm::load(&vb.pp("norm3"), hidden, LN_EPS)?,
            hidden,
            dim_dynamic,
        })
    }

    /// `relu(norm3(out_layer(flatten(relu(norm2(relu(norm1(roi·P1))·P2))))))` with `P1`
    /// `[hidden, dim_dynamic]` and `P2` `[dim_dynamic, hidden]` generated from `pro`.
    ///
    /// # Shapes
    /// `pro`: `[R, hidden]`, `roi`: `[R, hidden, S, S]` → `[R, hidden]`
    pub fn forward(&self, pro: Tensor<2>, roi: Tensor<4>) -> Tensor<2> {
        let [r, h, s, _] = roi.dims();
        let n = h * self.dim_dynamic;
        let params = self.dynamic_layer.forward(pro);
        let p1 = params
            .clone()
            .narrow(1, 0, n)
            .reshape([r, h, self.dim_dynamic]);
        let p2 = params.narrow(1, n, n).reshape([r, self.dim_dynamic, h]);
        let x = roi.reshape([r, h, s * s]).swap_dims(1, 2);
        let x = relu(self.norm1.forward(x.matmul(p1)));
        let x = relu(self.norm2.forward(x.matmul(p2)));
        let x = self.out_layer.forward(x.reshape([r, s * s * self.hidden]));
        relu(self.norm3.forward(x))
    }
}
