//! SegGen (Text2Mask + Mask2Img): segmentation masks drawn as colour maps by a diffusion model,
//! then images drawn from them.
//!
//! The colour-map conversion is pure functions on buffers: palettes ([`palette`]), masks to
//! colour maps ([`colorize`], panoptic segments in [`panoptic`]), colour maps back to masks by
//! nearest colour ([`decode`]; on a GPU [`decode_device`]), small segments absorbed into their
//! neighbours ([`small_segments`]) and instances split by the edge colour ([`instances`]). The pipelines: [`text2mask`] draws and reads a mask, [`mask2img`]
//! conditions a ControlNet on one; [`imgsyn`] and [`masksyn`] make datasets through the
//! dataset-run layer ([`record`], [`sample`], [`dataset`]).

pub mod colorize;
pub mod dataset;
pub mod decode;
pub mod decode_device;
pub mod imgsyn;
pub mod instances;
pub mod maps;
pub mod mask2img;
pub mod masksyn;
pub mod options;
pub mod palette;
pub mod panoptic;
pub mod prompts;
pub mod record;
pub mod sample;
pub mod small_segments;
pub mod text2mask;

pub use colorize::{colorize_panoptic, colorize_semantic};
pub use dataset::{collect_seggen, palette_categories};
pub use decode::{DecodeOptions, Decoded, decode};
pub use decode_device::decode_on_device;
pub use imgsyn::ImgSyn;
pub use instances::{Instances, instances};
pub use maps::{ColorMap, LabelMap};
pub use masksyn::MaskSyn;
pub use options::SynthesisOptions;
pub use palette::{DEFAULT_EDGE_COLOR, Palette, PaletteEntry, UNLABELLED_COLOR};
pub use panoptic::{Segment, parse_segments, segment_color, segment_ids};
pub use prompts::{ImgSynPrompt, MaskSynPrompt, parse_jsonl};
pub use record::{SegGenDetails, SegGenRecord};
pub use text2mask::{DrawnMask, text2mask};
