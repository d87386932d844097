//! detectron2's `ResNet` (`build_resnet_backbone`): a stem and the stages `res2`…`res5`.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Tensor;

use super::{BasicBlock, BasicStem, BottleneckBlock, BottleneckConfig};
use crate::diffusioninst::ResNetConfig;
use crate::error::Result;
use crate::weights::VarBuilder;

/// One stage's residual blocks (`res{k}.{i}`), all of one kind.
#[derive(Module, Debug)]
pub enum Stage {
    Basic(Vec<BasicBlock>),
    Bottleneck(Vec<BottleneckBlock>),
}

impl Stage {
    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, C_out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Stage::Basic(blocks) => blocks.iter().fold(x, |x, b| b.forward(x)),
            Stage::Bottleneck(blocks) => blocks.iter().fold(x, |x, b| b.forward(x)),
        }
    }
}

/// detectron2's `ResNet` as `build_resnet_backbone` makes it: `stem`, then `res2`… up to the
/// last stage in `out_features` (stage `k`'s block `i` is `res{k}.{i}`). Basic blocks for
/// depths 18/34, bottlenecks otherwise; channels double per stage from `res2_out_channels`;
/// the first block of res3…res5 has stride 2 (res5 keeps stride 1 when dilated).
#[derive(Module, Debug)]
pub struct ResNet {
    pub stem: BasicStem,
    /// `res2`, `res3`, … in order.
    pub stages: Vec<Stage>,
    #[module(skip)]
    out_features: Vec<String>,
}

impl ResNet {
    /// Reads `stem.*` and `res{k}.{i}.*` below `vb` (detectron2's `bottom_up`).
    pub fn load(vb: &VarBuilder, c: &ResNetConfig) -> Result<Self> {
        let stem = BasicStem::load(&vb.pp("stem"), 3, c.stem_out_channels, c.norm)?;
        let last = c
            .out_features
            .iter()
            .filter_map(|f| f.strip_prefix("res")?.parse::<usize>().ok())
            .max()
            .unwrap_or(1);
        let blocks = c.blocks_per_stage();
        let mut c_in = c.stem_out_channels;
        let mut stages = Vec::new();
        for stage in 2..=last {
            let idx = stage - 2;
            let dilation = if stage == 5 { c.res5_dilation } else { 1 };
            let first_stride = if idx == 0 || dilation == 2 { 1 } else { 2 };
            let c_out = c.res2_out_channels << idx;
            let bottleneck = (c.num_groups * c.width_per_group) << idx;
            let svb = vb.pp(format!("res{stage}"));
            let stride = |i: usize| if i == 0 { first_stride } else { 1 };
            let c_first = c_in;
            let c_in_of = |i: usize| if i == 0 { c_first } else { c_out };
            stages.push(if c.bottleneck() {
                Stage::Bottleneck(
                    (0..blocks[idx])
                        .map(|i| {
                            let config = BottleneckConfig {
                                in_channels: c_in_of(i),
                                out_channels: c_out,
                                bottleneck_channels: bottleneck,
                                stride: stride(i),
                                groups: c.num_groups,
                                stride_in_1x1: c.stride_in_1x1,
                                dilation,
                                norm: c.norm,
                            };
                            BottleneckBlock::load(&svb.pp(i), config)
                        })
                        .collect::<Result<_>>()?,
                )
            } else {
                Stage::Basic(
                    (0..blocks[idx])
                        .map(|i| BasicBlock::load(&svb.pp(i), c_in_of(i), c_out, stride(i), c.norm))
                        .collect::<Result<_>>()?,
                )
            });
            c_in = c_out;
        }
        Ok(Self {
            stem,
            stages,
            out_features: c.out_features.clone(),
        })
    }

    /// Channels of the output `name` (`stem`, `res2`…`res5`) of a ResNet built from `c`.
    pub fn out_channels(c: &ResNetConfig, name: &str) -> Option<usize> {
        match name {
            "stem" => Some(c.stem_out_channels),
            _ => {
                let stage: usize = name.strip_prefix("res")?.parse().ok()?;
                (2..=5)
                    .contains(&stage)
                    .then(|| c.res2_out_channels << (stage - 2))
            }
        }
    }

    /// The outputs named in `out_features`, by name.
    ///
    /// # Shapes
    /// `[B, 3, H, W]` → `stem`, `res2`: `[B, C, H/4, W/4]`, `res3`: `/8`, `res4`: `/16`,
    /// `res5`: `/32` (`/16` when dilated), for `H`, `W` multiples of 32
    pub fn forward(&self, x: Tensor<4>) -> HashMap<String, Tensor<4>> {
        let mut out = HashMap::new();
        let mut x = self.stem.forward(x);
        let mut keep = |name: String, x: &Tensor<4>| {
            if self.out_features.contains(&name) {
                out.insert(name, x.clone());
            }
        };
        keep("stem".into(), &x);
        for (idx, stage) in self.stages.iter().enumerate() {
            x = stage.forward(x);
            keep(format!("res{}", idx + 2), &x);
        }
        out
    }
}
