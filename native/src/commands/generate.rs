//! `maskforge generate`: a MosaicFusion dataset (images, LVIS/COCO annotations, manifest).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use maskforge_core::arch;
use maskforge_core::dataset::{SampleRecord, assemble_annotations};
use maskforge_core::mosaic::attention_mask::Threshold;
use maskforge_core::mosaic::categories::{Frequency, main_pool, parse_categories};
use maskforge_core::mosaic::denoise::MosaicParams;
use maskforge_core::mosaic::instances::{ComponentPolicy, InstanceFilter};
use maskforge_core::mosaic::layout::LayoutConfig;
use maskforge_core::mosaic::plan::{DEFAULT_TEMPLATE, PlanConfig, plan_sample};
use maskforge_core::mosaic::sample::{GenerateConfig, Refine, Sample};
use maskforge_core::schedulers::SchedulerKind;

use super::txt2img::parse_scheduler;
use crate::device::{self, DTypeArg, DeviceArg};
use crate::{embedded, model, source};

/// Arguments of `maskforge generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Diffusers folder, single-file checkpoint or repo id; default: the embedded tiny model
    /// (random weights, for trying the pipeline only).
    #[arg(long)]
    pub model: Option<String>,
    /// Diffusers folder whose configs a single-file checkpoint uses.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// LVIS/COCO annotation file (its `categories`), a JSON array of categories, or a text
    /// file with one name per line.
    #[arg(long)]
    pub categories: PathBuf,
    #[arg(long)]
    pub num_images: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// Region counts to draw from, e.g. `4` or `1,2,4`.
    #[arg(long, default_value = "4", value_delimiter = ',')]
    pub regions: Vec<usize>,
    /// Size of one region, HxW (the canvas is up to 2×2 regions).
    #[arg(long, default_value = "384x512", value_parser = parse_size)]
    pub region_size: (usize, usize),
    /// Band shared by neighbouring regions, HxW.
    #[arg(long, default_value = "48x64", value_parser = parse_size)]
    pub overlap: (usize, usize),
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// ddim, pndm, euler, euler-a, dpmpp-2m or lms; default: the model's own.
    #[arg(long, value_parser = parse_scheduler)]
    pub scheduler: Option<SchedulerKind>,
    /// Base seed: sample k uses seed + k.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Frequencies of the main category of each image, e.g. `r` or `r,c` (LVIS files);
    /// default: every category.
    #[arg(long)]
    pub main_frequency: Option<String>,
    /// Prompt with {name} and {def}; `, {def}` is dropped for categories without a definition.
    #[arg(long, default_value = DEFAULT_TEMPLATE)]
    pub prompt_template: String,
    /// strict (drop the image if a region has several components), largest, or all.
    #[arg(long, default_value = "largest")]
    pub component_policy: String,
    #[arg(long, default_value_t = 0.05)]
    pub min_area_frac: f64,
    #[arg(long, default_value_t = 0.95)]
    pub max_area_frac: f64,
    /// none or bilateral (the fast bilateral solver, twice, as MosaicFusion).
    #[arg(long, default_value = "bilateral")]
    pub refine: String,
    /// otsu, or a fixed fraction in (0, 1) of the attention map's maximum.
    #[arg(long, default_value = "otsu")]
    pub threshold: String,
    /// Attention resolutions to average, as fractions of the region: 32 = 1/32.
    #[arg(long, default_value = "32,16,8", value_delimiter = ',')]
    pub attention_resolutions: Vec<usize>,
    /// png or jpg (masks are always lossless RLE).
    #[arg(long, default_value = "png")]
    pub image_format: String,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `HxW`.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected HxW, got `{s}`"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("expected HxW with whole numbers, got `{s}`"))
    };
    Ok((n(h)?, n(w)?))
}

impl GenerateArgs {
    /// The dataset settings these arguments describe (checked).
    fn config(&self, model_name: String) -> Result<GenerateConfig> {
        let threshold = match self.threshold.as_str() {
            "otsu" => Threshold::Otsu,
            v => match v.parse::<f64>() {
                Ok(value) if value > 0.0 && value < 1.0 => Threshold::Fixed { value },
                _ => bail!("--threshold must be `otsu` or a number in (0, 1), got `{v}`"),
            },
        };
        let refine = match self.refine.as_str() {
            "none" => Refine::None,
            "bilateral" => Refine::bilateral(),
            r => bail!("--refine must be `none` or `bilateral`, got `{r}`"),
        };
        let image_extension = match self.image_format.as_str() {
            "png" => "png",
            "jpg" | "jpeg" => "jpg",
            f => bail!("--image-format must be `png` or `jpg`, got `{f}`"),
        };
        if let Some(r) = self.attention_resolutions.iter().find(|r| ![8, 16, 32, 64].contains(*r)) {
            bail!("--attention-resolutions takes 8, 16, 32 or 64, got {r}");
        }
        let config = GenerateConfig {
            plan: PlanConfig {
                regions: self.regions.clone(),
                layout: LayoutConfig {
                    region_height: self.region_size.0,
                    region_width: self.region_size.1,
                    overlap_height: self.overlap.0,
                    overlap_width: self.overlap.1,
                    ..LayoutConfig::default()
                },
                template: self.prompt_template.clone(),
            },
            denoise: MosaicParams {
                steps: self.steps,
                guidance: self.guidance,
                scheduler: self.scheduler,
                ..MosaicParams::default()
            },
            resolutions: self.attention_resolutions.clone(),
            threshold,
            refine,
            filter: InstanceFilter {
                min_area_frac: self.min_area_frac,
                max_area_frac: self.max_area_frac,
                ..InstanceFilter::default()
            },
            policy: ComponentPolicy::from_name(&self.component_policy)?,
            image_extension: image_extension.into(),
            model_name,
        };
        config.validate()?;
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        Ok(config)
    }
}

/// Runs `generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let model_name = args.model.clone().unwrap_or_else(|| embedded::NAME.into());
    let config = args.config(model_name)?;
    let categories_path = args.categories.display().to_string();
    let bytes = source::map_file(&args.categories)?;
    let categories = parse_categories((*bytes).as_ref(), &categories_path)?;
    drop(bytes);
    let frequencies = args
        .main_frequency
        .as_deref()
        .map(Frequency::parse_list)
        .transpose()?;
    let pool = main_pool(&categories, frequencies.as_deref())
        .with_context(|| format!("--main-frequency with {categories_path}"))?;
    // Plans need only the tokenizer: the first ones are checked before the model loads.
    let tokenizer = arch::clip_tokenizer();
    for k in 0..args.num_images.min(pool.len() as u64) {
        plan_sample(k, args.seed, &categories, &pool, &config.plan, &tokenizer)?;
    }

    let images_dir = args.out.join("images");
    let records_dir = args.out.join("samples");
    for dir in [&args.out, &images_dir, &records_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    }

    let selected = device::select(args.device, args.dtype)?;
    let sd = match &args.model {
        Some(m) => model::load_logged(m, args.config.as_deref(), &selected.device, selected.dtype)?,
        None => {
            tracing::info!("no --model: using {}", embedded::NAME);
            embedded::load(&selected.device, selected.dtype)?
        }
    };
    if sd.tokenizer.encode("a photo") != tokenizer.encode("a photo") {
        tracing::warn!("the model's tokenizer differs from CLIP's: token positions come from the model's");
    }

    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.num_images).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} samples {per_sec} {elapsed} (eta {eta}) {msg}",
            )
            .expect("static template"),
        )
    };
    let start = std::time::Instant::now();
    let mut records = Vec::new();
    for k in 0..args.num_images {
        let record_path = records_dir.join(format!("{:012}.json", k + 1));
        if let Some(record) = read_record(&record_path)? {
            records.push(record);
            bar.inc(1);
            continue;
        }
        let plan = plan_sample(k, args.seed, &categories, &pool, &config.plan, &sd.tokenizer)?;
        let sample = sd.generate_sample(&plan, &config, |i, n| bar.set_message(format!("step {i}/{n}")))?;
        write_sample(&sample, &images_dir, &record_path)?;
        records.push(sample.record);
        bar.inc(1);
    }
    bar.finish_and_clear();

    write_outputs(&args.out, &categories, &records)?;
    let kept = records.iter().filter(|r| r.kept).count();
    let instances: usize = records.iter().map(|r| r.annotations.len()).sum();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for r in records.iter().filter(|r| !r.kept) {
        let reason = r.reason.clone().unwrap_or_default();
        // "region 2: …" → group by what happened, not where.
        let what = reason.split_once(": ").map_or(reason.as_str(), |(_, w)| w);
        *reasons.entry(what.split(" (").next().unwrap_or(what).to_string()).or_default() += 1;
    }
    eprintln!(
        "{} samples in {:.1}s: {kept} kept with {instances} instances, {} dropped{}",
        records.len(),
        start.elapsed().as_secs_f64(),
        records.len() - kept,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({reasons:?})")
        }
    );
    Ok(())
}

/// The record of a finished sample, if there is one.
fn read_record(path: &Path) -> Result<Option<SampleRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: unreadable sample record (delete it to redo the sample)", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Writes the image (kept samples), then the record that marks the sample finished.
fn write_sample(sample: &Sample, images_dir: &Path, record_path: &Path) -> Result<()> {
    if let Some(image) = &sample.record.image {
        let path = images_dir.join(&image.file_name);
        let img = image::RgbImage::from_raw(sample.width as u32, sample.height as u32, sample.rgb.clone())
            .context("image buffer has the wrong size")?;
        let format = if image.file_name.ends_with(".jpg") {
            image::ImageFormat::Jpeg
        } else {
            image::ImageFormat::Png
        };
        crate::write_atomically(&path, |tmp| {
            img.save_with_format(tmp, format)
                .with_context(|| format!("{}: cannot write the image", path.display()))
        })?;
    }
    let json = serde_json::to_vec(&sample.record).expect("records serialise");
    crate::write_atomically(record_path, |tmp| {
        std::fs::write(tmp, &json).with_context(|| format!("{}: cannot write", record_path.display()))
    })
}

/// `annotations.json` and `manifest.jsonl` from all records, sorted by sample.
fn write_outputs(
    out: &Path,
    categories: &[maskforge_core::mosaic::categories::Category],
    records: &[SampleRecord],
) -> Result<()> {
    let mut sorted: Vec<&SampleRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.index);
    let mut manifest = Vec::new();
    for r in &sorted {
        serde_json::to_writer(&mut manifest, r).expect("records serialise");
        manifest.push(b'\n');
    }
    let path = out.join("manifest.jsonl");
    crate::write_atomically(&path, |tmp| {
        std::fs::write(tmp, &manifest).with_context(|| format!("{}: cannot write", path.display()))
    })?;
    let annotations = assemble_annotations(categories, records)?;
    let path = out.join("annotations.json");
    let bytes = serde_json::to_vec(&annotations).expect("JSON values serialise");
    crate::write_atomically(&path, |tmp| {
        std::fs::write(tmp, &bytes).with_context(|| format!("{}: cannot write", path.display()))
    })
}
