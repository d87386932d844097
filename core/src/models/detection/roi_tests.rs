//! ROIAlign and the pooler against `tests/fixtures/roi_align_ref.py` (torchvision's
//! `roi_align` and a re-implementation of detectron2's `ROIPooler.forward`).

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;

use super::RoiPooler;
use super::roi_align::{RoiAlignParams, roi_align};
use super::tests::{config, errors};
use crate::diffusioninst::PoolerConfig;

/// Max abs error on values of order 1: the host repeats torchvision's f32 arithmetic in its
/// order. Measured: 0 (bit-equal) for every case.
const TOL: f32 = 1e-6;

struct Reference(Vec<u8>);

impl Reference {
    fn load() -> Self {
        let path = format!(
            "{}/../tests/fixtures/expected/roi_align.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    fn get(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let values = (t.data().chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), values)
    }

    fn map(&self, key: &str, device: &Device) -> Tensor<4> {
        let (s, v) = self.get(key);
        Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
    }

    fn boxes(&self, key: &str) -> Vec<[f32; 5]> {
        let (_, v) = self.get(key);
        v.chunks_exact(5).map(|b| b.try_into().unwrap()).collect()
    }
}

fn host(t: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
    (
        t.dims().to_vec(),
        t.into_data().try_into_vec::<f32>().unwrap(),
    )
}

#[test]
fn roi_align_matches_torchvision() {
    let device = Device::flex();
    let r = Reference::load();
    let boxes = r.boxes("align.boxes");
    for aligned in [false, true] {
        for sampling_ratio in [2, 0] {
            let key = format!("align.out.{}.{sampling_ratio}", aligned as u8);
            let params = RoiAlignParams {
                output_size: 7,
                spatial_scale: 0.5,
                sampling_ratio,
                aligned,
            };
            let (shape, got) = host(roi_align(r.map("align.features", &device), &boxes, params));
            let (want_shape, want) = r.get(&key);
            assert_eq!(shape, want_shape, "{key}");
            let (abs, _) = errors(&got, &want);
            assert!(abs <= TOL, "{key}: max abs error {abs}");
        }
    }
}

#[test]
fn roi_align_of_no_boxes_is_empty() {
    let device = Device::flex();
    let params = RoiAlignParams {
        output_size: 7,
        spatial_scale: 0.25,
        sampling_ratio: 2,
        aligned: true,
    };
    let pooled = roi_align(Tensor::zeros([1, 3, 4, 4], &device), &[], params);
    assert_eq!(pooled.dims(), [0, 3, 7, 7]);
}

#[test]
fn pooler_matches_detectron2() {
    let device = Device::flex();
    let r = Reference::load();
    let pooler = RoiPooler::new(&config("tiny-r50.yaml").pooler).unwrap();
    assert_eq!(
        pooler,
        RoiPooler {
            min_level: 2,
            max_level: 5,
            output_size: 7,
            sampling_ratio: 2,
            aligned: true,
        }
    );
    let boxes = r.boxes("pool.boxes");
    let levels: Vec<f32> = (pooler.levels(&boxes).iter())
        .map(|l| l.unwrap() as f32)
        .collect();
    assert_eq!(levels, r.get("pool.levels").1);
    let maps: Vec<_> = ["p2", "p3", "p4", "p5"]
        .iter()
        .map(|p| r.map(&format!("pool.{p}"), &device))
        .collect();
    let (shape, got) = host(pooler.forward(&maps, &boxes));
    let (want_shape, want) = r.get("pool.out");
    assert_eq!(shape, want_shape);
    let (abs, _) = errors(&got, &want);
    assert!(abs <= TOL, "pooler: max abs error {abs}");
}

#[test]
fn pooler_zeroes_boxes_of_negative_area_and_rejects_other_features() {
    let device = Device::flex();
    let pooler = RoiPooler::new(&config("tiny-r50.yaml").pooler).unwrap();
    let maps: Vec<_> = (2..=5)
        .map(|l| Tensor::ones([1, 2, 64 >> l, 64 >> l], &device))
        .collect();
    let boxes = [[0.0, 8.0, 8.0, 4.0, 20.0], [0.0, 4.0, 4.0, 40.0, 40.0]];
    assert_eq!(pooler.levels(&boxes), [None, Some(0)]);
    let (_, got) = host(pooler.forward(&maps, &boxes));
    assert!(got[..98].iter().all(|&v| v == 0.0));
    assert!(got[98..].iter().all(|&v| (v - 1.0).abs() < 1e-6));
    let bad = PoolerConfig {
        in_features: vec!["p2".into(), "p4".into()],
        ..config("tiny-r50.yaml").pooler
    };
    assert!(RoiPooler::new(&bad).is_err());
}
