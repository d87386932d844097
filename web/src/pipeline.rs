//! `Pipeline`: the JS API.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor, TensorData};
use js_sys::{Float32Array, Promise, Uint8Array};
use maskforge_core::dataset::{
    Category, SampleGenerator, assemble_annotations, main_pool, parse_categories,
};
use maskforge_core::imaging::control_image::decode_control_image;
use maskforge_core::mosaic::options::MODEL_SETTINGS;
use maskforge_core::mosaic::sample::encode_image;
use maskforge_core::mosaic::{MosaicFusion, MosaicOptions};
use maskforge_core::pipelines::{
    Control, ControlNet, MODEL_INDEX, ModelIndex, PipelineFiles, StableDiffusion, Txt2ImgParams,
    image_to_rgb8_async,
};
use maskforge_core::readback::Readback;
use maskforge_core::schedulers::SchedulerKind;
use maskforge_core::seggen::options::{CONTROLNET_SETTINGS, ControlNetSettings};
use maskforge_core::weights::{ComponentFiles, FileSource, MemorySource, WeightFile, shard_paths};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::args::{Obj, call1, call2, object};
use crate::fetch::{Fetcher, clear_cache, js_message};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export type DeviceKind = "auto" | "webgpu" | "cpu";
export type SchedulerName = "ddim" | "pndm" | "euler" | "euler-a" | "dpmpp-2m" | "lms" | "heun";
/** Progress of loading: a file downloaded, read from the cache or (fromFiles) from disk; then "init". */
export interface LoadProgress {
  phase: "download" | "cache" | "read" | "init";
  file: string;
  url: string;
  loaded: number;
  total: number | null;
}
export interface LoadOptions {
  device?: DeviceKind;
  /** Weight files to try first when a folder has both: "fp16" (default: half the download
   * and memory) or "fp32". */
  variant?: "fp16" | "fp32";
  /** What the weights are kept in and the model runs in. "auto" (default): f16 on a WebGPU
   * adapter with `shader-f16` unless `variant` is "fp32", else f32 (fp16 files widened on load).
   * "f16" is refused without `shader-f16`. Softmax, norms and the VAE run in f32 either way. */
  dtype?: "auto" | "f32" | "f16";
  onProgress?: (progress: LoadProgress) => void;
  /** Base URL of a diffusers ControlNet folder (e.g. a segmentation ControlNet), or of a
   * ControlNet pipeline folder (its `controlnet/` is taken, on this model), that conditions
   * every txt2img and draws imgsyn's images; `Pipeline.load` only. A ControlNet pipeline
   * loaded as the model brings its own ControlNet without this. */
  controlnet?: string;
}
export interface Txt2ImgOptions {
  prompt: string;
  negativePrompt?: string;
  height?: number;
  width?: number;
  steps?: number;
  guidance?: number;
  scheduler?: SchedulerName;
  /** Karras sigmas (diffusers' `use_karras_sigmas`) with "euler", "dpmpp-2m", "lms" or "heun". */
  karrasSigmas?: boolean;
  seed?: number | bigint;
  /** Initial noise [1, 4, height/8, width/8], as diffusers' `latents=`. */
  latents?: Float32Array;
  clipSkip?: number;
  /** The ControlNet's conditioning image (PNG or JPEG bytes); required with `controlnet`. */
  controlImage?: Uint8Array;
  /** diffusers' `controlnet_conditioning_scale` (default 1). */
  controlScale?: number;
  onStep?: (step: number, total: number) => void;
}
export interface Txt2ImgResult {
  png: Uint8Array;
  width: number;
  height: number;
}
export interface CategoryInput {
  id: number;
  name: string;
  def?: string;
  frequency?: "r" | "c" | "f";
  [key: string]: unknown;
}
/** MosaicFusion options; those left out come from the model's `mosaicSettings`, then the defaults. */
export interface GenerateOptions {
  /** Categories, or the text of an LVIS/COCO file, a JSON array or one name per line. */
  categories: CategoryInput[] | string;
  /** Region counts to draw from: 1, 2 or 4 (default 4). */
  regions?: number | number[];
  /** [height, width], "HxW" or one number (default 384x512). */
  regionSize?: [number, number] | string | number;
  overlap?: [number, number] | string | number;
  steps?: number;
  guidance?: number;
  scheduler?: SchedulerName;
  karrasSigmas?: boolean;
  /** Base seed; sample `index` uses `seed + index`, as the native runner. */
  seed?: number | bigint;
  index?: number;
  promptTemplate?: string;
  /** LVIS frequencies of each sample's main category, e.g. "r" or "r,c" (default: all). */
  mainFrequency?: string;
  componentPolicy?: "strict" | "largest" | "all";
  minAreaFrac?: number;
  maxAreaFrac?: number;
  refine?: "none" | "bilateral";
  /** The bilateral solver's bandwidths: pixels, 8-bit luma and chroma levels (16, 16, 8). */
  sigmaSpatial?: number;
  sigmaLuma?: number;
  sigmaChroma?: number;
  /** The fraction of its maximum the solver's output must exceed to stay in the mask (0.5). */
  bfsThreshold?: number;
  /** "otsu" or a fraction in (0, 1) of the attention map's maximum. */
  threshold?: "otsu" | number;
  /** Attention resolutions to average, as fractions of the region (2 … 64; default [32, 16, 8]). */
  attentionResolutions?: number | number[];
  /** Format of the sample's image (`png` field): "png" (default) or "jpg". */
  imageFormat?: "png" | "jpg";
  /** Recorded in the manifest (default: the model URL). */
  modelName?: string;
  onStep?: (step: number, total: number) => void;
}
export interface RleSegmentation { size: [number, number]; counts: string }
export interface CocoAnnotation {
  id: number; image_id: number; category_id: number; segmentation: RleSegmentation;
  area: number; bbox: [number, number, number, number]; iscrowd: 0;
}
export interface CocoImage {
  id: number; file_name: string; coco_url: string; width: number; height: number;
  neg_category_ids: number[]; not_exhaustive_category_ids: number[];
}
/** `annotations.json` as the native runner writes it. */
export interface CocoDataset {
  info: object; licenses: unknown[]; images: CocoImage[]; annotations: CocoAnnotation[];
  categories: Array<CategoryInput & { image_count: number; instance_count: number }>;
}
export interface GenerateResult {
  png: Uint8Array;
  width: number;
  height: number;
  /** False when the masks failed the filters (the native runner writes no image then). */
  kept: boolean;
  reason: string | null;
  /** This sample as a one-image `annotations.json`. */
  annotations: CocoDataset;
  /** The sample's `manifest.jsonl` record, parsed and as its exact line. */
  record: Record<string, unknown>;
  recordJson: string;
}
"#;

pub(crate) struct Inner {
    pub(crate) sd: StableDiffusion,
    /// The ControlNet of `LoadOptions.controlnet`, or the model's own when it is a ControlNet
    /// pipeline, and its URL (or folder name); it conditions every `txt2img`.
    pub(crate) controlnet: Option<(Arc<ControlNet>, String)>,
    /// The ControlNet folder's own SegGen settings (its `seggen.json`), under `imgsyn`'s options.
    pub(crate) seggen: ControlNetSettings,
    device: &'static str,
    /// The model's URL (or folder name).
    pub(crate) model: String,
    /// The model's own MosaicFusion settings (its `mosaic.json`, run-file keys), under the
    /// options `generate` is given.
    settings: serde_json::Map<String, serde_json::Value>,
}

/// A loaded Stable Diffusion pipeline (1.x/2.x or SDXL).
#[wasm_bindgen]
pub struct Pipeline {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) fn err(message: impl std::fmt::Display) -> JsError {
    JsError::new(&message.to_string())
}

#[wasm_bindgen]
impl Pipeline {
    /// Downloads a diffusers folder from `baseUrl` (kept in the Cache Storage API) and loads it
    /// on `options.device` ("auto": WebGPU when available, else the CPU). A ControlNet pipeline
    /// folder (`StableDiffusionControlNetPipeline`'s layout) loads with its `controlnet/` and
    /// its `seggen.json`, as `options.controlnet` would give them.
    pub async fn load(
        #[wasm_bindgen(js_name = baseUrl)] base_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Result<Pipeline, JsError> {
        console_error_panic_hook::set_once();
        let o = Obj::new(
            "Pipeline.load",
            options.map(JsValue::from).unwrap_or_default(),
        )
        .map_err(err)?;
        let LoadOptions {
            on_progress,
            fp16_first,
            device,
        } = load_options(&o).await.map_err(err)?;
        let origin = Origin::Http(Fetcher::new(&base_url, on_progress.clone()).await);
        let (source, index) = fetch_model(&origin, fp16_first).await.map_err(err)?;
        let controlnet = match o.string("controlnet").map_err(err)? {
            Some(url) => {
                let origin = Origin::Http(Fetcher::new(&url, on_progress.clone()).await);
                Some(
                    fetch_controlnet(&origin, fp16_first, url)
                        .await
                        .map_err(err)?,
                )
            }
            None if index.class_of("controlnet").is_some() => Some(
                fetch_controlnet(&origin, fp16_first, base_url.clone())
                    .await
                    .map_err(err)?,
            ),
            None => None,
        };
        Self::build(&source, controlnet, device, base_url, &on_progress)
    }

    /// Loads a diffusers folder chosen by the user (`<input type=file webkitdirectory>`): the
    /// files' `webkitRelativePath`s, less the folder name, are the paths in the model. A
    /// ControlNet pipeline folder loads with its own ControlNet, as in `load`.
    #[wasm_bindgen(js_name = fromFiles)]
    pub async fn from_files(
        #[wasm_bindgen(unchecked_param_type = "FileList | File[]")] files: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Result<Pipeline, JsError> {
        console_error_panic_hook::set_once();
        let o = Obj::new(
            "Pipeline.fromFiles",
            options.map(JsValue::from).unwrap_or_default(),
        )
        .map_err(err)?;
        let LoadOptions {
            on_progress,
            fp16_first,
            device,
        } = load_options(&o).await.map_err(err)?;
        let mut root = String::from("local folder");
        let mut by_path = HashMap::new();
        for file in js_sys::Array::from(&files).iter() {
            let file: web_sys::File = file
                .dyn_into()
                .map_err(|_| err("Pipeline.fromFiles: expected File objects"))?;
            let relative = js_sys::Reflect::get(&file, &"webkitRelativePath".into())
                .ok()
                .and_then(|p| p.as_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| file.name());
            let path = match relative.split_once('/') {
                Some((folder, rest)) => {
                    root = folder.to_string();
                    rest.to_string()
                }
                None => relative,
            };
            by_path.insert(path, file);
        }
        // Only the files the model needs are read (a folder may hold other variants too).
        let origin = Origin::Files {
            root: root.clone(),
            files: by_path,
            on_progress: on_progress.clone(),
        };
        if o.get("controlnet").is_some() {
            return Err(err(
                "Pipeline.fromFiles: `controlnet` is only read by Pipeline.load",
            ));
        }
        let (source, index) = fetch_model(&origin, fp16_first).await.map_err(err)?;
        let controlnet = match index.class_of("controlnet") {
            Some(_) => Some(
                fetch_controlnet(&origin, fp16_first, root.clone())
                    .await
                    .map_err(err)?,
            ),
            None => None,
        };
        Self::build(&source, controlnet, device, root, &on_progress)
    }

    /// Deletes the downloaded model files from the Cache Storage API.
    #[wasm_bindgen(js_name = clearCache)]
    pub async fn clear_cache() -> Result<bool, JsError> {
        clear_cache().await.map_err(err)
    }

    /// The device in use: "webgpu" or "cpu".
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.inner.device.to_string()
    }

    /// What the weights are kept in and the model runs in: "f32" or "f16" (see `LoadOptions.dtype`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"f32\" | \"f16\"")]
    pub fn dtype(&self) -> String {
        match self.inner.sd.dtype {
            DType::F16 => "f16".into(),
            _ => "f32".into(),
        }
    }

    /// The model's own MosaicFusion settings (its folder's `mosaic.json`, e.g. a small model's
    /// `region_size`), which `generate` uses where its options are silent; `{}` for most.
    #[wasm_bindgen(getter, js_name = mosaicSettings, unchecked_return_type = "Record<string, unknown>")]
    pub fn mosaic_settings(&self) -> Result<JsValue, JsError> {
        let text = serde_json::to_string(&self.inner.settings).expect("JSON serialises");
        json_to_js(&text).map_err(err)
    }

    /// The guidance and conditioning scale `imgsyn` uses where its options are silent: the
    /// ControlNet folder's `seggen.json` (e.g. a small ControlNet's), else SegGen's 7.5 and 1.
    #[wasm_bindgen(getter, js_name = seggenSettings, unchecked_return_type = "SegGenSettings")]
    pub fn seggen_settings(&self) -> JsValue {
        let (guidance, control_scale) = self.inner.seggen.resolve(None, None);
        object(&[
            ("guidance", JsValue::from_f64(guidance)),
            ("controlScale", JsValue::from_f64(control_scale as f64)),
        ])
    }

    /// One image from a prompt; resolves to `{ png }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Txt2ImgResult>")]
    pub fn txt2img(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Txt2ImgOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner
                .txt2img(options)
                .await
                .map_err(|e| JsValue::from(err(e)))
        })
    }

    /// One MosaicFusion sample; resolves to `{ png, annotations, record, … }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner
                .generate(options)
                .await
                .map_err(|e| JsValue::from(err(e)))
        })
    }
}

impl Pipeline {
    fn build(
        source: &MemorySource,
        controlnet: Option<FetchedControlNet>,
        (device, name, dtype): (Device, &'static str, DType),
        model: String,
        on_progress: &Option<js_sys::Function>,
    ) -> Result<Pipeline, JsError> {
        call1(on_progress, &progress("init", "", 0, None));
        let settings = match source.exists(MODEL_SETTINGS) {
            true => {
                let bytes = source.read(MODEL_SETTINGS).map_err(err)?;
                serde_json::from_slice((*bytes).as_ref()).map_err(|e| {
                    err(format!(
                        "{}: not a JSON object of settings: {e}",
                        source.display(MODEL_SETTINGS)
                    ))
                })?
            }
            false => serde_json::Map::new(),
        };
        let seggen = controlnet
            .as_ref()
            .map_or_else(ControlNetSettings::default, |c| c.settings);
        let sd = StableDiffusion::load(source, &device, dtype).map_err(err)?;
        let controlnet = controlnet
            .map(|c| -> maskforge_core::Result<_> {
                let net = ControlNet::load(&c.source, &device, dtype)?;
                sd.check_controlnet(&net)?;
                Ok((Arc::new(net), c.name))
            })
            .transpose()
            .map_err(err)?;
        Ok(Pipeline {
            inner: Rc::new(Inner {
                sd,
                controlnet,
                seggen,
                device: name,
                model,
                settings,
            }),
        })
    }
}

fn progress(phase: &str, file: &str, loaded: usize, total: Option<usize>) -> JsValue {
    object(&[
        ("phase", JsValue::from_str(phase)),
        ("file", JsValue::from_str(file)),
        ("url", JsValue::from_str(file)),
        ("loaded", JsValue::from_f64(loaded as f64)),
        (
            "total",
            total.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64)),
        ),
    ])
}

/// The options `load` and `fromFiles` share, with the device opened.
struct LoadOptions {
    on_progress: Option<js_sys::Function>,
    /// `variant` is not "fp32".
    fp16_first: bool,
    /// The device of `device`, its name ("webgpu" or "cpu") and the dtype of `dtype`.
    device: (Device, &'static str, DType),
}

async fn load_options(o: &Obj<'_>) -> Result<LoadOptions, String> {
    let kind = o.string("device")?.unwrap_or_else(|| "auto".into());
    let dtype = match o.string("dtype")?.as_deref() {
        None | Some("auto") => None,
        Some("f32") => Some(DType::F32),
        Some("f16") => Some(DType::F16),
        Some(v) => {
            return Err(format!(
                "Pipeline.load: `dtype` must be \"auto\", \"f32\" or \"f16\", got \"{v}\""
            ));
        }
    };
    let on_progress = o.function("onProgress")?;
    let fp16_first = match o.string("variant")?.as_deref() {
        None | Some("fp16") => true,
        Some("fp32") => false,
        Some(v) => {
            return Err(format!(
                "Pipeline.load: `variant` must be \"fp16\" or \"fp32\", got \"{v}\""
            ));
        }
    };
    let (device, name) = crate::device::select(&kind).await?;
    let dtype = choose_dtype(dtype, &device, name, fp16_first)?;
    Ok(LoadOptions {
        on_progress,
        fp16_first,
        device: (device, name, dtype),
    })
}

/// `LoadOptions.dtype` on the chosen device: f16 needs WebGPU with `shader-f16`.
fn choose_dtype(
    asked: Option<DType>,
    device: &Device,
    name: &str,
    fp16_first: bool,
) -> Result<DType, String> {
    let f16 = name == "webgpu" && device.supports_dtype(DType::F16);
    match asked {
        Some(DType::F16) if !f16 => Err(format!(
            "Pipeline.load: dtype \"f16\" needs a WebGPU adapter with the `shader-f16` feature \
             ({name} has none); use \"f32\" or \"auto\""
        )),
        Some(dtype) => Ok(dtype),
        None if f16 && fp16_first => Ok(DType::F16),
        None => Ok(DType::F32),
    }
}

/// A ControlNet's files, its SegGen settings and the URL (or folder name) it came from.
struct FetchedControlNet {
    source: MemorySource,
    settings: ControlNetSettings,
    name: String,
}

/// Where model files come from: HTTP, or files the user picked.
enum Origin {
    Http(Fetcher),
    Files {
        root: String,
        files: HashMap<String, web_sys::File>,
        on_progress: Option<js_sys::Function>,
    },
}

impl Origin {
    fn url(&self, path: &str) -> String {
        match self {
            Origin::Http(f) => f.url(path),
            Origin::Files { root, .. } => format!("{root}/{path}"),
        }
    }

    /// The file, `None` when there is none.
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let (file, on_progress) = match self {
            Origin::Http(f) => return f.get(path).await,
            Origin::Files {
                files, on_progress, ..
            } => match files.get(path) {
                Some(file) => (file, on_progress),
                None => return Ok(None),
            },
        };
        let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("{}: cannot read ({})", self.url(path), js_message(&e)))?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        call1(
            on_progress,
            &progress("read", path, bytes.len(), Some(bytes.len())),
        );
        Ok(Some(bytes))
    }

    /// The folder `dir` inside this one.
    fn folder(&self, dir: &str) -> Origin {
        match self {
            Origin::Http(f) => Origin::Http(f.folder(dir)),
            Origin::Files {
                root,
                files,
                on_progress,
            } => Origin::Files {
                root: format!("{root}/{dir}"),
                files: files
                    .iter()
                    .filter_map(|(path, file)| {
                        let inner = path.strip_prefix(dir)?.strip_prefix('/')?;
                        Some((inner.to_string(), file.clone()))
                    })
                    .collect(),
                on_progress: on_progress.clone(),
            },
        }
    }

    async fn required(&self, path: &str) -> Result<Vec<u8>, String> {
        match self {
            Origin::Http(f) => f.required(path).await,
            Origin::Files { .. } => self
                .get(path)
                .await?
                .ok_or_else(|| format!("{}: not in the chosen folder", self.url(path))),
        }
    }
}

/// Downloads what `StableDiffusion::load` reads: `model_index.json`, then the files of its
/// [`PipelineFiles`] plan (one weight set per component, the `.fp16.` variant or plain files,
/// whichever `fp16_first` tries first; single file or sharded); and the model's own
/// MosaicFusion settings when it has them.
async fn fetch_model(f: &Origin, fp16_first: bool) -> Result<(MemorySource, ModelIndex), String> {
    let mut source = MemorySource::new(f.url("").trim_end_matches('/'));
    let bytes = f.required(MODEL_INDEX).await?;
    let index = ModelIndex::from_json(&bytes, &f.url(MODEL_INDEX)).map_err(|e| e.to_string())?;
    source.insert(MODEL_INDEX, bytes);
    fetch_files(f, &PipelineFiles::pipeline(&index, fp16_first), &mut source).await?;
    if let Some(bytes) = f.get(MODEL_SETTINGS).await? {
        source.insert(MODEL_SETTINGS, bytes);
    }
    Ok((source, index))
}

/// Downloads a ControlNet: a diffusers `ControlNetModel` folder, or the `controlnet/` folder of
/// a ControlNet pipeline folder (one whose `model_index.json` names a `controlnet`, as
/// `StableDiffusionControlNetPipeline.save_pretrained` writes it); with the SegGen settings of
/// the folder's own `seggen.json`, at its top.
async fn fetch_controlnet(
    f: &Origin,
    fp16_first: bool,
    name: String,
) -> Result<FetchedControlNet, String> {
    let pipeline = match f.get(MODEL_INDEX).await? {
        Some(bytes) => {
            let file = f.url(MODEL_INDEX);
            let index = ModelIndex::from_json(&bytes, &file).map_err(|e| e.to_string())?;
            if index.class_of("controlnet").is_none() {
                return Err(format!(
                    "{file}: a pipeline without a `controlnet` component; `controlnet` takes a \
                     ControlNet folder or a ControlNet pipeline folder"
                ));
            }
            Some(f.folder("controlnet"))
        }
        None => None,
    };
    let net = pipeline.as_ref().unwrap_or(f);
    let mut source = MemorySource::new(net.url("").trim_end_matches('/'));
    fetch_files(net, &PipelineFiles::controlnet(fp16_first), &mut source).await?;
    let settings = match f.get(CONTROLNET_SETTINGS).await? {
        Some(bytes) => ControlNetSettings::parse(&f.url(CONTROLNET_SETTINGS), &bytes)
            .map_err(|e| e.to_string())?,
        None => ControlNetSettings::default(),
    };
    Ok(FetchedControlNet {
        source,
        settings,
        name,
    })
}

/// Adds the files of `files` to `source`: each required one, each optional one there, and the
/// first weight candidate there of each component.
async fn fetch_files(
    f: &Origin,
    files: &PipelineFiles,
    source: &mut MemorySource,
) -> Result<(), String> {
    for path in &files.required {
        if !source.exists(path) {
            source.insert(path.as_str(), f.required(path).await?);
        }
    }
    for path in &files.optional {
        if let Some(bytes) = f.get(path).await? {
            source.insert(path.as_str(), bytes);
        }
    }
    for component in &files.components {
        fetch_weights(f, component, source).await?;
    }
    Ok(())
}

/// Adds the first of `files.candidates` there (with its shards) to `source`.
async fn fetch_weights(
    f: &Origin,
    files: &ComponentFiles,
    source: &mut MemorySource,
) -> Result<(), String> {
    for candidate in &files.candidates {
        let Some(bytes) = f.get(candidate.path()).await? else {
            continue;
        };
        if let WeightFile::Sharded(index) = candidate {
            for shard in shard_paths(index, &bytes, &f.url(index)).map_err(|e| e.to_string())? {
                let shard_bytes = f.required(&shard).await?;
                source.insert(shard, shard_bytes);
            }
        }
        source.insert(candidate.path(), bytes);
        return Ok(());
    }
    Err(files.not_found(f.url(&files.dir), false).to_string())
}

pub(crate) fn scheduler(o: &Obj) -> Result<Option<SchedulerKind>, String> {
    o.string("scheduler")?
        .map(|s| s.parse().map_err(|e: maskforge_core::Error| e.to_string()))
        .transpose()
}

pub(crate) fn json_to_js(text: &str) -> Result<JsValue, String> {
    js_sys::JSON::parse(text).map_err(|e| js_message(&e))
}

/// Categories from an array of objects or the text of a category file.
pub fn read_categories(value: &JsValue) -> Result<Vec<Category>, String> {
    let text = match value.as_string() {
        Some(s) => s,
        None => js_sys::JSON::stringify(value)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or("`categories` must be an array of {id, name, def} or a category file's text")?,
    };
    parse_categories(text.as_bytes(), "categories").map_err(|e| e.to_string())
}

impl Inner {
    async fn txt2img(&self, options: JsValue) -> Result<JsValue, String> {
        let o = Obj::new("txt2img", options)?;
        let height = o.whole("height", 8)?.unwrap_or(512) as usize;
        let width = o.whole("width", 8)?.unwrap_or(512) as usize;
        self.sd
            .check_size(height, width)
            .map_err(|e| e.to_string())?;
        let latents = match o.get("latents") {
            None => None,
            Some(v) => {
                let array: Float32Array = v
                    .dyn_into()
                    .map_err(|_| "txt2img: `latents` must be a Float32Array")?;
                let shape = [1, self.sd.unet_config.in_channels, height / 8, width / 8];
                let n: usize = shape.iter().product();
                if array.length() as usize != n {
                    return Err(format!(
                        "txt2img: `latents` has {} values, expected {n} ({shape:?} for {height}x{width})",
                        array.length()
                    ));
                }
                Some(Tensor::<4>::from_data(
                    TensorData::new(array.to_vec(), shape),
                    &self.sd.device,
                ))
            }
        };
        let params = Txt2ImgParams {
            prompt: o.required_string("prompt")?,
            negative_prompt: o.string("negativePrompt")?,
            height,
            width,
            steps: o.whole("steps", 1)?.unwrap_or(50) as usize,
            guidance: o.number("guidance")?.unwrap_or(7.5),
            scheduler: scheduler(&o)?,
            karras_sigmas: o.boolean("karrasSigmas")?.unwrap_or(false),
            seed: o.whole("seed", 0)?.unwrap_or(0),
            latents,
            clip_skip: o.whole("clipSkip", 0)?.map(|k| k as usize),
            controls: self.controls(&o, height, width)?,
        };
        let on_step = o.function("onStep")?;
        let out = self
            .sd
            .txt2img(&params, |i, n| call2(&on_step, i, n))
            .map_err(|e| e.to_string())?;
        let rgb = image_to_rgb8_async(out.image)
            .await
            .map_err(|e| e.to_string())?;
        let png = encode_image(rgb, width, height, "txt2img.png").map_err(|e| e.to_string())?;
        Ok(object(&[
            ("png", Uint8Array::from(png.as_slice()).into()),
            ("width", JsValue::from(width as u32)),
            ("height", JsValue::from(height as u32)),
        ]))
    }

    /// The ControlNet conditioning of `txt2img`: `controlImage` (PNG or JPEG bytes) and
    /// `controlScale` (default 1) for the loaded ControlNet.
    fn controls(&self, o: &Obj, height: usize, width: usize) -> Result<Vec<Control>, String> {
        let image = match o.get("controlImage") {
            None => None,
            Some(v) => Some(
                v.dyn_into::<Uint8Array>()
                    .map_err(|_| "txt2img: `controlImage` must be a Uint8Array (PNG or JPEG)")?
                    .to_vec(),
            ),
        };
        let scale = o.number("controlScale")?.unwrap_or(1.0) as f32;
        match (&self.controlnet, image) {
            (None, None) => Ok(Vec::new()),
            (None, Some(_)) => Err(
                "txt2img: `controlImage` needs a ControlNet (Pipeline.load's `controlnet`)".into(),
            ),
            (Some(_), None) => Err("txt2img: `controlImage` is required with a ControlNet".into()),
            (Some((net, _)), Some(bytes)) => {
                let image =
                    decode_control_image(&bytes, "controlImage", height, width, &self.sd.device)
                        .map_err(|e| format!("txt2img: {e}"))?;
                Ok(vec![Control {
                    net: net.clone(),
                    image,
                    scale,
                }])
            }
        }
    }

    async fn generate(&self, options: JsValue) -> Result<JsValue, String> {
        let o = Obj::new("generate", options.clone())?;
        let categories = read_categories(
            &o.get("categories")
                .ok_or("generate: `categories` is required")?,
        )?;
        let seed = o.whole("seed", 0)?.unwrap_or(0);
        let index = o.whole("index", 0)?.unwrap_or(0);
        let model_name = o.string("modelName")?.unwrap_or_else(|| self.model.clone());
        let on_step = o.function("onStep")?;
        let mosaic_options = mosaic_options(&options, &self.settings)?;
        let config = mosaic_options
            .config(model_name)
            .map_err(|e| format!("generate: {e}"))?;
        let frequencies = mosaic_options
            .main_frequencies()
            .map_err(|e| e.to_string())?;
        let pool = main_pool(&categories, frequencies.as_deref()).map_err(|e| e.to_string())?;
        let mosaic = MosaicFusion::new(&self.sd, config, &categories, &pool, seed);
        let plan = mosaic.plan_index(index).map_err(|e| e.to_string())?;
        let denoised = mosaic
            .denoise(&plan, Readback::Async, |i, n| call2(&on_step, i, n))
            .await
            .map_err(|e| e.to_string())?;
        let sample = mosaic.finish(&plan, denoised).map_err(|e| e.to_string())?;
        let annotations = assemble_annotations(
            &categories,
            std::slice::from_ref(&sample.record),
            MosaicFusion::DESCRIPTION,
        )
        .map_err(|e| e.to_string())?;
        let record_json = serde_json::to_string(&sample.record).expect("records serialise");
        let annotations_json = serde_json::to_string(&annotations).expect("JSON serialises");
        let (kept, reason) = (sample.record.kept, sample.record.reason.clone());
        let (width, height) = (sample.width, sample.height);
        let file_name = sample
            .record
            .details
            .image
            .as_ref()
            .map_or("dropped.png".into(), |i| i.file_name.clone());
        let image =
            encode_image(sample.rgb, width, height, &file_name).map_err(|e| e.to_string())?;
        Ok(object(&[
            ("png", Uint8Array::from(image.as_slice()).into()),
            ("width", JsValue::from(width as u32)),
            ("height", JsValue::from(height as u32)),
            ("kept", JsValue::from_bool(kept)),
            (
                "reason",
                reason.map_or(JsValue::NULL, |r| JsValue::from_str(&r)),
            ),
            ("annotations", json_to_js(&annotations_json)?),
            ("record", json_to_js(&record_json)?),
            ("recordJson", JsValue::from_str(&record_json)),
        ]))
    }
}

/// The MosaicFusion options among `generate`'s (the core's [`MosaicOptions`], read from the
/// object's JSON; `null` fields count as absent) over the model's own `settings`.
fn mosaic_options(
    options: &JsValue,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<MosaicOptions, String> {
    let copy = js_sys::Object::new();
    if options.is_object() {
        for key in js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>()).iter() {
            let name = key.as_string().unwrap_or_default();
            if ["categories", "seed", "index", "modelName", "onStep"].contains(&name.as_str()) {
                continue;
            }
            let value = js_sys::Reflect::get(options, &key).unwrap_or(JsValue::UNDEFINED);
            if !(value.is_null() || value.is_undefined()) {
                let _ = js_sys::Reflect::set(&copy, &key, &value);
            }
        }
    }
    let json = js_sys::JSON::stringify(&copy)
        .map_err(|e| format!("generate: {}", js_message(&e)))?
        .as_string()
        .unwrap_or_default();
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).map_err(|e| format!("generate: {e}"))?;
    let mut merged: serde_json::Map<String, serde_json::Value> = given
        .into_iter()
        .map(|(k, v)| (snake_case(&k), v))
        .collect();
    for (key, value) in settings {
        merged.entry(key.clone()).or_insert(value.clone());
    }
    serde_json::from_value(merged.into()).map_err(|e| format!("generate: {e}"))
}

/// `regionSize` → `region_size`: the run-file key of a JS option name.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
