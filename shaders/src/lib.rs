//! GPU kernels MaskForge adds to burn's (CubeCL): attention-map aggregation and the bilateral
//! solver for MosaicFusion masks land here with the dataset pipeline.
