//! SegGen in the browser: `pipe.text2mask` (a colour map drawn and read as a mask),
//! `pipe.imgsyn` (images for a label map, through a segmentation ControlNet), `palette` and
//! `seggenZip` (the ADE20K-layout dataset). The core's functions do the work, as in the CLI.

use std::collections::HashSet;
use std::sync::Arc;

use js_sys::{Float64Array, Promise, Reflect, Uint8Array};
use maskforge_core::dataset::run::MANIFEST_FILE;
use maskforge_core::dataset::{
    MemoryStorage, SampleGenerator, SampleId, Storage, parse_categories,
};
use maskforge_core::imaging::encode::encode_image;
use maskforge_core::readback::Readback;
use maskforge_core::seggen::dataset::write_seggen_outputs;
use maskforge_core::seggen::options::{GUIDANCE, MASK2IMG_STEPS, TEXT2MASK_STEPS, default_size};
use maskforge_core::seggen::{
    ColorMap, DecodeOptions, ImgSyn, ImgSynPrompt, LabelMap, Palette, SegGenRecord,
    SynthesisOptions, colorize_semantic, palette_categories, text2mask,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::args::{Obj, call2, object};
use crate::pipeline::{Inner, Pipeline, err, json_to_js, scheduler};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Shipped palettes: ADE20K-150, COCO panoptic, and the shapes world's classes. */
export type PaletteName = "ade20k" | "coco-panoptic" | "shapes";
/** A class of a palette; label 0 (unlabelled) is black. */
export interface PaletteEntry {
  id: number;
  name: string;
  color: [number, number, number];
  /** COCO panoptic's thing (1) or stuff (0), where the palette says. */
  isthing?: 0 | 1 | boolean;
}
/** A label map: an 8- or 16-bit grayscale PNG of class ids, or the ids row by row. */
export type LabelMapInput = Uint8Array | {
  width: number;
  height: number;
  ids: Uint8Array | Uint16Array | number[];
};
export interface Text2MaskOptions {
  prompt: string;
  palette: PaletteName | PaletteEntry[];
  /** Default: the model's own size. */
  height?: number;
  width?: number;
  /** Default 200, as SegGen samples. */
  steps?: number;
  guidance?: number;
  seed?: number | bigint;
  negativePrompt?: string;
  scheduler?: SchedulerName;
  /** Pixels farther than this (RGB distance) from every colour stay unlabelled (0). */
  maxDistance?: number;
  onStep?: (step: number, total: number) => void;
}
export interface Text2MaskResult {
  /** The colour map as drawn (RGB PNG). */
  color: Uint8Array;
  /** Its labels: nearest palette colour, edges given to the nearest instance (grayscale PNG). */
  labels: Uint8Array;
  width: number;
  height: number;
  /** Instances found (each class split by the edge colour). */
  instances: number;
  /** The class ids present, ascending. */
  classes: number[];
}
export interface ImgSynOptions {
  labels: LabelMapInput;
  palette: PaletteName | PaletteEntry[];
  /** The caption of the images. */
  prompt: string;
  /** Images to draw (default 1). */
  count?: number;
  /** Base seed: image j is sample `index + j`, seed `seed + index + j`, as line i of
   * `maskforge imgsyn --per-mask N` with `index = i·N`. */
  seed?: number | bigint;
  /** The first image's sample index (default 0): its file stem is `index + 1`. */
  index?: number;
  /** Default 40, as SegGen samples. */
  steps?: number;
  /** Default: the ControlNet's own (`Pipeline.seggenSettings`). */
  guidance?: number;
  /** diffusers' `controlnet_conditioning_scale`; default: the ControlNet's own. */
  controlScale?: number;
  negativePrompt?: string;
  scheduler?: SchedulerName;
  /** Recorded as `source_mask` and named in errors (default "labels"). */
  sourceMask?: string;
  /** Recorded in the manifest (default: the model's and the ControlNet's URLs). */
  modelName?: string;
  controlnetName?: string;
  /** Steps over all the images. */
  onStep?: (step: number, total: number) => void;
}
/** A ControlNet folder's `seggen.json` (`{"guidance", "control_scale"}`), else SegGen's 7.5 and 1. */
export interface SegGenSettings {
  guidance: number;
  controlScale: number;
}
export interface ImgSynSample {
  /** The image (RGB PNG), `images/<stem>.png` of the dataset. */
  png: Uint8Array;
  /** The label map (grayscale PNG), `annotations/<stem>.png`. */
  labels: Uint8Array;
  width: number;
  height: number;
  /** The sample's `manifest.jsonl` record, parsed and as its exact line. */
  record: Record<string, unknown>;
  recordJson: string;
}
export interface ImgSynResult {
  width: number;
  height: number;
  samples: ImgSynSample[];
}
"#;

/// A custom palette's name in records and messages.
const CUSTOM_PALETTE: &str = "custom palette";
/// The palette's classes in a dataset zip.
const PALETTE_FILE: &str = "palette.json";

#[wasm_bindgen]
impl Pipeline {
    /// Text2Mask: draws a colour map for a prompt (this pipeline's model is the Text2Mask
    /// checkpoint; a loaded ControlNet is not used) and reads it as labels by nearest colour.
    #[wasm_bindgen(unchecked_return_type = "Promise<Text2MaskResult>")]
    pub fn text2mask(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Text2MaskOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            text2mask_js(&inner, options)
                .await
                .map_err(|e| JsValue::from(err(e)))
        })
    }

    /// ImgSyn: `count` images for a label map, drawn by the loaded (segmentation) ControlNet
    /// from the map in the palette's colours; the samples go into `seggenZip`.
    #[wasm_bindgen(unchecked_return_type = "Promise<ImgSynResult>")]
    pub fn imgsyn(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImgSynOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            imgsyn_js(&inner, options)
                .await
                .map_err(|e| JsValue::from(err(e)))
        })
    }
}

/// The classes of a palette (`"ade20k"`, `"coco-panoptic"`, `"shapes"` or entries to check),
/// sorted by id.
#[wasm_bindgen(js_name = palette, unchecked_return_type = "PaletteEntry[]")]
pub fn palette_entries(
    #[wasm_bindgen(unchecked_param_type = "PaletteName | PaletteEntry[]")] palette: JsValue,
) -> Result<JsValue, JsError> {
    let palette = read_palette("palette", Some(palette)).map_err(err)?;
    categories_json(&palette).map_err(err)
}

/// A label map in the palette's colours (RGB PNG), as `maskforge palette colorize` makes it:
/// the conditioning image `imgsyn` gives the ControlNet.
#[wasm_bindgen]
pub fn colorize(
    #[wasm_bindgen(unchecked_param_type = "PaletteName | PaletteEntry[]")] palette: JsValue,
    #[wasm_bindgen(unchecked_param_type = "LabelMapInput")] labels: JsValue,
) -> Result<Uint8Array, JsError> {
    let palette = read_palette("colorize", Some(palette)).map_err(err)?;
    let labels = read_labels("colorize", labels).map_err(err)?;
    let color = colorize_semantic(&palette, &labels).map_err(|e| err(format!("colorize: {e}")))?;
    color_png(&color).map_err(err)
}

/// Packs `samples` (of `pipe.imgsyn`, any order) into a zip in the layout `maskforge imgsyn`
/// writes: `images/`, `annotations/` (label PNGs), `manifest.jsonl`, and `palette.json` (the
/// palette's classes; a palette file for the CLI).
#[wasm_bindgen(js_name = seggenZip)]
pub fn seggen_zip(
    #[wasm_bindgen(unchecked_param_type = "PaletteName | PaletteEntry[]")] palette: JsValue,
    #[wasm_bindgen(unchecked_param_type = "ImgSynSample[]")] samples: Vec<JsValue>,
) -> Result<Uint8Array, JsError> {
    build_zip(palette, &samples)
        .map(|zip| Uint8Array::from(zip.as_slice()))
        .map_err(|e| JsError::new(&format!("seggenZip: {e}")))
}

async fn text2mask_js(inner: &Inner, options: JsValue) -> Result<JsValue, String> {
    let o = Obj::new("text2mask", options)?;
    let palette = read_palette("text2mask", o.get("palette"))?;
    let [h, w] = default_size(&inner.sd);
    let height = o.whole("height", 8)?.map_or(h, |v| v as usize);
    let width = o.whole("width", 8)?.map_or(w, |v| v as usize);
    let steps = o.whole("steps", 1)?.map_or(TEXT2MASK_STEPS, |v| v as usize);
    let max_distance = o.number("maxDistance")?;
    let min_area = o.whole("minArea", 0)?.map_or(0, |v| v as usize);
    let options = SynthesisOptions {
        negative_prompt: o.string("negativePrompt")?,
        height: Some(height),
        width: Some(width),
        mask_steps: steps,
        guidance: o.number("guidance")?.unwrap_or(GUIDANCE),
        scheduler: scheduler(&o)?,
        max_distance,
        min_area,
        ..Default::default()
    };
    let fail = |e: maskforge_core::Error| format!("text2mask: {e}");
    options.check().map_err(fail)?;
    inner.sd.check_size(height, width).map_err(fail)?;
    let params = options.params(
        &o.required_string("prompt")?,
        [height, width],
        steps,
        o.whole("seed", 0)?.unwrap_or(0),
        vec![],
    );
    let decode = DecodeOptions {
        max_distance,
        min_area,
        ..DecodeOptions::for_palette(&palette)
    };
    let on_step = o.function("onStep")?;
    let drawn = text2mask(
        &inner.sd,
        &params,
        &palette,
        &decode,
        Readback::Async,
        |i, n| call2(&on_step, i, n),
    )
    .await
    .map_err(fail)?;
    let mut classes = drawn.instances.classes.clone();
    classes.sort_unstable();
    classes.dedup();
    let labels = drawn.labels().to_png("labels.png").map_err(fail)?;
    Ok(object(&[
        ("color", color_png(&drawn.color)?.into()),
        ("labels", Uint8Array::from(labels.as_slice()).into()),
        ("width", JsValue::from(width as u32)),
        ("height", JsValue::from(height as u32)),
        (
            "instances",
            JsValue::from(drawn.instances.classes.len() as u32),
        ),
        (
            "classes",
            classes
                .iter()
                .map(|&c| JsValue::from(c))
                .collect::<js_sys::Array>()
                .into(),
        ),
    ]))
}

async fn imgsyn_js(inner: &Inner, options: JsValue) -> Result<JsValue, String> {
    let o = Obj::new("imgsyn", options)?;
    let (controlnet, controlnet_url) = inner.controlnet.clone().ok_or(
        "imgsyn: needs a ControlNet conditioned on colour maps \
         (Pipeline.load's `controlnet`, e.g. a segmentation ControlNet, or a ControlNet \
         pipeline folder as the model)",
    )?;
    let palette = Arc::new(read_palette("imgsyn", o.get("palette"))?);
    let labels = read_labels(
        "imgsyn",
        o.get("labels").ok_or("imgsyn: `labels` is required")?,
    )?;
    let prompt = ImgSynPrompt {
        labels: o.string("sourceMask")?.unwrap_or_else(|| "labels".into()),
        caption: o.required_string("prompt")?,
    };
    let count = o.whole("count", 1)?.unwrap_or(1);
    let seed = o.whole("seed", 0)?.unwrap_or(0);
    let index = o.whole("index", 0)?.unwrap_or(0);
    let (guidance, control_scale) = inner.seggen.resolve(
        o.number("guidance")?,
        o.number("controlScale")?.map(|v| v as f32),
    );
    let options = SynthesisOptions {
        negative_prompt: o.string("negativePrompt")?,
        steps: o.whole("steps", 1)?.map_or(MASK2IMG_STEPS, |v| v as usize),
        guidance,
        scheduler: scheduler(&o)?,
        control_scale,
        ..Default::default()
    };
    let fail = |e: maskforge_core::Error| format!("imgsyn: {e}");
    options.check().map_err(fail)?;
    let generator = ImgSyn {
        sd: &inner.sd,
        controlnet,
        palette: palette.clone(),
        prompts: std::slice::from_ref(&prompt),
        per_mask: count,
        options: &options,
        model: o
            .string("modelName")?
            .unwrap_or_else(|| inner.model.clone()),
        controlnet_name: o.string("controlnetName")?.unwrap_or(controlnet_url),
        // The one line's map; `plan_labels` below is given it directly.
        labels: &|_| Ok(labels.clone()),
    };
    let on_step = o.function("onStep")?;
    let samples = js_sys::Array::new();
    for j in 0..count {
        let sample = SampleId::new(index + j, seed);
        let plan = generator
            .plan_labels(sample, prompt.clone(), labels.clone())
            .map_err(fail)?;
        let drawn = generator
            .draw(plan, Readback::Async, |i, n| {
                call2(&on_step, j as usize * n + i, count as usize * n)
            })
            .await
            .map_err(fail)?;
        let out = drawn.into_output(&palette).map_err(fail)?;
        let file = |path: &str| -> JsValue {
            let bytes = out.files.iter().find(|(p, _)| p == path).map(|(_, b)| b);
            Uint8Array::from(bytes.map_or(&[][..], |b| b.as_slice())).into()
        };
        let record_json = serde_json::to_string(&out.record).expect("records serialise");
        let d = &out.record.details;
        samples.push(&object(&[
            ("png", file(&d.image)),
            ("labels", file(&d.labels)),
            ("width", JsValue::from(d.width as u32)),
            ("height", JsValue::from(d.height as u32)),
            ("record", json_to_js(&record_json)?),
            ("recordJson", JsValue::from_str(&record_json)),
        ]));
    }
    Ok(object(&[
        ("width", JsValue::from(labels.width as u32)),
        ("height", JsValue::from(labels.height as u32)),
        ("samples", samples.into()),
    ]))
}

/// `ade20k`, `coco-panoptic`, `shapes`, or an array of entries (checked as a palette file is).
fn read_palette(what: &str, value: Option<JsValue>) -> Result<Palette, String> {
    let value = value.ok_or_else(|| format!("{what}: `palette` is required"))?;
    if let Some(name) = value.as_string() {
        return Palette::builtin(&name).ok_or_else(|| {
            format!(
                "{what}: unknown palette \"{name}\": use \"ade20k\", \"coco-panoptic\", \"shapes\" or an array of {{id, name, color: [r, g, b]}}"
            )
        });
    }
    if !js_sys::Array::is_array(&value) {
        return Err(format!(
            "{what}: `palette` must be \"ade20k\", \"coco-panoptic\", \"shapes\" or an array of {{id, name, color: [r, g, b]}}"
        ));
    }
    let json = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| format!("{what}: `palette` is not JSON"))?;
    Palette::from_json(CUSTOM_PALETTE, json.as_bytes()).map_err(|e| format!("{what}: {e}"))
}

/// A label map: a label PNG, or `{width, height, ids}`.
fn read_labels(what: &str, value: JsValue) -> Result<LabelMap, String> {
    if let Some(png) = value.dyn_ref::<Uint8Array>() {
        return LabelMap::from_png("labels", &png.to_vec()).map_err(|e| format!("{what}: {e}"));
    }
    let what = format!("{what}: labels");
    let map = Obj::new(&what, value)?;
    let required = |key| {
        map.whole(key, 1)?
            .ok_or_else(|| format!("{what}: `{key}` is required"))
    };
    let (width, height) = (required("width")?, required("height")?);
    let ids = map
        .get("ids")
        .filter(|ids| js_sys::Array::is_array(ids) || js_sys::ArrayBuffer::is_view(ids))
        .ok_or_else(|| format!("{what}: `ids` must be an array of class ids"))?;
    let ids = Float64Array::new(&ids)
        .to_vec()
        .into_iter()
        .map(|v| {
            (v.fract() == 0.0 && (0.0..=65535.0).contains(&v))
                .then_some(v as u16)
                .ok_or_else(|| format!("{what}: {v} is not a class id (0..=65535)"))
        })
        .collect::<Result<Vec<u16>, String>>()?;
    LabelMap::new(width as usize, height as usize, ids).map_err(|e| format!("{what}: {e}"))
}

fn color_png(color: &ColorMap) -> Result<Uint8Array, String> {
    let png = encode_image(color.rgb.clone(), color.width, color.height, "color.png")
        .map_err(|e| e.to_string())?;
    Ok(Uint8Array::from(png.as_slice()))
}

/// The palette's classes as JSON values (`palette.json`).
fn categories_json(palette: &Palette) -> Result<JsValue, String> {
    json_to_js(&serde_json::to_string(&palette_categories(palette)).expect("JSON serialises"))
}

fn build_zip(palette: JsValue, samples: &[JsValue]) -> Result<Vec<u8>, String> {
    let palette = read_palette("palette", Some(palette))?;
    let classes =
        serde_json::to_vec_pretty(&palette_categories(&palette)).expect("JSON serialises");
    let categories = parse_categories(&classes, "palette").map_err(|e| e.to_string())?;
    let storage = MemoryStorage::new();
    let mut records: Vec<SegGenRecord> = Vec::new();
    let mut indices = HashSet::new();
    for (i, s) in samples.iter().enumerate() {
        let json = Reflect::get(s, &"recordJson".into())
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| format!("sample {i} has no `recordJson` (pass what imgsyn returned)"))?;
        let record: SegGenRecord =
            serde_json::from_str(&json).map_err(|e| format!("sample {i}: bad record: {e}"))?;
        if record.details.palette != palette.name {
            return Err(format!(
                "sample {i} was drawn with palette {}, not {}",
                record.details.palette, palette.name
            ));
        }
        if !indices.insert(record.index) {
            return Err(format!(
                "two samples have index {} (give each imgsyn call its own `index`)",
                record.index
            ));
        }
        for (field, path) in [
            ("png", &record.details.image),
            ("labels", &record.details.labels),
        ] {
            let bytes: Uint8Array = Reflect::get(s, &field.into())
                .ok()
                .and_then(|v| v.dyn_into().ok())
                .ok_or_else(|| format!("sample {i} has no `{field}` bytes"))?;
            storage
                .write(path, &bytes.to_vec())
                .map_err(|e| e.to_string())?;
        }
        records.push(record);
    }
    write_seggen_outputs(&storage, &categories, &records, ImgSyn::DESCRIPTION)
        .map_err(|e| e.to_string())?;
    storage
        .write(PALETTE_FILE, &classes)
        .map_err(|e| e.to_string())?;
    crate::zip::from_storage(storage, &[MANIFEST_FILE, PALETTE_FILE])
}
