//! `Detector`: DiffusionInst (or DiffusionDet) instance segmentation from the original
//! detectron2 config and checkpoint, fetched from a base URL; `detect` gives an image's COCO
//! results, as `maskforge detect` writes them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use burn::tensor::DType;
use js_sys::Promise;
use maskforge_core::diffusioninst::preprocess::RgbImage;
use maskforge_core::diffusioninst::results::{coco_results, default_category_ids};
use maskforge_core::diffusioninst::{DetectOptions, DiffusionInst, DiffusionInstConfig};
use maskforge_core::error::Error;
use maskforge_core::readback::Readback;
use maskforge_core::weights::{VarBuilder, checkpoint_weights};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::args::{Obj, call1, object};
use crate::fetch::{Fetcher, clear_cache, console};
use crate::images::read_image;
use crate::pipeline::{err, json_to_js};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** An image: PNG/JPEG bytes, pixels (ImageData, or `{width, height, data}` RGBA or RGB), or
 * anything a canvas draws. */
export type ImageInput = Uint8Array | ArrayBuffer | Blob | ImageData | ImageBitmap |
  HTMLImageElement | HTMLCanvasElement | OffscreenCanvas | VideoFrame |
  { width: number; height: number; data: Uint8ClampedArray | Uint8Array | number[] };
export interface DetectorLoadOptions {
  device?: DeviceKind;
  /** The detectron2 YAML config under the base URL (default "config.yaml"); its `_BASE_`
   * files are fetched relative to it, as detectron2 joins them. */
  config?: string;
  /** The checkpoint under the base URL, `.safetensors` or detectron2's `.pth` (told apart by
   * content; default: "model.safetensors", else "model.pth"). */
  model?: string;
  onProgress?: (progress: LoadProgress) => void;
}
export interface DetectOptions {
  /** DDIM steps (default: the config's SAMPLE_STEP). */
  steps?: number;
  /** Seeds the box noise as `torch.manual_seed(seed)` does for the original (default 0). */
  seed?: number | bigint;
  /** Boxes to denoise (default: the config's NUM_PROPOSALS). */
  numProposals?: number;
  /** Detections scoring below this are dropped (default 0). */
  scoreThreshold?: number;
  /** IoU of the class-aware NMS (default 0.5 when the config's USE_NMS, else none). */
  nms?: number;
  /** Also ensemble the last step's detections (the original leaves them out). */
  ensembleLastStep?: boolean;
  /** The results' `image_id` (default 1). */
  imageId?: number;
}
/** One entry of a COCO results file (detectron2's `instances_to_coco_json`). */
export interface DetectionResult {
  image_id: number;
  category_id: number;
  /** [x, y, width, height] in the image's pixels. */
  bbox: [number, number, number, number];
  score: number;
  /** Compressed RLE of the image's size; absent for box-only (DiffusionDet) models. */
  segmentation?: RleSegmentation;
}
"#;

/// Config file fetched by default.
const CONFIG_FILE: &str = "config.yaml";
/// Checkpoints tried by default, in order.
const MODEL_FILES: [&str; 2] = ["model.safetensors", "model.pth"];
/// `_BASE_` files one config may pull in (a guard against runaway chains).
const MAX_BASE_FILES: usize = 32;

struct Inner {
    model: DiffusionInst,
    category_ids: Vec<u64>,
    device: &'static str,
}

/// A loaded DiffusionInst (or DiffusionDet) detector.
#[wasm_bindgen]
pub struct Detector {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Detector {
    /// Fetches `config.yaml` (with its `_BASE_` files) and `model.safetensors` or `model.pth`
    /// from `baseUrl` (kept in the Cache Storage API) and loads the model on `options.device`.
    pub async fn load(
        #[wasm_bindgen(js_name = baseUrl)] base_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "DetectorLoadOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Result<Detector, JsError> {
        console_error_panic_hook::set_once();
        load(base_url, options.map(JsValue::from).unwrap_or_default())
            .await
            .map_err(|e| err(format!("Detector.load: {e}")))
    }

    /// Deletes the downloaded model files from the Cache Storage API (the cache `Pipeline`
    /// uses too).
    #[wasm_bindgen(js_name = clearCache)]
    pub async fn clear_cache() -> Result<bool, JsError> {
        clear_cache().await.map_err(err)
    }

    /// The device in use: "webgpu" or "cpu".
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.inner.device.to_string()
    }

    /// "DiffusionInst" or "DiffusionDet", as the config names the architecture.
    #[wasm_bindgen(getter)]
    pub fn architecture(&self) -> String {
        self.inner.model.config().architecture.name().to_string()
    }

    /// Whether detections carry masks (`segmentation`).
    #[wasm_bindgen(getter, js_name = hasMasks)]
    pub fn has_masks(&self) -> bool {
        self.inner.model.has_masks()
    }

    /// The category id of each class: COCO's ids for an 80-class model, else `class + 1`.
    #[wasm_bindgen(getter, js_name = categoryIds, unchecked_return_type = "number[]")]
    pub fn category_ids(&self) -> js_sys::Array {
        self.inner
            .category_ids
            .iter()
            .map(|&c| JsValue::from_f64(c as f64))
            .collect()
    }

    /// The config's number of DDIM steps, used when `detect` is given none.
    #[wasm_bindgen(getter, js_name = defaultSteps)]
    pub fn default_steps(&self) -> u32 {
        self.inner.model.config().head.sample_step as u32
    }

    /// Detects objects in one image; resolves to its COCO results (`image_id` 1 unless
    /// `imageId` says otherwise), best first as the original orders them.
    #[wasm_bindgen(unchecked_return_type = "Promise<DetectionResult[]>")]
    pub fn detect(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageInput")] image: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "DetectOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Promise {
        let inner = self.inner.clone();
        let options = options.map(JsValue::from).unwrap_or_default();
        future_to_promise(async move {
            detect(&inner, image, options)
                .await
                .map_err(|e| JsValue::from(err(format!("detect: {e}"))))
        })
    }
}

async fn load(base_url: String, options: JsValue) -> Result<Detector, String> {
    let o = Obj::new("options", options)?;
    let kind = o.string("device")?.unwrap_or_else(|| "auto".into());
    let on_progress = o.function("onProgress")?;
    let config_file = o.string("config")?.unwrap_or_else(|| CONFIG_FILE.into());
    let model_files = match o.string("model")? {
        Some(name) => vec![name],
        None => MODEL_FILES.map(String::from).to_vec(),
    };
    let (device, name) = crate::device::select(&kind).await?;
    let fetcher = Fetcher::new(&base_url, on_progress.clone()).await;
    let config = read_config(&fetcher, &config_file).await?;

    let mut checkpoint = None;
    for file in &model_files {
        if let Some(bytes) = fetcher.get(file).await? {
            checkpoint = Some((fetcher.url(file), bytes));
            break;
        }
    }
    let (model_url, bytes) = checkpoint.ok_or_else(|| {
        let urls: Vec<String> = model_files.iter().map(|f| fetcher.url(f)).collect();
        format!("{}: not found (HTTP 404)", urls.join(", "))
    })?;
    call1(
        &on_progress,
        &object(&[
            ("phase", JsValue::from_str("init")),
            ("file", JsValue::from_str("")),
            ("url", JsValue::from_str("")),
            ("loaded", JsValue::from(0)),
            ("total", JsValue::NULL),
        ]),
    );
    let weights =
        checkpoint_weights(model_url.clone(), Arc::new(bytes)).map_err(|e| e.to_string())?;
    let vb = VarBuilder::from_weights(weights, &device, DType::F32);
    let model = DiffusionInst::load(&vb, &config).map_err(|e| {
        format!(
            "{model_url}: does not fit {}: {e}",
            fetcher.url(&config_file)
        )
    })?;
    Ok(Detector {
        inner: Rc::new(Inner {
            category_ids: default_category_ids(config.head.num_classes),
            model,
            device: name,
        }),
    })
}

/// Reads the config, fetching each `_BASE_` file as the parser asks for it: the parser's
/// callback is synchronous, so a parse that needs a file not fetched yet stops, the file is
/// fetched, and the parse starts again (configs are a few small files).
async fn read_config(fetcher: &Fetcher, file: &str) -> Result<DiffusionInstConfig, String> {
    let url = fetcher.url(file);
    let bytes = fetcher.required(file).await?;
    // Joined `_BASE_` path → its bytes, or the reason there are none.
    let mut bases: HashMap<String, Result<Vec<u8>, String>> = HashMap::new();
    loop {
        let wanted = RefCell::new(None);
        let resolve = |path: &str| -> maskforge_core::Result<Vec<u8>> {
            match bases.get(path) {
                Some(Ok(bytes)) => Ok(bytes.clone()),
                Some(Err(reason)) => Err(Error::bad_file(path, reason)),
                None => {
                    *wanted.borrow_mut() = Some(path.to_string());
                    Err(Error::bad_file(path, "not fetched yet"))
                }
            }
        };
        let parsed = DiffusionInstConfig::from_yaml(&url, &bytes, &resolve);
        let wanted = wanted.into_inner();
        match (parsed, wanted) {
            (Ok((config, warnings)), _) => {
                for w in warnings {
                    console("warn", &format!("maskforge: {w}"));
                }
                return Ok(config);
            }
            (Err(_), Some(path)) if bases.len() < MAX_BASE_FILES => {
                let fetched = match fetcher.get_at(&path, path.clone()).await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err("not found (HTTP 404)".to_string()),
                    Err(e) => Err(e),
                };
                bases.insert(path, fetched);
            }
            (Err(e), _) => return Err(e.to_string()),
        }
    }
}

async fn detect(inner: &Inner, image: JsValue, options: JsValue) -> Result<JsValue, String> {
    let o = Obj::new("options", options)?;
    let nms_iou = o.number("nms")?.map(|v| v as f32);
    if nms_iou.is_some_and(|iou| !(0.0..=1.0).contains(&iou)) {
        return Err("`nms` is an IoU in 0…1".into());
    }
    let options = DetectOptions {
        steps: o.whole("steps", 1)?.map(|v| v as usize),
        num_proposals: o.whole("numProposals", 1)?.map(|v| v as usize),
        seed: o.whole("seed", 0)?.unwrap_or(0),
        initial_noise: None,
        ensemble_last_step: o.boolean("ensembleLastStep")?.unwrap_or(false),
        nms_iou,
        score_threshold: o.number("scoreThreshold")?.unwrap_or(0.0) as f32,
    };
    let image_id = o.whole("imageId", 0)?.unwrap_or(1);
    let pixels = read_image("image", image).await?;
    let rgb = RgbImage {
        pixels: &pixels.rgb,
        height: pixels.height,
        width: pixels.width,
    };
    let mut found = inner
        .model
        .detect(std::slice::from_ref(&rgb), &options, Readback::Async)
        .await
        .map_err(|e| e.to_string())?;
    let detections = found.pop().unwrap_or_default();
    let records = coco_results(
        &detections,
        image_id,
        (pixels.height, pixels.width),
        &inner.category_ids,
    )
    .map_err(|e| e.to_string())?;
    json_to_js(&serde_json::to_string(&records).expect("records serialise"))
}
