//! SegGen (Text2Mask + Mask2Img): segmentation masks drawn as colour maps by a diffusion model,
//! then images drawn from them. This part is the colour-map conversion: palettes
//! ([`palette`]), masks to colour maps ([`colorize`], panoptic segments in [`panoptic`]),
//! colour maps back to masks by nearest colour ([`decode`]; on a GPU [`decode_device`]) and instances split by the edge
//! colour ([`instances`]). Pure functions on buffers, but for the GPU decoding.

pub mod colorize;
pub mod decode;
pub mod decode_device;
pub mod instances;
pub mod maps;
pub mod palette;
pub mod panoptic;

pub use colorize::{colorize_panoptic, colorize_semantic};
pub use decode::{DecodeOptions, Decoded, decode};
pub use decode_device::decode_on_device;
pub use instances::{Instances, instances};
pub use maps::{ColorMap, LabelMap};
pub use palette::{DEFAULT_EDGE_COLOR, Palette, PaletteEntry, UNLABELLED_COLOR};
pub use panoptic::{Segment, parse_segments, segment_color, segment_ids};
