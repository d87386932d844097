//! The whole DiffusionInst inference path against `tests/fixtures/diffinst_ref.py` (a PyTorch
//! re-implementation of the original's head, sampler and post-processing on the tiny random
//! `tests/fixtures/diffusioninst/tiny-r50.pth`): one head call stage by stage, the seeded
//! 1- and 4-step runs, the detections and masks in the image's pixels, batches, box-only
//! checkpoints and torch's f64 normals.

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor};

use super::preprocess::RgbImage;
use super::sampler::{SamplerOptions, sample};
use super::{DetectOptions, Detection, DiffusionInst};
use crate::models::detection::tests::{Expected, config, errors, fixture};
use crate::readback::{Readback, now};
use crate::rng::TorchRng;
use crate::weights::{Bytes, HostTensor, PthFile, VarBuilder, Weights, checkpoint_weights};

const CHECKPOINT: &str = "diffusioninst/tiny-r50.pth";

/// Relative error (over `max(1, max |want|)`) allowed on head outputs: f32 sums in another
/// order than PyTorch's through two stages.
const HEAD_TOL: f32 = 1e-4;

fn checkpoint() -> Arc<dyn Weights> {
    checkpoint_weights(CHECKPOINT, Arc::new(fixture(CHECKPOINT)) as Bytes).unwrap()
}

fn load(weights: Arc<dyn Weights>, device: &Device) -> DiffusionInst {
    let vb = VarBuilder::from_weights(weights, device, DType::F32);
    DiffusionInst::load(&vb, &config("tiny-r50.yaml")).unwrap()
}

struct Images {
    a: (Vec<usize>, Vec<u8>),
    b: (Vec<usize>, Vec<u8>),
}

impl Images {
    fn load() -> Self {
        let e = Expected::load();
        Self {
            a: e.u8("image_a"),
            b: e.u8("image_b"),
        }
    }

    fn get(&self, name: &str) -> RgbImage<'_> {
        let (shape, pixels) = if name == "a" { &self.a } else { &self.b };
        RgbImage {
            pixels,
            height: shape[0],
            width: shape[1],
        }
    }
}

fn f64s(e: &Expected, key: &str) -> Vec<f64> {
    let (_, raw) = e.raw(key);
    raw.chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i64s(e: &Expected, key: &str) -> Vec<i64> {
    let (_, raw) = e.raw(key);
    raw.chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn check(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let (abs, rel) = errors(got, want);
    eprintln!("{name}: max abs {abs:.2e}, rel {rel:.2e}");
    assert!(rel <= tol, "{name}: {rel} > {tol}");
}

#[test]
fn head_stages_equal_pytorch() {
    let device = Device::flex();
    let model = load(checkpoint(), &device);
    let e = Expected::open("diffinst");
    let images = Images::load();
    let features = model.features(&images.get("a")).unwrap();

    let time = model.head.time_mlp.forward(&[999], &device);
    check("time", &host(time), &e.f32("a.time").1, HEAD_TOL);
    let mask_feat = features.mask_feat.clone().unwrap();
    check(
        "mask_feat",
        &host(mask_feat),
        &e.f32("a.mask_feat").1,
        HEAD_TOL,
    );

    let boxes: Vec<[f32; 4]> = (e.f32("a.boxes_in").1.chunks_exact(4))
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect();
    let stages = now(model
        .head
        .forward(&features.pyramid, boxes, 999, Readback::Blocking))
    .unwrap();
    assert_eq!(stages.len(), 2);
    for (k, stage) in stages.into_iter().enumerate() {
        let o = stage.output;
        let parts = [
            ("attn", o.attn),
            ("dyn", o.interact),
            ("obj", o.obj),
            ("fc", o.fc),
            ("logits", o.logits),
            ("kernels", o.kernels.unwrap()),
        ];
        for (name, t) in parts {
            let key = format!("a.stage{k}.{name}");
            check(&key, &host(t), &e.f32(&key).1, HEAD_TOL);
        }
        let got: Vec<f32> = stage.boxes.into_iter().flatten().collect();
        check(
            &format!("a.stage{k}.boxes"),
            &got,
            &e.f32(&format!("a.stage{k}.boxes")).1,
            HEAD_TOL,
        );
    }
}

/// The runs of the fixture: (name, image, steps, seed, ensemble_last_step).
const RUNS: [(&str, &str, usize, u64, bool); 4] = [
    ("a.s1", "a", 1, 0, false),
    ("a.s4", "a", 4, 0, false),
    ("a.s4last", "a", 4, 0, true),
    ("b.s4", "b", 4, 3, false),
];

#[test]
fn seeded_runs_sample_the_original_boxes() {
    let device = Device::flex();
    let model = load(checkpoint(), &device);
    let e = Expected::open("diffinst");
    let images = Images::load();
    for (run, image, steps, seed, last) in RUNS {
        let features = model.features(&images.get(image)).unwrap();
        let options = SamplerOptions {
            steps,
            num_proposals: 20,
            snr_scale: 2.0,
            seed,
            initial_noise: None,
            ensemble_last_step: last,
            nms_iou: Some(0.5),
        };
        let sizes = [features.geometry.resized];
        let pyramids = [features.pyramid];
        let sampled = now(sample(
            &model.head,
            &pyramids,
            &sizes,
            &options,
            Readback::Blocking,
        ))
        .unwrap();
        let found = &sampled[0];
        let kept: Vec<i64> = found.kept.iter().map(|&k| k as i64).collect();
        assert_eq!(kept, i64s(&e, &format!("{run}.kept")), "{run}");
        let c = &found.candidates;
        let labels: Vec<i64> = c.labels.iter().map(|&l| l as i64).collect();
        let want_boxes = e.f32(&format!("{run}.raw_boxes")).1;
        assert_eq!(c.boxes.len() * 4, want_boxes.len(), "{run}: detections");
        let nonempty = e.u8(&format!("{run}.nonempty")).1;
        let want_labels = i64s(&e, &format!("{run}.labels"));
        let got_labels: Vec<i64> = (labels.iter().zip(&nonempty))
            .filter(|(_, n)| **n == 1)
            .map(|(l, _)| *l)
            .collect();
        assert_eq!(got_labels, want_labels, "{run}: labels");
        let boxes: Vec<f32> = c.boxes.iter().flatten().copied().collect();
        check(&format!("{run}.raw_boxes"), &boxes, &want_boxes, HEAD_TOL);

        let mask_feat = features.mask_feat.unwrap();
        let [_, ch, h, w] = mask_feat.dims();
        let probs = super::mask_head::instance_masks(mask_feat.reshape([ch, h, w]), &c.kernels);
        check(
            &format!("{run}.mask_prob"),
            &host(probs),
            &e.f32(&format!("{run}.mask_prob")).1,
            HEAD_TOL,
        );
    }
}

fn detect(
    model: &DiffusionInst,
    images: &[RgbImage],
    options: &DetectOptions,
) -> Vec<Vec<Detection>> {
    now(model.detect(images, options, Readback::Blocking)).unwrap()
}

/// Detections of every fixture run equal the original's after post-processing: boxes and
/// scores within f32 noise, classes and masks exactly.
#[test]
fn detections_equal_the_original() {
    let device = Device::flex();
    let model = load(checkpoint(), &device);
    let e = Expected::open("diffinst");
    let images = Images::load();
    for (run, image, steps, seed, last) in RUNS {
        let options = DetectOptions {
            steps: Some(steps),
            seed,
            ensemble_last_step: last,
            ..DetectOptions::default()
        };
        let found = detect(&model, &[images.get(image)], &options).remove(0);
        let (mask_shape, want_masks) = e.u8(&format!("{run}.masks"));
        assert_eq!(found.len(), mask_shape[0], "{run}");
        let boxes: Vec<f32> = found.iter().flat_map(|d| d.bbox).collect();
        check(
            &format!("{run}.boxes"),
            &boxes,
            &e.f32(&format!("{run}.boxes")).1,
            HEAD_TOL,
        );
        let scores: Vec<f32> = found.iter().map(|d| d.score).collect();
        check(
            &format!("{run}.scores"),
            &scores,
            &e.f32(&format!("{run}.scores")).1,
            1e-5,
        );
        let labels: Vec<i64> = found.iter().map(|d| d.label as i64).collect();
        assert_eq!(labels, i64s(&e, &format!("{run}.labels")), "{run}");
        let masks: Vec<u8> = found
            .iter()
            .flat_map(|d| d.mask.as_ref().unwrap().iter().map(|&m| m as u8))
            .collect();
        let differ = masks
            .iter()
            .zip(&want_masks)
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "{run}: {} detections, {differ} of {} mask pixels differ",
            found.len(),
            masks.len()
        );
        assert_eq!(differ, 0, "{run}: mask pixels");
    }
}

#[test]
fn a_batch_gives_what_each_image_gives_alone() {
    let model = load(checkpoint(), &Device::flex());
    let images = Images::load();
    let options = DetectOptions {
        steps: Some(4),
        seed: 3,
        ..DetectOptions::default()
    };
    let both = detect(&model, &[images.get("a"), images.get("b")], &options);
    let a = detect(&model, &[images.get("a")], &options).remove(0);
    let b = detect(&model, &[images.get("b")], &options).remove(0);
    assert!(!a.is_empty() && !b.is_empty());
    for (got, want) in both.iter().zip([&a, &b]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.bbox, g.score, g.label), (w.bbox, w.score, w.label));
            assert!(g.mask == w.mask, "masks differ");
        }
    }
}

#[test]
fn given_noise_replaces_the_first_draw() {
    let model = load(checkpoint(), &Device::flex());
    let e = Expected::open("diffinst");
    let images = Images::load();
    // `a.noise` is seed 0's first draw: giving it with another seed changes nothing in one step.
    let seeded = DetectOptions::default();
    let given = DetectOptions {
        seed: 123,
        initial_noise: Some(e.f32("a.noise").1),
        ..DetectOptions::default()
    };
    let image = [images.get("a")];
    assert_eq!(
        detect(&model, &image, &seeded),
        detect(&model, &image, &given)
    );
    let short = DetectOptions {
        initial_noise: Some(vec![0.0; 7]),
        ..DetectOptions::default()
    };
    let err = now(model.detect(&image, &short, Readback::Blocking)).unwrap_err();
    assert!(err.to_string().contains("20 proposals need 80"), "{err}");
}

/// A checkpoint without the mask branch and controllers (DiffusionDet's) gives the same boxes
/// without masks.
#[test]
fn box_only_checkpoints_give_boxes() {
    struct BoxOnly(Arc<dyn Weights>);
    impl Weights for BoxOnly {
        fn read(&self, key: &str) -> crate::error::Result<Option<HostTensor>> {
            let mask = key.starts_with("head.mask_") || key.contains(".controller.");
            if mask { Ok(None) } else { self.0.read(key) }
        }
        fn origin(&self) -> String {
            self.0.origin()
        }
    }
    let device = Device::flex();
    let full = load(checkpoint(), &device);
    let boxes_only = load(Arc::new(BoxOnly(checkpoint())), &device);
    assert!(full.has_masks() && !boxes_only.has_masks());
    let images = Images::load();
    let options = DetectOptions::default();
    let with = detect(&full, &[images.get("a")], &options).remove(0);
    let without = detect(&boxes_only, &[images.get("a")], &options).remove(0);
    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        assert_eq!((a.bbox, a.score, a.label), (b.bbox, b.score, b.label));
        assert!(b.mask.is_none());
    }
}

#[test]
fn f64_normals_equal_torch() {
    let want = f64s(&Expected::open("diffinst"), "rng.f64_s5");
    let mut rng = TorchRng::new(5);
    let got: Vec<f64> = [37, 9, 20]
        .into_iter()
        .flat_map(|n| rng.randn_f64(n))
        .collect();
    assert_eq!(got, want);
}

/// The schedule computed here equals the f64 buffer the original stores in its checkpoints
/// (torch's vectorised `cos` may differ from libm's in the last bit).
#[test]
fn cosine_schedule_equals_the_checkpoint_buffer() {
    let file = PthFile::parse(CHECKPOINT, Arc::new(fixture(CHECKPOINT)) as Bytes).unwrap();
    let raw = file.data("alphas_cumprod").unwrap().unwrap();
    let stored: Vec<f64> = raw
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ours = super::schedule::alphas_cumprod();
    assert_eq!(stored.len(), 1000);
    for (t, (a, b)) in ours.iter().zip(&stored).enumerate() {
        assert!((a - b).abs() <= 1e-15, "t = {t}: {a} vs {b}");
    }
}

/// A checkpoint for another model fails with its missing keys grouped by module; keys the
/// model does not read are reported, not refused; the fixture is clean.
#[test]
fn checkpoint_keys_are_checked_by_module() {
    let device = Device::flex();
    let config = config("tiny-r50.yaml");
    let name = "diffusioninst/tiny-r18-backbone.safetensors";
    let r18 = checkpoint_weights(name, Arc::new(fixture(name)) as Bytes).unwrap();
    let err = DiffusionInst::load_checked(r18, &device, &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tiny-r18-backbone.safetensors"), "{err}");
    assert!(
        err.contains("missing keys") && err.contains("head"),
        "{err}"
    );
    assert!(err.lines().count() < 25, "{err}");

    struct Extra(Arc<dyn Weights>);
    impl Weights for Extra {
        fn read(&self, key: &str) -> crate::error::Result<Option<HostTensor>> {
            self.0.read(key)
        }
        fn origin(&self) -> String {
            self.0.origin()
        }
        fn keys(&self) -> Option<Vec<String>> {
            let mut keys = self.0.keys()?;
            keys.push("head.extra.weight".to_string());
            Some(keys)
        }
    }
    let (_, report) =
        DiffusionInst::load_checked(Arc::new(Extra(checkpoint())), &device, &config).unwrap();
    assert_eq!(report.unwrap().unexpected(), ["head.extra.weight"]);
    let (_, clean) = DiffusionInst::load_checked(checkpoint(), &device, &config).unwrap();
    assert!(clean.is_none(), "{}", clean.unwrap());
}

/// `backbone.*` from one set of weights, everything else from another.
struct WithBackbone {
    backbone: Arc<dyn Weights>,
    rest: Arc<dyn Weights>,
}

impl Weights for WithBackbone {
    fn read(&self, key: &str) -> crate::error::Result<Option<HostTensor>> {
        if key.starts_with("backbone.") {
            self.backbone.read(key)
        } else {
            self.rest.read(key)
        }
    }

    fn origin(&self) -> String {
        format!("{} + {}", self.backbone.origin(), self.rest.origin())
    }
}

/// The detector runs end to end on the Swin backbone (`tiny-swin-backbone.safetensors` under
/// `tiny-r50.pth`'s head, whose FPN width it shares; no reference for this pairing): 1 and 4
/// steps on image A give finite detections inside the image, with masks.
#[test]
fn a_swin_backbone_detects_end_to_end() {
    let device = Device::flex();
    let name = "diffusioninst/tiny-swin-backbone.safetensors";
    let weights = WithBackbone {
        backbone: checkpoint_weights(name, Arc::new(fixture(name)) as Bytes).unwrap(),
        rest: checkpoint(),
    };
    let vb = VarBuilder::from_weights(Arc::new(weights), &device, DType::F32);
    let config = crate::models::detection::tests::backbone_config("swin");
    let model = DiffusionInst::load(&vb, &config).unwrap();
    assert!(matches!(
        model.backbone.bottom_up,
        crate::models::detection::BottomUp::Swin(_)
    ));
    let images = Images::load();
    let image = images.get("a");
    for steps in [1, 4] {
        let options = DetectOptions {
            steps: Some(steps),
            seed: 0,
            ..DetectOptions::default()
        };
        let found = detect(&model, &[image], &options).remove(0);
        assert!(!found.is_empty(), "{steps} steps");
        for d in &found {
            assert!(d.score.is_finite() && d.bbox.iter().all(|v| v.is_finite()));
            assert!(d.bbox[0] >= 0.0 && d.bbox[2] <= image.width as f32);
            assert!(d.bbox[1] >= 0.0 && d.bbox[3] <= image.height as f32);
            assert_eq!(d.mask.as_ref().unwrap().len(), image.height * image.width);
        }
        eprintln!("swin, {steps} steps: {} detections", found.len());
    }
}
