//! A UNet of a new config that starts from a trained UNet: the layers both have are copied,
//! the layers the new config adds (such as `addition_embed_type: "text"`) are new.

use crate::error::{Error, Result};
use crate::models::diffusion::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::training::ParamNames;
use crate::weights::{HostTensor, HostWeights, VarBuilder, Weights};

/// The starting weights of a UNet of `config` grown from `model`'s weights: every parameter
/// `model` has is copied (it must have the same shape), the others are drawn from `seed` as
/// [`VarBuilder::init`] draws them, except the text embedding's last norm
/// (`add_embedding.norm2.weight`), which starts at zero so that the term it adds to the time
/// embedding does too, and the UNet starts out computing what `model` computed.
pub fn unet_from_model(
    config: &UNet2DConditionConfig,
    config_name: &str,
    model: &dyn Weights,
    seed: u64,
) -> Result<HostWeights> {
    let names = ParamNames::of(|vb| UNet2DConditionModel::load(vb, config, config_name))?;
    let mut weights = HostWeights {
        origin: format!("a UNet of {config_name} grown from {}", model.origin()),
        ..HostWeights::default()
    };
    for p in names.params() {
        let tensor = match model.read(&p.key)? {
            Some(t) if t.shape == p.shape => t,
            Some(t) => {
                return Err(Error::Invalid(format!(
                    "{}: `{}` is {:?}, {config_name} makes it {:?}",
                    model.origin(),
                    p.key,
                    t.shape,
                    p.shape
                )));
            }
            None if p.key == "add_embedding.norm2.weight" => HostTensor {
                shape: p.shape.clone(),
                data: vec![0.0; p.shape.iter().product()],
            },
            None => HostTensor {
                shape: p.shape.clone(),
                data: VarBuilder::init_values(seed, &p.key, &p.shape),
            },
        };
        weights.tensors.insert(p.key.clone(), tensor);
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{DType, Device, Distribution, Tensor};

    use super::*;

    fn config(text: bool) -> UNet2DConditionConfig {
        let extra = if text {
            r#", "addition_embed_type": "text", "addition_embed_type_num_heads": 4"#
        } else {
            ""
        };
        let json = format!(
            r#"{{"block_out_channels": [16, 32], "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "attention_head_dim": 2, "norm_num_groups": 4,
                "cross_attention_dim": 32{extra}}}"#
        );
        UNet2DConditionConfig::from_json(json.as_bytes(), "config.json").unwrap()
    }

    fn build(config: &UNet2DConditionConfig, weights: HostWeights) -> UNet2DConditionModel {
        let vb = VarBuilder::from_weights(Arc::new(weights), &Device::flex(), DType::F32);
        UNet2DConditionModel::load(&vb, config, "config.json").unwrap()
    }

    #[test]
    fn a_grown_unet_keeps_the_model_and_starts_out_computing_the_same() {
        let (plain, text) = (config(false), config(true));
        let names =
            ParamNames::of(|vb| UNet2DConditionModel::load(vb, &plain, "config.json")).unwrap();
        let model = names.init_weights(1, "model");
        let grown = unet_from_model(&text, "config.json", &model, 2).unwrap();

        for (key, t) in &model.tensors {
            assert_eq!(grown.tensors[key].data, t.data, "{key}");
        }
        let new: Vec<&String> = grown
            .tensors
            .keys()
            .filter(|k| !model.tensors.contains_key(*k))
            .collect();
        assert!(
            new.iter().all(|k| k.starts_with("add_embedding.")) && new.len() == 13,
            "{new:?}"
        );
        let proj = &grown.tensors["add_embedding.proj.weight"].data;
        assert!(proj.iter().any(|&v| v != 0.0));

        let device = Device::flex();
        let sample = Tensor::<4>::random([2, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let context = Tensor::<3>::random([2, 5, 32], Distribution::Normal(0.0, 1.0), &device);
        let before = build(&plain, model.clone()).forward(sample.clone(), 300.0, &context, None);
        let after = build(&text, grown).forward(sample, 300.0, &context, None);
        let diff = (before - after).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn a_model_that_does_not_fit_the_config_is_refused() {
        let mut wide = config(false);
        wide.cross_attention_dim = 48;
        let names =
            ParamNames::of(|vb| UNet2DConditionModel::load(vb, &wide, "config.json")).unwrap();
        let model = names.init_weights(1, "wide.safetensors");
        let err = unet_from_model(&config(true), "config.json", &model, 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wide.safetensors") && err.contains("attn2.to_k.weight"),
            "{err}"
        );
    }
}
