//! Shared helpers of the parity tests: fixture paths, expected tensors, tolerances.

use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor, TensorData};
use maskforge_core::models::diffusion::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use maskforge_core::mosaic::layout::{Layout, LayoutDraws, RegionBox};
use maskforge_core::mosaic::plan::{RegionPlan, SamplePlan, attention_token_index};
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::weights::{
    ComponentFiles, Library, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights,
    load_component_weights,
};
use maskforge_native::source::{DirSource, map_file};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The expected tensors of `expected/<name>.safetensors`.
pub struct Expected(SafetensorsWeights);

impl Expected {
    pub fn load(name: &str) -> Self {
        let path = fixture(&format!("expected/{name}.safetensors"));
        let file =
            SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
        Self(SafetensorsWeights::new(vec![file]).unwrap())
    }

    /// Shape and values of `key`.
    pub fn host(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let t = self
            .0
            .read(key)
            .unwrap()
            .unwrap_or_else(|| panic!("fixture has no tensor `{key}`"));
        (t.shape, t.data)
    }

    /// `key` as a rank-`D` tensor on `device`.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, data) = self.host(key);
        let shape: [usize; D] = shape
            .try_into()
            .unwrap_or_else(|s| panic!("`{key}` has shape {s:?}, not rank {D}"));
        Tensor::from_data(TensorData::new(data, shape), device)
    }
}

/// Values of `t` as f32 on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Asserts that `got` equals `expected` to within `tol × max(1, max|expected|)` everywhere,
/// reporting the worst element. Returns the largest absolute error.
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], tol: f32) -> f32 {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        got.len(),
        expected.len()
    );
    let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0f32, 0);
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let err = (g - e).abs();
        if !(err <= worst) {
            worst = err;
            at = i;
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: max abs error {worst:e} at {at} (got {}, expected {}); allowed {:e} (tol {tol:e} × scale {scale})",
        got[at],
        expected[at],
        tol * scale
    );
    worst
}

/// Compares tensor `got` with fixture tensor `key`, shapes included.
pub fn check<const D: usize>(exp: &Expected, key: &str, got: Tensor<D>, tol: f32) -> f32 {
    let (shape, expected) = exp.host(key);
    assert_eq!(got.dims().to_vec(), shape, "{key}: shape");
    let worst = assert_close(key, &values(got), &expected, tol);
    eprintln!("{key}: max abs error {worst:.2e}");
    worst
}

/// Loads a fixture pipeline folder in f32.
pub fn load_pipeline(name: &str, device: &Device) -> StableDiffusion {
    let source = DirSource::new(fixture(name)).unwrap();
    StableDiffusion::load(&source, device, DType::F32).unwrap()
}

/// The diffusers UNet folder `tests/fixtures/<name>` (`config.json` and its weights), in f32.
pub fn load_unet(name: &str, device: &Device) -> UNet2DConditionModel {
    let dir = fixture(name);
    let config = UNet2DConditionConfig::from_json(
        &std::fs::read(dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let source = DirSource::new(&dir).unwrap();
    let files = ComponentFiles::new(".", Library::Diffusers, false);
    let weights = load_component_weights(&source, &files).unwrap();
    let vb = VarBuilder::from_weights(std::sync::Arc::new(weights), device, DType::F32);
    UNet2DConditionModel::load(&vb, &config, "config.json").unwrap()
}

/// Loads a fixture single-file checkpoint with the configs of the folder of the same name.
pub fn load_single_file(name: &str, device: &Device) -> StableDiffusion {
    let path = fixture(&format!("{name}.safetensors"));
    let configs = DirSource::new(fixture(name)).unwrap();
    StableDiffusion::load_single_file(
        &path.display().to_string(),
        map_file(&path).unwrap(),
        &configs,
        device,
        DType::F32,
    )
    .unwrap()
}

/// Categories and prompts of `tests/fixtures/mosaic_ref.py`.
pub const MOSAIC_CATEGORIES: [(&str, &str); 4] = [
    (
        "cat",
        "a photo of a single cat, a small domesticated feline",
    ),
    (
        "bow_(weapon)",
        "a photo of a single bow (weapon), a weapon for shooting arrows",
    ),
    ("dog", "a photo of a single dog"),
    ("teapot", "a photo of a single teapot, pot for brewing tea"),
];
/// Region boxes `[y1, y2, x1, x2]` of `mosaic_ref.py`: 64×64 regions, 16×16 overlap, split at
/// ratios 1.1 and 0.9.
pub const BOXES: [[usize; 4]; 4] = [
    [0, 64, 0, 72],
    [0, 64, 56, 128],
    [48, 128, 0, 72],
    [48, 128, 56, 128],
];

/// The sample of `mosaic_ref.py` (seed 7), token positions found by MaskForge's tokenizer.
pub fn mosaic_reference_plan(sd: &StableDiffusion) -> SamplePlan {
    let regions: Vec<RegionPlan> = MOSAIC_CATEGORIES
        .iter()
        .zip(BOXES)
        .enumerate()
        .map(|(i, ((name, prompt), [y1, y2, x1, x2]))| RegionPlan {
            category_id: i as u64 + 1,
            category_name: name.to_string(),
            prompt: prompt.to_string(),
            token_index: attention_token_index(&sd.tokenizer, prompt, name).unwrap(),
            bbox: RegionBox { y1, y2, x1, x2 },
        })
        .collect();
    SamplePlan {
        index: 0,
        seed: 7,
        main_category_id: 1,
        draws: LayoutDraws::Four {
            ratio_x: 1.1,
            ratio_y: 0.9,
        },
        layout: Layout {
            canvas_height: 128,
            canvas_width: 128,
            regions: regions.iter().map(|r| r.bbox).collect(),
        },
        regions,
    }
}

/// Asserts that a region's captured attention maps equal the fixture's `region{r}.res{d}`,
/// relative to each map's maximum (probabilities are ~1e-2). Returns the largest error.
pub fn assert_attention_close(
    exp: &Expected,
    region: usize,
    maps: &[maskforge_core::mosaic::denoise::AttentionMap],
    tol: f32,
) -> f32 {
    let mut worst = 0f32;
    for m in maps {
        let (shape, expected) = exp.host(&format!("region{region}.res{}", m.denominator));
        assert_eq!(shape, vec![m.height, m.width]);
        let scale = expected.iter().fold(0f32, |a, &b| a.max(b.abs()));
        let got: Vec<f32> = m.values.iter().map(|v| v / scale).collect();
        let want: Vec<f32> = expected.iter().map(|v| v / scale).collect();
        let what = format!("region {region} attention 1/{}", m.denominator);
        worst = worst.max(assert_close(&what, &got, &want, tol));
    }
    worst
}

/// Prompt, negative prompt and output size of `tests/fixtures/sdxl_controlnet_ref.py`.
pub mod sdxl_fixture {
    pub const PROMPT: &str = "a photo of a single cat";
    pub const NEGATIVE: &str = "blurry, low quality";
    pub const HEIGHT: usize = 64;
    pub const WIDTH: usize = 48;
}

/// ControlNet `nets[i]` (fixture names) with fixture image `images[i]` and `scales[i]`,
/// loaded the way `maskforge txt2img --controlnet` loads them.
pub fn fixture_controls(
    sd: &StableDiffusion,
    nets: &[&str],
    images: &[&str],
    scales: &[f32],
) -> Vec<maskforge_core::pipelines::Control> {
    let paths = |names: &[&str]| names.iter().map(|n| fixture(n)).collect::<Vec<_>>();
    maskforge_native::control::load_controls(
        sd,
        &paths(nets),
        &paths(images),
        scales,
        sdxl_fixture::HEIGHT,
        sdxl_fixture::WIDTH,
    )
    .unwrap()
}
