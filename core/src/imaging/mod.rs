//! 8-bit image operations that must match Python's imaging to the pixel, and PNG bytes.

pub mod control_image;
pub mod png;
pub mod resize;
