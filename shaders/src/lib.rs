//! GPU kernels MaskForge adds to burn's, written in CubeCL and launched on burn's wgpu tensors:
//! [`resample`] is the separable bicubic pass of MosaicFusion's attention aggregation
//! (`maskforge_core::mosaic::aggregate_device`).

pub mod resample;
