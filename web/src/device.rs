//! Choosing the burn device: WebGPU when the browser has an adapter, burn's CPU backend (flex)
//! otherwise.

use std::cell::RefCell;

use burn::tensor::Device;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::fetch::{console, js_message};

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function requestSubgroups() {
  const proto = globalThis.GPUAdapter?.prototype;
  const original = proto?.requestDevice;
  if (!original) return () => {};
  proto.requestDevice = async function (descriptor = {}) {
    const requiredFeatures = [...(descriptor.requiredFeatures ?? [])];
    if (this.features.has("subgroups") && !requiredFeatures.includes("subgroups")) {
      requiredFeatures.push("subgroups");
    }
    const device = await original.call(this, { ...descriptor, requiredFeatures });
    const createShaderModule = device.createShaderModule;
    device.createShaderModule = function (module) {
      const code = /^enable subgroups;/m.test(module.code)
        ? `diagnostic(off, subgroup_uniformity);\n${module.code}` : module.code;
      return createShaderModule.call(this, { ...module, code });
    };
    return device;
  };
  return () => { proto.requestDevice = original; };
}
"#)]
extern "C" {
    /// Until the returned function is called, every WebGPU device requested gets the adapter's
    /// `subgroups` feature, and its shader modules that enable subgroups get WGSL's
    /// `subgroup_uniformity` diagnostic turned off. Some of CubeCL's matmul autotune candidates
    /// use subgroup operations whatever the device reports; wgpu's WebGPU backend never requests
    /// the feature (it has no name for it), and browsers also reject `subgroupAdd` in control
    /// flow their uniformity analysis cannot prove uniform, which naga (native) does not check.
    /// On the web a rejected kernel is not an error the tuner sees: it would time an invalid
    /// pipeline and could pick it.
    #[wasm_bindgen(js_name = requestSubgroups)]
    fn request_subgroups() -> Function;
}

/// Whether a `GPUAdapter` lists `feature` in its `features` set.
fn has_feature(adapter: &JsValue, feature: &str) -> bool {
    Reflect::get(adapter, &JsValue::from_str("features"))
        .ok()
        .and_then(|set| {
            let has: Function = Reflect::get(&set, &JsValue::from_str("has"))
                .ok()?
                .dyn_into()
                .ok()?;
            has.call1(&set, &JsValue::from_str(feature)).ok()
        })
        .is_some_and(|v| v.is_truthy())
}

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
    if !has_feature(&adapter, "subgroups") {
        let why = "this WebGPU adapter lacks the `subgroups` feature, which the autotuned GPU \
                   kernels need";
        return Err(why.into());
    }
    let restore = request_subgroups();
    let device = Device::wgpu_options().init_async().await;
    let _ = restore.call0(&JsValue::NULL);
    let device = device.map_err(|e| format!("WebGPU device initialisation failed: {e}"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
    Ok(device)
}
