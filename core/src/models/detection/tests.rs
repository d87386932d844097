//! The backbone and its input path against `tests/fixtures/diffinst_backbone_ref.py` (a PyTorch
//! re-implementation of detectron2's ResNet/FPN and test-time preprocessing; random weights in
//! `tests/fixtures/diffusioninst/tiny-r{50,18}-backbone.safetensors`).

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::SafeTensors;

use super::{Backbone, BottomUp};
use crate::diffusioninst::preprocess::{RgbImage, preprocess, resize_shortest_edge};
use crate::diffusioninst::{BackboneConfig, DiffusionInstConfig, SwinConfig};
use crate::weights::{Bytes, SafetensorsFile, SafetensorsWeights, VarBuilder, checkpoint_weights};

/// Max error relative to the tensor's scale (`max |want|`, at least 1) for every feature: f32
/// convolutions summed in another order than PyTorch's. Measured: at most 1.3e-6 (R18 p2; max
/// abs 5.3e-5 on values up to 42); the stem is exact.
const FEATURE_TOL: f32 = 1e-5;

pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (see tests/fixtures/README.md)"))
}

/// Reads `name` (relative to `tests/fixtures/diffusioninst/`), resolving `_BASE_` there.
pub(crate) fn config(name: &str) -> DiffusionInstConfig {
    let resolve = |path: &str| Ok(fixture(&format!("diffusioninst/{path}")));
    let (config, warnings) =
        DiffusionInstConfig::from_yaml(name, &fixture(&format!("diffusioninst/{name}")), &resolve)
            .expect("fixture config");
    assert!(warnings.is_empty(), "{warnings:?}");
    config
}

/// The configs of the fixture backbones: tiny-r50, tiny-r18 narrowed to res2 8, and tiny-swin
/// (`SWIN.SIZE: T`) narrowed to [`narrow_swin`].
pub(crate) fn backbone_config(arch: &str) -> DiffusionInstConfig {
    let mut c = config(&format!("tiny-{arch}.yaml"));
    match &mut c.backbone {
        BackboneConfig::ResNet(r) if arch == "r18" => r.res2_out_channels = 8,
        BackboneConfig::Swin(s) => narrow_swin(s),
        _ => {}
    }
    c
}

/// `tests/fixtures/diffinst_swin_ref.py`'s Swin, smaller than any `SWIN.SIZE`: embed 8,
/// depths (2, 2, 2, 2), heads (2, 2, 4, 8), window 7 (size T's).
pub(crate) fn narrow_swin(s: &mut SwinConfig) {
    s.embed_dim = 8;
    s.depths = [2, 2, 2, 2];
    s.num_heads = [2, 2, 4, 8];
    assert_eq!(s.window_size, 7);
}

pub(crate) fn load_backbone(arch: &str, device: &Device) -> Backbone {
    let name = format!("diffusioninst/tiny-{arch}-backbone.safetensors");
    let bytes: Bytes = Arc::new(fixture(&name));
    let file = SafetensorsFile::parse(name, bytes).unwrap();
    let weights = Arc::new(SafetensorsWeights::new(vec![file]).unwrap());
    let vb = VarBuilder::from_weights(weights, device, DType::F32).pp("backbone");
    Backbone::load(&vb, &backbone_config(arch)).unwrap()
}

/// The expected tensors: `(shape, values)` of f32 ones, raw bytes of u8 ones.
pub(crate) struct Expected(Vec<u8>);

impl Expected {
    pub(crate) fn load() -> Self {
        Self::open("diffinst_backbone")
    }

    /// `tests/fixtures/expected/{name}.safetensors`.
    pub(crate) fn open(name: &str) -> Self {
        Self(fixture(&format!("expected/{name}.safetensors")))
    }

    /// The raw little-endian bytes and shape of `key`.
    pub(crate) fn raw(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        self.u8(key)
    }

    pub(crate) fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), values)
    }

    pub(crate) fn u8(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        (t.shape().to_vec(), t.data().to_vec())
    }

    pub(crate) fn tensor(&self, key: &str, device: &Device) -> Tensor<4> {
        let (shape, values) = self.f32(key);
        Tensor::from_data(
            TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]),
            device,
        )
    }
}

pub(crate) fn values(t: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (
        dims,
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
    )
}

/// `(max |got − want|, that over max(1, max |want|))`.
pub(crate) fn errors(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let abs = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max);
    let scale = want.iter().map(|w| w.abs()).fold(1.0, f32::max);
    (abs, abs / scale)
}

/// The backbone's bottom-up outputs by name (sorted), then its pyramid `p2`…`p6`.
pub(crate) fn backbone_outputs(backbone: &Backbone, x: Tensor<4>) -> Vec<(String, Tensor<4>)> {
    let mut out: Vec<_> = backbone.bottom_up.forward(x.clone()).into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(
        backbone
            .fpn
            .out_features()
            .into_iter()
            .zip(backbone.forward(x)),
    );
    out
}

/// Each `(name, tensor)` of `got` within `tol` of the expected `{prefix}{name}`.
pub(crate) fn check_outputs(
    expected: &Expected,
    prefix: &str,
    got: Vec<(String, Tensor<4>)>,
    tol: f32,
) {
    for (name, t) in got {
        let key = format!("{prefix}{name}");
        let (shape, v) = values(t);
        let (want_shape, want) = expected.f32(&key);
        assert_eq!(shape, want_shape, "{key}");
        let (abs, rel) = errors(&v, &want);
        eprintln!("{key}: max abs {abs:.2e}, rel {rel:.2e}");
        assert!(rel <= tol, "{key}: {rel} > {tol}");
    }
}

/// Stem, res2…res5 and p2…p6 of `arch` on the fixture batch, each within `tol` of PyTorch's.
pub(crate) fn check_backbone(arch: &str, device: &Device, tol: f32) {
    let expected = Expected::load();
    let backbone = load_backbone(arch, device);
    let x = expected.tensor("batch_a", device);
    let BottomUp::ResNet(resnet) = &backbone.bottom_up else {
        panic!("not a ResNet")
    };
    let mut got = vec![("stem".to_string(), resnet.stem.forward(x.clone()))];
    got.extend(backbone_outputs(&backbone, x));
    assert_eq!(got.len(), 10);
    check_outputs(&expected, &format!("{arch}."), got, tol);
}

#[test]
fn resnet50_fpn_equals_pytorch() {
    check_backbone("r50", &Device::flex(), FEATURE_TOL);
}

#[test]
fn resnet18_fpn_equals_pytorch() {
    check_backbone("r18", &Device::flex(), FEATURE_TOL);
}

#[test]
fn batch_of_two_equals_two_batches_of_one() {
    let device = Device::flex();
    let backbone = load_backbone("r50", &device);
    let x = Expected::load().tensor("batch_a", &device);
    let one = backbone.forward(x.clone());
    let two = backbone.forward(Tensor::cat(vec![x.clone(), x], 0));
    for (a, b) in one.into_iter().zip(two) {
        let (_, a) = values(a);
        let (_, b) = values(b);
        assert_eq!([a.clone(), a].concat(), b);
    }
}

/// The detectron2 `Checkpointer` file (`{"model": state dict}`, a zip pickle) loads unchanged
/// through the safe `.pth` reader and gives the safetensors file's features.
#[test]
fn the_pth_checkpoint_gives_the_same_features() {
    let device = Device::flex();
    let name = "diffusioninst/tiny-r50-backbone.pth";
    let weights = checkpoint_weights(name, Arc::new(fixture(name)) as Bytes).unwrap();
    let vb = VarBuilder::from_weights(weights, &device, DType::F32).pp("backbone");
    let from_pth = Backbone::load(&vb, &backbone_config("r50")).unwrap();
    let from_safetensors = load_backbone("r50", &device);
    let x = Expected::load().tensor("batch_a", &device);
    for (a, b) in from_pth
        .forward(x.clone())
        .into_iter()
        .zip(from_safetensors.forward(x))
    {
        assert_eq!(values(a), values(b));
    }
}

#[test]
fn weight_keys_are_detectron2_keys() {
    let name = "diffusioninst/tiny-r50-backbone.safetensors";
    let file = SafetensorsFile::parse(name, Arc::new(fixture(name)) as Bytes).unwrap();
    let keys: Vec<&str> = file.keys().collect();
    for key in [
        "backbone.bottom_up.stem.conv1.weight",
        "backbone.bottom_up.stem.conv1.norm.running_var",
        "backbone.bottom_up.res2.0.shortcut.norm.weight",
        "backbone.bottom_up.res5.2.conv3.norm.bias",
        "backbone.fpn_lateral2.bias",
        "backbone.fpn_output5.weight",
    ] {
        assert!(keys.contains(&key), "{key}");
    }
}

#[test]
fn preprocessing_equals_detectron2() {
    let expected = Expected::load();
    let config = config("tiny-r50.yaml");
    let device = Device::flex();
    let (a_shape, a) = expected.u8("image_a");
    let (b_shape, b) = expected.u8("image_b");
    let image = |shape: &[usize], pixels| RgbImage {
        pixels,
        height: shape[0],
        width: shape[1],
    };
    let (img_a, img_b) = (image(&a_shape, &a[..]), image(&b_shape, &b[..]));
    assert_eq!(resize_shortest_edge(48, 77, 64, 96), [60, 96]);
    assert_eq!(resize_shortest_edge(90, 61, 64, 96), [94, 64]);

    // One image: exactly PyTorch's normalised, padded batch.
    let one = preprocess(&[img_a], &config.input, 32, &device).unwrap();
    assert_eq!(one.image_sizes, vec![[60, 96]]);
    let (shape, got) = values(one.images);
    let (want_shape, want) = expected.f32("batch_a");
    assert_eq!(shape, want_shape);
    assert_eq!(got, want);

    // Two images: each resized as Pillow does, normalised, zero-padded to 96×96.
    let two = preprocess(&[img_a, img_b], &config.input, 32, &device).unwrap();
    assert_eq!(two.image_sizes, vec![[60, 96], [94, 64]]);
    let (shape, got) = values(two.images);
    assert_eq!(shape, vec![2, 3, 96, 96]);
    for (i, key) in ["resized_a", "resized_b"].iter().enumerate() {
        let (rs, pixels) = expected.u8(key);
        let (h, w) = (rs[0], rs[1]);
        for c in 0..3 {
            let (mean, std) = (config.input.pixel_mean[c], config.input.pixel_std[c]);
            for y in 0..96 {
                for x in 0..96 {
                    let want = if y < h && x < w {
                        (pixels[(y * w + x) * 3 + c] as f32 - mean) / std
                    } else {
                        0.0
                    };
                    let at = ((i * 3 + c) * 96 + y) * 96 + x;
                    assert_eq!(got[at], want, "{key} c{c} y{y} x{x}");
                }
            }
        }
    }
}
