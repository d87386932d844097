//! One stage of DiffusionDet's dynamic head (`head.head_series.{k}`, the original's
//! `RCNNHead`): proposal self-attention, instance interaction with the pooled ROI, an FFN,
//! the timestep's scale and shift, and the class, box and mask-kernel outputs.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, silu};

use super::dynamic_conv::{DynamicConv, LN_EPS};
use crate::diffusioninst::{Activation, DynamicHeadConfig};
use crate::error::Result;
use crate::nn::{LayerNorm, Linear, MultiheadAttention, gelu, linear};
use crate::weights::VarBuilder;

/// Parameters per instance of DiffusionInst's dynamic mask head (see
/// [`crate::diffusioninst::mask_head`]).
pub const KERNEL_PARAMS: usize = 153;

/// A `Linear(d, d, bias=False)` + `LayerNorm` + ReLU block of the class and box towers, stored
/// as `{3i}.weight` and `{3i+1}.{weight,bias}`.
#[derive(Module, Debug)]
pub struct TowerLayer {
    linear: Linear,
    norm: LayerNorm,
}

/// `head.head_series.{k}`.
#[derive(Module, Debug)]
pub struct RcnnHead {
    self_attn: MultiheadAttention,
    inst_interact: DynamicConv,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    /// `block_time_mlp.1` (after a SiLU): the timestep's `[scale, shift]`.
    block_time_mlp: Linear,
    cls_module: Vec<TowerLayer>,
    reg_module: Vec<TowerLayer>,
    class_logits: Linear,
    bboxes_delta: Linear,
    /// DiffusionInst's mask kernels; absent in DiffusionDet's box-only checkpoints.
    controller: Option<Linear>,
    gelu: bool,
}

/// What one stage computes for the `R` proposals of a batch; the intermediate features are
/// kept for inspection.
#[derive(Debug, Clone)]
pub struct StageOutput {
    /// After self-attention and `norm1`, `[R, d]`.
    pub attn: Tensor<2>,
    /// After instance interaction and `norm2`, `[R, d]`.
    pub interact: Tensor<2>,
    /// After the FFN and `norm3`: the next stage's proposal features, `[R, d]`.
    pub obj: Tensor<2>,
    /// `obj` scaled and shifted by the timestep, `[R, d]`.
    pub fc: Tensor<2>,
    /// `[R, classes]`
    pub logits: Tensor<2>,
    /// `(dx, dy, dw, dh)` before the box-coder weights, `[R, 4]`.
    pub deltas: Tensor<2>,
    /// `[R, 153]`, when the checkpoint has a `controller`.
    pub kernels: Option<Tensor<2>>,
}

impl RcnnHead {
    /// Reads one stage below `vb`; `with_controller` for DiffusionInst checkpoints.
    pub fn load(
        vb: &VarBuilder,
        config: &DynamicHeadConfig,
        resolution: usize,
        with_controller: bool,
    ) -> Result<Self> {
        let d = config.hidden_dim;
        let tower = |name: &str, depth: usize| -> Result<Vec<TowerLayer>> {
            (0..depth)
                .map(|i| {
                    Ok(TowerLayer {
                        linear: linear(&vb.pp(name).pp(3 * i), d, d, false)?,
                        norm: LayerNorm::load(&vb.pp(name).pp(3 * i + 1), d, LN_EPS)?,
                    })
                })
                .collect()
        };
        Ok(Self {
            self_attn: MultiheadAttention::load(&vb.pp("self_attn"), d, config.nheads)?,
            inst_interact: DynamicConv::load(
                &vb.pp("inst_interact"),
                d,
                config.dim_dynamic,
                resolution,
            )?,
            linear1: linear(&vb.pp("linear1"), d, config.dim_feedforward, true)?,
            linear2: linear(&vb.pp("linear2"), config.dim_feedforward, d, true)?,
            norm1: LayerNorm::load(&vb.pp("norm1"), d, LN_EPS)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), d, LN_EPS)?,
            norm3: LayerNorm::load(&vb.pp("norm3"), d, LN_EPS)?,
            block_time_mlp: linear(&vb.pp("block_time_mlp.1"), 4 * d, 2 * d, true)?,
            cls_module: tower("cls_module", config.num_cls)?,
            reg_module: tower("reg_module", config.num_reg)?,
            class_logits: linear(&vb.pp("class_logits"), d, config.num_class_logits(), true)?,
            bboxes_delta: linear(&vb.pp("bboxes_delta"), d, 4, true)?,
            controller: if with_controller {
                Some(linear(&vb.pp("controller"), d, KERNEL_PARAMS, true)?)
            } else {
                None
            },
            gelu: config.activation == Activation::Gelu,
        })
    }

    /// One stage for `B` images of `N` proposals each (`R = B·N`, image-major). `pro` is the
    /// previous stage's `obj`, or `None` on the first stage, which starts from the ROI's mean.
    ///
    /// # Shapes
    /// `roi`: `[R, d, S, S]`, `pro`: `[R, d]`, `time`: `[B, 4d]` → [`StageOutput`]
    pub fn forward(&self, roi: Tensor<4>, pro: Option<Tensor<2>>, time: Tensor<2>) -> StageOutput {
        let [r, d, s, _] = roi.dims();
        let b = time.dims()[0];
        let n = r / b;
        let pro = pro.unwrap_or_else(|| {
            roi.clone()
                .reshape([r, d, s * s])
                .mean_dim(2)
                .reshape([r, d])
        });

        let attended = self.self_attn.forward_self(pro.clone().reshape([b, n, d]));
        let attn = self.norm1.forward(pro + attended.reshape([r, d]));
        let interact = self
            .norm2
            .forward(attn.clone() + self.inst_interact.forward(attn.clone(), roi));
        let hidden = self.linear1.forward(interact.clone());
        let hidden = if self.gelu {
            gelu(hidden)
        } else {
            relu(hidden)
        };
        let obj = self
            .norm3
            .forward(interact.clone() + self.linear2.forward(hidden));

        let scale_shift = self.block_time_mlp.forward(silu(time));
        let scale_shift = scale_shift
            .unsqueeze_dim::<3>(1)
            .expand([b, n, 2 * d])
            .reshape([r, 2 * d]);
        let scale = scale_shift.clone().narrow(1, 0, d);
        let shift = scale_shift.narrow(1, d, d);
        let fc = obj.clone() * (scale + 1.0) + shift;

        let tower = |layers: &[TowerLayer]| {
            layers
                .iter()
                .fold(fc.clone(), |x, l| relu(l.norm.forward(l.linear.forward(x))))
        };
        let cls = tower(&self.cls_module);
        let reg = tower(&self.reg_module);
        StageOutput {
            logits: self.class_logits.forward(cls),
            deltas: self.bboxes_delta.forward(reg.clone()),
            kernels: self.controller.as_ref().map(|c| c.forward(reg)),
            attn,
            interact,
            obj,
            fc,
        }
    }
}
