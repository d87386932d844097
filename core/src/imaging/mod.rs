//! 8-bit image operations that must match Python's imaging to the pixel, and image encoding.

pub mod control_image;
pub mod encode;
pub mod resize;
