//! MaskForge core: Stable Diffusion inference on burn, proven equal to diffusers, and the
//! dataset machinery built on it. Generic over burn devices; no I/O beyond bytes in and out.

pub mod arch;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod cpu;
pub mod dataset;
pub mod diffusioninst;
pub mod error;
pub mod imaging;
pub mod masks;
pub mod models;
pub mod mosaic;
pub mod nn;
pub mod pipelines;
pub mod readback;
pub mod rng;
pub mod schedulers;
pub mod seggen;
pub mod shapes;
pub mod text;
pub mod training;
pub mod weights;

pub use error::{Error, Result};
