//! The real architectures (configs of runwayml/stable-diffusion-v1-5,
//! stabilityai/stable-diffusion-2-1 and stabilityai/stable-diffusion-xl-base-1.0), embedded so
//! that benchmarks and single-file checkpoints need no download. The CLIP vocabulary is
//! embedded too (`tokenizer/`, OpenAI's BPE merges as shipped with every SD checkpoint).

use crate::weights::MemorySource;

/// A known Stable Diffusion architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Sd15,
    Sd21,
    Sdxl,
}

const VOCAB: &[u8] = include_bytes!("tokenizer/vocab.json");
const MERGES: &[u8] = include_bytes!("tokenizer/merges.txt");

impl Arch {
    /// Parses a CLI name (`sd15`, `sd21`, `sdxl`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sd15" => Some(Arch::Sd15),
            "sd21" => Some(Arch::Sd21),
            "sdxl" => Some(Arch::Sdxl),
            _ => None,
        }
    }

    /// The diffusers folder of this architecture without weights: `model_index.json`, every
    /// component's config and the tokenizer files.
    pub fn configs(self) -> MemorySource {
        let mut s = MemorySource::new(format!("<embedded {self:?} configs>"));
        let (index, unet, vae, text, sched, pad): (&[u8], &[u8], &[u8], &[u8], &[u8], &str) =
            match self {
                Arch::Sd15 => (
                    include_bytes!("sd15/model_index.json"),
                    include_bytes!("sd15/unet.json"),
                    include_bytes!("sd15/vae.json"),
                    include_bytes!("sd15/text_encoder.json"),
                    include_bytes!("sd15/scheduler.json"),
                    "<|endoftext|>",
                ),
                Arch::Sd21 => (
                    include_bytes!("sd21/model_index.json"),
                    include_bytes!("sd21/unet.json"),
                    include_bytes!("sd21/vae.json"),
                    include_bytes!("sd21/text_encoder.json"),
                    include_bytes!("sd21/scheduler.json"),
                    "!",
                ),
                Arch::Sdxl => {
                    s.insert(
                        "text_encoder_2/config.json",
                        include_bytes!("sdxl/text_encoder_2.json").to_vec(),
                    );
                    s.insert("tokenizer_2/vocab.json", VOCAB.to_vec());
                    s.insert("tokenizer_2/merges.txt", MERGES.to_vec());
                    s.insert("tokenizer_2/special_tokens_map.json", special_tokens("!"));
                    (
                        include_bytes!("sdxl/model_index.json"),
                        include_bytes!("sdxl/unet.json"),
                        include_bytes!("sdxl/vae.json"),
                        include_bytes!("sdxl/text_encoder.json"),
                        include_bytes!("sdxl/scheduler.json"),
                        "<|endoftext|>",
                    )
                }
            };
        s.insert("model_index.json", index.to_vec());
        s.insert("unet/config.json", unet.to_vec());
        s.insert("vae/config.json", vae.to_vec());
        s.insert("text_encoder/config.json", text.to_vec());
        s.insert("scheduler/scheduler_config.json", sched.to_vec());
        s.insert("tokenizer/vocab.json", VOCAB.to_vec());
        s.insert("tokenizer/merges.txt", MERGES.to_vec());
        s.insert("tokenizer/special_tokens_map.json", special_tokens(pad));
        s
    }
}

fn special_tokens(pad: &str) -> Vec<u8> {
    serde_json::json!({
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad,
    })
    .to_string()
    .into_bytes()
}

/// The CLIP BPE tokenizer of Stable Diffusion 1.x (OpenAI's vocabulary, embedded).
pub fn clip_tokenizer() -> crate::text::tokenizer::ClipTokenizer {
    crate::text::tokenizer::ClipTokenizer::from_bytes(VOCAB, MERGES)
        .expect("the embedded vocabulary parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::diffusion::unet::UNet2DConditionConfig;
    use crate::models::diffusion::vae::AutoencoderKLConfig;
    use crate::text::clip::ClipTextConfig;
    use crate::weights::FileSource;

    #[test]
    fn every_embedded_config_parses() {
        for arch in [Arch::Sd15, Arch::Sd21, Arch::Sdxl] {
            let s = arch.configs();
            let read = |p: &str| (*s.read(p).unwrap()).as_ref().to_vec();
            let unet = UNet2DConditionConfig::from_json(&read("unet/config.json"), "unet").unwrap();
            AutoencoderKLConfig::from_json(&read("vae/config.json"), "vae").unwrap();
            ClipTextConfig::from_json(&read("text_encoder/config.json"), "text").unwrap();
            if arch == Arch::Sdxl {
                assert!(!unet.upcast_attention);
                ClipTextConfig::from_json(&read("text_encoder_2/config.json"), "text_2").unwrap();
            }
        }
    }
}
