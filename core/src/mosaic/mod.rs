//! MosaicFusion: several objects per image, each from its own region prompt, with an instance
//! mask per region from the diffusion model's cross-attention.
//!
//! [`plan`] fixes a sample from its seed (layout, categories, prompts, attention tokens),
//! [`denoise`] runs the multi-region diffusion and captures attention, [`attention_mask`]
//! turns attention into masks, [`instances`] turns masks into instances.

pub mod aggregate_device;
pub mod attention_mask;
pub mod categories;
pub mod denoise;
pub mod instances;
pub mod layout;
pub mod plan;
pub mod sample;
