//! Pipelines: loading a model folder or single file, encoding prompts, and running
//! text-to-image (with ControlNets).

mod controlnet;
mod files;
mod model_index;
mod prompt;
mod stable_diffusion;
mod txt2img;

pub use controlnet::{Control, ControlNet};
pub use files::{MODEL_INDEX, PipelineFiles};
pub use model_index::{ModelIndex, PipelineKind};
pub use prompt::PromptEmbeds;
pub use stable_diffusion::{StableDiffusion, TextEncoder, load_json};
pub use txt2img::{Txt2ImgOutput, Txt2ImgParams, image_to_rgb8, image_to_rgb8_async, read_rgb8};
