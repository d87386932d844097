//! GPU kernels MaskForge adds to burn's, written in CubeCL and launched on burn's wgpu tensors:
//! [`resample`] is the separable bicubic pass of MosaicFusion's attention aggregation
//! (`maskforge_core::mosaic::aggregate_device`); [`nearest_color`] is SegGen's colour-map
//! decoding (`maskforge_core::seggen::decode_device`); [`roi_align`] is torchvision's ROIAlign for
//! DiffusionInst's box pooler (`maskforge_core::models::detection::roi_align`);
//! [`dynamic_mask_head`] is DiffusionInst's per-instance mask head
//! (`maskforge_core::diffusioninst::mask_head`); [`group_norm`] is `nn.GroupNorm` with the SiLU
//! that follows it in the UNet and VAE (`maskforge_core::nn::GroupNorm`).

pub mod dynamic_mask_head;
pub mod group_norm;
pub mod nearest_color;
pub mod ops;
pub mod resample;
pub mod roi_align;
