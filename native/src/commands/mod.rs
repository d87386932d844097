//! One module per subcommand.

pub mod bench;
pub mod convert;
pub mod detect;
mod detect_vis;
pub mod eval;
pub mod generate;
pub mod merge;
pub mod palette;
pub mod score;
pub mod seggen;
pub mod shapes;
pub mod text2mask;
pub mod train;
pub mod txt2img;
