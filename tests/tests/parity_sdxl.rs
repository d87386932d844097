//! SDXL against diffusers' `StableDiffusionXLPipeline` (CPU backend): both text encoders,
//! pooled embeddings, zero negative embeddings, add_time_ids, a UNet call with `text_time`
//! conditioning, whole runs, and the single-file checkpoint.

use burn::tensor::{Device, Tensor};
use maskforge_core::pipelines::{PipelineKind, StableDiffusion, Txt2ImgParams};
use maskforge_tests::sdxl_fixture::{HEIGHT, NEGATIVE, PROMPT, WIDTH};
use maskforge_tests::{Expected, assert_close, check, load_pipeline, load_single_file, values};

/// Text and UNet intermediates: a few float32 ops deep.
const TOL: f32 = 1e-4;
/// Final latents after 4 Euler steps with guidance 5: float32 differences grow through the loop.
const TOL_LATENTS: f32 = 1e-3;

fn sdxl(device: &Device) -> StableDiffusion {
    let sd = load_pipeline("tiny-sdxl", device);
    assert_eq!(sd.kind, PipelineKind::StableDiffusionXL);
    assert!(sd.force_zeros_for_empty_prompt);
    sd
}

#[test]
fn prompt_embeddings_pooled_and_time_ids_match() {
    let device = Device::flex();
    let sd = sdxl(&device);
    let exp = Expected::load("sdxl");
    let positive = sd.encode_text(&[PROMPT], None);
    check(&exp, "xl.prompt_embeds", positive.context.clone(), TOL);
    check(&exp, "xl.pooled", positive.pooled.clone().unwrap(), TOL);

    let zeros = sd.encode_negative(None, &positive);
    assert!(values(zeros.context).iter().all(|&v| v == 0.0));
    assert!(values(zeros.pooled.unwrap()).iter().all(|&v| v == 0.0));
    let negative = sd.encode_negative(Some(NEGATIVE), &positive);
    check(&exp, "xl.neg.prompt_embeds", negative.context, TOL);
    check(&exp, "xl.neg.pooled", negative.pooled.unwrap(), TOL);
    let empty = sd.encode_negative(Some(""), &positive);
    check(&exp, "xl.empty.prompt_embeds", empty.context, TOL);
    check(&exp, "xl.empty.pooled", empty.pooled.unwrap(), TOL);

    let skipped = sd.encode_text(&[PROMPT], Some(1));
    check(&exp, "xl.clip_skip1.prompt_embeds", skipped.context, TOL);

    let added = positive.added_cond(HEIGHT, WIDTH).unwrap();
    assert_close(
        "add_time_ids",
        &added.time_ids[0],
        &exp.host("xl.add_time_ids").1,
        0.0,
    );
}

#[test]
fn unet_call_with_text_time_conditioning_matches() {
    let device = Device::flex();
    let sd = sdxl(&device);
    let exp = Expected::load("sdxl");
    let embeds = sd
        .encode_text(&[NEGATIVE], None)
        .cat(sd.encode_text(&[PROMPT], None));
    let added = embeds.added_cond(HEIGHT, WIDTH);
    let out = sd.unet.forward(
        exp.tensor("xl.unet.in.sample", &device),
        500.0,
        &embeds.context,
        added.as_ref(),
    );
    check(&exp, "xl.unet.out", out, TOL);
}

fn params(exp: &Expected, device: &Device, negative: Option<&str>) -> Txt2ImgParams {
    Txt2ImgParams {
        prompt: PROMPT.into(),
        negative_prompt: negative.map(str::to_string),
        height: HEIGHT,
        width: WIDTH,
        steps: 4,
        guidance: 5.0,
        latents: Some(exp.tensor("xl.latents_in", device)),
        ..Default::default()
    }
}

#[test]
fn txt2img_matches_with_and_without_negative_prompt() {
    let device = Device::flex();
    let sd = sdxl(&device);
    let exp = Expected::load("sdxl");
    let out = sd.txt2img(&params(&exp, &device, None), |_, _| {}).unwrap();
    check(&exp, "xl.txt2img.latents", out.latents, TOL_LATENTS);
    check(&exp, "xl.txt2img.image", out.image, TOL_LATENTS);
    let out = sd
        .txt2img(&params(&exp, &device, Some(NEGATIVE)), |_, _| {})
        .unwrap();
    check(&exp, "xl.txt2img_neg.latents", out.latents, TOL_LATENTS);
}

#[test]
fn single_file_checkpoint_gives_the_folder_results() {
    let device = Device::flex();
    let folder = sdxl(&device);
    let single = load_single_file("tiny-sdxl", &device);
    assert_eq!(single.kind, PipelineKind::StableDiffusionXL);
    let a = folder.encode_text(&[PROMPT], None);
    let b = single.encode_text(&[PROMPT], None);
    assert_close(
        "single-file context",
        &values(b.context.clone()),
        &values(a.context.clone()),
        0.0,
    );
    assert_close(
        "single-file pooled",
        &values(b.pooled.clone().unwrap()),
        &values(a.pooled.clone().unwrap()),
        0.0,
    );
    let sample = Tensor::<4>::ones([1, 4, 8, 6], &device);
    let run = |sd: &StableDiffusion, e: &maskforge_core::pipelines::PromptEmbeds| {
        values(sd.unet.forward(
            sample.clone(),
            300.0,
            &e.context,
            e.added_cond(HEIGHT, WIDTH).as_ref(),
        ))
    };
    assert_close(
        "single-file UNet",
        &run(&single, &b),
        &run(&folder, &a),
        0.0,
    );
    let z = Tensor::<4>::ones([1, 4, 8, 6], &device) * 0.5;
    assert_close(
        "single-file VAE",
        &values(single.decode_latents(z.clone())),
        &values(folder.decode_latents(z)),
        0.0,
    );
}

/// MosaicFusion on SDXL (per-region prompt and pooled embeddings, zero unconditional rows, the
/// region's size as time ids): with one region covering the canvas, Mixture-of-Diffusers
/// denoising is plain classifier-free guidance, so it must reproduce diffusers' SDXL run.
#[test]
fn one_region_mosaic_on_sdxl_equals_txt2img() {
    use maskforge_core::mosaic::denoise::MosaicParams;
    use maskforge_core::mosaic::layout::{Layout, LayoutDraws, RegionBox};
    use maskforge_core::mosaic::plan::{RegionPlan, SamplePlan, attention_token_index};

    let device = Device::flex();
    let sd = sdxl(&device);
    let exp = Expected::load("sdxl");
    let bbox = RegionBox {
        y1: 0,
        y2: HEIGHT,
        x1: 0,
        x2: WIDTH,
    };
    let plan = SamplePlan {
        index: 0,
        seed: 0,
        main_category_id: 1,
        draws: LayoutDraws::One,
        layout: Layout {
            canvas_height: HEIGHT,
            canvas_width: WIDTH,
            regions: vec![bbox],
        },
        regions: vec![RegionPlan {
            category_id: 1,
            category_name: "cat".into(),
            prompt: PROMPT.into(),
            token_index: attention_token_index(&sd.tokenizer, PROMPT, "cat").unwrap(),
            bbox,
        }],
    };
    let params = MosaicParams {
        steps: 4,
        guidance: 5.0,
        ..Default::default()
    };
    let out = maskforge_core::mosaic::denoise::mosaic(
        &sd,
        &plan,
        &params,
        Some(exp.tensor("xl.latents_in", &device)),
        |_, _| {},
    )
    .unwrap();
    check(&exp, "xl.txt2img.latents", out.latents, TOL_LATENTS);
    // SDXL has cross-attention at 1/16 and 1/32 only: those maps are captured.
    assert!(!out.attention[0].is_empty());
}
