//! A dataset zip in the native runner's format: `images/`, `annotations.json`,
//! `manifest.jsonl`, from the samples `Pipeline.generate` returned.

use js_sys::{Reflect, Uint8Array};
use maskforge_core::dataset::run::{ANNOTATIONS_FILE, MANIFEST_FILE};
use maskforge_core::dataset::{MemoryStorage, SampleGenerator, Storage, write_outputs};
use maskforge_core::mosaic::{MosaicFusion, MosaicRecord};
use wasm_bindgen::prelude::*;

use crate::pipeline::read_categories;

/// Packs `samples` (results of `pipe.generate`, any order) into a zip: `images/<file>` for the
/// kept ones, `annotations.json` and `manifest.jsonl` exactly as `maskforge generate` writes.
#[wasm_bindgen(js_name = datasetZip)]
pub fn dataset_zip(
    #[wasm_bindgen(unchecked_param_type = "CategoryInput[] | string")] categories: JsValue,
    #[wasm_bindgen(unchecked_param_type = "GenerateResult[]")] samples: Vec<JsValue>,
) -> Result<Uint8Array, JsError> {
    build(&categories, &samples)
        .map(|zip| Uint8Array::from(zip.as_slice()))
        .map_err(|e| JsError::new(&format!("datasetZip: {e}")))
}

fn build(categories: &JsValue, samples: &[JsValue]) -> Result<Vec<u8>, String> {
    let categories = read_categories(categories)?;
    let storage = MemoryStorage::new();
    let mut records = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let json = Reflect::get(s, &"recordJson".into())
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| {
                format!("sample {i} has no `recordJson` (pass what generate returned)")
            })?;
        let record: MosaicRecord =
            serde_json::from_str(&json).map_err(|e| format!("sample {i}: bad record: {e}"))?;
        if let Some(image) = &record.details.image {
            let png: Uint8Array = Reflect::get(s, &"png".into())
                .ok()
                .and_then(|v| v.dyn_into().ok())
                .ok_or_else(|| format!("sample {i} has no `png` bytes"))?;
            storage
                .write(&format!("images/{}", image.file_name), &png.to_vec())
                .map_err(|e| e.to_string())?;
        }
        records.push(record);
    }
    write_outputs(&storage, &categories, &records, MosaicFusion::DESCRIPTION)
        .map_err(|e| e.to_string())?;
    crate::zip::from_storage(storage, &[ANNOTATIONS_FILE, MANIFEST_FILE])
}
