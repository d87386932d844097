//! Pipelines: loading a model folder or single file, and running text-to-image.

mod model_index;
mod stable_diffusion;
mod txt2img;

pub use model_index::{ModelIndex, PipelineKind};
pub use stable_diffusion::{StableDiffusion, load_json};
pub use txt2img::{Txt2ImgOutput, Txt2ImgParams, image_to_rgb8, image_to_rgb8_async};
