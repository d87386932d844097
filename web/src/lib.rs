//! MaskForge in the browser: the `maskforge` npm package. Loads a diffusers folder over HTTP
//! (kept in the Cache Storage API), runs text-to-image, MosaicFusion and SegGen samples on
//! WebGPU or burn's CPU backend, and packs datasets in the native runner's format; detects
//! instances with DiffusionInst (`Detector`).
//!
//! Everything is compiled for `wasm32` only; natively the crate is empty.

#[cfg(target_arch = "wasm32")]
mod args;
#[cfg(target_arch = "wasm32")]
mod dataset;
#[cfg(target_arch = "wasm32")]
mod detector;
#[cfg(target_arch = "wasm32")]
mod device;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod images;
#[cfg(target_arch = "wasm32")]
mod pipeline;
#[cfg(target_arch = "wasm32")]
mod seggen;
#[cfg(target_arch = "wasm32")]
mod zip;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// wasm-ld's function that runs the static constructors (CubeCL registers its IR dialects
    /// with `inventory`).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once, when the module is instantiated. Without an explicit
/// call wasm-ld links the module "command-style" and runs every constructor again at the start
/// of each export call, e.g. each of the thousands of `__externref_table_alloc` calls per UNet
/// step, which made WebGPU steps cost seconds on the host alone.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
fn start() {
    // SAFETY: called once, by wasm-bindgen's initialisation, before any other export.
    unsafe { __wasm_call_ctors() }
    console_error_panic_hook::set_once();
}
