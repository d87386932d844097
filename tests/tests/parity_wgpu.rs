//! The same parity checks on burn's wgpu backend. In CI the adapter is Mesa's lavapipe (a
//! software Vulkan driver), so the models are the tiny fixtures and every test has a deadline.
//!
//! Tolerance: wgpu's kernels sum in other orders (tiled matmul and convolution, tree
//! reductions in group norm and softmax) and lavapipe's `exp`/`tanh` differ from glibc's in
//! the last bits, so errors are a few float32 ulps per operation instead of exact reorderings.
//! Measured on lavapipe (max abs error): text encoder 1.4e-6, UNet 3.2e-6, VAE decode 1.3e-5,
//! final latents 5.3e-5 (on values up to ~10). The bound, 1e-3 of the tensor's scale, leaves
//! room for other drivers while a wrong kernel (errors of order 1e-1) still fails.

use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use burn::tensor::{DType, Device, Tensor, TensorData};
use maskforge_core::dataset::parse_categories;
use maskforge_core::diffusioninst::mask_head::instance_masks;
use maskforge_core::diffusioninst::preprocess::RgbImage;
use maskforge_core::diffusioninst::sampler::{SamplerOptions, sample};
use maskforge_core::diffusioninst::{
    BackboneConfig, DetectOptions, DiffusionInst, DiffusionInstConfig,
};
use maskforge_core::models::detection::roi_align::{RoiAlignParams, roi_align};
use maskforge_core::models::detection::{Backbone, BottomUp, RoiPooler};
use maskforge_core::mosaic::MosaicFusion;
use maskforge_core::mosaic::aggregate_device::aggregate_on_device;
use maskforge_core::mosaic::attention_mask::choose;
use maskforge_core::mosaic::denoise::{MosaicParams, mosaic_on_device};
use maskforge_core::mosaic::sample::{GenerateConfig, Refine, RegionAttention};
use maskforge_core::pipelines::Txt2ImgParams;
use maskforge_core::readback::{self, Readback};
use maskforge_core::schedulers::SchedulerKind;
use maskforge_core::weights::{
    SafetensorsFile, SafetensorsWeights, VarBuilder, checkpoint_weights,
};
use maskforge_native::source::map_file;
use maskforge_tests::{
    BOXES, Expected, assert_attention_close, assert_close, check, fixture, load_pipeline,
    load_unet, mosaic_reference_plan, values,
};

const TOL: f32 = 1e-3;
const DEADLINE: Duration = Duration::from_secs(600);

/// The wgpu runtime is initialised once per process; tests take turns on the (software) adapter.
fn wgpu_device() -> Device {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .unwrap_or_else(|e| panic!("no wgpu adapter (install mesa-vulkan-drivers): {e}"))
}

/// Runs `f` on the wgpu device on another thread, failing the test after [`DEADLINE`].
fn on_wgpu(name: &str, f: impl FnOnce(Device) + Send + 'static) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = mpsc::channel();
    let name = name.to_string();
    std::thread::spawn(move || {
        let device = wgpu_device();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(device)));
        let _ = tx.send(result.map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        }));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => panic!("{name} failed on wgpu: {msg}"),
        Err(_) => panic!("{name} did not finish on wgpu within {DEADLINE:?}"),
    }
}

#[test]
fn wgpu_models_match_diffusers() {
    on_wgpu("models", |device| {
        let sd = load_pipeline("tiny-sd15", &device);
        let exp = Expected::load("sd15");
        let ids = vec![
            sd.tokenizer.encode_padded("a photo of a single cat"),
            sd.tokenizer.encode_padded(""),
        ];
        let text = sd.text_encoder.forward(&ids);
        check(&exp, "text.last_hidden_state", text.last_hidden_state, TOL);
        let sample: Tensor<4> = exp.tensor("unet.in.sample", &device);
        let context: Tensor<3> = exp.tensor("unet.in.encoder_hidden_states", &device);
        check(
            &exp,
            "unet.out",
            sd.unet.forward(sample, 500.0, &context, None),
            TOL,
        );
        check(
            &exp,
            "vae.decode.out",
            sd.vae.decode(exp.tensor("vae.decode.in", &device)),
            TOL,
        );
        // The prompt pooled into the time embedding (`addition_embed_type: "text"`).
        let unet = load_unet("tiny-unet-text", &device);
        let exp = Expected::load("unet_text");
        let out = unet.forward(
            exp.tensor("in.sample", &device),
            exp.host("in.timestep").1[0],
            &exp.tensor("in.encoder_hidden_states", &device),
            None,
        );
        check(&exp, "out", out, TOL);
    });
}

#[test]
fn wgpu_txt2img_matches_diffusers() {
    on_wgpu("txt2img", |device| {
        let sd = load_pipeline("tiny-sd15", &device);
        let exp = Expected::load("sd15");
        let params = Txt2ImgParams {
            prompt: "a photo of a single cat".into(),
            negative_prompt: None,
            height: 64,
            width: 64,
            steps: 5,
            guidance: 7.5,
            scheduler: Some(SchedulerKind::Pndm),
            karras_sigmas: false,
            seed: 0,
            latents: Some(exp.tensor("pipe.init_latents", &device)),
            clip_skip: None,
            controls: Vec::new(),
        };
        let out = sd.txt2img(&params, |_, _| {}).unwrap();
        check(&exp, "pipe.pndm.latents", out.latents, TOL);
        check(&exp, "pipe.pndm.image", out.image, TOL);
    });
}

/// `--dtype f16`: weights and activations in half precision where the adapter supports it.
/// f16 keeps ~3 significant digits, so the bound is 2e-2 of the tensor's scale.
#[test]
fn wgpu_f16_unet_matches_diffusers() {
    on_wgpu("f16 unet", |device| {
        assert!(
            device.supports_dtype(burn::tensor::DType::F16),
            "the wgpu adapter has no f16 support"
        );
        let source =
            maskforge_native::source::DirSource::new(maskforge_tests::fixture("tiny-sd15"))
                .unwrap();
        let sd = maskforge_core::pipelines::StableDiffusion::load(
            &source,
            &device,
            burn::tensor::DType::F16,
        )
        .unwrap();
        let exp = Expected::load("sd15");
        let sample: Tensor<4> = exp.tensor("unet.in.sample", &device);
        let context: Tensor<3> = exp.tensor("unet.in.encoder_hidden_states", &device);
        let out = sd.unet.forward(
            sample.cast(burn::tensor::DType::F16),
            500.0,
            &context.cast(burn::tensor::DType::F16),
            None,
        );
        assert_eq!(out.dtype(), burn::tensor::DType::F16);
        check(&exp, "unet.out", out, 2e-2);
    });
}

#[test]
fn wgpu_mosaic_matches_diffusers() {
    on_wgpu("mosaic", |device| {
        let sd = load_pipeline("tiny-sd15", &device);
        let exp = Expected::load("mosaic");
        let plan = mosaic_reference_plan(&sd);
        let params = MosaicParams {
            steps: 5,
            guidance: 7.5,
            ..MosaicParams::default()
        };
        let pending = mosaic_on_device(&sd, &plan, &params, None, |_, _| {}).unwrap();
        let out = readback::now(pending.clone().read(Readback::Blocking)).unwrap();
        check(&exp, "latents", out.latents, TOL);
        check(&exp, "image", out.image, TOL);
        for (r, maps) in out.attention.iter().enumerate() {
            let e = assert_attention_close(&exp, r, maps, TOL);
            println!("region {r} attention: max error {e:.2e} of the map's maximum");
            // The aggregation as `maskforge-shaders` kernels against Pillow's bicubic resize.
            let [y1, y2, x1, x2] = BOXES[r];
            let chosen = choose(&pending.attention[r], &[32, 16, 8]).unwrap();
            let map = aggregate_on_device(&chosen, y2 - y1, x2 - x1)
                .expect("wgpu runs the kernels")
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let (_, want) = exp.host(&format!("region{r}.map"));
            let off: Vec<f32> = map
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .filter(|d| *d > 0.0)
                .collect();
            let worst = off.iter().fold(0f32, |a, &b| a.max(b));
            println!(
                "region {r}: kernel aggregation differs from Pillow at {} of {} pixels, by at most {worst}",
                off.len(),
                want.len()
            );
            assert!(
                worst <= 1.0 && off.len() * 100 <= want.len(),
                "region {r}: {} pixels off by up to {worst}",
                off.len()
            );
        }
    });
}

/// A MosaicFusion sample on wgpu aggregates the attention where it was captured: one read per
/// region and one for the image; its masks match the CPU sample's.
#[test]
fn wgpu_sample_reads_once_per_region() {
    let categories = parse_categories(b"cat\n", "categories").unwrap();
    let config = GenerateConfig {
        denoise: MosaicParams {
            steps: 3,
            ..MosaicParams::default()
        },
        refine: Refine::None,
        ..GenerateConfig::default()
    };
    let sample_on = |device: &Device| {
        let sd = load_pipeline("tiny-sd15", device);
        let plan = mosaic_reference_plan(&sd);
        let mosaic = MosaicFusion::new(&sd, config.clone(), &categories, &[0], 0);
        let denoised = readback::now(mosaic.denoise(&plan, Readback::Blocking, |_, _| {})).unwrap();
        let reads = denoised.reads;
        (reads, mosaic.finish(&plan, denoised).unwrap())
    };
    let (_, cpu) = sample_on(&Device::flex());
    let regions = cpu.region_masks.len();
    let (tx, rx) = mpsc::channel();
    let config_wgpu = config.clone();
    let categories_wgpu = categories.clone();
    on_wgpu("sample reads", move |device| {
        let sd = load_pipeline("tiny-sd15", &device);
        let plan = mosaic_reference_plan(&sd);
        let mosaic = MosaicFusion::new(&sd, config_wgpu, &categories_wgpu, &[0], 0);
        let denoised = readback::now(mosaic.denoise(&plan, Readback::Blocking, |_, _| {})).unwrap();
        assert!(
            denoised
                .attention
                .iter()
                .all(|a| matches!(a, RegionAttention::Aggregated { .. }))
        );
        let reads = denoised.reads;
        tx.send((reads, mosaic.finish(&plan, denoised).unwrap()))
            .unwrap();
    });
    let (reads, wgpu) = rx.recv().unwrap();
    assert_eq!(
        reads,
        regions + 1,
        "one read per region and one for the image"
    );
    for (r, (a, b)) in wgpu.region_masks.iter().zip(&cpu.region_masks).enumerate() {
        let both = a.iter().zip(b).filter(|(a, b)| **a && **b).count();
        let either = a.iter().zip(b).filter(|(a, b)| **a || **b).count();
        let iou = both as f64 / either.max(1) as f64;
        println!("region {r}: mask IoU wgpu/CPU {iou:.4}");
        assert!(iou >= 0.95, "region {r}: IoU {iou}");
    }
}

/// SDXL: both text encoders, pooled embeddings and a whole run with `text_time` conditioning.
#[test]
fn wgpu_sdxl_matches_diffusers() {
    use maskforge_tests::sdxl_fixture::{HEIGHT, PROMPT, WIDTH};
    on_wgpu("sdxl", |device| {
        let sd = load_pipeline("tiny-sdxl", &device);
        let exp = Expected::load("sdxl");
        let embeds = sd.encode_text(&[PROMPT], None);
        check(&exp, "xl.prompt_embeds", embeds.context, TOL);
        check(&exp, "xl.pooled", embeds.pooled.unwrap(), TOL);
        let params = Txt2ImgParams {
            prompt: PROMPT.into(),
            height: HEIGHT,
            width: WIDTH,
            steps: 4,
            guidance: 5.0,
            latents: Some(exp.tensor("xl.latents_in", &device)),
            ..Default::default()
        };
        let out = sd.txt2img(&params, |_, _| {}).unwrap();
        check(&exp, "xl.txt2img.latents", out.latents, TOL);
        check(&exp, "xl.txt2img.image", out.image, TOL);
    });
}

/// ControlNet on SD 1.5 and on SDXL: whole runs with the residuals added at every step.
#[test]
fn wgpu_controlnet_matches_diffusers() {
    use maskforge_tests::fixture_controls;
    use maskforge_tests::sdxl_fixture::{HEIGHT, PROMPT, WIDTH};
    on_wgpu("controlnet", |device| {
        let exp = Expected::load("sdxl");
        let runs = [
            ("tiny-sd15", "tiny-controlnet-sd15", "cn", 4, 7.5, 0.8),
            ("tiny-sdxl", "tiny-controlnet-sdxl", "xlcn", 3, 5.0, 0.6),
        ];
        for (model, net, tag, steps, guidance, scale) in runs {
            let sd = load_pipeline(model, &device);
            let controls = fixture_controls(&sd, &[net], &["control-rgb.png"], &[scale]);
            let params = Txt2ImgParams {
                prompt: PROMPT.into(),
                height: HEIGHT,
                width: WIDTH,
                steps,
                guidance,
                latents: Some(exp.tensor(&format!("{tag}.latents_in"), &device)),
                controls,
                ..Default::default()
            };
            let out = sd.txt2img(&params, |_, _| {}).unwrap();
            check(&exp, &format!("{tag}.latents"), out.latents, TOL);
            check(&exp, &format!("{tag}.image"), out.image, TOL);
        }
    });
}

/// SegGen's colour-map decoding as the `maskforge-shaders` kernel gives the host's labels and
/// edges exactly: palette colours, noisy ones, arbitrary ones, with and without a distance limit.
#[test]
fn wgpu_colour_map_decoding_equals_the_host() {
    use maskforge_core::seggen::{
        ColorMap, DEFAULT_EDGE_COLOR, DecodeOptions, Palette, decode, decode_on_device,
    };
    let palette = Palette::ade20k();
    let (w, h) = (97, 61);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rgb = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        let pixel = match i % 4 {
            0 => palette.entries()[next() as usize % palette.entries().len()].color,
            1 => {
                let c = palette.entries()[next() as usize % palette.entries().len()].color;
                c.map(|v| (v as i64 + (next() % 41) as i64 - 20).clamp(0, 255) as u8)
            }
            2 => [next() as u8, next() as u8, next() as u8],
            _ => DEFAULT_EDGE_COLOR,
        };
        rgb.extend(pixel);
    }
    let map = ColorMap::new(w, h, rgb).unwrap();
    let options = [
        DecodeOptions::default(),
        DecodeOptions {
            max_distance: Some(12.5),
            ..DecodeOptions::default()
        },
        DecodeOptions {
            max_distance: Some(0.0),
            edge_color: None,
            min_area: 0,
        },
        DecodeOptions {
            min_area: 5,
            ..DecodeOptions::default()
        },
    ];
    let host: Vec<_> = options
        .iter()
        .map(|o| decode(&palette, &map, o).unwrap())
        .collect();
    assert_ne!(
        host[0].labels, host[1].labels,
        "the limit leaves some pixels unlabelled"
    );
    assert_ne!(
        host[0].labels, host[3].labels,
        "small segments are absorbed"
    );
    on_wgpu("colour-map decoding", move |device| {
        for (o, want) in options.iter().zip(&host) {
            let got = readback::now(decode_on_device(
                &palette,
                &map,
                o,
                &device,
                Readback::Blocking,
            ))
            .expect("wgpu runs the kernel")
            .unwrap();
            assert_eq!(&got, want, "{o:?}");
        }
    });
}

/// DiffusionInst's tiny ResNet-50 + FPN backbone (`tests/fixtures/diffinst_backbone_ref.py`):
/// res2…res5 and p2…p6 against PyTorch, and a batch of two equal to the batch of one twice.
#[test]
fn wgpu_diffinst_backbone_matches_pytorch() {
    on_wgpu("DiffusionInst backbone", |device| {
        let read = |name: &str| std::fs::read(fixture(&format!("diffusioninst/{name}"))).unwrap();
        let (config, _) =
            DiffusionInstConfig::from_yaml("tiny-r50.yaml", &read("tiny-r50.yaml"), &|p| {
                Ok(read(p))
            })
            .unwrap();
        let path = fixture("diffusioninst/tiny-r50-backbone.safetensors");
        let file =
            SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
        let weights = Arc::new(SafetensorsWeights::new(vec![file]).unwrap());
        let vb = VarBuilder::from_weights(weights, &device, DType::F32).pp("backbone");
        let backbone = Backbone::load(&vb, &config).unwrap();
        let exp = Expected::load("diffinst_backbone");
        let x: Tensor<4> = exp.tensor("batch_a", &device);
        let bottom_up = backbone.bottom_up.forward(x.clone());
        for (name, t) in bottom_up {
            check(&exp, &format!("r50.{name}"), t, TOL);
        }
        let pyramid = backbone.forward(x.clone());
        for (name, t) in backbone.fpn.out_features().iter().zip(&pyramid) {
            check(&exp, &format!("r50.{name}"), t.clone(), TOL);
        }
        let twice = backbone.forward(Tensor::cat(vec![x.clone(), x], 0));
        for (one, two) in pyramid.into_iter().zip(twice) {
            let one = values(one);
            assert_close(
                "batch of two",
                &values(two),
                &[one.clone(), one].concat(),
                1e-6,
            );
        }
    });
}

/// DiffusionInst's tiny Swin + FPN backbone (`tests/fixtures/diffinst_swin_ref.py`; shifted
/// windows with their mask, every stage padded to the window): the patch embedding,
/// swin0…swin3 and p2…p6 against PyTorch.
#[test]
fn wgpu_diffinst_swin_backbone_matches_pytorch() {
    on_wgpu("DiffusionInst Swin backbone", |device| {
        let read = |name: &str| std::fs::read(fixture(&format!("diffusioninst/{name}"))).unwrap();
        let (mut config, _) =
            DiffusionInstConfig::from_yaml("tiny-swin.yaml", &read("tiny-swin.yaml"), &|p| {
                Ok(read(p))
            })
            .unwrap();
        // The fixture's Swin is smaller than any `SWIN.SIZE` (see tiny-swin.yaml).
        let BackboneConfig::Swin(swin) = &mut config.backbone else {
            panic!("tiny-swin.yaml is not a Swin")
        };
        swin.embed_dim = 8;
        swin.depths = [2, 2, 2, 2];
        swin.num_heads = [2, 2, 4, 8];
        let path = fixture("diffusioninst/tiny-swin-backbone.safetensors");
        let file =
            SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
        let weights = Arc::new(SafetensorsWeights::new(vec![file]).unwrap());
        let vb = VarBuilder::from_weights(weights, &device, DType::F32).pp("backbone");
        let backbone = Backbone::load(&vb, &config).unwrap();
        let exp = Expected::load("diffinst_swin");
        let x: Tensor<4> = exp.tensor("batch_a", &device);
        let BottomUp::Swin(swin) = &backbone.bottom_up else {
            panic!("not a Swin")
        };
        let embedded = swin.patch_embed.forward(x.clone()).permute([0, 3, 1, 2]);
        check(&exp, "patch_embed", embedded, TOL);
        for (name, t) in backbone.bottom_up.forward(x.clone()) {
            check(&exp, &name, t, TOL);
        }
        let pyramid = backbone.forward(x);
        for (name, t) in backbone.fpn.out_features().iter().zip(pyramid) {
            check(&exp, name, t, TOL);
        }
    });
}

/// ROIAlign's kernel (`shaders/src/roi_align.rs`) and the pooler against torchvision and
/// detectron2's `ROIPooler` (`tests/fixtures/roi_align_ref.py`). The kernel repeats
/// torchvision's f32 operations: measured bit-equal on lavapipe; the bound leaves room for
/// drivers that contract them into FMAs.
/// lavapipe is a Vulkan driver: burn compiles to WGSL in the default build and to SPIR-V with
/// the `vulkan` feature (`cargo test -p maskforge-tests --features vulkan`).
#[test]
fn wgpu_runs_the_shader_compiler_of_the_build() {
    on_wgpu("runtime", |device| {
        use burn::backend::{Backend, Dispatch};
        let name = Dispatch::name(device.as_dispatch());
        let compiler = if cfg!(feature = "vulkan") {
            "wgpu<spirv>"
        } else {
            "wgpu<wgsl>"
        };
        assert!(name.contains(compiler), "{name}");
    });
}

/// Mebibytes at the wgpu allocator's high-water mark so far (CubeCL's pool pages at their peak).
fn peak_pool_mb(device: &Device) -> f64 {
    use burn::backend::{Backend, Dispatch};
    let pools = Dispatch::memory_pool_report(device.as_dispatch()).expect("pools on wgpu");
    let peak: u64 = pools.iter().map(|p| p.page_size * p.pages_peak).sum();
    peak as f64 / (1u64 << 20) as f64
}

/// Self-attention over 8,192 tokens runs burn's flash kernel on wgpu (its autotune tries the
/// flash kernels before the separate-kernel fallback when the sequence is longer than the head):
/// the allocator's peak grows by far less than the 8,192² scores (256 MiB in f32) would take, and
/// the result equals the CPU's.
#[test]
fn wgpu_self_attention_never_holds_the_scores() {
    on_wgpu("flash attention", |device| {
        let (n, c) = (8192, 8);
        let mut state = 1u32;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let qkv: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..n * c).map(|_| next()).collect())
            .collect();
        let run = |device: &Device| {
            let t = |v: &Vec<f32>| {
                Tensor::<3>::from_data(TensorData::new(v.clone(), [1, n, c]), device)
            };
            maskforge_core::nn::attention(t(&qkv[0]), t(&qkv[1]), t(&qkv[2]), 1, false, false)
        };
        let before = peak_pool_mb(&device);
        let out = values(run(&device));
        let grown = peak_pool_mb(&device) - before;
        let scores_mb = (n * n * 4) as f64 / (1u64 << 20) as f64;
        assert!(grown < scores_mb / 4.0, "the peak grew by {grown:.1} MiB");
        let host = values(run(&Device::flex()));
        let err = out
            .iter()
            .zip(&host)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "max abs error {err}");
    });
}

/// `torch.nn.GroupNorm` on the host in f64 (biased variance), then SiLU when `silu`.
fn group_norm_host(
    x: &[f32],
    [_, c, s]: [usize; 3],
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    silu: bool,
) -> Vec<f32> {
    let per = c / groups * s;
    let mut out = vec![0f32; x.len()];
    for (i, (src, dst)) in x.chunks(per).zip(out.chunks_mut(per)).enumerate() {
        let n = per as f64;
        let mean = src.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for (j, (&v, d)) in src.iter().zip(dst.iter_mut()).enumerate() {
            let ch = (i % groups) * (c / groups) + j / s;
            let y = (v as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
            *d = if silu { y / (1.0 + (-y).exp()) } else { y } as f32;
        }
    }
    out
}

/// The group-norm kernel (`shaders/src/group_norm.rs`, one kernel per norm) against the
/// definition: groups larger and smaller than a cube, rank 3 and 4, a permuted (strided) input,
/// with and without SiLU, in f32 and f16; and it refuses what it cannot or should not run.
#[test]
fn wgpu_group_norm_kernel_matches_its_definition() {
    use maskforge_shaders::group_norm::{GroupNormParams, group_norm};
    on_wgpu("group norm", |device| {
        let mut state = 7u32;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 1.5
        };
        // (shape [B, C, H, W], groups, SiLU)
        for (dims, groups, silu) in [
            ([2, 64, 12, 10], 8, true),
            ([1, 32, 3, 5], 32, false),
            ([3, 6, 1, 300], 2, true),
        ] {
            let [b, c, h, w] = dims;
            let x: Vec<f32> = (0..b * c * h * w).map(|_| next()).collect();
            let gamma: Vec<f32> = (0..c).map(|_| next()).collect();
            let beta: Vec<f32> = (0..c).map(|_| next()).collect();
            let nhwc: Vec<f32> = (0..b * h * w * c)
                .map(|i| {
                    let (n, ch, p) = (i / (h * w * c), i % c, i / c % (h * w));
                    x[(n * c + ch) * h * w + p]
                })
                .collect();
            let want = group_norm_host(&x, [b, c, h * w], groups, &gamma, &beta, silu);
            let params = GroupNormParams {
                groups,
                epsilon: 1e-5,
                silu,
            };
            for dtype in [DType::F32, DType::F16] {
                let t1 = |v: &Vec<f32>| {
                    Tensor::<1>::from_data(TensorData::new(v.clone(), [c]), &device).cast(dtype)
                };
                let x4 =
                    Tensor::<4>::from_data(TensorData::new(x.clone(), dims), &device).cast(dtype);
                // The same values laid out channels-last, seen as [B, C, H, W] through strides.
                let strided =
                    Tensor::<4>::from_data(TensorData::new(nhwc.clone(), [b, h, w, c]), &device)
                        .cast(dtype)
                        .permute([0, 3, 1, 2]);
                let x3 = x4.clone().reshape([b, c, h * w]);
                let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                for (what, got) in [
                    (
                        "rank 4",
                        values(group_norm(x4.clone(), t1(&gamma), t1(&beta), params).unwrap()),
                    ),
                    (
                        "strided",
                        values(group_norm(strided, t1(&gamma), t1(&beta), params).unwrap()),
                    ),
                    (
                        "rank 3",
                        values(group_norm(x3, t1(&gamma), t1(&beta), params).unwrap()),
                    ),
                ] {
                    assert_close(
                        &format!("{dims:?} / {groups} {what} {dtype:?}"),
                        &got,
                        &want,
                        tol,
                    );
                }
            }
        }
        let params = |groups| GroupNormParams {
            groups,
            epsilon: 1e-5,
            silu: false,
        };
        for (what, on, dims, groups) in [
            ("4 groups of 6 channels", device.clone(), [1, 6, 2, 2], 4),
            ("a CPU tensor", Device::flex(), [1, 6, 2, 2], 3),
            // 2 × 512 × 257 values a group, over 2^18: one cube each would leave a GPU idle.
            (
                "groups of 263,168 values",
                device.clone(),
                [1, 6, 512, 257],
                3,
            ),
        ] {
            let x = Tensor::<4>::zeros(dims, &on);
            let ones = Tensor::<1>::ones([6], &on);
            let y = group_norm(x, ones.clone(), ones, params(groups));
            assert!(y.is_none(), "{what}: not refused");
        }
    });
}

#[test]
fn wgpu_roi_align_matches_torchvision() {
    on_wgpu("ROIAlign", |device| {
        let exp = Expected::load("roi_align");
        let rows = |key: &str| -> Vec<[f32; 5]> {
            (exp.host(key).1.chunks_exact(5))
                .map(|b| b.try_into().unwrap())
                .collect()
        };
        let boxes = rows("align.boxes");
        for aligned in [false, true] {
            for sampling_ratio in [2, 0] {
                let params = RoiAlignParams {
                    output_size: 7,
                    spatial_scale: 0.5,
                    sampling_ratio,
                    aligned,
                };
                let pooled = roi_align(exp.tensor("align.features", &device), &boxes, params);
                let key = format!("align.out.{}.{sampling_ratio}", aligned as u8);
                check(&exp, &key, pooled, 1e-5);
            }
        }
        let pooler = RoiPooler {
            min_level: 2,
            max_level: 5,
            output_size: 7,
            sampling_ratio: 2,
            aligned: true,
        };
        let maps: Vec<Tensor<4>> = ["p2", "p3", "p4", "p5"]
            .iter()
            .map(|p| exp.tensor(&format!("pool.{p}"), &device))
            .collect();
        check(
            &exp,
            "pool.out",
            pooler.forward(&maps, &rows("pool.boxes")),
            1e-5,
        );
    });
}

/// Fixture image `which` of `expected/diffinst_backbone.safetensors` (8-bit RGB).
fn diffinst_image(which: &str) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(fixture("expected/diffinst_backbone.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(&format!("image_{which}")).unwrap();
    (t.shape()[0], t.shape()[1], t.data().to_vec())
}

/// The whole DiffusionInst (`tests/fixtures/diffinst_ref.py`, `tiny-r50.pth`) on wgpu: mask
/// features and both head stages of one call, then the 1- and 4-step seeded detections, against
/// the PyTorch reference.
#[test]
fn wgpu_diffinst_matches_pytorch() {
    on_wgpu("DiffusionInst", |device| {
        let read = |name: &str| std::fs::read(fixture(&format!("diffusioninst/{name}"))).unwrap();
        let (config, _) =
            DiffusionInstConfig::from_yaml("tiny-r50.yaml", &read("tiny-r50.yaml"), &|p| {
                Ok(read(p))
            })
            .unwrap();
        let path = fixture("diffusioninst/tiny-r50.pth");
        let weights =
            checkpoint_weights(path.display().to_string(), map_file(&path).unwrap()).unwrap();
        let vb = VarBuilder::from_weights(weights, &device, DType::F32);
        let model = DiffusionInst::load(&vb, &config).unwrap();
        let exp = Expected::load("diffinst");
        let (height, width, pixels) = diffinst_image("a");
        let image = RgbImage {
            pixels: &pixels,
            height,
            width,
        };

        let features = model.features(&image).unwrap();
        check(
            &exp,
            "a.mask_feat",
            features.mask_feat.clone().unwrap(),
            TOL,
        );
        let (_, boxes_in) = exp.host("a.boxes_in");
        let boxes: Vec<[f32; 4]> = boxes_in
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        let stages = readback::now(model.head.forward(
            &features.pyramid,
            boxes,
            999,
            Readback::Blocking,
        ))
        .unwrap();
        for (k, stage) in stages.into_iter().enumerate() {
            check(&exp, &format!("a.stage{k}.obj"), stage.output.obj, TOL);
            check(
                &exp,
                &format!("a.stage{k}.logits"),
                stage.output.logits,
                TOL,
            );
            let kernels = stage.output.kernels.unwrap();
            check(&exp, &format!("a.stage{k}.kernels"), kernels, TOL);
            let got: Vec<f32> = stage.boxes.into_iter().flatten().collect();
            assert_close(
                &format!("a.stage{k}.boxes"),
                &got,
                &exp.host(&format!("a.stage{k}.boxes")).1,
                TOL,
            );
        }

        // The mask-head kernel on the reference's own detections of run `a.s1`.
        let sampler = SamplerOptions {
            steps: 1,
            num_proposals: 20,
            snr_scale: 2.0,
            seed: 0,
            initial_noise: None,
            ensemble_last_step: false,
            nms_iou: Some(0.5),
        };
        let sizes = [features.geometry.resized];
        let sampled = readback::now(sample(
            &model.head,
            std::slice::from_ref(&features.pyramid),
            &sizes,
            &sampler,
            Readback::Blocking,
        ))
        .unwrap();
        let mask_feat = features.mask_feat.clone().unwrap();
        let [_, c, h, w] = mask_feat.dims();
        let probs = instance_masks(mask_feat.reshape([c, h, w]), &sampled[0].candidates.kernels);
        check(&exp, "a.s1.mask_prob", probs, TOL);

        for (run, steps) in [("a.s1", 1), ("a.s4", 4)] {
            let options = DetectOptions {
                steps: Some(steps),
                ..DetectOptions::default()
            };
            let found = readback::now(model.detect(&[image], &options, Readback::Blocking))
                .unwrap()
                .remove(0);
            let bytes = std::fs::read(fixture("expected/diffinst.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let labels: Vec<i64> = (st.tensor(&format!("{run}.labels")).unwrap().data())
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let got: Vec<i64> = found.iter().map(|d| d.label as i64).collect();
            assert_eq!(got, labels, "{run}: classes");
            let got: Vec<f32> = found.iter().flat_map(|d| d.bbox).collect();
            assert_close(
                &format!("{run}.boxes"),
                &got,
                &exp.host(&format!("{run}.boxes")).1,
                TOL,
            );
            let got: Vec<f32> = found.iter().map(|d| d.score).collect();
            assert_close(
                &format!("{run}.scores"),
                &got,
                &exp.host(&format!("{run}.scores")).1,
                TOL,
            );
            let want = st.tensor(&format!("{run}.masks")).unwrap().data().to_vec();
            let got: Vec<u8> = found
                .iter()
                .flat_map(|d| d.mask.as_ref().unwrap().iter().map(|&m| m as u8))
                .collect();
            let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            eprintln!("{run}: {differ} of {} mask pixels differ", want.len());
            assert!(
                differ * 1000 <= want.len(),
                "{run}: {differ} mask pixels differ"
            );
        }
    });
}
