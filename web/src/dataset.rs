//! A dataset zip in the native runner's format: `images/`, `annotations.json`,
//! `manifest.jsonl`, from the samples `Pipeline.generate` returned.

use js_sys::{Reflect, Uint8Array};
use maskforge_core::dataset::{SampleRecord, assemble_annotations, manifest_jsonl};
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
    let mut records = Vec::new();
    let mut images = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let json = Reflect::get(s, &"recordJson".into())
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| {
                format!("sample {i} has no `recordJson` (pass what generate returned)")
            })?;
        let record: SampleRecord =
            serde_json::from_str(&json).map_err(|e| format!("sample {i}: bad record: {e}"))?;
        if let Some(image) = &record.image {
            let png: Uint8Array = Reflect::get(s, &"png".into())
                .ok()
                .and_then(|v| v.dyn_into().ok())
                .ok_or_else(|| format!("sample {i} has no `png` bytes"))?;
            images.push((format!("images/{}", image.file_name), png.to_vec()));
        }
        records.push(record);
    }
    let annotations = assemble_annotations(&categories, &records).map_err(|e| e.to_string())?;
    let annotations = serde_json::to_vec(&annotations).expect("JSON values serialise");
    let manifest = manifest_jsonl(&records);
    images.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries: Vec<(String, &[u8])> = vec![
        ("annotations.json".into(), &annotations),
        ("manifest.jsonl".into(), &manifest),
    ];
    entries.extend(images.iter().map(|(n, b)| (n.clone(), b.as_slice())));
    crate::zip::write(&entries)
}
