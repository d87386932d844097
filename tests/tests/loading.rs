//! Weight layouts other than one file per component load to the same model.

use burn::tensor::{Device, Tensor};
use maskforge_native::source::DirSource;
use maskforge_tests::{Expected, assert_close, fixture, load_pipeline, values};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A UNet split over two shards with a `diffusion_pytorch_model.safetensors.index.json`, as
/// diffusers writes large checkpoints, gives exactly the single-file result.
#[test]
fn sharded_unet_equals_single_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-sd15"), dir.path());
    let unet = dir.path().join("unet");
    let single = unet.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&single).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let half = tensors.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let name = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", i + 1);
        safetensors::serialize_to_file(part.iter().cloned(), None, &unet.join(&name)).unwrap();
        for (key, _) in part {
            weight_map.insert(key.clone(), serde_json::Value::String(name.clone()));
        }
    }
    std::fs::remove_file(&single).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        unet.join("diffusion_pytorch_model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let device = Device::flex();
    let sharded = maskforge_core::pipelines::StableDiffusion::load(
        &DirSource::new(dir.path()).unwrap(),
        &device,
        burn::tensor::DType::F32,
    )
    .unwrap();
    let reference = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("sd15");
    let sample: Tensor<4> = exp.tensor("unet.in.sample", &device);
    let context: Tensor<3> = exp.tensor("unet.in.encoder_hidden_states", &device);
    assert_close(
        "sharded unet",
        &values(sharded.unet.forward(sample.clone(), 500.0, &context, None)),
        &values(reference.unet.forward(sample, 500.0, &context, None)),
        0.0,
    );
}
