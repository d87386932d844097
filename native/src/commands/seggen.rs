//! `maskforge imgsyn` and `maskforge masksyn`: SegGen datasets through the dataset-run layer
//! (sample k = seed + k, shards, resume, progress, `maskforge collect`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use maskforge_core::dataset::run::SAMPLES_DIR;
use maskforge_core::dataset::{
    DatasetRun, Progress, RunFile, SampleGenerator, SampleId, Shard, generate_samples,
};
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::schedulers::SchedulerKind;
use maskforge_core::seggen::options::{ControlNetSettings, MASK2IMG_STEPS, TEXT2MASK_STEPS};
use maskforge_core::seggen::sample::{COLORS_DIR, IMAGES_DIR, LABELS_DIR, PANOPTIC_DIR};
use maskforge_core::seggen::{
    ImgSyn, ImgSynPrompt, MaskSyn, MaskSynPrompt, Palette, SegGenRecord, SynthesisOptions,
    collect_seggen, palette_categories, parse_jsonl,
};
use serde::Serialize;

use super::palette::{load_palette, read_labels};
use crate::device::{self, DTypeArg, DeviceArg};
use crate::pool::WriterPool;
use crate::progress::{Bar, sample_bar};
use crate::storage::DirStorage;
use crate::{control, embedded, model};

/// The options ImgSyn and MaskSyn share.
#[derive(Debug, Args)]
pub struct SynthesisFlags {
    /// Mask2Img's base model: diffusers folder or single-file checkpoint. Default: the
    /// ControlNet pipeline's own when --controlnet is one, else the embedded shapes model
    /// (`native/models/shapes-mask2img` is its ControlNet).
    #[arg(long)]
    pub model: Option<String>,
    /// Mask2Img's ControlNet, conditioned on colour maps: a diffusers ControlNet folder or
    /// .safetensors, or a diffusers ControlNet pipeline folder (its `controlnet/` on its model).
    #[arg(long)]
    pub controlnet: PathBuf,
    /// `ade20k`, `coco-panoptic`, `shapes` (the shapes world's classes) or a JSON file: a list of
    /// `{"id", "name", "color": [r, g, b]}`.
    #[arg(long)]
    pub palette: String,
    /// Output folder: `images/`, `annotations/` (label PNGs), `manifest.jsonl`, …
    #[arg(long)]
    pub out: PathBuf,
    /// Output size (with --width); default: each label map's own (imgsyn), the model's (masksyn).
    #[arg(long, requires = "width")]
    pub height: Option<usize>,
    #[arg(long, requires = "height")]
    pub width: Option<usize>,
    /// Mask2Img's denoising steps.
    #[arg(long, default_value_t = MASK2IMG_STEPS)]
    pub steps: usize,
    /// Classifier-free guidance of both stages. Default: the ControlNet's own (its folder's
    /// `seggen.json`), else 7.5.
    #[arg(long)]
    pub guidance: Option<f64>,
    /// ddim, pndm, euler, euler-a, dpmpp-2m, lms or heun; default: each model's own.
    #[arg(long, value_parser = SchedulerKind::from_str)]
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas (euler, dpmpp-2m, heun, lms), as diffusers' `use_karras_sigmas=True`.
    #[arg(long)]
    pub karras_sigmas: bool,
    /// Base seed: the j-th sample of the i-th prompt line uses seed + i·N + j.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// ControlNet conditioning scale. Default: the ControlNet's own (its folder's
    /// `seggen.json`), else 1.
    #[arg(long)]
    pub control_scale: Option<f32>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Make only samples k with k mod N = I (`I/N`); shards may share --out, and
    /// `maskforge collect OUT` assembles it afterwards.
    #[arg(long)]
    pub shard: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl SynthesisFlags {
    /// Mask2Img's base model: `--model`, else the ControlNet pipeline's; `None`: the embedded one.
    fn base(&self) -> Result<Option<String>> {
        match &self.model {
            Some(m) => Ok(Some(m.clone())),
            None => control::controlnet_base(&self.controlnet),
        }
    }

    /// The base model as runs record it.
    fn model_name(&self) -> Result<String> {
        Ok(self.base()?.unwrap_or_else(|| embedded::NAME.into()))
    }
}

/// Arguments of `maskforge imgsyn`.
#[derive(Debug, Args)]
pub struct ImgSynArgs {
    /// Folder of the label maps (8- or 16-bit PNGs of palette ids) the prompt file names.
    #[arg(long)]
    pub labels: PathBuf,
    /// JSON lines `{"labels": "name.png", "caption": "..."}`.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Images per label map (N).
    #[arg(long)]
    pub per_mask: u64,
    #[command(flatten)]
    pub flags: SynthesisFlags,
}

/// Arguments of `maskforge masksyn`.
#[derive(Debug, Args)]
pub struct MaskSynArgs {
    /// The Text2Mask model (draws colour maps): diffusers folder or single-file checkpoint.
    #[arg(long)]
    pub text2mask: String,
    /// JSON lines `{"caption": "..."}`.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Samples per caption (N).
    #[arg(long)]
    pub per_prompt: u64,
    /// Text2Mask's denoising steps.
    #[arg(long, default_value_t = TEXT2MASK_STEPS)]
    pub mask_steps: usize,
    /// Decoding: pixels farther than this (RGB distance) from every colour stay unlabelled.
    #[arg(long)]
    pub max_distance: Option<f64>,
    /// Decoding: segments (4-connected pixels of one class) smaller than this many pixels take
    /// the class of the neighbour they share the longest border with. Default: the
    /// ControlNet's own (its `seggen.json`), else 0 (every pixel its nearest colour).
    #[arg(long)]
    pub min_area: Option<usize>,
    #[command(flatten)]
    pub flags: SynthesisFlags,
}

/// What `run.json` holds besides the core's run fields.
#[derive(Serialize)]
struct Settings<'a, P: Serialize> {
    method: &'static str,
    palette: &'a str,
    controlnet: String,
    /// Samples per prompt line.
    per_prompt: u64,
    prompts: &'a [P],
    text2mask: Option<&'a str>,
    dtype: String,
    #[serde(flatten)]
    options: &'a SynthesisOptions,
}

impl SynthesisFlags {
    /// The options of the flags, over the ControlNet's `own` settings.
    fn options(&self, own: &ControlNetSettings) -> SynthesisOptions {
        let (guidance, control_scale) = own.resolve(self.guidance, self.control_scale);
        SynthesisOptions {
            negative_prompt: self.negative_prompt.clone(),
            height: self.height,
            width: self.width,
            steps: self.steps,
            guidance,
            scheduler: self.scheduler,
            karras_sigmas: self.karras_sigmas,
            control_scale,
            ..Default::default()
        }
    }
}

/// Runs `imgsyn`.
pub fn imgsyn(args: ImgSynArgs) -> Result<()> {
    let f = &args.flags;
    let options = f.options(&control::controlnet_settings(&f.controlnet)?);
    options.check()?;
    let palette = Arc::new(load_palette(&f.palette)?);
    let prompts: Vec<ImgSynPrompt> = read_prompts(&args.prompts)?;
    for (i, p) in prompts.iter().enumerate() {
        let path = args.labels.join(&p.labels);
        if !path.is_file() {
            anyhow::bail!(
                "{} line {}: no label map {}",
                args.prompts.display(),
                i + 1,
                path.display()
            );
        }
    }
    let per_prompt = positive(args.per_mask, "--per-mask")?;
    let load = |name: &str| -> maskforge_core::Result<_> {
        read_labels(&args.labels.join(name))
            .map_err(|e| maskforge_core::Error::Invalid(format!("{e:#}")))
    };
    let shell = Shell::open(
        f,
        &palette,
        &[LABELS_DIR],
        Settings {
            method: "imgsyn",
            palette: &palette.name,
            controlnet: f.controlnet.display().to_string(),
            per_prompt,
            prompts: &prompts,
            text2mask: None,
            dtype: format!("{:?}", f.dtype).to_lowercase(),
            options: &options,
        },
        prompts.len() as u64 * per_prompt,
    )?;
    let sd = shell.load_base(f.base()?.as_deref())?;
    let generator = ImgSyn {
        sd: &sd,
        controlnet: Arc::new(control::load_controlnet(&sd, &f.controlnet)?),
        palette: palette.clone(),
        prompts: &prompts,
        per_mask: per_prompt,
        options: &options,
        model: f.model_name()?,
        controlnet_name: f.controlnet.display().to_string(),
        labels: &load,
    };
    sd.check_controlnet(&generator.controlnet)?;
    // The first sample's label map is checked before any denoising.
    generator.plan(SampleId::new(0, f.seed))?;
    shell.generate(&generator)
}

/// Runs `masksyn`.
pub fn masksyn(args: MaskSynArgs) -> Result<()> {
    let f = &args.flags;
    let own = control::controlnet_settings(&f.controlnet)?;
    let options = SynthesisOptions {
        mask_steps: args.mask_steps,
        max_distance: args.max_distance,
        min_area: args.min_area.or(own.min_area).unwrap_or(0),
        ..f.options(&own)
    };
    options.check()?;
    let palette = Arc::new(load_palette(&f.palette)?);
    let prompts: Vec<MaskSynPrompt> = read_prompts(&args.prompts)?;
    let per_prompt = positive(args.per_prompt, "--per-prompt")?;
    let shell = Shell::open(
        f,
        &palette,
        &[LABELS_DIR, COLORS_DIR, PANOPTIC_DIR],
        Settings {
            method: "masksyn",
            palette: &palette.name,
            controlnet: f.controlnet.display().to_string(),
            per_prompt,
            prompts: &prompts,
            text2mask: Some(&args.text2mask),
            dtype: format!("{:?}", f.dtype).to_lowercase(),
            options: &options,
        },
        prompts.len() as u64 * per_prompt,
    )?;
    let text2mask = shell.load_model(&args.text2mask)?;
    let sd = shell.load_base(f.base()?.as_deref())?;
    let generator = MaskSyn {
        text2mask: &text2mask,
        sd: &sd,
        controlnet: Arc::new(control::load_controlnet(&sd, &f.controlnet)?),
        palette: palette.clone(),
        prompts: &prompts,
        per_prompt,
        options: &options,
        model: f.model_name()?,
        text2mask_model: args.text2mask.clone(),
        controlnet_name: f.controlnet.display().to_string(),
    };
    sd.check_controlnet(&generator.controlnet)?;
    generator.size()?;
    shell.generate(&generator)
}

/// `maskforge collect OUT` of a SegGen run.
pub fn collect_command(out: &Path, method: &str) -> Result<()> {
    let storage = DirStorage::open(out);
    let records: Vec<SegGenRecord> = collect_seggen(&storage, description(method))?;
    eprintln!("{}: {} samples", out.display(), records.len());
    Ok(())
}

fn description(method: &str) -> &'static str {
    match method {
        "masksyn" => MaskSyn::DESCRIPTION,
        _ => ImgSyn::DESCRIPTION,
    }
}

/// The shell's side of a run: its folder, shard, device and run file.
struct Shell<'a> {
    flags: &'a SynthesisFlags,
    out: PathBuf,
    storage: Arc<DirStorage>,
    run: DatasetRun,
    samples: Vec<SampleId>,
    shard: Shard,
    selected: device::Selected,
}

impl<'a> Shell<'a> {
    fn open<S: Serialize>(
        flags: &'a SynthesisFlags,
        palette: &Palette,
        folders: &[&str],
        settings: S,
        num_images: u64,
    ) -> Result<Self> {
        let shard = match &flags.shard {
            Some(s) => s.parse()?,
            None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::WHOLE),
        };
        // A --controlnet that is not one fails before the output folder is made.
        let model = flags.model_name()?;
        let mut all = vec![IMAGES_DIR, SAMPLES_DIR];
        all.extend_from_slice(folders);
        let storage = Arc::new(DirStorage::create(&flags.out, &all)?);
        let run_file = RunFile {
            model,
            num_images,
            seed: flags.seed,
            categories: palette_categories(palette),
            settings,
        };
        let run = DatasetRun::open(storage.clone(), &run_file)?;
        let samples: Vec<SampleId> = run_file.samples(shard).collect();
        let indices: BTreeSet<u64> = samples.iter().map(|s| s.index).collect();
        for folder in all {
            storage.remove_stale_temporaries(folder, &indices)?;
        }
        let selected = device::select(flags.device, flags.dtype)?;
        Ok(Self {
            flags,
            out: flags.out.clone(),
            storage,
            run,
            samples,
            shard,
            selected,
        })
    }

    fn load_model(&self, name: &str) -> Result<StableDiffusion> {
        model::load_logged(name, None, &self.selected.device, self.selected.dtype)
    }

    /// Mask2Img's base model: `model` ([`SynthesisFlags::base`]), else the embedded one.
    fn load_base(&self, model: Option<&str>) -> Result<StableDiffusion> {
        match model {
            Some(m) => self.load_model(m),
            None => {
                tracing::info!("no base model: using {}", embedded::NAME);
                Ok(embedded::load(&self.selected.device, self.selected.dtype)?)
            }
        }
    }

    /// Makes this shard's samples; assembles the dataset when the run is not sharded.
    fn generate<G: SampleGenerator<Details = maskforge_core::seggen::SegGenDetails>>(
        &self,
        generator: &G,
    ) -> Result<()> {
        let bar = sample_bar(self.samples.len(), self.flags.quiet);
        let progress: Arc<dyn Progress> = Arc::new(Bar(bar.clone()));
        let mut writers = WriterPool::new(2)?;
        let start = std::time::Instant::now();
        let made = generate_samples(
            generator,
            &self.run,
            self.samples.iter().copied(),
            &mut writers,
            &progress,
        )?;
        bar.finish_and_clear();
        eprintln!(
            "{made} samples made in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        if self.shard == Shard::WHOLE {
            collect_seggen(self.storage.as_ref(), G::DESCRIPTION)?;
            eprintln!("{}: {} samples", self.out.display(), self.samples.len());
        } else {
            eprintln!(
                "shard {}/{} done; after every shard, run `maskforge collect {}`",
                self.shard.index,
                self.shard.count,
                self.out.display()
            );
        }
        Ok(())
    }
}

fn read_prompts<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(parse_jsonl(&path.display().to_string(), &bytes)?)
}

fn positive(n: u64, flag: &str) -> Result<u64> {
    anyhow::ensure!(n > 0, "{flag} must be at least 1");
    Ok(n)
}
