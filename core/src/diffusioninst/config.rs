//! DiffusionInst's and DiffusionDet's detectron2 configuration: the YAML files as they ship,
//! `_BASE_` inheritance merged as detectron2 merges it, and every value inference reads, typed,
//! with the defaults of detectron2 (`detectron2/config/defaults.py`) and of the originals'
//! `config.py`.
//!
//! detectron2 refuses keys it does not know; here they are ignored with a [`ConfigWarning`].
//! Keys detectron2 knows but inference does not read (`SOLVER.*`, `DATASETS.*`, the loss
//! weights, other models' sections) are ignored silently. Values that cannot run are errors
//! naming the file and the key. String values are read as Python literals where they are one,
//! as detectron2 does (`"(800,)"` is a tuple, `"True"` a boolean).

use std::fmt;

use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};

/// The meta-architecture, `MODEL.META_ARCHITECTURE`; it also names the head's section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Boxes and masks; head keys under `MODEL.DiffusionInst`.
    DiffusionInst,
    /// Boxes only; head keys under `MODEL.DiffusionDet`.
    DiffusionDet,
}

impl Architecture {
    /// The name detectron2 registers, which is also the head's config section.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::DiffusionInst => "DiffusionInst",
            Architecture::DiffusionDet => "DiffusionDet",
        }
    }
}

/// Everything DiffusionInst (or DiffusionDet) inference reads from a detectron2 config.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionInstConfig {
    /// `MODEL.META_ARCHITECTURE`.
    pub architecture: Architecture,
    /// `MODEL.BACKBONE.NAME` with `MODEL.RESNETS` or `MODEL.SWIN`.
    pub backbone: BackboneConfig,
    /// `MODEL.FPN` (its top block is always detectron2's `LastLevelMaxPool`).
    pub fpn: FpnConfig,
    /// `MODEL.DiffusionInst` (or `MODEL.DiffusionDet`).
    pub head: DynamicHeadConfig,
    /// `MODEL.ROI_HEADS.IN_FEATURES` and `MODEL.ROI_BOX_HEAD.POOLER_*`.
    pub pooler: PoolerConfig,
    /// `INPUT.*_TEST`, `INPUT.FORMAT`, `MODEL.PIXEL_MEAN` and `MODEL.PIXEL_STD`.
    pub input: InputConfig,
    /// `MODEL.MASK_ON` (detectron2: false). The original draws masks whatever it says.
    pub mask_on: bool,
}

/// The bottom-up network under the FPN.
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneConfig {
    /// `build_resnet_fpn_backbone`.
    ResNet(ResNetConfig),
    /// `build_swintransformer_fpn_backbone`.
    Swin(SwinConfig),
}

/// detectron2's ResNet, `MODEL.RESNETS` (defaults: detectron2's).
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// 18 or 34 (basic blocks), 50, 101 or 152 (bottlenecks). Default 50.
    pub depth: usize,
    /// Stride 2 in the bottleneck's 1×1 conv (MSRA) rather than its 3×3 (torchvision). Default true.
    pub stride_in_1x1: bool,
    /// Default 64.
    pub stem_out_channels: usize,
    /// Output channels of res2, doubled per stage; 64 for ResNet-18/34. Default 256.
    pub res2_out_channels: usize,
    /// Groups of the bottleneck's 3×3 conv (ResNeXt). Default 1.
    pub num_groups: usize,
    /// Bottleneck channels of res2 are `num_groups × width_per_group`. Default 64.
    pub width_per_group: usize,
    /// Default `FrozenBN`.
    pub norm: Norm,
    /// Outputs among `stem`, `res2`…`res5`. Default `["res4"]`.
    pub out_features: Vec<String>,
    /// 1 or 2 (res5 then keeps stride 16). Default 1.
    pub res5_dilation: usize,
}

impl ResNetConfig {
    /// Blocks in res2…res5 for this depth.
    pub fn blocks_per_stage(&self) -> [usize; 4] {
        resnet_blocks(self.depth).expect("depth checked when read")
    }

    /// Bottleneck blocks (depth ≥ 50) rather than basic blocks.
    pub fn bottleneck(&self) -> bool {
        self.depth >= 50
    }

    fn stride(&self, feature: &str) -> Option<usize> {
        Some(match feature {
            "stem" | "res2" => 4,
            "res3" => 8,
            "res4" => 16,
            "res5" => 32 / self.res5_dilation,
            _ => return None,
        })
    }
}

fn resnet_blocks(depth: usize) -> Option<[usize; 4]> {
    Some(match depth {
        18 => [2, 2, 2, 2],
        34 | 50 => [3, 4, 6, 3],
        101 => [3, 4, 23, 3],
        152 => [3, 8, 36, 3],
        _ => return None,
    })
}

/// The Swin sizes of the originals' `swintransformer.py` (`size2config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwinSize {
    T,
    S,
    B,
    B22k,
    B22k384,
    L22k,
    L22k384,
}

impl SwinSize {
    /// Every size, in the original's order.
    pub const ALL: [SwinSize; 7] = [
        SwinSize::T,
        SwinSize::S,
        SwinSize::B,
        SwinSize::B22k,
        SwinSize::B22k384,
        SwinSize::L22k,
        SwinSize::L22k384,
    ];

    /// The name `MODEL.SWIN.SIZE` gives it (`B-22k`, …).
    pub fn name(self) -> &'static str {
        match self {
            SwinSize::T => "T",
            SwinSize::S => "S",
            SwinSize::B => "B",
            SwinSize::B22k => "B-22k",
            SwinSize::B22k384 => "B-22k-384",
            SwinSize::L22k => "L-22k",
            SwinSize::L22k384 => "L-22k-384",
        }
    }

    /// Reads a `MODEL.SWIN.SIZE` name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|size| size.name() == name)
    }
}

/// Swin Transformer, `MODEL.SWIN`: a size (default `B`) and the numbers it stands for. Patch 4,
/// MLP ratio 4, qkv bias, patch norm and no absolute position embedding are fixed in the original.
#[derive(Debug, Clone, PartialEq)]
pub struct SwinConfig {
    pub size: SwinSize,
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub num_heads: [usize; 4],
    pub window_size: usize,
    /// `MODEL.SWIN.OUT_FEATURES`: stages whose outputs (`swin0`…`swin3`, each with its own
    /// LayerNorm) the FPN may take. Default `(0, 1, 2, 3)`.
    pub out_indices: Vec<usize>,
}

impl SwinConfig {
    /// The architecture of `size`, with outputs `out_indices`.
    pub fn new(size: SwinSize, out_indices: Vec<usize>) -> Self {
        let (embed_dim, depths, num_heads, window_size) = match size {
            SwinSize::T => (96, [2, 2, 6, 2], [3, 6, 12, 24], 7),
            SwinSize::S => (96, [2, 2, 18, 2], [3, 6, 12, 24], 7),
            SwinSize::B | SwinSize::B22k => (128, [2, 2, 18, 2], [4, 8, 16, 32], 7),
            SwinSize::B22k384 => (128, [2, 2, 18, 2], [4, 8, 16, 32], 12),
            SwinSize::L22k => (192, [2, 2, 18, 2], [6, 12, 24, 48], 7),
            SwinSize::L22k384 => (192, [2, 2, 18, 2], [6, 12, 24, 48], 12),
        };
        Self {
            size,
            embed_dim,
            depths,
            num_heads,
            window_size,
            out_indices,
        }
    }

    fn stride(&self, feature: &str) -> Option<usize> {
        let stage: usize = feature.strip_prefix("swin")?.parse().ok()?;
        self.out_indices.contains(&stage).then_some(4 << stage)
    }
}

impl BackboneConfig {
    /// Stride of one of the backbone's outputs; `None` if it has no such output.
    pub fn output_stride(&self, feature: &str) -> Option<usize> {
        match self {
            BackboneConfig::ResNet(resnet) => resnet
                .out_features
                .iter()
                .any(|f| f == feature)
                .then(|| resnet.stride(feature))
                .flatten(),
            BackboneConfig::Swin(swin) => swin.stride(feature),
        }
    }

    fn outputs(&self) -> Vec<String> {
        match self {
            BackboneConfig::ResNet(resnet) => resnet.out_features.clone(),
            BackboneConfig::Swin(swin) => swin
                .out_indices
                .iter()
                .map(|i| format!("swin{i}"))
                .collect(),
        }
    }
}

/// A detectron2 normalisation name (`get_norm`) as inference sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `""`: none (the conv has a bias).
    None,
    /// `FrozenBN`: fixed statistics and affine, no `num_batches_tracked`.
    FrozenBatchNorm,
    /// `BN`, `SyncBN`, `nnSyncBN`, `naiveSyncBN`, `naiveSyncBN_N`: batch norm, in eval mode.
    BatchNorm,
    /// `GN`: 32 groups.
    GroupNorm,
    /// `LN`: detectron2's channels-first LayerNorm.
    LayerNorm,
}

impl Norm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "" => Norm::None,
            "FrozenBN" => Norm::FrozenBatchNorm,
            "BN" | "SyncBN" | "nnSyncBN" | "naiveSyncBN" | "naiveSyncBN_N" => Norm::BatchNorm,
            "GN" => Norm::GroupNorm,
            "LN" => Norm::LayerNorm,
            _ => return None,
        })
    }
}

/// How the FPN adds the upsampled coarser level to the lateral one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuseType {
    Sum,
    Avg,
}

/// detectron2's FPN, `MODEL.FPN`. Outputs are `p<log2 stride>` of each input, and one more
/// level from max-pooling the last.
#[derive(Debug, Clone, PartialEq)]
pub struct FpnConfig {
    /// Backbone outputs, finest first, each twice the stride of the one before. Default none.
    pub in_features: Vec<String>,
    /// Default 256; must equal the head's hidden size.
    pub out_channels: usize,
    /// Default `""` (none).
    pub norm: Norm,
    /// Default `sum`.
    pub fuse_type: FuseType,
}

/// The dynamic head, sampler and post-processing: `MODEL.DiffusionInst` (or
/// `MODEL.DiffusionDet`), defaults from the original's `config.py`. Its training-only keys
/// (`CLASS_WEIGHT`, `GIOU_WEIGHT`, `L1_WEIGHT`, `DEEP_SUPERVISION`, `NO_OBJECT_WEIGHT`,
/// `ALPHA`, `GAMMA`, `OTA_K`) are known and not read.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicHeadConfig {
    /// Default 80 (1203 in the LVIS configs).
    pub num_classes: usize,
    /// Boxes denoised per image. Default 300 (500 in every shipped config but `300boxes`).
    pub num_proposals: usize,
    /// Default 256; even, and a multiple of `nheads`.
    pub hidden_dim: usize,
    /// Default 2048.
    pub dim_feedforward: usize,
    /// Self-attention heads. Default 8.
    pub nheads: usize,
    /// Default 0.0 (no effect at inference).
    pub dropout: f64,
    /// Of the FFN. Default `relu`.
    pub activation: Activation,
    /// Classification tower depth. Default 1.
    pub num_cls: usize,
    /// Regression tower depth. Default 3.
    pub num_reg: usize,
    /// Head stages (`NUM_HEADS`, not attention heads). Default 6.
    pub num_heads: usize,
    /// Dynamic-conv layers: always 2 in the original's code. Default 2.
    pub num_dynamic: usize,
    /// Default 64.
    pub dim_dynamic: usize,
    /// Sigmoid class scores (focal loss). Default true.
    pub use_focal: bool,
    /// Sigmoid class scores too (federated loss, the LVIS configs). Default false.
    pub use_fed_loss: bool,
    /// Class-logit bias initialisation. Default 0.01.
    pub prior_prob: f64,
    /// Signal-to-noise scale of the box diffusion. Default 2.0.
    pub snr_scale: f64,
    /// DDIM steps, 1…1000. Default 1.
    pub sample_step: usize,
    /// Class-aware NMS (IoU 0.5) on the detections. Default true.
    pub use_nms: bool,
}

impl DynamicHeadConfig {
    /// Outputs of `class_logits`: one per class with sigmoid scores, one more (no object) with
    /// softmax.
    pub fn num_class_logits(&self) -> usize {
        if self.use_focal || self.use_fed_loss {
            self.num_classes
        } else {
            self.num_classes + 1
        }
    }
}

/// The FFN activation of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Gelu,
}

/// The ROI pooler: `MODEL.ROI_HEADS.IN_FEATURES` and `MODEL.ROI_BOX_HEAD.POOLER_*`. Levels are
/// assigned as detectron2 does (canonical box 224 at level 4).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolerConfig {
    /// FPN levels, finest first and contiguous. Default `["res4"]` (the base sets p2…p5).
    pub in_features: Vec<String>,
    /// Output size (square). Default 14 (7 in the base).
    pub resolution: usize,
    /// Samples per bin side; 0: adaptive (`ceil` of the bin size). Default 0 (2 in the base).
    pub sampling_ratio: usize,
    /// Default `ROIAlignV2`.
    pub pooler_type: PoolerType,
}

/// ROIAlign with (`ROIAlignV2`) or without (`ROIAlign`) the half-pixel offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolerType {
    RoiAlign,
    RoiAlignV2,
}

/// Test-time input: resizing, channel order and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct InputConfig {
    /// `INPUT.MIN_SIZE_TEST`: the shorter side after resizing; 0 disables resizing. Default 800.
    pub min_size_test: usize,
    /// `INPUT.MAX_SIZE_TEST`: cap of the longer side. Default 1333.
    pub max_size_test: usize,
    /// `INPUT.FORMAT`: channel order the model takes. Default `BGR` (`RGB` in the base).
    pub format: ImageFormat,
    /// `MODEL.PIXEL_MEAN` in `format`'s order, 0–255. Default `[103.53, 116.28, 123.675]`.
    pub pixel_mean: [f32; 3],
    /// `MODEL.PIXEL_STD`. Default `[1, 1, 1]`.
    pub pixel_std: [f32; 3],
}

/// Channel order of the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Rgb,
    Bgr,
}

/// A key that was ignored, and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    /// Dotted, e.g. `MODEL.RESNETS.DEPHT`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)
    }
}

impl DiffusionInstConfig {
    /// Reads the config `file_name` from `bytes`. `resolve_base` returns the bytes of a `_BASE_`
    /// file, given its path joined to the including file's folder (as detectron2 joins it).
    /// Returns the config and the keys ignored as unknown.
    pub fn from_yaml(
        file_name: &str,
        bytes: &[u8],
        resolve_base: &dyn Fn(&str) -> Result<Vec<u8>>,
    ) -> Result<(Self, Vec<ConfigWarning>)> {
        let mut chain = vec![normalize(file_name)];
        let root = load(file_name, bytes, resolve_base, &mut chain)?;
        let reader = Reader {
            root: &root,
            top: file_name,
            section: String::new(),
        };
        let config = Self::read(&reader)?;
        let inactive = match config.architecture {
            Architecture::DiffusionInst => Architecture::DiffusionDet,
            Architecture::DiffusionDet => Architecture::DiffusionInst,
        };
        let mut warnings = Vec::new();
        check_keys(&root, "", inactive, &mut warnings);
        Ok((config, warnings))
    }

    /// Padding multiple of the input: the stride of the FPN's coarsest input.
    pub fn size_divisibility(&self) -> usize {
        let last = self.fpn.in_features.last().expect("checked when read");
        self.backbone
            .output_stride(last)
            .expect("checked when read")
    }

    fn read(r: &Reader) -> Result<Self> {
        let architecture = match r
            .text("MODEL.META_ARCHITECTURE", "GeneralizedRCNN")?
            .as_str()
        {
            "DiffusionInst" => Architecture::DiffusionInst,
            "DiffusionDet" => Architecture::DiffusionDet,
            other => {
                return Err(r.error(
                    "MODEL.META_ARCHITECTURE",
                    format!("`{other}` is not DiffusionInst or DiffusionDet"),
                ));
            }
        };
        let backbone = match r
            .text("MODEL.BACKBONE.NAME", "build_resnet_backbone")?
            .as_str()
        {
            "build_resnet_fpn_backbone" => {
                BackboneConfig::ResNet(read_resnet(&r.at("MODEL.RESNETS"))?)
            }
            "build_swintransformer_fpn_backbone" => {
                BackboneConfig::Swin(read_swin(&r.at("MODEL.SWIN"))?)
            }
            other => {
                return Err(r.error(
                    "MODEL.BACKBONE.NAME",
                    format!(
                        "`{other}` is not supported: DiffusionInst runs \
                         build_resnet_fpn_backbone or build_swintransformer_fpn_backbone"
                    ),
                ));
            }
        };
        let config = Self {
            architecture,
            backbone,
            fpn: read_fpn(&r.at("MODEL.FPN"))?,
            head: read_head(
                &r.at(&format!("MODEL.{}", architecture.name())),
                architecture,
            )?,
            pooler: read_pooler(r)?,
            input: read_input(r)?,
            mask_on: r.flag("MODEL.MASK_ON", false)?,
        };
        config.check_levels(r)?;
        Ok(config)
    }

    /// The checks across sections that detectron2 makes when it builds the model.
    fn check_levels(&self, r: &Reader) -> Result<()> {
        let key = "MODEL.FPN.IN_FEATURES";
        if self.fpn.in_features.is_empty() {
            return Err(r.error(key, "is empty: the FPN needs at least one backbone output"));
        }
        let mut strides = Vec::new();
        for feature in &self.fpn.in_features {
            let stride = self.backbone.output_stride(feature).ok_or_else(|| {
                r.error(
                    key,
                    format!(
                        "`{feature}` is not an output of the backbone (it has {})",
                        self.backbone.outputs().join(", ")
                    ),
                )
            })?;
            strides.push(stride);
        }
        if strides.windows(2).any(|w| w[1] != 2 * w[0]) {
            let listed: Vec<String> = (self.fpn.in_features.iter().zip(&strides))
                .map(|(feature, stride)| format!("{feature}: {stride}"))
                .collect();
            return Err(r.error(
                key,
                format!(
                    "strides {} are not each twice the one before, as the FPN needs",
                    listed.join(", ")
                ),
            ));
        }
        // `p<log2 stride>` for each input, then the max-pooled level.
        let first = strides[0].trailing_zeros() as usize;
        let fpn_levels = first..=first + strides.len();

        let key = "MODEL.ROI_HEADS.IN_FEATURES";
        let levels = self
            .pooler
            .in_features
            .iter()
            .map(|feature| {
                feature
                    .strip_prefix('p')
                    .and_then(|level| level.parse::<usize>().ok())
                    .filter(|level| fpn_levels.contains(level))
                    .ok_or_else(|| {
                        let names: Vec<String> =
                            fpn_levels.clone().map(|l| format!("p{l}")).collect();
                        r.error(
                            key,
                            format!(
                                "`{feature}` is not an FPN output (it has {})",
                                names.join(", ")
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        if levels.is_empty() || levels.windows(2).any(|w| w[1] != w[0] + 1) {
            return Err(r.error(
                key,
                format!(
                    "must be contiguous FPN levels, finest first, for the ROI pooler; found [{}]",
                    self.pooler.in_features.join(", ")
                ),
            ));
        }
        if self.architecture == Architecture::DiffusionInst && (levels[0] != 2 || levels.len() < 3)
        {
            return Err(r.error(
                key,
                "DiffusionInst's mask branch reads the first three at strides 4, 8 and 16: \
                 they must start with p2, p3, p4",
            ));
        }
        if self.fpn.out_channels != self.head.hidden_dim {
            return Err(r.error(
                "MODEL.FPN.OUT_CHANNELS",
                format!(
                    "{} differs from MODEL.{}.HIDDEN_DIM {}: the head reads FPN features as its \
                     hidden vectors",
                    self.fpn.out_channels,
                    self.architecture.name(),
                    self.head.hidden_dim
                ),
            ));
        }
        Ok(())
    }
}

fn read_resnet(r: &Reader) -> Result<ResNetConfig> {
    let depth = r.count("DEPTH", 50, 0)?;
    if resnet_blocks(depth).is_none() {
        return Err(r.error(
            "DEPTH",
            format!("{depth} is not a ResNet depth (18, 34, 50, 101 or 152)"),
        ));
    }
    let config = ResNetConfig {
        depth,
        stride_in_1x1: r.flag("STRIDE_IN_1X1", true)?,
        stem_out_channels: r.count("STEM_OUT_CHANNELS", 64, 1)?,
        res2_out_channels: r.count("RES2_OUT_CHANNELS", 256, 1)?,
        num_groups: r.count("NUM_GROUPS", 1, 1)?,
        width_per_group: r.count("WIDTH_PER_GROUP", 64, 1)?,
        norm: read_norm(r, "NORM", "FrozenBN")?,
        out_features: r.names("OUT_FEATURES", &["res4"])?,
        res5_dilation: r.count("RES5_DILATION", 1, 0)?,
    };
    if config.out_features.is_empty() {
        return Err(r.error("OUT_FEATURES", "is empty"));
    }
    if let Some(bad) = config
        .out_features
        .iter()
        .find(|f| config.stride(f).is_none())
    {
        return Err(r.error(
            "OUT_FEATURES",
            format!("`{bad}` is not a ResNet output (stem, res2, res3, res4, res5)"),
        ));
    }
    if !matches!(config.res5_dilation, 1 | 2) {
        return Err(r.error(
            "RES5_DILATION",
            format!("must be 1 or 2, found {}", config.res5_dilation),
        ));
    }
    let deform = r.list(
        "DEFORM_ON_PER_STAGE",
        vec![false; 4],
        "a list of 4 booleans",
        as_bool,
    )?;
    if deform.len() != 4 {
        return Err(r.error(
            "DEFORM_ON_PER_STAGE",
            format!("needs 4 entries, found {}", deform.len()),
        ));
    }
    if deform.contains(&true) {
        return Err(r.error(
            "DEFORM_ON_PER_STAGE",
            "deformable convolutions are not supported",
        ));
    }
    if !config.bottleneck() {
        let basic = |key: &str, value: usize, want: usize| {
            if value == want {
                Ok(())
            } else {
                Err(r.error(
                    key,
                    format!("must be {want} for ResNet-{depth} (basic blocks), found {value}"),
                ))
            }
        };
        basic("RES2_OUT_CHANNELS", config.res2_out_channels, 64)?;
        basic("NUM_GROUPS", config.num_groups, 1)?;
        basic("RES5_DILATION", config.res5_dilation, 1)?;
    }
    if config.norm == Norm::GroupNorm {
        let mut widths = vec![
            ("STEM_OUT_CHANNELS", config.stem_out_channels),
            ("RES2_OUT_CHANNELS", config.res2_out_channels),
        ];
        if config.bottleneck() {
            widths.push((
                "WIDTH_PER_GROUP",
                config.num_groups * config.width_per_group,
            ));
        }
        for (key, channels) in widths {
            if !channels.is_multiple_of(32) {
                return Err(r.error(
                    key,
                    format!("GN (32 groups) needs channels divisible by 32, found {channels}"),
                ));
            }
        }
    }
    Ok(config)
}

fn read_swin(r: &Reader) -> Result<SwinConfig> {
    let name = r.text("SIZE", "B")?;
    let size = SwinSize::parse(&name).ok_or_else(|| {
        let names: Vec<&str> = SwinSize::ALL.iter().map(|s| s.name()).collect();
        r.error(
            "SIZE",
            format!("`{name}` is not a Swin size ({})", names.join(", ")),
        )
    })?;
    let out_indices = r.list(
        "OUT_FEATURES",
        vec![0, 1, 2, 3],
        "a list of stage indices",
        |v| as_int(v).and_then(|i| usize::try_from(i).ok()),
    )?;
    if let Some(bad) = out_indices.iter().find(|&&i| i > 3) {
        return Err(r.error("OUT_FEATURES", format!("stage {bad} does not exist (0…3)")));
    }
    Ok(SwinConfig::new(size, out_indices))
}

fn read_fpn(r: &Reader) -> Result<FpnConfig> {
    let config = FpnConfig {
        in_features: r.names("IN_FEATURES", &[])?,
        out_channels: r.count("OUT_CHANNELS", 256, 1)?,
        norm: read_norm(r, "NORM", "")?,
        fuse_type: match r.text("FUSE_TYPE", "sum")?.as_str() {
            "sum" => FuseType::Sum,
            "avg" => FuseType::Avg,
            other => return Err(r.error("FUSE_TYPE", format!("`{other}` is not sum or avg"))),
        },
    };
    if config.norm == Norm::GroupNorm && !config.out_channels.is_multiple_of(32) {
        return Err(r.error(
            "OUT_CHANNELS",
            format!(
                "GN (32 groups) needs channels divisible by 32, found {}",
                config.out_channels
            ),
        ));
    }
    Ok(config)
}

fn read_head(r: &Reader, architecture: Architecture) -> Result<DynamicHeadConfig> {
    let config = DynamicHeadConfig {
        num_classes: r.count("NUM_CLASSES", 80, 1)?,
        num_proposals: r.count("NUM_PROPOSALS", 300, 1)?,
        hidden_dim: r.count("HIDDEN_DIM", 256, 1)?,
        dim_feedforward: r.count("DIM_FEEDFORWARD", 2048, 1)?,
        nheads: r.count("NHEADS", 8, 1)?,
        dropout: r.float("DROPOUT", 0.0)?,
        activation: match r.text("ACTIVATION", "relu")?.as_str() {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            other => {
                return Err(r.error(
                    "ACTIVATION",
                    format!("`{other}` is not relu or gelu (glu would halve the FFN's width)"),
                ));
            }
        },
        num_cls: r.count("NUM_CLS", 1, 0)?,
        num_reg: r.count("NUM_REG", 3, 0)?,
        num_heads: r.count("NUM_HEADS", 6, 1)?,
        num_dynamic: r.count("NUM_DYNAMIC", 2, 1)?,
        dim_dynamic: r.count("DIM_DYNAMIC", 64, 1)?,
        use_focal: r.flag("USE_FOCAL", true)?,
        use_fed_loss: r.flag("USE_FED_LOSS", false)?,
        prior_prob: r.float("PRIOR_PROB", 0.01)?,
        snr_scale: r.float("SNR_SCALE", 2.0)?,
        sample_step: r.count("SAMPLE_STEP", 1, 1)?,
        use_nms: r.flag("USE_NMS", true)?,
    };
    let hidden = config.hidden_dim;
    if hidden < 4 || !hidden.is_multiple_of(2) {
        return Err(r.error(
            "HIDDEN_DIM",
            format!(
                "the sinusoidal time embedding needs an even size of at least 4, found {hidden}"
            ),
        ));
    }
    if !hidden.is_multiple_of(config.nheads) {
        return Err(r.error(
            "NHEADS",
            format!("{} does not divide HIDDEN_DIM {hidden}", config.nheads),
        ));
    }
    if !(0.0..=1.0).contains(&config.dropout) {
        return Err(r.error(
            "DROPOUT",
            format!("must be in [0, 1], found {}", config.dropout),
        ));
    }
    if config.num_dynamic != 2 {
        return Err(r.error(
            "NUM_DYNAMIC",
            format!(
                "must be 2 (the dynamic conv has two layers), found {}",
                config.num_dynamic
            ),
        ));
    }
    if !(config.prior_prob > 0.0 && config.prior_prob < 1.0) {
        return Err(r.error(
            "PRIOR_PROB",
            format!("must be in (0, 1), found {}", config.prior_prob),
        ));
    }
    if !(config.snr_scale.is_finite() && config.snr_scale > 0.0) {
        return Err(r.error(
            "SNR_SCALE",
            format!("must be positive, found {}", config.snr_scale),
        ));
    }
    if config.sample_step > 1000 {
        return Err(r.error(
            "SAMPLE_STEP",
            format!(
                "at most 1000 (the diffusion's timesteps), found {}",
                config.sample_step
            ),
        ));
    }
    if architecture == Architecture::DiffusionInst && !(config.use_focal || config.use_fed_loss) {
        return Err(r.error(
            "USE_FOCAL",
            "DiffusionInst infers masks only with sigmoid scores (USE_FOCAL or USE_FED_LOSS)",
        ));
    }
    Ok(config)
}

fn read_pooler(r: &Reader) -> Result<PoolerConfig> {
    let b = r.at("MODEL.ROI_BOX_HEAD");
    Ok(PoolerConfig {
        in_features: r.names("MODEL.ROI_HEADS.IN_FEATURES", &["res4"])?,
        resolution: b.count("POOLER_RESOLUTION", 14, 1)?,
        sampling_ratio: b.count("POOLER_SAMPLING_RATIO", 0, 0)?,
        pooler_type: match b.text("POOLER_TYPE", "ROIAlignV2")?.as_str() {
            "ROIAlignV2" => PoolerType::RoiAlignV2,
            "ROIAlign" => PoolerType::RoiAlign,
            other => {
                return Err(b.error(
                    "POOLER_TYPE",
                    format!("`{other}` is not supported (ROIAlignV2 or ROIAlign)"),
                ));
            }
        },
    })
}

fn read_input(r: &Reader) -> Result<InputConfig> {
    let pixels = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
        let values = r.list(
            key,
            default.map(f64::from).to_vec(),
            "a list of 3 numbers",
            as_float,
        )?;
        let values: [f64; 3] = values.try_into().map_err(|v: Vec<f64>| {
            r.error(
                key,
                format!("needs 3 values (one per channel), found {}", v.len()),
            )
        })?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(r.error(key, "values must be finite"));
        }
        Ok(values.map(|v| v as f32))
    };
    let config = InputConfig {
        min_size_test: r.count("INPUT.MIN_SIZE_TEST", 800, 0)?,
        max_size_test: r.count("INPUT.MAX_SIZE_TEST", 1333, 1)?,
        format: match r.text("INPUT.FORMAT", "BGR")?.as_str() {
            "RGB" => ImageFormat::Rgb,
            "BGR" => ImageFormat::Bgr,
            other => {
                return Err(r.error(
                    "INPUT.FORMAT",
                    format!("`{other}` is not supported (RGB or BGR)"),
                ));
            }
        },
        pixel_mean: pixels("MODEL.PIXEL_MEAN", [103.53, 116.28, 123.675])?,
        pixel_std: pixels("MODEL.PIXEL_STD", [1.0, 1.0, 1.0])?,
    };
    if config.pixel_std.iter().any(|&s| s <= 0.0) {
        return Err(r.error(
            "MODEL.PIXEL_STD",
            format!("values must be positive, found {:?}", config.pixel_std),
        ));
    }
    Ok(config)
}

fn read_norm(r: &Reader, key: &str, default: &str) -> Result<Norm> {
    let name = r.text(key, default)?;
    Norm::parse(&name).ok_or_else(|| {
        r.error(
            key,
            format!("`{name}` is not a detectron2 norm (\"\", FrozenBN, BN, SyncBN, GN, LN)"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The keys detectron2 knows.

/// Keys of `MODEL.DiffusionInst` and `MODEL.DiffusionDet` (the originals' `config.py`).
#[rustfmt::skip]
const HEAD_KEYS: &[&str] = &[
    "NUM_CLASSES", "NUM_PROPOSALS", "NHEADS", "DROPOUT", "DIM_FEEDFORWARD", "ACTIVATION",
    "HIDDEN_DIM", "NUM_CLS", "NUM_REG", "NUM_HEADS", "NUM_DYNAMIC", "DIM_DYNAMIC", "CLASS_WEIGHT",
    "GIOU_WEIGHT", "L1_WEIGHT", "DEEP_SUPERVISION", "NO_OBJECT_WEIGHT", "USE_FOCAL",
    "USE_FED_LOSS", "ALPHA", "GAMMA", "PRIOR_PROB", "OTA_K", "SNR_SCALE", "SAMPLE_STEP", "USE_NMS",
];

/// Every key of detectron2's `get_cfg()` after the originals' `add_diffusioninst_config` (or
/// `add_diffusiondet_config`) and `add_model_ema_configs`, by section.
#[rustfmt::skip]
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", &["VERSION", "OUTPUT_DIR", "SEED", "CUDNN_BENCHMARK", "FLOAT32_PRECISION", "VIS_PERIOD"]),
    ("MODEL", &["LOAD_PROPOSALS", "MASK_ON", "KEYPOINT_ON", "DEVICE", "META_ARCHITECTURE",
        "WEIGHTS", "PIXEL_MEAN", "PIXEL_STD"]),
    ("INPUT", &["MIN_SIZE_TRAIN", "MIN_SIZE_TRAIN_SAMPLING", "MAX_SIZE_TRAIN", "MIN_SIZE_TEST",
        "MAX_SIZE_TEST", "RANDOM_FLIP", "FORMAT", "MASK_FORMAT"]),
    ("INPUT.CROP", &["ENABLED", "TYPE", "SIZE"]),
    ("DATASETS", &["TRAIN", "PROPOSAL_FILES_TRAIN", "PRECOMPUTED_PROPOSAL_TOPK_TRAIN", "TEST",
        "PROPOSAL_FILES_TEST", "PRECOMPUTED_PROPOSAL_TOPK_TEST"]),
    ("DATALOADER", &["NUM_WORKERS", "ASPECT_RATIO_GROUPING", "SAMPLER_TRAIN", "REPEAT_THRESHOLD",
        "REPEAT_SQRT", "FILTER_EMPTY_ANNOTATIONS"]),
    ("MODEL.BACKBONE", &["NAME", "FREEZE_AT"]),
    ("MODEL.FPN", &["IN_FEATURES", "OUT_CHANNELS", "NORM", "FUSE_TYPE"]),
    ("MODEL.PROPOSAL_GENERATOR", &["NAME", "MIN_SIZE"]),
    ("MODEL.ANCHOR_GENERATOR", &["NAME", "SIZES", "ASPECT_RATIOS", "ANGLES", "OFFSET"]),
    ("MODEL.RPN", &["HEAD_NAME", "IN_FEATURES", "BOUNDARY_THRESH", "IOU_THRESHOLDS", "IOU_LABELS",
        "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION", "BBOX_REG_LOSS_TYPE", "BBOX_REG_LOSS_WEIGHT",
        "BBOX_REG_WEIGHTS", "SMOOTH_L1_BETA", "LOSS_WEIGHT", "PRE_NMS_TOPK_TRAIN",
        "PRE_NMS_TOPK_TEST", "POST_NMS_TOPK_TRAIN", "POST_NMS_TOPK_TEST", "NMS_THRESH",
        "CONV_DIMS"]),
    ("MODEL.ROI_HEADS", &["NAME", "NUM_CLASSES", "IN_FEATURES", "IOU_THRESHOLDS", "IOU_LABELS",
        "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION", "SCORE_THRESH_TEST", "NMS_THRESH_TEST",
        "PROPOSAL_APPEND_GT"]),
    ("MODEL.ROI_BOX_HEAD", &["NAME", "BBOX_REG_LOSS_TYPE", "BBOX_REG_LOSS_WEIGHT",
        "BBOX_REG_WEIGHTS", "SMOOTH_L1_BETA", "POOLER_RESOLUTION", "POOLER_SAMPLING_RATIO",
        "POOLER_TYPE", "NUM_FC", "FC_DIM", "NUM_CONV", "CONV_DIM", "NORM",
        "CLS_AGNOSTIC_BBOX_REG", "TRAIN_ON_PRED_BOXES", "USE_FED_LOSS", "USE_SIGMOID_CE",
        "FED_LOSS_FREQ_WEIGHT_POWER", "FED_LOSS_NUM_CLASSES"]),
    ("MODEL.ROI_BOX_CASCADE_HEAD", &["BBOX_REG_WEIGHTS", "IOUS"]),
    ("MODEL.ROI_MASK_HEAD", &["NAME", "POOLER_RESOLUTION", "POOLER_SAMPLING_RATIO", "NUM_CONV",
        "CONV_DIM", "NORM", "CLS_AGNOSTIC_MASK", "POOLER_TYPE"]),
    ("MODEL.ROI_KEYPOINT_HEAD", &["NAME", "POOLER_RESOLUTION", "POOLER_SAMPLING_RATIO",
        "CONV_DIMS", "NUM_KEYPOINTS", "MIN_KEYPOINTS_PER_IMAGE",
        "NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS", "LOSS_WEIGHT", "POOLER_TYPE"]),
    ("MODEL.SEM_SEG_HEAD", &["NAME", "IN_FEATURES", "IGNORE_VALUE", "NUM_CLASSES", "CONVS_DIM",
        "COMMON_STRIDE", "NORM", "LOSS_WEIGHT"]),
    ("MODEL.PANOPTIC_FPN", &["INSTANCE_LOSS_WEIGHT"]),
    ("MODEL.PANOPTIC_FPN.COMBINE", &["ENABLED", "OVERLAP_THRESH", "STUFF_AREA_LIMIT",
        "INSTANCES_CONFIDENCE_THRESH"]),
    ("MODEL.RETINANET", &["NUM_CLASSES", "IN_FEATURES", "NUM_CONVS", "IOU_THRESHOLDS",
        "IOU_LABELS", "PRIOR_PROB", "SCORE_THRESH_TEST", "TOPK_CANDIDATES_TEST", "NMS_THRESH_TEST",
        "BBOX_REG_WEIGHTS", "FOCAL_LOSS_GAMMA", "FOCAL_LOSS_ALPHA", "SMOOTH_L1_LOSS_BETA",
        "BBOX_REG_LOSS_TYPE", "NORM"]),
    ("MODEL.RESNETS", &["DEPTH", "OUT_FEATURES", "NUM_GROUPS", "NORM", "WIDTH_PER_GROUP",
        "STRIDE_IN_1X1", "RES5_DILATION", "RES2_OUT_CHANNELS", "STEM_OUT_CHANNELS",
        "DEFORM_ON_PER_STAGE", "DEFORM_MODULATED", "DEFORM_NUM_GROUPS"]),
    ("MODEL.SWIN", &["SIZE", "USE_CHECKPOINT", "OUT_FEATURES"]),
    ("MODEL.DiffusionInst", HEAD_KEYS),
    ("MODEL.DiffusionDet", HEAD_KEYS),
    ("MODEL_EMA", &["ENABLED", "DECAY", "DEVICE", "USE_EMA_WEIGHTS_FOR_EVAL_ONLY", "YOLOX"]),
    ("SOLVER", &["LR_SCHEDULER_NAME", "MAX_ITER", "BASE_LR", "BASE_LR_END", "MOMENTUM",
        "NESTEROV", "WEIGHT_DECAY", "WEIGHT_DECAY_NORM", "GAMMA", "STEPS", "NUM_DECAYS",
        "WARMUP_FACTOR", "WARMUP_ITERS", "WARMUP_METHOD", "RESCALE_INTERVAL", "CHECKPOINT_PERIOD",
        "IMS_PER_BATCH", "REFERENCE_WORLD_SIZE", "BIAS_LR_FACTOR", "WEIGHT_DECAY_BIAS",
        "OPTIMIZER", "BACKBONE_MULTIPLIER"]),
    ("SOLVER.CLIP_GRADIENTS", &["ENABLED", "CLIP_TYPE", "CLIP_VALUE", "NORM_TYPE"]),
    ("SOLVER.AMP", &["ENABLED"]),
    ("TEST", &["EXPECTED_RESULTS", "EVAL_PERIOD", "KEYPOINT_OKS_SIGMAS", "DETECTIONS_PER_IMAGE"]),
    ("TEST.AUG", &["ENABLED", "MIN_SIZES", "MAX_SIZE", "FLIP", "CVPODS_TTA", "SCALE_FILTER",
        "SCALE_RANGES"]),
    ("TEST.PRECISE_BN", &["ENABLED", "NUM_ITER"]),
    ("GLOBAL", &["HACK"]),
];

fn is_section(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|(section, _)| {
        section
            .strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

fn is_leaf(key: &str) -> bool {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    KNOWN_KEYS
        .iter()
        .any(|(s, leaves)| *s == section && leaves.contains(&leaf))
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// Warns about every key detectron2 would refuse, and the section of the other architecture.
fn check_keys(map: &Map, section: &str, inactive: Architecture, out: &mut Vec<ConfigWarning>) {
    for (name, node) in map {
        let key = dotted(section, name);
        let message = if key == format!("MODEL.{}", inactive.name()) {
            format!("ignored: this is not a {} config", inactive.name())
        } else {
            match (&node.kind, is_section(&key), is_leaf(&key)) {
                (Kind::Map(inner), true, _) => {
                    check_keys(inner, &key, inactive, out);
                    continue;
                }
                (Kind::Leaf(_), false, true) => continue,
                (Kind::Leaf(_), true, _) => {
                    "is a section in detectron2; this value is ignored".into()
                }
                (Kind::Map(_), false, true) => {
                    "is a value in detectron2; this section is ignored".into()
                }
                (_, false, false) => "unknown key, ignored (detectron2 would refuse it)".into(),
            }
        };
        out.push(ConfigWarning {
            file: node.file.clone(),
            key,
            message,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Files: YAML, `_BASE_` and merging.

/// A config tree after merging; every node remembers the file that set it.
#[derive(Debug, Clone)]
struct Node {
    file: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Map(Map),
    Leaf(Yaml),
}

type Map = Vec<(String, Node)>;

/// Parses `file` and everything it inherits, merged as fvcore's `load_yaml_with_base`: each
/// `_BASE_` (a path or a list of them, relative to `file`'s folder) is loaded, later bases over
/// earlier ones, then `file`'s own keys over them; nested sections merge, values replace.
fn load(
    file: &str,
    bytes: &[u8],
    resolve: &dyn Fn(&str) -> Result<Vec<u8>>,
    chain: &mut Vec<String>,
) -> Result<Map> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::bad_file(file, format!("not UTF-8 text: {e}")))?;
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| Error::bad_file(file, format!("invalid YAML: {e}")))?;
    let root = match docs.as_slice() {
        [] | [Yaml::Null | Yaml::BadValue] => Yaml::Hash(Default::default()),
        [doc] => doc.clone(),
        _ => return Err(Error::bad_file(file, "holds more than one YAML document")),
    };
    let Kind::Map(mut map) = to_node(file, root)?.kind else {
        return Err(Error::bad_file(file, "is not a mapping of config keys"));
    };
    let Some(i) = map.iter().position(|(k, _)| k == "_BASE_") else {
        return Ok(map);
    };
    let bases = match map.remove(i).1.kind {
        Kind::Leaf(Yaml::String(base)) => vec![base],
        Kind::Leaf(Yaml::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Yaml::String(base) => Ok(base),
                _ => Err(Error::config(file, "_BASE_: expected file names")),
            })
            .collect::<Result<_>>()?,
        _ => {
            return Err(Error::config(
                file,
                "_BASE_: expected a file name or a list of them",
            ));
        }
    };
    let mut merged = Map::new();
    for base in bases {
        let path = base_path(file, &base);
        if chain.contains(&path) {
            chain.push(path);
            return Err(Error::config(
                file,
                format!("_BASE_ cycle: {}", chain.join(" → ")),
            ));
        }
        let bytes =
            resolve(&path).map_err(|e| Error::config(file, format!("_BASE_ `{base}`: {e}")))?;
        chain.push(path.clone());
        let inherited = load(&path, &bytes, resolve, chain)?;
        chain.pop();
        merge(&mut merged, inherited, "")?;
    }
    merge(&mut merged, map, "")?;
    Ok(merged)
}

fn to_node(file: &str, value: Yaml) -> Result<Node> {
    let kind = match value {
        Yaml::Hash(hash) => Kind::Map(
            hash.into_iter()
                .map(|(key, value)| {
                    let name = match key {
                        Yaml::String(s) | Yaml::Real(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => {
                            return Err(Error::bad_file(
                                file,
                                format!("{} is not a key name", show(&other)),
                            ));
                        }
                    };
                    Ok((name, to_node(file, value)?))
                })
                .collect::<Result<_>>()?,
        ),
        other => Kind::Leaf(other),
    };
    Ok(Node {
        file: file.to_string(),
        kind,
    })
}

/// Merges `over` into `base` (fvcore's `merge_a_into_b`).
fn merge(base: &mut Map, over: Map, section: &str) -> Result<()> {
    for (name, node) in over {
        let key = dotted(section, &name);
        match base.iter_mut().find(|(k, _)| *k == name) {
            None => base.push((name, node)),
            Some((_, old)) => match (&mut old.kind, node.kind) {
                (Kind::Map(old_map), Kind::Map(new_map)) => merge(old_map, new_map, &key)?,
                (Kind::Leaf(_), Kind::Map(_)) => {
                    return Err(Error::config(
                        &node.file,
                        format!(
                            "{key}: a section here, but a value in its base {}",
                            old.file
                        ),
                    ));
                }
                (_, kind) => {
                    *old = Node {
                        file: node.file,
                        kind,
                    }
                }
            },
        }
    }
    Ok(())
}

/// `base` joined to the folder of `including`, as detectron2 joins `_BASE_` paths (absolute
/// paths, `~` and URLs are left as they are), with `.` and `..` resolved.
fn base_path(including: &str, base: &str) -> String {
    let absolute = base.starts_with(['/', '\\', '~'])
        || base.contains("://")
        || base.as_bytes().get(1) == Some(&b':');
    if absolute {
        return base.to_string();
    }
    let folder = including
        .rfind(['/', '\\'])
        .map_or("", |i| &including[..=i]);
    normalize(&format!("{folder}{base}"))
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." if parts.last().is_some_and(|p| !p.is_empty() && *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

// ---------------------------------------------------------------------------------------------
// Typed reading.

/// Reads typed values from a merged tree, relative to `section`.
struct Reader<'a> {
    root: &'a Map,
    /// The file given to `from_yaml`, named for defaults that cannot run.
    top: &'a str,
    section: String,
}

impl<'a> Reader<'a> {
    fn at(&self, section: &str) -> Reader<'a> {
        Reader {
            root: self.root,
            top: self.top,
            section: section.to_string(),
        }
    }

    /// The node at `key` (below the section), if a file sets it.
    fn node(&self, key: &str) -> Result<Option<&'a Node>> {
        let full = dotted(&self.section, key);
        let mut map = self.root;
        let mut parts = full.split('.').peekable();
        let mut path = String::new();
        while let Some(part) = parts.next() {
            path = dotted(&path, part);
            let Some((_, node)) = map.iter().find(|(k, _)| k == part) else {
                return Ok(None);
            };
            match (&node.kind, parts.peek()) {
                (_, None) => return Ok(Some(node)),
                (Kind::Map(inner), Some(_)) => map = inner,
                (Kind::Leaf(value), Some(_)) => {
                    return Err(Error::config(
                        &node.file,
                        format!("{path}: expected a section of keys, found {}", show(value)),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// An error about `key`, naming the file that set it (or the top file for a default).
    fn error(&self, key: &str, message: impl fmt::Display) -> Error {
        let file = match self.node(key) {
            Ok(Some(node)) => node.file.as_str(),
            _ => self.top,
        };
        Error::config(file, format!("{}: {message}", dotted(&self.section, key)))
    }

    /// The value at `key` converted by `convert`, or `default` when no file sets it.
    fn get<T>(
        &self,
        key: &str,
        default: T,
        what: &str,
        convert: impl Fn(&Yaml) -> Option<T>,
    ) -> Result<T> {
        let full = dotted(&self.section, key);
        debug_assert!(is_leaf(&full), "{full} is missing from KNOWN_KEYS");
        let Some(node) = self.node(key)? else {
            return Ok(default);
        };
        let value = match &node.kind {
            Kind::Leaf(Yaml::String(text)) => {
                python_literal(text).unwrap_or_else(|| Yaml::String(text.clone()))
            }
            Kind::Leaf(value) => value.clone(),
            Kind::Map(_) => {
                return Err(Error::config(
                    &node.file,
                    format!("{full}: expected {what}, found a section"),
                ));
            }
        };
        convert(&value).ok_or_else(|| {
            Error::config(
                &node.file,
                format!("{full}: expected {what}, found {}", show(&value)),
            )
        })
    }

    /// An integer of at least `min`.
    fn count(&self, key: &str, default: usize, min: usize) -> Result<usize> {
        let value = self.get(key, default as i64, "an integer", as_int)?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v >= min)
            .ok_or_else(|| self.error(key, format!("must be at least {min}, found {value}")))
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        self.get(key, default, "a number", as_float)
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool> {
        self.get(key, default, "true or false", as_bool)
    }

    fn text(&self, key: &str, default: &str) -> Result<String> {
        self.get(key, default.to_string(), "a string", |v| {
            v.as_str().map(str::to_string)
        })
    }

    fn names(&self, key: &str, default: &[&str]) -> Result<Vec<String>> {
        let default = default.iter().map(|s| s.to_string()).collect();
        self.list(key, default, "a list of names", |v| {
            v.as_str().map(str::to_string)
        })
    }

    fn list<T>(
        &self,
        key: &str,
        default: Vec<T>,
        what: &str,
        item: impl Fn(&Yaml) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.get(key, default, what, |v| {
            v.as_vec()?.iter().map(&item).collect()
        })
    }
}

fn as_int(value: &Yaml) -> Option<i64> {
    value.as_i64()
}

fn as_float(value: &Yaml) -> Option<f64> {
    value.as_f64().or_else(|| value.as_i64().map(|i| i as f64))
}

/// A boolean, including YAML 1.1's spellings that PyYAML reads as one.
fn as_bool(value: &Yaml) -> Option<bool> {
    match value {
        Yaml::Boolean(b) => Some(*b),
        Yaml::String(s) => match s.as_str() {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A value as a message shows it.
fn show(value: &Yaml) -> String {
    match value {
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Yaml::Hash(_) => "a section".into(),
        Yaml::Null => "null".into(),
        Yaml::Alias(_) | Yaml::BadValue => "an invalid value".into(),
    }
}

/// `ast.literal_eval` for the literals configs hold, as detectron2 applies it to every string
/// value: numbers, quoted strings, `True`/`False`/`None`, and tuples and lists of them. `None`
/// where `text` is not one (the string then stays a string).
fn python_literal(text: &str) -> Option<Yaml> {
    let mut literal = Literal {
        s: text.as_bytes(),
        i: 0,
    };
    let value = literal.value()?;
    literal.skip_space();
    (literal.i == literal.s.len()).then_some(value)
}

struct Literal<'a> {
    s: &'a [u8],
    i: usize,
}

impl Literal<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let found = self.s.get(self.i) == Some(&c);
        self.i += usize::from(found);
        found
    }

    fn value(&mut self) -> Option<Yaml> {
        self.skip_space();
        match *self.s.get(self.i)? {
            b'(' => self.sequence(b')'),
            b'[' => self.sequence(b']'),
            quote @ (b'\'' | b'"') => self.string(quote),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Some(Yaml::Boolean(true)),
                    b"False" => Some(Yaml::Boolean(false)),
                    b"None" => Some(Yaml::Null),
                    _ => None,
                }
            }
            _ => self.number(),
        }
    }

    /// A tuple or list after its opening bracket; `(x)` is `x`.
    fn sequence(&mut self, close: u8) -> Option<Yaml> {
        self.i += 1;
        let mut items = Vec::new();
        let mut comma = false;
        while !self.eat(close) {
            if !items.is_empty() && !comma {
                return None;
            }
            items.push(self.value()?);
            comma = self.eat(b',');
        }
        if close == b')' && items.len() == 1 && !comma {
            return items.pop();
        }
        Some(Yaml::Array(items))
    }

    fn string(&mut self, quote: u8) -> Option<Yaml> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                _ if c == quote => break,
                b'\\' => {
                    let escaped = *self.s.get(self.i)?;
                    self.i += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'\\' | b'\'' | b'"' => out.push(escaped),
                        _ => out.extend([b'\\', escaped]),
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).ok().map(Yaml::String)
    }

    fn number(&mut self) -> Option<Yaml> {
        let start = self.i;
        if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
            self.i += 1;
        }
        while let Some(&c) = self.s.get(self.i) {
            let exponent_sign =
                matches!(c, b'+' | b'-') && matches!(self.s[self.i - 1], b'e' | b'E');
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exponent_sign {
                self.i += 1;
            } else {
                break;
            }
        }
        let token = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .replace('_', "");
        if let Ok(i) = token.parse::<i64>() {
            return Some(Yaml::Integer(i));
        }
        // Digits with a point or an exponent; `inf` and `nan` are names, not literals.
        let letters_ok = token
            .bytes()
            .all(|c| !c.is_ascii_alphabetic() || matches!(c, b'e' | b'E'));
        (letters_ok && token.parse::<f64>().is_ok()).then_some(Yaml::Real(token))
    }
}

#[cfg(test)]
mod tests;
