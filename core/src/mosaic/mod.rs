//! MosaicFusion: several objects per image, each from its own region prompt, with an instance
//! mask per region from the diffusion model's cross-attention.
//!
//! [`options`] are what users set, [`plan`] fixes a sample from its seed (layout, categories,
//! prompts, attention tokens), [`denoise`] runs the multi-region diffusion and captures
//! attention, [`attention_mask`] turns attention into masks, [`instances`] turns masks into
//! instances, [`sample`] makes the record, and [`runner`] plugs it all into a dataset run.

pub mod aggregate_device;
pub mod attention_mask;
pub mod denoise;
pub mod instances;
pub mod layout;
pub mod options;
pub mod plan;
pub mod record;
pub mod runner;
pub mod sample;

pub use options::MosaicOptions;
pub use record::{MosaicDetails, MosaicRecord, RegionRecord};
pub use runner::MosaicFusion;
