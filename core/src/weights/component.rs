//! Loading the weights of one component folder from a [`FileSource`], following its
//! [`ComponentFiles`] plan.

use super::component_files::{ComponentFiles, WeightFile, shard_paths};
use super::file_source::FileSource;
use super::safetensors_file::{SafetensorsFile, SafetensorsWeights};
use crate::error::Result;

/// Loads the weights of `files.dir` of `source` from the first of `files.candidates` there.
pub fn load_component_weights(
    source: &dyn FileSource,
    files: &ComponentFiles,
) -> Result<SafetensorsWeights> {
    let parse = |path: &str| SafetensorsFile::parse(source.display(path), source.read(path)?);
    for candidate in &files.candidates {
        if !source.exists(candidate.path()) {
            continue;
        }
        let paths = match candidate {
            WeightFile::Single(path) => vec![path.clone()],
            WeightFile::Sharded(index) => shard_paths(
                index,
                (*source.read(index)?).as_ref(),
                &source.display(index),
            )?,
        };
        let parsed = paths.iter().map(|p| parse(p)).collect::<Result<Vec<_>>>()?;
        return SafetensorsWeights::new(parsed);
    }
    let only_unsupported = files.unsupported.iter().any(|p| source.exists(p));
    Err(files.not_found(source.display(&files.dir), only_unsupported))
}
