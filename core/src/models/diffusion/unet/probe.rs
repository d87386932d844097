//! Cross-attention capture: the attention probabilities of one text token per batch item,
//! averaged over heads, from every cross-attention layer of one UNet call.
//!
//! Only one column of each `softmax(QKᵀ)` is kept, so memory is O(items × pixels), never the
//! full `[B, heads, pixels, 77]` maps.

use burn::tensor::Tensor;

/// Where a cross-attention layer sits in the UNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UNetLocation {
    Down,
    Mid,
    Up,
}

/// One cross-attention layer's recorded column.
#[derive(Debug, Clone)]
pub struct ProbeMap {
    pub location: UNetLocation,
    /// Spatial size of the layer's tokens.
    pub height: usize,
    pub width: usize,
    /// `[items, height·width]`: probability of the item's token, mean over heads, f32.
    pub probs: Tensor<2>,
}

/// Asks every cross-attention layer of one UNet call to record one token's probabilities.
#[derive(Debug)]
pub struct CrossAttentionProbe {
    /// Token index per batch item; `None` leaves the item out (e.g. the unconditional half).
    tokens: Vec<Option<usize>>,
    pub(super) location: UNetLocation,
    /// The recorded layers, in call order.
    pub maps: Vec<ProbeMap>,
}

impl CrossAttentionProbe {
    /// `tokens[b]` is the text token to record for batch item `b`.
    pub fn new(tokens: Vec<Option<usize>>) -> Self {
        Self {
            tokens,
            location: UNetLocation::Down,
            maps: Vec::new(),
        }
    }

    /// Token index per batch item.
    pub fn tokens(&self) -> &[Option<usize>] {
        &self.tokens
    }

    /// Batch items that are recorded, in batch order (the rows of every [`ProbeMap`]).
    pub fn items(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.tokens
            .iter()
            .enumerate()
            .filter_map(|(b, t)| t.map(|t| (b, t)))
    }

    pub(super) fn record(&mut self, height: usize, width: usize, probs: Tensor<2>) {
        self.maps.push(ProbeMap {
            location: self.location,
            height,
            width,
            probs,
        });
    }
}
