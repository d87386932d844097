//! One module per subcommand.

pub mod bench;
pub mod generate;
pub mod merge;
pub mod palette;
pub mod shapes;
pub mod txt2img;
