//! [`HostWeights`]: named tensors held in memory (weights made rather than read).

use std::collections::BTreeMap;

use super::var_builder::{HostTensor, Weights};
use crate::error::Result;

/// Tensors by key, with a name for messages.
#[derive(Debug, Clone, Default)]
pub struct HostWeights {
    pub tensors: BTreeMap<String, HostTensor>,
    pub origin: String,
}

impl Weights for HostWeights {
    fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        Ok(self.tensors.get(key).cloned())
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn keys(&self) -> Option<Vec<String>> {
        Some(self.tensors.keys().cloned().collect())
    }
}
