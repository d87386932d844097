//! Convolutions through oneDNN (`libdnnl`), the library PyTorch runs its CPU convolutions on,
//! loaded at run time. Its `dnnl_sgemm` also serves [`super::sgemm`], and the OpenMP runtime
//! it runs on serves [`super::parallel`].
//!
//! oneDNN's direct AVX-512 kernels work on channel-blocked layouts and need no im2col matrix,
//! which makes them faster than im2col + sgemm ([`super::conv2d`]) on the UNet and VAE
//! shapes. Each call reorders the NCHW input and the OIHW weight into the layouts the
//! primitive chose, runs it, and reorders the result back to NCHW, as PyTorch's eager mode
//! does; primitives are built once per shape.
//!
//! The oneDNN 2.x C API is used (Debian 12's `libdnnl2`). `MASKFORGE_ONEDNN=off` disables
//! it, `MASKFORGE_ONEDNN=<library>` loads that file instead of `libdnnl.so.2`. Without it the
//! sgemm convolution is used, so nothing needs oneDNN to build or run.

mod execute;
mod library;
mod openmp;
mod packed_weights;
mod plans;

pub use library::{OneDnn, onednn};
pub use openmp::OpenMp;
pub use packed_weights::PackSlot;
