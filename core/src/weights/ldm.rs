//! Single-file Stable Diffusion checkpoints (the original LDM/CompVis key layout) read as if
//! they were diffusers folders: each diffusers key is translated to its LDM key on request.

use std::sync::Arc;

use super::safetensors_file::SafetensorsWeights;
use super::var_builder::{HostTensor, Weights};
use crate::error::Result;

/// Which part of the checkpoint a [`LdmComponent`] reads.
#[derive(Debug, Clone)]
pub enum LdmLayout {
    /// `model.diffusion_model.*`.
    UNet(UNetLayout),
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

/// What the LDM UNet numbering depends on: the `input_blocks`/`output_blocks` index of a
/// diffusers block layer, and the slot of an up block's upsampler. The model's config
/// describes itself this way (`UNet2DConditionConfig::ldm_layout`).
#[derive(Debug, Clone)]
pub struct UNetLayout {
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// Per up block: whether it has attentions (its upsampler then follows them).
    pub up_block_has_attention: Vec<bool>,
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

impl LdmComponent {
    /// Reads `layout`'s component from `checkpoint`.
    pub fn new(checkpoint: Arc<SafetensorsWeights>, layout: LdmLayout) -> Self {
        Self { checkpoint, layout }
    }

    /// The LDM key holding the diffusers key `key`, and how to convert it.
    fn translate(&self, key: &str) -> (String, Transform) {
        match &self.layout {
            LdmLayout::UNet(unet) => (
                format!("model.diffusion_model.{}", unet_key(key, unet)),
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

/// A key rename `(from, to)`: a key starting with `from` starts with `to` instead. Each `*` of
/// `from` matches one index (`down_blocks.*.` matches `down_blocks.3.`), written at the same
/// `*` of `to`.
type Rename = (&'static str, &'static str);

/// `key` renamed by the first rule of `table` that matches it.
fn rename(key: &str, table: &[Rename]) -> Option<String> {
    table.iter().find_map(|&(from, to)| {
        let mut pieces = from.split('*');
        let mut rest = key.strip_prefix(pieces.next()?)?;
        let mut indices = Vec::new();
        for piece in pieces {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            indices.push(&rest[..digits]);
            rest = rest[digits..].strip_prefix(piece)?;
        }
        let mut out = String::new();
        for (n, piece) in to.split('*').enumerate() {
            if n > 0 {
                out.push_str(indices.get(n - 1)?);
            }
            out.push_str(piece);
        }
        Some(out + rest)
    })
}

/// `key` renamed by `table`, or unchanged if no rule matches.
fn renamed(key: &str, table: &[Rename]) -> String {
    rename(key, table).unwrap_or_else(|| key.to_string())
}

/// Splits `prefix.{n}.rest` into `(n, rest)`.
fn index_after<'a>(key: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

/// UNet names outside the numbered blocks.
const UNET: &[Rename] = &[
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("add_embedding.linear_1", "label_emb.0.0"),
    ("add_embedding.linear_2", "label_emb.0.2"),
    ("conv_in", "input_blocks.0.0"),
    ("conv_norm_out", "out.0"),
    ("conv_out", "out.2"),
];

/// `ResnetBlock2D` names inside the UNet's `ResBlock`.
const UNET_RESNET: &[Rename] = &[
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
];

/// diffusers UNet key → LDM UNet key. The numbered blocks are flattened: down block `i`'s
/// layer `j` is `input_blocks.{1 + i·(layers + 1) + j}`, up block `i`'s is
/// `output_blocks.{i·(layers + 1) + j}`, the mid block's are `middle_block.{0,1,2}`.
fn unet_key(key: &str, layout: &UNetLayout) -> String {
    if let Some(k) = rename(key, UNET) {
        return k;
    }
    let layers = layout.layers_per_block;
    let per_block = layers + 1;
    if let Some((i, rest)) = index_after(key, "down_blocks") {
        let slot = |j: usize| 1 + i * per_block + j;
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("input_blocks.{}.0.{}", slot(j), renamed(r, UNET_RESNET));
        }
        if let Some((j, r)) = index_after(rest, "attentions") {
            return format!("input_blocks.{}.1.{r}", slot(j));
        }
        if let Some(param) = rest.strip_prefix("downsamplers.0.conv") {
            return format!("input_blocks.{}.0.op{param}", slot(layers));
        }
    }
    if let Some(rest) = key.strip_prefix("mid_block.") {
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("middle_block.{}.{}", 2 * j, renamed(r, UNET_RESNET));
        }
        if let Some(r) = rest.strip_prefix("attentions.0.") {
            return format!("middle_block.1.{r}");
        }
    }
    if let Some((i, rest)) = index_after(key, "up_blocks") {
        let slot = |j: usize| i * per_block + j;
        if let Some((j, r)) = index_after(rest, "resnets") {
            return format!("output_blocks.{}.0.{}", slot(j), renamed(r, UNET_RESNET));
        }
        if let Some((j, r)) = index_after(rest, "attentions") {
            return format!("output_blocks.{}.1.{r}", slot(j));
        }
        if let Some(param) = rest.strip_prefix("upsamplers.0.conv") {
            let has_attention = layout.up_block_has_attention.get(i).copied();
            let upsampler = 1 + usize::from(has_attention.unwrap_or(false));
            return format!("output_blocks.{}.{upsampler}.conv{param}", slot(layers));
        }
    }
    key.to_string()
}

/// ControlNet names outside the UNet's down path and the hint block's numbered convs.
const CONTROLNET: &[Rename] = &[
    ("controlnet_cond_embedding.conv_in", "input_hint_block.0"),
    ("controlnet_down_blocks.*.", "zero_convs.*.0."),
    ("controlnet_mid_block", "middle_block_out.0"),
];

/// diffusers ControlNet key → original ControlNet key. The hint block is one `Sequential`
/// with a SiLU after every conv: conv `n` is at `2n`.
fn controlnet_key(key: &str, layers_per_block: usize, hint_blocks: usize) -> String {
    if let Some(k) = rename(key, CONTROLNET) {
        return k;
    }
    if let Some(param) = key.strip_prefix("controlnet_cond_embedding.conv_out") {
        return format!("input_hint_block.{}{param}", 2 * (hint_blocks + 1));
    }
    if let Some((i, param)) = index_after(key, "controlnet_cond_embedding.blocks") {
        return format!("input_hint_block.{}.{param}", 2 * (i + 1));
    }
    let down_path = UNetLayout {
        layers_per_block,
        up_block_has_attention: Vec::new(),
    };
    unet_key(key, &down_path)
}

/// VAE encoder/decoder names below the (renumbered) resolution level, and outside it.
const VAE: &[Rename] = &[
    ("resnets.*.conv_shortcut", "block.*.nin_shortcut"),
    ("resnets.*.", "block.*."),
    ("downsamplers.0", "downsample"),
    ("upsamplers.0", "upsample"),
    ("conv_norm_out", "norm_out"),
    ("mid_block.attentions.0.group_norm", "mid.attn_1.norm"),
    ("mid_block.attentions.0.to_q", "mid.attn_1.q"),
    ("mid_block.attentions.0.to_k", "mid.attn_1.k"),
    ("mid_block.attentions.0.to_v", "mid.attn_1.v"),
    ("mid_block.attentions.0.to_out.0", "mid.attn_1.proj_out"),
    ("mid_block.attentions.0.", "mid.attn_1."),
];

/// `ResnetBlock2D` names inside the VAE's `ResnetBlock`.
const VAE_RESNET: &[Rename] = &[("conv_shortcut", "nin_shortcut")];

/// diffusers VAE key → LDM VAE key. The decoder's levels count down: diffusers' up block `i`
/// is `up.{num_blocks - 1 - i}`; the mid block's resnets are `mid.block_{1,2}`.
fn vae_key(key: &str, num_blocks: usize) -> String {
    let Some((part, rest)) = key.split_once('.') else {
        return key.to_string();
    };
    if part != "encoder" && part != "decoder" {
        return key.to_string();
    }
    let inner = if let Some((i, r)) = index_after(rest, "down_blocks") {
        format!("down.{i}.{}", renamed(r, VAE))
    } else if let Some((i, r)) = index_after(rest, "up_blocks") {
        format!("up.{}.{}", num_blocks - 1 - i, renamed(r, VAE))
    } else if let Some((j, r)) = rest
        .strip_prefix("mid_block.")
        .and_then(|r| index_after(r, "resnets"))
    {
        format!("mid.block_{}.{}", j + 1, renamed(r, VAE_RESNET))
    } else if let Some(k) = rename(rest, VAE) {
        k
    } else if let Some(r) = rest.strip_prefix("mid_block.") {
        format!("mid.{r}")
    } else {
        rest.to_string()
    };
    format!("{part}.{inner}")
}

/// CLIP text names (below `text_model.`) → OpenCLIP names, except the fused q/k/v.
const OPEN_CLIP: &[Rename] = &[
    (
        "embeddings.token_embedding.weight",
        "token_embedding.weight",
    ),
    (
        "embeddings.position_embedding.weight",
        "positional_embedding",
    ),
    ("final_layer_norm", "ln_final"),
    (
        "encoder.layers.*.self_attn.out_proj",
        "transformer.resblocks.*.attn.out_proj",
    ),
    (
        "encoder.layers.*.layer_norm1",
        "transformer.resblocks.*.ln_1",
    ),
    (
        "encoder.layers.*.layer_norm2",
        "transformer.resblocks.*.ln_2",
    ),
    (
        "encoder.layers.*.mlp.fc1",
        "transformer.resblocks.*.mlp.c_fc",
    ),
    (
        "encoder.layers.*.mlp.fc2",
        "transformer.resblocks.*.mlp.c_proj",
    ),
];

/// diffusers CLIP text key → OpenCLIP key (below `cond_stage_model.model.`).
fn open_clip_key(key: &str) -> (String, Transform) {
    if key == "text_projection.weight" {
        return ("text_projection".into(), Transform::Transpose);
    }
    let Some(rest) = key.strip_prefix("text_model.") else {
        return (key.to_string(), Transform::None);
    };
    if let Some((i, r)) = index_after(rest, "encoder.layers") {
        for (part, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            if let Some(param) = r.strip_prefix(&format!("self_attn.{proj}.")) {
                return (
                    format!("transformer.resblocks.{i}.attn.in_proj_{param}"),
                    Transform::Rows { part, parts: 3 },
                );
            }
        }
    }
    (renamed(rest, OPEN_CLIP), Transform::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_copy_indices() {
        let table = [("a.*.b.*.", "x.*.y.*.z."), ("a.", "w.")];
        assert_eq!(
            rename("a.12.b.3.c", &table).as_deref(),
            Some("x.12.y.3.z.c")
        );
        assert_eq!(rename("a.b.c", &table).as_deref(), Some("w.b.c"));
        assert_eq!(rename("b.1", &table), None);
    }

    #[test]
    fn unet_keys_follow_the_ldm_numbering() {
        let layout = UNetLayout {
            layers_per_block: 2,
            up_block_has_attention: vec![false, true, true],
        };
        assert_eq!(
            unet_key("down_blocks.1.resnets.0.conv1.weight", &layout),
            "input_blocks.4.0.in_layers.2.weight"
        );
        assert_eq!(
            unet_key("down_blocks.0.downsamplers.0.conv.bias", &layout),
            "input_blocks.3.0.op.bias"
        );
        assert_eq!(
            unet_key("up_blocks.0.upsamplers.0.conv.weight", &layout),
            "output_blocks.2.1.conv.weight"
        );
        assert_eq!(
            unet_key("up_blocks.1.upsamplers.0.conv.weight", &layout),
            "output_blocks.5.2.conv.weight"
        );
        assert_eq!(
            unet_key("mid_block.resnets.1.time_emb_proj.weight", &layout),
            "middle_block.2.emb_layers.1.weight"
        );
        assert_eq!(
            unet_key("time_embedding.linear_2.bias", &layout),
            "time_embed.2.bias"
        );
    }

    #[test]
    fn controlnet_keys_follow_the_original_release() {
        assert_eq!(
            controlnet_key("controlnet_down_blocks.11.weight", 2, 6),
            "zero_convs.11.0.weight"
        );
        assert_eq!(
            controlnet_key("controlnet_cond_embedding.conv_out.bias", 2, 6),
            "input_hint_block.14.bias"
        );
        assert_eq!(
            controlnet_key("controlnet_cond_embedding.blocks.1.weight", 2, 6),
            "input_hint_block.4.weight"
        );
        assert_eq!(
            controlnet_key("down_blocks.2.attentions.1.proj_in.weight", 2, 6),
            "input_blocks.8.1.proj_in.weight"
        );
    }

    #[test]
    fn vae_decoder_levels_are_reversed() {
        assert_eq!(
            vae_key("decoder.up_blocks.0.resnets.2.conv_shortcut.weight", 4),
            "decoder.up.3.block.2.nin_shortcut.weight"
        );
        assert_eq!(
            vae_key("decoder.up_blocks.1.upsamplers.0.conv.weight", 4),
            "decoder.up.2.upsample.conv.weight"
        );
        assert_eq!(
            vae_key("encoder.mid_block.attentions.0.to_out.0.bias", 4),
            "encoder.mid.attn_1.proj_out.bias"
        );
        assert_eq!(
            vae_key("encoder.mid_block.resnets.1.norm1.weight", 4),
            "encoder.mid.block_2.norm1.weight"
        );
        assert_eq!(
            vae_key("encoder.conv_norm_out.weight", 4),
            "encoder.norm_out.weight"
        );
    }

    #[test]
    fn open_clip_keys_split_the_fused_projection() {
        let (key, transform) = open_clip_key("text_model.encoder.layers.3.self_attn.k_proj.bias");
        assert_eq!(key, "transformer.resblocks.3.attn.in_proj_bias");
        assert!(matches!(transform, Transform::Rows { part: 1, parts: 3 }));
        let (key, _) = open_clip_key("text_model.encoder.layers.3.mlp.fc2.weight");
        assert_eq!(key, "transformer.resblocks.3.mlp.c_proj.weight");
        let (key, _) = open_clip_key("text_model.embeddings.position_embedding.weight");
        assert_eq!(key, "positional_embedding");
    }
}
