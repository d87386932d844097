//! Images given to the package as RGB pixels: encoded bytes (`Uint8Array`, `ArrayBuffer`,
//! `Blob`/`File`), pixel objects (`ImageData`, `{width, height, data}`) or anything a canvas
//! can draw (`ImageBitmap`, `HTMLImageElement`, `HTMLCanvasElement`, `OffscreenCanvas`,
//! `VideoFrame`, ...).

use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::fetch::js_message;

/// 8-bit RGB, interleaved, row-major.
pub struct Pixels {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

/// What an image may be, for messages.
pub const IMAGE_KINDS: &str = "PNG/JPEG bytes (Uint8Array, ArrayBuffer, Blob or File), an \
     ImageData or {width, height, data} (RGBA or RGB), or an ImageBitmap, HTMLImageElement, \
     HTMLCanvasElement, OffscreenCanvas or VideoFrame";

/// Reads `value` as RGB pixels; `what` prefixes messages (`detect: image`).
pub async fn read_image(what: &str, value: JsValue) -> Result<Pixels, String> {
    if value.is_undefined() || value.is_null() {
        return Err(format!("{what} is required"));
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return decode(what, &bytes.to_vec());
    }
    if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        return decode(what, &Uint8Array::new(buffer).to_vec());
    }
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        let name = value
            .dyn_ref::<web_sys::File>()
            .map_or_else(|| what.to_string(), |f| format!("{what} ({})", f.name()));
        let buffer = JsFuture::from(blob.array_buffer())
            .await
            .map_err(|e| format!("{name}: cannot read ({})", js_message(&e)))?;
        return decode(&name, &Uint8Array::new(&buffer).to_vec());
    }
    if !value.is_object() {
        return Err(format!("{what} must be {IMAGE_KINDS}"));
    }
    if get(&value, "data").is_some() && get(&value, "getContext").is_none() {
        return from_pixels(what, &value);
    }
    draw(what, &value).await
}

fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn method(o: &JsValue, key: &str) -> Option<Function> {
    get(o, key).and_then(|f| f.dyn_into().ok())
}

/// A positive whole number at `key`.
fn dimension(o: &JsValue, key: &str) -> Option<usize> {
    get(o, key)
        .and_then(|v| v.as_f64())
        .filter(|x| *x >= 1.0 && x.fract() == 0.0 && *x <= 65_535.0)
        .map(|x| x as usize)
}

/// PNG or JPEG (or BMP, WebP... as the `image` crate reads) bytes, alpha dropped as
/// `maskforge detect` drops it.
fn decode(what: &str, bytes: &[u8]) -> Result<Pixels, String> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| format!("{what}: not a readable PNG or JPEG image ({e})"))?
        .to_rgb8();
    Ok(Pixels {
        width: image.width() as usize,
        height: image.height() as usize,
        rgb: image.into_raw(),
    })
}

/// `ImageData` or `{width, height, data}`: `data` RGBA (as ImageData) or RGB, row-major.
fn from_pixels(what: &str, value: &JsValue) -> Result<Pixels, String> {
    let (Some(width), Some(height)) = (dimension(value, "width"), dimension(value, "height"))
    else {
        return Err(format!(
            "{what}: pixel data needs whole `width` and `height` (1…65535)"
        ));
    };
    let data = get(value, "data").expect("checked by the caller");
    if !(ArrayBuffer::is_view(&data) || Array::is_array(&data)) {
        return Err(format!(
            "{what}: `data` must be a Uint8ClampedArray, Uint8Array or array of bytes"
        ));
    }
    let bytes = Uint8Array::new(&data).to_vec();
    let n = width * height;
    let rgb = if bytes.len() == 4 * n {
        bytes
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    } else if bytes.len() == 3 * n {
        bytes
    } else {
        return Err(format!(
            "{what}: `data` has {} values, expected {} (RGBA, as ImageData) or {} (RGB) for \
             {width}x{height}",
            bytes.len(),
            4 * n,
            3 * n
        ));
    };
    Ok(Pixels { rgb, width, height })
}

/// Draws a canvas image source into a 2D canvas of its size and reads the pixels back.
async fn draw(what: &str, source: &JsValue) -> Result<Pixels, String> {
    // An <img> may still be loading: wait for it (decode() rejects for a broken image).
    if get(source, "naturalWidth").is_some()
        && let Some(decode) = method(source, "decode")
    {
        let promise = decode
            .call0(source)
            .map_err(|e| format!("{what}: {}", js_message(&e)))?;
        JsFuture::from(Promise::from(promise)).await.map_err(|e| {
            format!(
                "{what}: the image element could not be decoded ({})",
                js_message(&e)
            )
        })?;
    }
    let size = ["naturalWidth", "videoWidth", "displayWidth", "width"]
        .iter()
        .zip(["naturalHeight", "videoHeight", "displayHeight", "height"])
        .find_map(|(w, h)| Some((dimension(source, w)?, dimension(source, h)?)));
    let Some((width, height)) = size else {
        return Err(format!("{what} must be {IMAGE_KINDS}"));
    };
    let canvas = new_canvas(width, height)
        .ok_or_else(|| format!("{what}: no OffscreenCanvas or document to draw the image in"))?;
    let context = method(&canvas, "getContext")
        .and_then(|f| f.call1(&canvas, &JsValue::from_str("2d")).ok())
        .filter(|c| c.is_object())
        .ok_or_else(|| format!("{what}: no 2D canvas context to draw the image in"))?;
    let draw_image =
        method(&context, "drawImage").ok_or_else(|| format!("{what}: no drawImage"))?;
    draw_image
        .call3(&context, source, &JsValue::from(0), &JsValue::from(0))
        .map_err(|e| format!("{what} must be {IMAGE_KINDS} ({})", js_message(&e)))?;
    let args = Array::of4(
        &JsValue::from(0),
        &JsValue::from(0),
        &JsValue::from(width as u32),
        &JsValue::from(height as u32),
    );
    let data = method(&context, "getImageData")
        .ok_or_else(|| format!("{what}: no getImageData"))?
        .apply(&context, &args)
        .map_err(|e| format!("{what}: cannot read its pixels ({})", js_message(&e)))?;
    from_pixels(what, &data)
}

/// An `OffscreenCanvas`, or a `<canvas>` element where there is none.
fn new_canvas(width: usize, height: usize) -> Option<JsValue> {
    let global = js_sys::global();
    if let Some(ctor) = get(&global, "OffscreenCanvas").and_then(|c| c.dyn_into::<Function>().ok())
    {
        let args = Array::of2(&JsValue::from(width as u32), &JsValue::from(height as u32));
        return Reflect::construct(&ctor, &args).ok();
    }
    let document = get(&global, "document")?;
    let canvas = method(&document, "createElement")?
        .call1(&document, &JsValue::from_str("canvas"))
        .ok()?;
    let canvas: Object = canvas.dyn_into().ok()?;
    Reflect::set(&canvas, &"width".into(), &JsValue::from(width as u32)).ok()?;
    Reflect::set(&canvas, &"height".into(), &JsValue::from(height as u32)).ok()?;
    Some(canvas.into())
}
