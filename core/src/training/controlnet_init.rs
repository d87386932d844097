//! diffusers' `ControlNetModel.from_unet`: a ControlNet starting from a UNet's weights.

use crate::error::Result;
use crate::models::diffusion::controlnet::{ControlNetConfig, ControlNetModel};
use crate::training::ParamNames;
use crate::weights::{HostTensor, HostWeights, VarBuilder, Weights};

/// The starting weights of a ControlNet of `config` for `unet`'s weights: the embeddings,
/// `conv_in`, the down blocks and the mid block copied from the UNet, the zero convolutions
/// (`controlnet_down_blocks`, `controlnet_mid_block` and the conditioning encoder's
/// `conv_out`) zero, and the rest of the conditioning encoder initialised as PyTorch does,
/// from `seed`.
pub fn controlnet_from_unet(
    config: &ControlNetConfig,
    unet: &dyn Weights,
    seed: u64,
) -> Result<HostWeights> {
    let names = ParamNames::of(|vb| ControlNetModel::load(vb, config, "config.json"))?;
    let mut weights = HostWeights {
        origin: format!("a ControlNet made from {}", unet.origin()),
        ..HostWeights::default()
    };
    for p in names.params() {
        let zero = [
            "controlnet_down_blocks.",
            "controlnet_mid_block.",
            "controlnet_cond_embedding.conv_out.",
        ]
        .iter()
        .any(|z| p.key.starts_with(z));
        let n: usize = p.shape.iter().product();
        let tensor = if zero {
            HostTensor {
                shape: p.shape.clone(),
                data: vec![0.0; n],
            }
        } else if p.key.starts_with("controlnet_cond_embedding.") {
            HostTensor {
                shape: p.shape.clone(),
                data: VarBuilder::init_values(seed, &p.key, &p.shape),
            }
        } else {
            // Shapes are checked when a ControlNet is built from these weights.
            unet.read(&p.key)?
                .ok_or_else(|| crate::error::Error::MissingTensor {
                    file: unet.origin(),
                    key: p.key.clone(),
                })?
        };
        weights.tensors.insert(p.key.clone(), tensor);
    }
    Ok(weights)
}
