//! Each model against diffusers/transformers on the tiny random-weight fixtures (CPU backend):
//! text encoders, UNets (with intermediate activations), VAE encode and decode, single files.

use burn::tensor::{DType, Device, Tensor};
use maskforge_core::models::diffusion::unet::{
    AttentionPooling, TextTimeEmbedding, UNet2DConditionModel, UNetHooks, UNetTrace,
};
use maskforge_core::text::clip::{ClipTextConfig, ClipTextModel};
use maskforge_core::weights::{ComponentFiles, Library, VarBuilder, load_component_weights};
use maskforge_native::source::DirSource;
use maskforge_tests::{
    Expected, assert_close, check, fixture, load_pipeline, load_single_file, load_unet, values,
};

/// Intermediate activations: float32 reordering of sums only.
const TOL: f32 = 1e-4;
const PROMPT: &str = "a photo of a single cat";

fn cpu() -> Device {
    Device::flex()
}

fn text_encoder_matches(pipeline: &str, expected: &str) {
    let device = cpu();
    let sd = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let ids = vec![
        sd.tokenizer.encode_padded(PROMPT),
        sd.tokenizer.encode_padded(""),
    ];
    let flat: Vec<f32> = ids.iter().flatten().map(|&i| i as f32).collect();
    assert_eq!(flat, exp.host("text.ids").1, "token ids");
    let out = sd.text_encoder.forward(&ids);
    check(&exp, "text.embeddings", out.hidden_states[0].clone(), TOL);
    let n = out.hidden_states.len();
    check(
        &exp,
        "text.penultimate",
        out.hidden_states[n - 2].clone(),
        TOL,
    );
    check(&exp, "text.last_hidden_state", out.last_hidden_state, TOL);
    check(&exp, "text.pooled", out.pooled, TOL);
}

#[test]
fn sd15_text_encoder_matches_transformers() {
    text_encoder_matches("tiny-sd15", "sd15");
}

#[test]
fn sd2v_text_encoder_matches_transformers() {
    text_encoder_matches("tiny-sd2v", "sd2v");
}

#[test]
fn clip_with_projection_matches_transformers() {
    let device = cpu();
    let dir = fixture("tiny-clip-proj");
    let source = DirSource::new(&dir).unwrap();
    let config = ClipTextConfig::from_json(
        &std::fs::read(dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    assert!(config.with_projection());
    let files = ComponentFiles::new(".", Library::Transformers, false);
    let weights = load_component_weights(&source, &files).unwrap();
    let vb = VarBuilder::from_weights(
        std::sync::Arc::new(weights),
        &device,
        burn::tensor::DType::F32,
    );
    let model = ClipTextModel::load(&vb, &config).unwrap();
    let sd = load_pipeline("tiny-sd15", &device);
    let ids = vec![
        sd.tokenizer.encode_padded(PROMPT),
        sd.tokenizer.encode_padded(""),
    ];
    let out = model.forward(&ids);
    let exp = Expected::load("sd15");
    check(
        &exp,
        "clip_proj.last_hidden_state",
        out.last_hidden_state,
        TOL,
    );
    check(
        &exp,
        "clip_proj.text_embeds",
        out.text_embeds.expect("projection"),
        TOL,
    );
}

/// `unet` on the expected inputs `{prefix}in.sample`, `in.timestep` and
/// `in.encoder_hidden_states`, traced.
fn traced_call(
    unet: &UNet2DConditionModel,
    exp: &Expected,
    prefix: &str,
    device: &Device,
) -> (UNetTrace, Tensor<4>) {
    let sample: Tensor<4> = exp.tensor(&format!("{prefix}in.sample"), device);
    let context: Tensor<3> = exp.tensor(&format!("{prefix}in.encoder_hidden_states"), device);
    let t = exp.host(&format!("{prefix}in.timestep")).1[0];
    let mut trace = UNetTrace::default();
    let out = unet.forward_with(
        sample,
        t,
        &context,
        None,
        UNetHooks {
            trace: Some(&mut trace),
            ..UNetHooks::default()
        },
    );
    (trace, out)
}

/// Every block's output (`{prefix}down.i`, `mid`, `up.i`) and the UNet's (`{prefix}out`).
fn check_blocks(exp: &Expected, prefix: &str, trace: UNetTrace, out: Tensor<4>) {
    for (i, d) in trace.down.into_iter().enumerate() {
        check(exp, &format!("{prefix}down.{i}"), d, TOL);
    }
    check(exp, &format!("{prefix}mid"), trace.mid.unwrap(), TOL);
    for (i, u) in trace.up.into_iter().enumerate() {
        check(exp, &format!("{prefix}up.{i}"), u, TOL);
    }
    check(exp, &format!("{prefix}out"), out, TOL);
}

fn unet_matches(pipeline: &str, expected: &str) {
    let device = cpu();
    let sd = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let (mut trace, out) = traced_call(&sd.unet, &exp, "unet.", &device);
    check(&exp, "unet.time_emb", trace.time_emb.take().unwrap(), TOL);
    check(&exp, "unet.conv_in", trace.conv_in.take().unwrap(), TOL);
    check_blocks(&exp, "unet.", trace, out);

    // A latent size that the down path halves unevenly (12×10 → 6×5 → 3×3).
    let sample: Tensor<4> = exp.tensor("unet2.in.sample", &device);
    let context: Tensor<3> = exp.tensor("unet2.in.encoder_hidden_states", &device);
    let t = exp.host("unet2.in.timestep").1[0];
    check(
        &exp,
        "unet2.out",
        sd.unet.forward(sample, t, &context, None),
        TOL,
    );
}

#[test]
fn sd15_unet_matches_diffusers() {
    unet_matches("tiny-sd15", "sd15");
}

#[test]
fn sd2v_unet_matches_diffusers() {
    unet_matches("tiny-sd2v", "sd2v");
}

/// `addition_embed_type: "text"`: the prompt pooled into the time embedding, checked layer by
/// layer (the pooling alone, then what the resnet blocks get) and through the whole UNet.
#[test]
fn unet_with_text_embedding_matches_diffusers() {
    let device = cpu();
    let unet = load_unet("tiny-unet-text", &device);
    let exp = Expected::load("unet_text");
    let context: Tensor<3> = exp.tensor("in.encoder_hidden_states", &device);
    let weights = load_component_weights(
        &DirSource::new(fixture("tiny-unet-text")).unwrap(),
        &ComponentFiles::new(".", Library::Diffusers, false),
    )
    .unwrap();
    let vb = VarBuilder::from_weights(std::sync::Arc::new(weights), &device, DType::F32);
    let pool = AttentionPooling::load(&vb.pp("add_embedding.pool"), 32, 4).unwrap();
    let add = TextTimeEmbedding::load(&vb.pp("add_embedding"), 32, 64, 4).unwrap();
    check(
        &exp,
        "pool",
        pool.forward(exp.tensor("pool.in", &device)),
        TOL,
    );
    check(&exp, "add_emb", add.forward(context), TOL);

    let (mut trace, out) = traced_call(&unet, &exp, "", &device);
    check(&exp, "emb", trace.time_emb.take().unwrap(), TOL);
    check_blocks(&exp, "", trace, out);
}

fn vae_matches(pipeline: &str, expected: &str) {
    let device = cpu();
    let sd = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let (post_quant, mid, image) = sd.vae.decode_traced(exp.tensor("vae.decode.in", &device));
    check(&exp, "vae.decode.post_quant_conv", post_quant, TOL);
    check(&exp, "vae.decode.mid", mid, TOL);
    check(&exp, "vae.decode.out", image, TOL);
    let dist = sd.vae.encode(exp.tensor("vae.encode.in", &device));
    check(&exp, "vae.encode.moments", dist.moments, TOL);
    check(&exp, "vae.encode.mean", dist.mean, TOL);
    check(&exp, "vae.encode.std", dist.std, TOL);
}

#[test]
fn sd15_vae_matches_diffusers() {
    vae_matches("tiny-sd15", "sd15");
}

#[test]
fn sd2v_vae_matches_diffusers() {
    vae_matches("tiny-sd2v", "sd2v");
}

/// The single files hold the folders' weights (fp16-representable values), so every model
/// must give bit-identical outputs whichever way it was loaded.
fn single_file_equals_folder(name: &str, expected: &str) {
    let device = cpu();
    let folder = load_pipeline(name, &device);
    let single = load_single_file(name, &device);
    let exp = Expected::load(expected);
    let ids = vec![folder.tokenizer.encode_padded(PROMPT)];
    let a = values(folder.text_encoder.forward(&ids).last_hidden_state);
    let b = values(single.text_encoder.forward(&ids).last_hidden_state);
    assert_close("text encoder", &b, &a, 0.0);
    let sample: Tensor<4> = exp.tensor("unet.in.sample", &device);
    let context: Tensor<3> = exp.tensor("unet.in.encoder_hidden_states", &device);
    let a = values(folder.unet.forward(sample.clone(), 500.0, &context, None));
    let b = values(single.unet.forward(sample, 500.0, &context, None));
    assert_close("unet", &b, &a, 0.0);
    let z: Tensor<4> = exp.tensor("vae.decode.in", &device);
    let a = values(folder.vae.decode(z.clone()));
    let b = values(single.vae.decode(z));
    assert_close("vae decode", &b, &a, 0.0);
    let x: Tensor<4> = exp.tensor("vae.encode.in", &device);
    assert_close(
        "vae encode",
        &values(single.vae.encode(x.clone()).moments),
        &values(folder.vae.encode(x).moments),
        0.0,
    );
}

#[test]
fn sd15_single_file_equals_folder() {
    single_file_equals_folder("tiny-sd15", "sd15");
}

#[test]
fn sd2v_single_file_with_open_clip_keys_equals_folder() {
    single_file_equals_folder("tiny-sd2v", "sd2v");
}
