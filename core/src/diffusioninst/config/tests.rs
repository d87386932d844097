//! The originals' configs as they ship (`tests/fixtures/diffusioninst/configs/`), read against
//! the values detectron2 gives them; `_BASE_` merging, warnings and errors on small files.

use std::collections::HashMap;

use super::*;

const MEAN: [f32; 3] = [123.675, 116.28, 103.53];
const STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Reads `name` under `tests/fixtures/diffusioninst/`.
fn fixture(name: &str) -> Result<Vec<u8>> {
    let path = format!(
        "{}/../tests/fixtures/diffusioninst/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).map_err(|e| Error::bad_file(name, e))
}

/// Parses a fixture; it must give no warning.
fn shipped(name: &str) -> DiffusionInstConfig {
    let (config, warnings) =
        DiffusionInstConfig::from_yaml(name, &fixture(name).unwrap(), &fixture).unwrap();
    assert!(warnings.is_empty(), "{name}: {warnings:?}");
    config
}

/// Parses `files[0]` with the others as its possible bases.
fn parse(files: &[(&str, &str)]) -> Result<(DiffusionInstConfig, Vec<ConfigWarning>)> {
    let files: HashMap<String, Vec<u8>> = files
        .iter()
        .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
        .collect();
    let resolve = |name: &str| -> Result<Vec<u8>> {
        files
            .get(name)
            .cloned()
            .ok_or_else(|| Error::bad_file(name, "no such test file"))
    };
    let (first, _) = files.iter().find(|(n, _)| n.starts_with("top")).unwrap();
    DiffusionInstConfig::from_yaml(first, &files[first], &resolve)
}

/// The smallest config DiffusionInst runs: everything else is a default.
const MINIMAL: &str = "MODEL:\n  META_ARCHITECTURE: DiffusionInst\n  BACKBONE:\n    NAME: build_resnet_fpn_backbone\n  \
                       RESNETS:\n    OUT_FEATURES: [res2, res3, res4, res5]\n  FPN:\n    IN_FEATURES: [res2, res3, res4, res5]\n  \
                       ROI_HEADS:\n    IN_FEATURES: [p2, p3, p4, p5]\n";

/// [`MINIMAL`] as `base.yaml`, then `extra` (top-level YAML) over it in `top.yaml`.
fn with(extra: &str) -> Result<(DiffusionInstConfig, Vec<ConfigWarning>)> {
    parse(&[
        ("top.yaml", &format!("_BASE_: base.yaml\n{extra}")),
        ("base.yaml", MINIMAL),
    ])
}

fn error(extra: &str) -> String {
    match with(extra) {
        Ok((config, _)) => panic!("accepted:\n{extra}\n{config:?}"),
        Err(e) => e.to_string(),
    }
}

fn resnet(config: &DiffusionInstConfig) -> &ResNetConfig {
    match &config.backbone {
        BackboneConfig::ResNet(resnet) => resnet,
        other => panic!("not a ResNet: {other:?}"),
    }
}

fn swin(config: &DiffusionInstConfig) -> &SwinConfig {
    match &config.backbone {
        BackboneConfig::Swin(swin) => swin,
        other => panic!("not a Swin: {other:?}"),
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn res50_is_read_as_detectron2_reads_it() {
    let config = shipped("configs/diffinst.coco.res50.yaml");
    assert_eq!(config.architecture, Architecture::DiffusionInst);
    assert_eq!(
        *resnet(&config),
        ResNetConfig {
            depth: 50,
            stride_in_1x1: false,
            stem_out_channels: 64,
            res2_out_channels: 256,
            num_groups: 1,
            width_per_group: 64,
            norm: Norm::FrozenBatchNorm,
            out_features: strings(&["res2", "res3", "res4", "res5"]),
            res5_dilation: 1,
        }
    );
    assert_eq!(resnet(&config).blocks_per_stage(), [3, 4, 6, 3]);
    assert!(resnet(&config).bottleneck());
    assert_eq!(
        config.fpn,
        FpnConfig {
            in_features: strings(&["res2", "res3", "res4", "res5"]),
            out_channels: 256,
            norm: Norm::None,
            fuse_type: FuseType::Sum,
        }
    );
    assert_eq!(
        config.head,
        DynamicHeadConfig {
            num_classes: 80,
            num_proposals: 500,
            hidden_dim: 256,
            dim_feedforward: 2048,
            nheads: 8,
            dropout: 0.0,
            activation: Activation::Relu,
            num_cls: 1,
            num_reg: 3,
            num_heads: 6,
            num_dynamic: 2,
            dim_dynamic: 64,
            use_focal: true,
            use_fed_loss: false,
            prior_prob: 0.01,
            snr_scale: 2.0,
            sample_step: 1,
            use_nms: true,
        }
    );
    assert_eq!(config.head.num_class_logits(), 80);
    assert_eq!(
        config.pooler,
        PoolerConfig {
            in_features: strings(&["p2", "p3", "p4", "p5"]),
            resolution: 7,
            sampling_ratio: 2,
            pooler_type: PoolerType::RoiAlignV2,
        }
    );
    assert_eq!(
        config.input,
        InputConfig {
            min_size_test: 800,
            max_size_test: 1333,
            format: ImageFormat::Rgb,
            pixel_mean: MEAN,
            pixel_std: STD,
        }
    );
    // This file lacks MASK_ON; `.inst.yaml` adds it.
    assert!(!config.mask_on);
    assert_eq!(config.size_divisibility(), 32);
}

#[test]
fn shipped_variants_differ_where_their_files_do() {
    let res50 = shipped("configs/diffinst.coco.res50.yaml");

    // Two levels of `_BASE_`: only MASK_ON differs from res50.
    let inst = shipped("configs/diffinst.coco.res50.inst.yaml");
    assert!(inst.mask_on);
    assert_eq!(
        DiffusionInstConfig {
            mask_on: false,
            ..inst
        },
        res50
    );

    let boxes300 = shipped("configs/diffinst.coco.res50.300boxes.yaml");
    assert_eq!(boxes300.head.num_proposals, 300);
    assert_eq!(boxes300.backbone, res50.backbone);

    let res101 = shipped("configs/diffinst.coco.res101.yaml");
    assert_eq!(resnet(&res101).depth, 101);
    assert_eq!(resnet(&res101).blocks_per_stage(), [3, 4, 23, 3]);
    assert!(!resnet(&res101).stride_in_1x1);
    assert!(res101.mask_on);
    assert_eq!(res101.head, res50.head);

    for name in [
        "configs/diffinst.lvis.res50.yaml",
        "configs/diffinst.lvis.res101.yaml",
        "configs/diffinst.lvis.swinbase.yaml",
    ] {
        let lvis = shipped(name);
        assert_eq!(lvis.head.num_classes, 1203, "{name}");
        assert!(lvis.head.use_fed_loss, "{name}");
        assert_eq!(lvis.head.num_proposals, 500, "{name}");
        assert_eq!(lvis.head.num_class_logits(), 1203, "{name}");
        assert!(lvis.mask_on, "{name}");
    }
    assert_eq!(
        resnet(&shipped("configs/diffinst.lvis.res101.yaml")).depth,
        101
    );
}

#[test]
fn swin_base_is_b22k() {
    for name in [
        "configs/diffinst.coco.swinbase.yaml",
        "configs/diffinst.lvis.swinbase.yaml",
    ] {
        let config = shipped(name);
        assert_eq!(
            *swin(&config),
            SwinConfig {
                size: SwinSize::B22k,
                embed_dim: 128,
                depths: [2, 2, 18, 2],
                num_heads: [4, 8, 16, 32],
                window_size: 7,
                out_indices: vec![0, 1, 2, 3],
            },
            "{name}"
        );
        assert_eq!(
            config.fpn.in_features,
            strings(&["swin0", "swin1", "swin2", "swin3"])
        );
        assert_eq!(config.size_divisibility(), 32);
    }
}

#[test]
fn diffusiondet_configs_read_their_own_section() {
    let res50 = shipped("configs/diffusiondet/diffdet.coco.res50.yaml");
    assert_eq!(res50.architecture, Architecture::DiffusionDet);
    assert_eq!(resnet(&res50).depth, 50);
    assert_eq!(res50.head.num_proposals, 500);
    assert_eq!(res50.input.pixel_mean, MEAN);
    assert!(!res50.mask_on);
    let inst = shipped("configs/diffinst.coco.res50.yaml");
    assert_eq!(res50.head, inst.head);
    assert_eq!(res50.pooler, inst.pooler);

    for name in [
        "configs/diffusiondet/diffdet.coco.res101.yaml",
        "configs/diffusiondet/diffdet.coco.res50.300boxes.yaml",
        "configs/diffusiondet/diffdet.coco.swinbase.yaml",
        "configs/diffusiondet/diffdet.lvis.res50.yaml",
        "configs/diffusiondet/diffdet.lvis.res101.yaml",
        "configs/diffusiondet/diffdet.lvis.swinbase.yaml",
    ] {
        let config = shipped(name);
        assert_eq!(config.architecture, Architecture::DiffusionDet, "{name}");
        assert_eq!(
            config.head.num_classes,
            if name.contains("lvis") { 1203 } else { 80 },
            "{name}"
        );
    }
    let swin_det = shipped("configs/diffusiondet/diffdet.coco.swinbase.yaml");
    assert_eq!(swin(&swin_det).size, SwinSize::B22k);
    assert_eq!(
        shipped("configs/diffusiondet/diffdet.coco.res50.300boxes.yaml")
            .head
            .num_proposals,
        300
    );

    // DiffusionDet also runs with softmax scores (one more logit, for "no object").
    let (softmax, _) = DiffusionInstConfig::from_yaml(
        "configs/diffusiondet/softmax.yaml",
        b"_BASE_: diffdet.coco.res50.yaml\nMODEL:\n  DiffusionDet:\n    USE_FOCAL: False\n",
        &fixture,
    )
    .unwrap();
    assert_eq!(softmax.head.num_class_logits(), 81);
}

#[test]
fn tiny_r50_for_the_parity_fixtures() {
    let config = shipped("tiny-r50.yaml");
    let r = resnet(&config);
    assert_eq!(
        (
            r.depth,
            r.stem_out_channels,
            r.res2_out_channels,
            r.num_groups,
            r.width_per_group
        ),
        (50, 8, 32, 1, 8)
    );
    assert!(!r.stride_in_1x1);
    assert_eq!(config.fpn.out_channels, 32);
    let h = &config.head;
    assert_eq!(
        (
            h.num_classes,
            h.num_proposals,
            h.hidden_dim,
            h.nheads,
            h.dim_feedforward,
            h.dim_dynamic,
            h.num_heads
        ),
        (80, 20, 32, 4, 64, 8, 2)
    );
    assert_eq!(
        (config.input.min_size_test, config.input.max_size_test),
        (64, 96)
    );
    // Everything else comes from the real base file.
    assert_eq!(config.pooler.resolution, 7);
    assert_eq!(config.input.format, ImageFormat::Rgb);
    assert!(config.mask_on);
}

#[test]
fn defaults_are_detectron2s_and_config_pys() {
    // Only what DiffusionInst cannot run without; everything else is a default.
    let (config, warnings) = parse(&[("top.yaml", MINIMAL)]).unwrap();
    assert!(warnings.is_empty());
    let r = resnet(&config);
    assert!(r.stride_in_1x1);
    assert_eq!(
        (r.depth, r.stem_out_channels, r.res2_out_channels),
        (50, 64, 256)
    );
    assert_eq!(config.head.num_proposals, 300);
    assert_eq!(
        (config.pooler.resolution, config.pooler.sampling_ratio),
        (14, 0)
    );
    assert_eq!(config.input.format, ImageFormat::Bgr);
    assert_eq!(config.input.pixel_mean, [103.53, 116.28, 123.675]);
    assert_eq!(config.input.pixel_std, [1.0, 1.0, 1.0]);
    assert!(!config.mask_on);
}

#[test]
fn base_files_merge_as_detectron2_merges_them() {
    let (config, warnings) = parse(&[
        (
            "top/child.yaml",
            "_BASE_: ../common/b.yaml\nMODEL:\n  RESNETS:\n    DEPTH: 101\n  DiffusionInst:\n    NUM_PROPOSALS: 7\n",
        ),
        (
            "common/b.yaml",
            "_BASE_: [./a1.yaml, a2.yaml]\nMODEL:\n  DiffusionInst:\n    NUM_PROPOSALS: 5\n    NUM_HEADS: 3\n",
        ),
        (
            "common/a1.yaml",
            "MODEL:\n  META_ARCHITECTURE: DiffusionInst\n  BACKBONE:\n    NAME: build_resnet_fpn_backbone\n  \
             RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n    STRIDE_IN_1X1: False\n    OUT_FEATURES: [res2, res3, res4, res5]\n  \
             FPN:\n    IN_FEATURES: [res2, res3, res4, res5]\n  ROI_HEADS:\n    IN_FEATURES: [p2, p3, p4, p5]\n  \
             DiffusionInst:\n    NUM_CLASSES: 3\n",
        ),
        ("common/a2.yaml", "MODEL:\n  DiffusionInst:\n    NUM_CLASSES: 4\n"),
    ])
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = resnet(&config);
    // The child's DEPTH over a1's; a1's other RESNETS keys survive (sections merge).
    assert_eq!(r.depth, 101);
    assert!(!r.stride_in_1x1);
    assert_eq!(r.res2_out_channels, 64);
    // a2 over a1, b over both, the child over b.
    assert_eq!(config.head.num_classes, 4);
    assert_eq!(config.head.num_heads, 3);
    assert_eq!(config.head.num_proposals, 7);
}

#[test]
fn unknown_keys_are_warnings() {
    let (config, warnings) = with(
        "MODEL:\n  RESNETS:\n    DEPHT: 18\n  DiffusionDet:\n    NUM_CLASSES: 3\n  SOMETHING: {A: 1}\n\
         SOLVER:\n  BASE_LR: 0.1\n  LR: 3\nFOO: 1\n",
    )
    .unwrap();
    assert_eq!(resnet(&config).depth, 50);
    let found: Vec<(&str, &str)> = warnings
        .iter()
        .map(|w| (w.file.as_str(), w.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("top.yaml", "MODEL.RESNETS.DEPHT"),
            ("top.yaml", "MODEL.DiffusionDet"),
            ("top.yaml", "MODEL.SOMETHING"),
            ("top.yaml", "SOLVER.LR"),
            ("top.yaml", "FOO"),
        ]
    );
    assert_eq!(
        warnings[0].to_string(),
        "top.yaml: MODEL.RESNETS.DEPHT: unknown key, ignored (detectron2 would refuse it)"
    );
    assert!(warnings[1].message.contains("not a DiffusionDet config"));
}

#[test]
fn strings_are_python_literals_as_in_detectron2() {
    let (config, warnings) = with(
        "MODEL:\n  PIXEL_MEAN: (1.5, 2, -3e-1)\n  RESNETS:\n    STRIDE_IN_1X1: \"False\"\n    DEPTH: '101'\n\
         INPUT:\n  MIN_SIZE_TEST: \"640\"\n  MIN_SIZE_TRAIN: (480, 512)\n  FORMAT: RGB\n",
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(config.input.pixel_mean, [1.5, 2.0, -0.3]);
    assert!(!resnet(&config).stride_in_1x1);
    assert_eq!(resnet(&config).depth, 101);
    assert_eq!(config.input.min_size_test, 640);
    assert_eq!(config.input.format, ImageFormat::Rgb);

    let (swin_config, _) = with(
        "MODEL:\n  BACKBONE:\n    NAME: build_swintransformer_fpn_backbone\n  SWIN:\n    SIZE: T\n    OUT_FEATURES: (1, 2, 3)\n  \
         FPN:\n    IN_FEATURES: (\"swin1\", 'swin2', \"swin3\")\n  ROI_HEADS:\n    IN_FEATURES: [p3, p4, p5]\n  \
         META_ARCHITECTURE: DiffusionDet\n",
    )
    .unwrap();
    let s = swin(&swin_config);
    assert_eq!(
        (s.size, s.embed_dim, s.depths, s.window_size),
        (SwinSize::T, 96, [2, 2, 6, 2], 7)
    );
    assert_eq!(s.out_indices, [1, 2, 3]);
    assert_eq!(swin_config.size_divisibility(), 32);

    let lit = |s: &str| python_literal(s);
    assert_eq!(lit("(800,)"), Some(Yaml::Array(vec![Yaml::Integer(800)])));
    assert_eq!(lit("(800)"), Some(Yaml::Integer(800)));
    assert_eq!(lit("()"), Some(Yaml::Array(vec![])));
    assert_eq!(
        lit("[[96, 10000], 'a\\'b', None, True]"),
        Some(Yaml::Array(vec![
            Yaml::Array(vec![Yaml::Integer(96), Yaml::Integer(10000)]),
            Yaml::String("a'b".into()),
            Yaml::Null,
            Yaml::Boolean(true),
        ]))
    );
    assert_eq!(lit("1e-5"), Some(Yaml::Real("1e-5".into())));
    for not_literal in [
        "B-22k",
        "RGB",
        "",
        "inf",
        "(1 2)",
        "0x10",
        "build_resnet_fpn_backbone",
        "(1,",
    ] {
        assert_eq!(lit(not_literal), None, "{not_literal}");
    }
}

#[test]
fn resnet_18_and_34_use_basic_blocks() {
    let (config, _) =
        with("MODEL:\n  RESNETS:\n    DEPTH: 34\n    RES2_OUT_CHANNELS: 64\n").unwrap();
    assert!(!resnet(&config).bottleneck());
    assert_eq!(resnet(&config).blocks_per_stage(), [3, 4, 6, 3]);
}

#[test]
fn impossible_values_name_the_file_and_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "MODEL:\n  RESNETS:\n    DEPTH: 42\n",
            "top.yaml: MODEL.RESNETS.DEPTH: 42 is not a ResNet depth",
        ),
        (
            "MODEL:\n  RESNETS:\n    DEPTH: fifty\n",
            "top.yaml: MODEL.RESNETS.DEPTH: expected an integer, found \"fifty\"",
        ),
        (
            "MODEL:\n  RESNETS:\n    DEPTH: 50.5\n",
            "MODEL.RESNETS.DEPTH: expected an integer, found 50.5",
        ),
        (
            "INPUT:\n  MIN_SIZE_TEST: -800\n",
            "top.yaml: INPUT.MIN_SIZE_TEST: must be at least 0, found -800",
        ),
        (
            "INPUT:\n  MAX_SIZE_TEST: 0\n",
            "INPUT.MAX_SIZE_TEST: must be at least 1, found 0",
        ),
        (
            "INPUT:\n  FORMAT: YUV-BT.601\n",
            "INPUT.FORMAT: `YUV-BT.601` is not supported",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    NUM_CLASSES: 0\n",
            "top.yaml: MODEL.DiffusionInst.NUM_CLASSES: must be at least 1, found 0",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    NUM_PROPOSALS: 0\n",
            "MODEL.DiffusionInst.NUM_PROPOSALS: must be at least 1",
        ),
        (
            "MODEL:\n  BACKBONE:\n    NAME: build_swintransformer_fpn_backbone\n  SWIN:\n    SIZE: XL\n",
            "top.yaml: MODEL.SWIN.SIZE: `XL` is not a Swin size (T, S, B, B-22k, B-22k-384, L-22k, L-22k-384)",
        ),
        (
            "MODEL:\n  SWIN:\n    OUT_FEATURES: [0, 4]\n  BACKBONE:\n    NAME: build_swintransformer_fpn_backbone\n",
            "MODEL.SWIN.OUT_FEATURES: stage 4 does not exist",
        ),
        // detectron2's default RES2_OUT_CHANNELS (256) cannot run basic blocks: the top file is named.
        (
            "MODEL:\n  RESNETS:\n    DEPTH: 18\n",
            "top.yaml: MODEL.RESNETS.RES2_OUT_CHANNELS: must be 64 for ResNet-18 (basic blocks), found 256",
        ),
        (
            "MODEL:\n  RESNETS:\n    DEPTH: 34\n    RES2_OUT_CHANNELS: 64\n    NUM_GROUPS: 2\n",
            "MODEL.RESNETS.NUM_GROUPS: must be 1 for ResNet-34 (basic blocks), found 2",
        ),
        (
            "MODEL:\n  RESNETS:\n    NUM_GROUPS: 0\n",
            "MODEL.RESNETS.NUM_GROUPS: must be at least 1, found 0",
        ),
        (
            "MODEL:\n  RESNETS:\n    NORM: GN\n    STEM_OUT_CHANNELS: 48\n",
            "MODEL.RESNETS.STEM_OUT_CHANNELS: GN (32 groups) needs channels divisible by 32, found 48",
        ),
        (
            "MODEL:\n  RESNETS:\n    NORM: BatchNorm\n",
            "MODEL.RESNETS.NORM: `BatchNorm` is not a detectron2 norm",
        ),
        (
            "MODEL:\n  RESNETS:\n    OUT_FEATURES: [res2, res6]\n",
            "MODEL.RESNETS.OUT_FEATURES: `res6` is not a ResNet output",
        ),
        (
            "MODEL:\n  RESNETS:\n    DEFORM_ON_PER_STAGE: [False, False, True, True]\n",
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolutions are not supported",
        ),
        // res5 at stride 16 breaks the FPN's doubling strides.
        (
            "MODEL:\n  RESNETS:\n    RES5_DILATION: 2\n",
            "base.yaml: MODEL.FPN.IN_FEATURES: strides res2: 4, res3: 8, res4: 16, res5: 16 are not each twice the one before",
        ),
        (
            "MODEL:\n  RESNETS:\n    RES5_DILATION: 3\n",
            "MODEL.RESNETS.RES5_DILATION: must be 1 or 2, found 3",
        ),
        (
            "MODEL:\n  FPN:\n    IN_FEATURES: [res3, res4, res5, res6]\n",
            "MODEL.FPN.IN_FEATURES: `res6` is not an output of the backbone (it has res2, res3, res4, res5)",
        ),
        (
            "MODEL:\n  FPN:\n    IN_FEATURES: []\n",
            "MODEL.FPN.IN_FEATURES: is empty",
        ),
        (
            "MODEL:\n  FPN:\n    FUSE_TYPE: max\n",
            "MODEL.FPN.FUSE_TYPE: `max` is not sum or avg",
        ),
        (
            "MODEL:\n  FPN:\n    OUT_CHANNELS: 128\n",
            "top.yaml: MODEL.FPN.OUT_CHANNELS: 128 differs from MODEL.DiffusionInst.HIDDEN_DIM 256",
        ),
        (
            "MODEL:\n  ROI_HEADS:\n    IN_FEATURES: [p2, p3, p7]\n",
            "MODEL.ROI_HEADS.IN_FEATURES: `p7` is not an FPN output (it has p2, p3, p4, p5, p6)",
        ),
        (
            "MODEL:\n  ROI_HEADS:\n    IN_FEATURES: [p2, p4, p5]\n",
            "MODEL.ROI_HEADS.IN_FEATURES: must be contiguous FPN levels",
        ),
        (
            "MODEL:\n  ROI_HEADS:\n    IN_FEATURES: [p3, p4, p5]\n",
            "MODEL.ROI_HEADS.IN_FEATURES: DiffusionInst's mask branch reads the first three",
        ),
        (
            "MODEL:\n  ROI_BOX_HEAD:\n    POOLER_TYPE: ROIPool\n",
            "MODEL.ROI_BOX_HEAD.POOLER_TYPE: `ROIPool` is not supported",
        ),
        (
            "MODEL:\n  ROI_BOX_HEAD:\n    POOLER_RESOLUTION: 0\n",
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION: must be at least 1",
        ),
        (
            "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n",
            "top.yaml: MODEL.META_ARCHITECTURE: `GeneralizedRCNN` is not DiffusionInst or DiffusionDet",
        ),
        (
            "MODEL:\n  BACKBONE:\n    NAME: build_resnet_backbone\n",
            "MODEL.BACKBONE.NAME: `build_resnet_backbone` is not supported",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    ACTIVATION: glu\n",
            "MODEL.DiffusionInst.ACTIVATION: `glu` is not relu or gelu",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    NUM_DYNAMIC: 3\n",
            "MODEL.DiffusionInst.NUM_DYNAMIC: must be 2",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    NHEADS: 7\n",
            "MODEL.DiffusionInst.NHEADS: 7 does not divide HIDDEN_DIM 256",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    HIDDEN_DIM: 255\n",
            "MODEL.DiffusionInst.HIDDEN_DIM: the sinusoidal time embedding needs an even size",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    DROPOUT: 1.5\n",
            "MODEL.DiffusionInst.DROPOUT: must be in [0, 1], found 1.5",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    PRIOR_PROB: 0\n",
            "MODEL.DiffusionInst.PRIOR_PROB: must be in (0, 1), found 0",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    SNR_SCALE: -2.0\n",
            "MODEL.DiffusionInst.SNR_SCALE: must be positive, found -2",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    SAMPLE_STEP: 0\n",
            "MODEL.DiffusionInst.SAMPLE_STEP: must be at least 1, found 0",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    SAMPLE_STEP: 1001\n",
            "MODEL.DiffusionInst.SAMPLE_STEP: at most 1000",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    USE_FOCAL: False\n",
            "MODEL.DiffusionInst.USE_FOCAL: DiffusionInst infers masks only with sigmoid scores",
        ),
        (
            "MODEL:\n  DiffusionInst:\n    USE_NMS: maybe\n",
            "MODEL.DiffusionInst.USE_NMS: expected true or false, found \"maybe\"",
        ),
        (
            "MODEL:\n  PIXEL_STD: [58.4, 0, 57.4]\n",
            "top.yaml: MODEL.PIXEL_STD: values must be positive",
        ),
        (
            "MODEL:\n  PIXEL_MEAN: [123.7, 116.3]\n",
            "MODEL.PIXEL_MEAN: needs 3 values (one per channel), found 2",
        ),
        (
            "MODEL:\n  PIXEL_MEAN: 123.7\n",
            "MODEL.PIXEL_MEAN: expected a list of 3 numbers, found 123.7",
        ),
        (
            "MODEL:\n  RESNETS: 5\n",
            "top.yaml: MODEL.RESNETS: expected a section of keys, found 5",
        ),
        (
            "MODEL:\n  RESNETS:\n    DEPTH:\n      A: 1\n",
            "MODEL.RESNETS.DEPTH: expected an integer, found a section",
        ),
        (
            "MODEL:\n  DiffusionInst: 3\n",
            "top.yaml: MODEL.DiffusionInst: expected a section of keys, found 3",
        ),
    ];
    for (extra, expected) in cases {
        let message = error(extra);
        assert!(
            message.contains(expected),
            "{extra}\n  got:      {message}\n  expected: {expected}"
        );
    }
}

#[test]
fn errors_name_the_base_file_that_set_the_value() {
    let message = parse(&[
        ("top.yaml", "_BASE_: lib/mid.yaml\n"),
        (
            "lib/mid.yaml",
            "_BASE_: base.yaml\nMODEL:\n  DiffusionInst:\n    NUM_CLASSES: 0\n",
        ),
        ("lib/base.yaml", MINIMAL),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "lib/mid.yaml: MODEL.DiffusionInst.NUM_CLASSES: must be at least 1, found 0"
    );

    // A section over a value it would have to extend.
    let message = parse(&[
        (
            "top.yaml",
            "_BASE_: base.yaml\nMODEL:\n  RESNETS:\n    DEPTH: 50\n",
        ),
        ("base.yaml", "MODEL:\n  RESNETS: none\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with(
            "top.yaml: MODEL.RESNETS: a section here, but a value in its base base.yaml"
        ),
        "{message}"
    );
}

#[test]
fn base_cycles_are_errors() {
    let message = parse(&[
        ("top.yaml", "_BASE_: a/one.yaml\n"),
        ("a/one.yaml", "_BASE_: ../b/two.yaml\n"),
        ("b/two.yaml", "_BASE_: ../a/./one.yaml\n"),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "b/two.yaml: _BASE_ cycle: top.yaml → a/one.yaml → b/two.yaml → a/one.yaml"
    );
    let message = parse(&[("top.yaml", "_BASE_: top.yaml\n")])
        .unwrap_err()
        .to_string();
    assert_eq!(message, "top.yaml: _BASE_ cycle: top.yaml → top.yaml");
}

#[test]
fn bad_files_are_errors_naming_them() {
    let message = parse(&[("top.yaml", "MODEL: [1, 2\n")])
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("top.yaml: invalid YAML: "), "{message}");
    assert!(message.contains("line"), "{message}");

    // In a base file: the base file is named.
    let message = parse(&[
        ("top.yaml", "_BASE_: base.yaml\n"),
        ("base.yaml", "MODEL:\n  RESNETS: {DEPTH: 50\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(message.contains("base.yaml: invalid YAML"), "{message}");

    let message = parse(&[("top.yaml", "_BASE_: missing.yaml\n")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "top.yaml: _BASE_ `missing.yaml`: missing.yaml: no such test file"
    );

    for (text, expected) in [
        ("- 1\n- 2\n", "top.yaml: is not a mapping of config keys"),
        (
            "a: 1\n---\nb: 2\n",
            "top.yaml: holds more than one YAML document",
        ),
        (
            "_BASE_: 5\n",
            "top.yaml: _BASE_: expected a file name or a list of them",
        ),
    ] {
        assert_eq!(
            parse(&[("top.yaml", text)]).unwrap_err().to_string(),
            expected
        );
    }
    let message = DiffusionInstConfig::from_yaml("x.yaml", b"\xff\xfe", &fixture)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("x.yaml: not UTF-8 text"), "{message}");
}

#[test]
fn every_key_read_is_a_known_key() {
    // `Reader::get` asserts it in debug builds; the shipped files exercise every read.
    for (section, keys) in KNOWN_KEYS {
        assert!(section.is_empty() || is_section(section));
        for key in *keys {
            assert!(is_leaf(&dotted(section, key)), "{section}.{key}");
        }
    }
    assert!(is_section("MODEL.PANOPTIC_FPN"));
    assert!(!is_section("MODEL.RESNETS.DEPTH"));
    assert!(!is_leaf("MODEL.RESNETS"));
    assert_eq!(base_path("configs/a.yaml", "../b/./c.yaml"), "b/c.yaml");
    assert_eq!(base_path("a.yaml", "/abs/b.yaml"), "/abs/b.yaml");
    assert_eq!(base_path("C:\\cfg\\a.yaml", "b.yaml"), "C:\\cfg\\b.yaml");
}
