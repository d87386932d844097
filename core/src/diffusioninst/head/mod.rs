//! DiffusionDet's dynamic head (`head.`), with DiffusionInst's mask branch and kernels: the
//! timestep embedding, `NUM_HEADS` refinement stages that each pool the current boxes from the
//! pyramid and predict classes, box deltas and mask kernels, and the mask features.

mod dynamic_conv;
mod mask_branch;
mod rcnn_head;
mod time_mlp;

use burn::module::Module;
use burn::tensor::Tensor;

pub use dynamic_conv::DynamicConv;
pub use mask_branch::{MASK_CHANNELS, MaskBranch, aligned_bilinear};
pub use rcnn_head::{KERNEL_PARAMS, RcnnHead, StageOutput};
pub use time_mlp::{TimeMlp, sinusoidal_embedding};

use super::DiffusionInstConfig;
use super::boxes::{Xyxy, apply_deltas};
use crate::error::{Error, Result};
use crate::models::detection::RoiPooler;
use crate::readback::Readback;
use crate::weights::VarBuilder;

/// `head.`: `time_mlp`, `head_series.{k}` and, for DiffusionInst, `mask_refine`/`mask_head`.
#[derive(Module, Debug)]
pub struct DynamicHead {
    pub time_mlp: TimeMlp,
    pub head_series: Vec<RcnnHead>,
    pub mask_branch: Option<MaskBranch>,
    #[module(skip)]
    pooler: RoiPooler,
}

/// One stage's outputs and the boxes it decoded.
#[derive(Debug, Clone)]
pub struct Stage {
    pub output: StageOutput,
    pub boxes: Vec<Xyxy>,
}

impl DynamicHead {
    /// Reads the head below `vb` (the checkpoint's `head.`). `masks` selects DiffusionInst
    /// (mask branch and controllers) over DiffusionDet (boxes only).
    pub fn load(vb: &VarBuilder, config: &DiffusionInstConfig, masks: bool) -> Result<Self> {
        let head = &config.head;
        if !(head.use_focal || head.use_fed_loss) {
            return Err(Error::Invalid(
                "softmax class scores (USE_FOCAL and USE_FED_LOSS both False) are not supported: \
                 the original stops in a debugger on that path"
                    .to_string(),
            ));
        }
        if head.num_dynamic != 2 {
            return Err(Error::Invalid(format!(
                "NUM_DYNAMIC {} is not supported: the original's DynamicConv uses exactly 2",
                head.num_dynamic
            )));
        }
        if !head.hidden_dim.is_multiple_of(head.nheads) || !head.hidden_dim.is_multiple_of(2) {
            return Err(Error::Invalid(format!(
                "HIDDEN_DIM {} must be even and a multiple of NHEADS {}",
                head.hidden_dim, head.nheads
            )));
        }
        let resolution = config.pooler.resolution;
        Ok(Self {
            time_mlp: TimeMlp::load(&vb.pp("time_mlp"), head.hidden_dim)?,
            head_series: (0..head.num_heads)
                .map(|k| RcnnHead::load(&vb.pp("head_series").pp(k), head, resolution, masks))
                .collect::<Result<_>>()?,
            mask_branch: if masks {
                Some(MaskBranch::load(vb, head.hidden_dim)?)
            } else {
                None
            },
            pooler: RoiPooler::new(&config.pooler)?,
        })
    }

    /// Whether the head predicts masks (a DiffusionInst checkpoint).
    pub fn has_masks(&self) -> bool {
        self.mask_branch.is_some()
    }

    /// The mask features of one image from its pyramid (p2 first), `None` for box-only heads.
    ///
    /// # Shapes
    /// `[1, d, H/4, W/4]`, … → `[1, 8, H/4, W/4]`
    pub fn mask_features(&self, pyramid: &[Tensor<4>]) -> Result<Option<Tensor<4>>> {
        self.mask_branch
            .as_ref()
            .map(|branch| branch.forward(pyramid))
            .transpose()
    }

    /// Runs every stage on the `N` boxes of one image at timestep `t`, from its pyramid (one
    /// `[1, d, H_l, W_l]` map per pooler level).
    ///
    /// # Shapes
    /// `boxes`: `N` → one [`Stage`] per head stage
    pub async fn forward(
        &self,
        pyramid: &[Tensor<4>],
        boxes: Vec<Xyxy>,
        t: i64,
        readback: Readback,
    ) -> Result<Vec<Stage>> {
        let time = self.time_mlp.forward(&[t], &pyramid[0].device());
        let mut boxes = boxes;
        let mut pro = None;
        let mut stages = Vec::with_capacity(self.head_series.len());
        for head in &self.head_series {
            let rows: Vec<[f32; 5]> = boxes
                .iter()
                .map(|b| [0.0, b[0], b[1], b[2], b[3]])
                .collect();
            let rois = self.pooler.forward(pyramid, &rows);
            let output = head.forward(rois, pro, time.clone());
            let deltas = readback.read_f32(output.deltas.clone()).await?;
            boxes = apply_deltas(&deltas, &boxes);
            pro = Some(output.obj.clone());
            stages.push(Stage {
                output,
                boxes: boxes.clone(),
            });
        }
        Ok(stages)
    }
}
