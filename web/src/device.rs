//! Choosing the burn device: WebGPU when the browser has an adapter, burn's CPU backend (flex)
//! otherwise.

use std::cell::RefCell;

use burn::tensor::Device;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::fetch::{console, js_message};

thread_local! {
    /// burn's wgpu runtime can be initialised once per page: later pipelines reuse it.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// `"auto"`, `"webgpu"` or `"cpu"` → the device and its name.
pub async fn select(kind: &str) -> Result<(Device, &'static str), String> {
    match kind {
        "cpu" => Ok((Device::flex(), "cpu")),
        "webgpu" => Ok((webgpu().await?, "webgpu")),
        "auto" => match webgpu().await {
            Ok(d) => Ok((d, "webgpu")),
            Err(e) => {
                console("info", &format!("maskforge: using the CPU ({e})"));
                Ok((Device::flex(), "cpu"))
            }
        },
        other => Err(format!(
            "device must be \"auto\", \"webgpu\" or \"cpu\", got \"{other}\""
        )),
    }
}

async fn webgpu() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    // Ask the browser first: wgpu's own request would fail less clearly without WebGPU.
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .map_err(|_| "WebGPU is not available: no `navigator`".to_string())?;
    let gpu = Reflect::get(&navigator, &JsValue::from_str("gpu"))
        .ok()
        .filter(|g| !g.is_undefined() && !g.is_null())
        .ok_or("WebGPU is not available in this browser (navigator.gpu is missing)")?;
    let request: Function = Reflect::get(&gpu, &JsValue::from_str("requestAdapter"))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("WebGPU is not available: navigator.gpu.requestAdapter is missing")?;
    let adapter = request
        .call0(&gpu)
        .map_err(|e| format!("WebGPU adapter request failed: {}", js_message(&e)))?;
    let adapter = JsFuture::from(Promise::from(adapter))
        .await
        .map_err(|e| format!("WebGPU adapter request failed: {}", js_message(&e)))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU is present but no adapter is available".into());
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("WebGPU device initialisation failed: {e}"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
    Ok(device)
}
