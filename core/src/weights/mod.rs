//! Reading model weights: safetensors files (diffusers folders, single-file LDM checkpoints)
//! and PyTorch `.pth` checkpoints (read without running pickle code), renamed through key maps,
//! and turned into burn tensors by a [`VarBuilder`].

mod component;
mod component_files;
mod file_source;
mod host_weights;
mod key_report;
pub mod ldm;
mod prefixed;
mod pth;
mod safetensors_file;
mod var_builder;

pub use component::load_component_weights;
pub use component_files::{ComponentFiles, Library, WeightFile, shard_paths};
pub use file_source::{Bytes, FileSource, MemorySource};
pub use host_weights::HostWeights;
pub use key_report::KeyReport;
pub use prefixed::PrefixedWeights;
pub use pth::{PthFile, PthTensor, checkpoint_weights, is_pth};
pub use safetensors_file::{SafetensorsFile, SafetensorsWeights};
pub use var_builder::{HostTensor, StoredParam, VarBuilder, Weights};
