//! Mask processing of MosaicFusion: cross-attention maps → binary instance masks.
//!
//! Pure CPU code on slices: [`otsu`] thresholds an 8-bit attention map as OpenCV does,
//! [`bilateral_solver`] snaps the mask to the image's edges with the fast bilateral solver, and
//! [`components`] splits it into 4-connected components with their areas and boxes.

pub mod bilateral_solver;
pub mod components;
pub mod otsu;

pub use bilateral_solver::{
    BilateralGrid, BilateralSolverParams, bilateral_solve, refine_mask, rgb_to_yuv,
};
pub use components::{Component, connected_components};
pub use otsu::{otsu_threshold, threshold};
