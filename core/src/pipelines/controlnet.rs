//! Loading ControlNets next to a pipeline: diffusers `ControlNetModel` folders and single files
//! (diffusers names, or the original release's `control_model.*` names), checked to fit the UNet.

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor};

use super::files::{PipelineFiles, config_path};
use super::stable_diffusion::StableDiffusion;
use crate::error::{Error, Result};
use crate::models::diffusion::controlnet::{ControlNetConfig, ControlNetModel};
use crate::weights::ldm::{LdmComponent, LdmLayout};
use crate::weights::{
    Bytes, FileSource, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights,
    load_component_weights,
};

/// A loaded ControlNet.
#[derive(Debug)]
pub struct ControlNet {
    pub model: ControlNetModel,
    pub config: ControlNetConfig,
    /// The folder or file it came from, for errors.
    pub origin: String,
}

/// One ControlNet applied to a generation: the net, its conditioning image and its scale.
#[derive(Debug, Clone)]
pub struct Control {
    pub net: Arc<ControlNet>,
    /// `[1, 3, H, W]` in [0, 1], at the output size (see
    /// [`control_image_tensor`](crate::imaging::control_image::control_image_tensor)).
    pub image: Tensor<4>,
    /// diffusers' `controlnet_conditioning_scale`.
    pub scale: f32,
}

impl ControlNet {
    /// Loads a diffusers `ControlNetModel` folder: `config.json` and
    /// `diffusion_pytorch_model[.fp16].safetensors` at the root of `source`.
    pub fn load(source: &dyn FileSource, device: &Device, dtype: DType) -> Result<Self> {
        let config_path = config_path("");
        let file = source.display(&config_path);
        let config = ControlNetConfig::from_json((*source.read(&config_path)?).as_ref(), &file)?;
        let files = PipelineFiles::controlnet(dtype == DType::F16);
        let weights = Arc::new(load_component_weights(source, files.component("")?)?);
        let vb = VarBuilder::from_weights(weights, device, dtype);
        Ok(Self {
            model: ControlNetModel::load(&vb, &config, &file)?,
            config,
            origin: source.display(""),
        })
    }

    /// Loads a single-file ControlNet for the base model of UNet config `base`: the original
    /// release's layout (`control_model.*` or unprefixed LDM names, with the release's
    /// conditioning encoder) or diffusers names.
    pub fn load_single_file(
        name: &str,
        bytes: Bytes,
        base: &crate::models::diffusion::unet::UNet2DConditionConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let file = SafetensorsFile::parse(name, bytes)?;
        let ckpt = Arc::new(SafetensorsWeights::new(vec![file])?);
        let has = |k: &str| ckpt.keys().any(|key| key == k);
        let weights: Arc<dyn Weights> = if has("time_embedding.linear_1.weight") {
            ckpt
        } else {
            let prefix = if has("control_model.time_embed.0.weight") {
                "control_model."
            } else if has("time_embed.0.weight") {
                ""
            } else {
                return Err(Error::bad_file(
                    name,
                    "not a ControlNet checkpoint (no time_embed.0.weight, \
                     control_model.time_embed.0.weight or time_embedding.linear_1.weight)",
                ));
            };
            let hint = format!("{prefix}input_hint_block.");
            let hint_convs = ckpt
                .keys()
                .filter(|k| k.starts_with(&hint) && k.ends_with(".weight"))
                .count();
            let layout = LdmLayout::ControlNet {
                prefix,
                layers_per_block: base.ldm_layout(name)?.layers_per_block,
                hint_blocks: hint_convs.saturating_sub(2),
            };
            Arc::new(LdmComponent::new(ckpt, layout))
        };
        let config = ControlNetConfig {
            conditioning_embedding_out_channels: hint_widths(weights.as_ref(), name)?,
            ..ControlNetConfig::for_unet(base)
        };
        let vb = VarBuilder::from_weights(weights, device, dtype);
        Ok(Self {
            model: ControlNetModel::load(&vb, &config, name)?,
            config,
            origin: name.to_string(),
        })
    }
}

/// The conditioning encoder's widths, read from its weights (`conv_in`, then every second conv
/// of `blocks`), since single files carry no config.
fn hint_widths(weights: &dyn Weights, name: &str) -> Result<Vec<usize>> {
    let out_channels =
        |key: &str| -> Result<Option<usize>> { Ok(weights.read(key)?.map(|t| t.shape[0])) };
    let first = out_channels("controlnet_cond_embedding.conv_in.weight")?.ok_or_else(|| {
        Error::MissingTensor {
            file: name.to_string(),
            key: "controlnet_cond_embedding.conv_in.weight".into(),
        }
    })?;
    let mut widths = vec![first];
    for i in 0.. {
        match out_channels(&format!(
            "controlnet_cond_embedding.blocks.{}.weight",
            2 * i + 1
        ))? {
            Some(w) => widths.push(w),
            None => break,
        }
    }
    Ok(widths)
}

impl StableDiffusion {
    /// Checks that `net`'s residuals fit this pipeline's UNet and latent size.
    pub fn check_controlnet(&self, net: &ControlNet) -> Result<()> {
        net.config.check_fits(
            &net.origin,
            &self.unet_config,
            &self.unet_origin,
            self.vae_config.scale_factor(),
        )
    }
}
