//! [`PrefixedWeights`]: several weight sets seen as one, each under a key prefix.

use std::sync::Arc;

use super::var_builder::{HostTensor, Weights};
use crate::error::Result;

/// `unet.` → the UNet's weights, `text_encoder.` → the text encoder's, ...: a model made of
/// several components reads each from its own file.
#[derive(Clone)]
pub struct PrefixedWeights(pub Vec<(String, Arc<dyn Weights>)>);

impl Weights for PrefixedWeights {
    fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        for (prefix, weights) in &self.0 {
            if let Some(rest) = key.strip_prefix(prefix.as_str()) {
                return weights.read(rest);
            }
        }
        Ok(None)
    }

    fn origin(&self) -> String {
        let origins: Vec<String> = self.0.iter().map(|(_, w)| w.origin()).collect();
        origins.join(", ")
    }

    fn keys(&self) -> Option<Vec<String>> {
        let mut keys = Vec::new();
        for (prefix, weights) in &self.0 {
            keys.extend(weights.keys()?.into_iter().map(|k| format!("{prefix}{k}")));
        }
        Some(keys)
    }
}
