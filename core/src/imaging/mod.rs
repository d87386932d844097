//! 8-bit image operations that must match Python's imaging to the pixel.

pub mod control_image;
pub mod resize;
