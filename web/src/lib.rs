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
