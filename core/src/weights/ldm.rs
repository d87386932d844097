//! Single-file Stable Diffusion checkpoints (the original LDM/CompVis key layout) read as if
//! they were diffusers folders: each diffusers key is translated to its LDM key on request.

use std::sync::Arc;

use super::safetensors_file::SafetensorsWeights;
use super::var_builder::{HostTensor, Weights};
use crate::error::Result;
use crate::models::diffusion::unet::UNet2DConditionConfig;

/// Which part of the checkpoint a [`LdmComponent`] reads.
#[derive(Debug, Clone)]
pub enum LdmLayout {
    /// `model.diffusion_model.*`; `layers_per_block` and which up blocks have attention decide
    /// the `input_blocks`/`output_blocks` numbering.
    UNet {
        layers_per_block: usize,
        up_block_has_attention: Vec<bool>,
    },
    /// The original ControlNet release: `prefix` (`control_model.` or nothing) then the UNet's
    /// down-path names plus `input_hint_block`, `zero_convs` and `middle_block_out`;
    /// `hint_blocks` is the number of convs between the hint block's first and last.
    ControlNet {
        prefix: &'static str,
        layers_per_block: usize,
        hint_blocks: usize,
    },
    /// `first_stage_model.*` with `num_blocks` resolution levels.
    Vae { num_blocks: usize },
    /// transformers' CLIP names below `prefix` (SD1: `cond_stage_model.transformer.`, SDXL's
    /// first encoder: `conditioner.embedders.0.transformer.`).
    ClipText { prefix: &'static str },
    /// OpenCLIP names with fused q/k/v below `prefix` (SD2: `cond_stage_model.model.`, SDXL's
    /// second encoder: `conditioner.embedders.1.model.`).
    OpenClipText {
        prefix: &'static str,
        hidden_size: usize,
    },
}

/// How a stored tensor becomes the diffusers tensor.
enum Transform {
    None,
    /// Rows `[i·n, (i+1)·n)` of a fused `in_proj` of `3n` rows.
    Rows {
        part: usize,
        parts: usize,
    },
    /// OpenCLIP's `text_projection` is stored `[d_in, d_out]`, PyTorch linear as `[d_out, d_in]`.
    Transpose,
}

/// One model component inside a single-file checkpoint.
pub struct LdmComponent {
    checkpoint: Arc<SafetensorsWeights>,
    layout: LdmLayout,
}

impl LdmLayout {
    /// The UNet layout of config `unet` (`file` names it in errors).
    pub fn unet(unet: &UNet2DConditionConfig, file: &str) -> Result<Self> {
        let sizes = unet.block_sizes(file)?;
        Ok(LdmLayout::UNet {
            layers_per_block: sizes.layers[0],
            up_block_has_attention: unet
                .up_block_types
                .iter()
                .map(|t| t.starts_with("CrossAttn"))
                .collect(),
        })
    }
}

impl LdmComponent {
    /// Reads `layout`'s component from `checkpoint`.
    pub fn new(checkpoint: Arc<SafetensorsWeights>, layout: LdmLayout) -> Self {
        Self { checkpoint, layout }
    }

    /// The LDM key holding the diffusers key `key`, and how to convert it.
    fn translate(&self, key: &str) -> (String, Transform) {
        match &self.layout {
            LdmLayout::UNet {
                layers_per_block,
                up_block_has_attention,
            } => (
                format!(
                    "model.diffusion_model.{}",
                    unet_key(key, *layers_per_block, up_block_has_attention)
                ),
                Transform::None,
            ),
            LdmLayout::ControlNet {
                prefix,
                layers_per_block,
                hint_blocks,
            } => (
                format!(
                    "{prefix}{}",
                    controlnet_key(key, *layers_per_block, *hint_blocks)
                ),
                Transform::None,
            ),
            LdmLayout::Vae { num_blocks } => (
                format!("first_stage_model.{}", vae_key(key, *num_blocks)),
                Transform::None,
            ),
            LdmLayout::ClipText { prefix } => (format!("{prefix}{key}"), Transform::None),
            LdmLayout::OpenClipText { prefix, .. } => {
                let (k, t) = open_clip_key(key);
                (format!("{prefix}{k}"), t)
            }
        }
    }
}

impl Weights for LdmComponent {
    fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        let (ldm_key, transform) = self.translate(key);
        let Some(t) = self.checkpoint.read(&ldm_key)? else {
            return Ok(None);
        };
        Ok(Some(match transform {
            Transform::None => t,
            Transform::Rows { part, parts } => {
                let rows = t.shape[0] / parts;
                let row_len: usize = t.shape[1..].iter().product();
                let mut shape = t.shape.clone();
                shape[0] = rows;
                HostTensor {
                    shape,
                    data: t.data[part * rows * row_len..(part + 1) * rows * row_len].to_vec(),
                }
            }
            Transform::Transpose => {
                let (r, c) = (t.shape[0], t.shape[1]);
                let mut data = vec![0.0; r * c];
                for i in 0..r {
                    for j in 0..c {
                        data[j * r + i] = t.data[i * c + j];
                    }
                }
                HostTensor {
                    shape: vec![c, r],
                    data,
                }
            }
        }))
    }

    fn origin(&self) -> String {
        self.checkpoint.origin()
    }
}

/// Splits `prefix.{n}.rest` into `(n, rest)`.
fn index_after<'a>(key: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

fn resnet_key(rest: &str) -> String {
    const NAMES: [(&str, &str); 6] = [
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("time_emb_proj", "emb_layers.1"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("conv_shortcut", "skip_connection"),
    ];
    for (from, to) in NAMES {
        if let Some(param) = rest.strip_prefix(from) {
            return format!("{to}{param}");
        }
    }
    rest.to_string()
}

/// diffusers UNet key → LDM UNet key.
fn unet_key(key: &str, layers: usize, up_has_attn: &[bool]) -> String {
    let per_block = layers + 1;
    let simple = [
        ("time_embedding.linear_1", "time_embed.0"),
        ("time_embedding.linear_2", "time_embed.2"),
        ("add_embedding.linear_1", "label_emb.0.0"),
        ("add_embedding.linear_2", "label_emb.0.2"),
        ("conv_in", "input_blocks.0.0"),
        ("conv_norm_out", "out.0"),
        ("conv_out", "out.2"),
    ];
    for (from, to) in simple {
        if let Some(param) = key.strip_prefix(from) {
            return format!("{to}{param}");
        }
    }
    if let Some((i, rest)) = index_after(key, "down_blocks") {
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("input_blocks.{}.0.{}", 1 + i * per_block + j, resnet_key(r));
        }
        if let Some((j, r)) = index_after(rest, "attentions") {
            return format!("input_blocks.{}.1.{r}", 1 + i * per_block + j);
        }
        if let Some(param) = rest.strip_prefix("downsamplers.0.conv") {
            return format!("input_blocks.{}.0.op{param}", 1 + i * per_block + layers);
        }
    }
    if let Some(rest) = key.strip_prefix("mid_block.") {
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("middle_block.{}.{}", 2 * j, resnet_key(r));
        }
        if let Some(r) = rest.strip_prefix("attentions.0.") {
            return format!("middle_block.1.{r}");
        }
    }
    if let Some((i, rest)) = index_after(key, "up_blocks") {
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("output_blocks.{}.0.{}", i * per_block + j, resnet_key(r));
        }
        if let Some((j, r)) = index_after(rest, "attentions") {
            return format!("output_blocks.{}.1.{r}", i * per_block + j);
        }
        if let Some(param) = rest.strip_prefix("upsamplers.0.conv") {
            let slot = 1 + usize::from(up_has_attn.get(i).copied().unwrap_or(false));
            return format!(
                "output_blocks.{}.{slot}.conv{param}",
                i * per_block + layers
            );
        }
    }
    key.to_string()
}

/// diffusers ControlNet key → original ControlNet key.
fn controlnet_key(key: &str, layers: usize, hint_blocks: usize) -> String {
    if let Some(param) = key.strip_prefix("controlnet_cond_embedding.conv_in") {
        return format!("input_hint_block.0{param}");
    }
    if let Some(param) = key.strip_prefix("controlnet_cond_embedding.conv_out") {
        return format!("input_hint_block.{}{param}", 2 * (hint_blocks + 1));
    }
    if let Some((i, param)) = index_after(key, "controlnet_cond_embedding.blocks") {
        return format!("input_hint_block.{}.{param}", 2 * (i + 1));
    }
    if let Some((i, param)) = index_after(key, "controlnet_down_blocks") {
        return format!("zero_convs.{i}.0.{param}");
    }
    if let Some(param) = key.strip_prefix("controlnet_mid_block") {
        return format!("middle_block_out.0{param}");
    }
    unet_key(key, layers, &[])
}

fn vae_resnet_key(rest: &str) -> String {
    match rest.strip_prefix("conv_shortcut") {
        Some(param) => format!("nin_shortcut{param}"),
        None => rest.to_string(),
    }
}

/// diffusers VAE key → LDM VAE key.
fn vae_key(key: &str, num_blocks: usize) -> String {
    let Some((part, rest)) = key.split_once('.') else {
        return key.to_string();
    };
    if part != "encoder" && part != "decoder" {
        return key.to_string();
    }
    let inner = if let Some(param) = rest.strip_prefix("conv_norm_out") {
        format!("norm_out{param}")
    } else if let Some((i, r)) = index_after(rest, "down_blocks") {
        if let Some((j, r)) = index_after(r, "resnets") {
            format!("down.{i}.block.{j}.{}", vae_resnet_key(r))
        } else {
            format!("down.{i}.{}", r.replace("downsamplers.0", "downsample"))
        }
    } else if let Some((i, r)) = index_after(rest, "up_blocks") {
        let level = num_blocks - 1 - i;
        if let Some((j, r)) = index_after(r, "resnets") {
            format!("up.{level}.block.{j}.{}", vae_resnet_key(r))
        } else {
            format!("up.{level}.{}", r.replace("upsamplers.0", "upsample"))
        }
    } else if let Some(r) = rest.strip_prefix("mid_block.") {
        if let Some((j, r)) = index_after(r, "resnets") {
            format!("mid.block_{}.{}", j + 1, vae_resnet_key(r))
        } else if let Some(r) = r.strip_prefix("attentions.0.") {
            let names = [
                ("group_norm", "norm"),
                ("to_q", "q"),
                ("to_k", "k"),
                ("to_v", "v"),
                ("to_out.0", "proj_out"),
            ];
            let mapped = names
                .iter()
                .find_map(|(from, to)| r.strip_prefix(from).map(|p| format!("{to}{p}")))
                .unwrap_or_else(|| r.to_string());
            format!("mid.attn_1.{mapped}")
        } else {
            format!("mid.{r}")
        }
    } else {
        rest.to_string()
    };
    format!("{part}.{inner}")
}

/// diffusers CLIP text key → OpenCLIP key (below `cond_stage_model.model.`).
fn open_clip_key(key: &str) -> (String, Transform) {
    if key == "text_projection.weight" {
        return ("text_projection".into(), Transform::Transpose);
    }
    let Some(rest) = key.strip_prefix("text_model.") else {
        return (key.to_string(), Transform::None);
    };
    match rest {
        "embeddings.token_embedding.weight" => {
            return ("token_embedding.weight".into(), Transform::None);
        }
        "embeddings.position_embedding.weight" => {
            return ("positional_embedding".into(), Transform::None);
        }
        _ => {}
    }
    if let Some(param) = rest.strip_prefix("final_layer_norm") {
        return (format!("ln_final{param}"), Transform::None);
    }
    if let Some((i, r)) = index_after(rest, "encoder.layers") {
        let block = format!("transformer.resblocks.{i}");
        for (part, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            if let Some(param) = r.strip_prefix(&format!("self_attn.{proj}.")) {
                return (
                    format!("{block}.attn.in_proj_{param}"),
                    Transform::Rows { part, parts: 3 },
                );
            }
        }
        let names = [
            ("self_attn.out_proj", "attn.out_proj"),
            ("layer_norm1", "ln_1"),
            ("layer_norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
        ];
        for (from, to) in names {
            if let Some(param) = r.strip_prefix(from) {
                return (format!("{block}.{to}{param}"), Transform::None);
            }
        }
    }
    (rest.to_string(), Transform::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_keys_follow_the_ldm_numbering() {
        let attn = [false, true, true];
        assert_eq!(
            unet_key("down_blocks.1.resnets.0.conv1.weight", 2, &attn),
            "input_blocks.4.0.in_layers.2.weight"
        );
        assert_eq!(
            unet_key("down_blocks.0.downsamplers.0.conv.bias", 2, &attn),
            "input_blocks.3.0.op.bias"
        );
        assert_eq!(
            unet_key("up_blocks.0.upsamplers.0.conv.weight", 2, &attn),
            "output_blocks.2.1.conv.weight"
        );
        assert_eq!(
            unet_key("up_blocks.1.upsamplers.0.conv.weight", 2, &attn),
            "output_blocks.5.2.conv.weight"
        );
        assert_eq!(
            unet_key("mid_block.resnets.1.time_emb_proj.weight", 2, &attn),
            "middle_block.2.emb_layers.1.weight"
        );
    }

    #[test]
    fn vae_decoder_levels_are_reversed() {
        assert_eq!(
            vae_key("decoder.up_blocks.0.resnets.2.conv_shortcut.weight", 4),
            "decoder.up.3.block.2.nin_shortcut.weight"
        );
        assert_eq!(
            vae_key("encoder.mid_block.attentions.0.to_out.0.bias", 4),
            "encoder.mid.attn_1.proj_out.bias"
        );
    }
}
