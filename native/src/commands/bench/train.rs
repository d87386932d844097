//! `bench --train`: the time of one training step of the model's UNet (forward, backward,
//! clipping and AdamW), as `train unet` runs it.

use anyhow::Result;
use burn::tensor::{DType, Device, Distribution, Tensor};
use maskforge_core::models::diffusion::unet::UNet2DConditionModel;
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::training::{
    AdamW, AdamWConfig, DenoisingBatch, LrSchedule, LrScheduleKind, ModelOptimizer, Noising,
    ParamNames, unet_loss,
};
use maskforge_core::weights::VarBuilder;

/// Median milliseconds of `iters` training steps of a UNet of `sd`'s architecture (weights
/// initialised from scratch: the time does not depend on them) on latents of `h × w`.
pub fn train_step_ms(
    sd: &StableDiffusion,
    batch: usize,
    h: usize,
    w: usize,
    iters: usize,
    device: &Device,
) -> Result<f64> {
    let config = &sd.unet_config;
    let file = sd.unet_origin.as_str();
    let train = device.clone().autodiff();
    let mut unet = Some(UNet2DConditionModel::load(
        &VarBuilder::init(0, &train, DType::F32),
        config,
        file,
    )?);
    let names = ParamNames::of(|vb| UNet2DConditionModel::load(vb, config, file))?;
    let n = names.params().len();
    let schedule = LrSchedule {
        kind: LrScheduleKind::Constant,
        base: 1e-4,
        warmup: 0,
        total: iters + 1,
    };
    let mut opt = ModelOptimizer::new(
        names,
        unet.as_ref().expect("built"),
        AdamW::new(AdamWConfig::default(), n),
        schedule,
        Some(1.0),
        None,
    )?;
    let noising = Noising::new(&sd.scheduler_config, "scheduler/scheduler_config.json")?;
    let random =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let batch = DenoisingBatch {
        latents: random([batch, config.in_channels, h, w]),
        context: Tensor::random(
            [batch, 77, config.cross_attention_dim],
            Distribution::Normal(0.0, 1.0),
            device,
        ),
        noise: random([batch, config.in_channels, h, w]),
        timesteps: (0..batch)
            .map(|i| (i * 397 + 100) % noising.num_timesteps())
            .collect(),
        grounding: None,
    };
    super::time(iters, device, || {
        let model = unet.take().expect("put back after each step");
        let loss = unet_loss(&model, &noising, &batch);
        opt.accumulate(&model, loss.backward());
        unet = Some(opt.step(model).0);
    })
}
