//! Text conditioning: the CLIP tokenizer and text encoders.

pub mod clip;
pub mod tokenizer;
