//! `maskforge generate`: a MosaicFusion dataset (images, LVIS/COCO annotations, manifest).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::Args;
use maskforge_core::arch;
use maskforge_core::dataset::{SampleRecord, assemble_annotations, manifest_jsonl};
use maskforge_core::mosaic::attention_mask::Threshold;
use maskforge_core::mosaic::categories::{Frequency, main_pool, parse_categories};
use maskforge_core::mosaic::denoise::MosaicParams;
use maskforge_core::mosaic::instances::{ComponentPolicy, InstanceFilter};
use maskforge_core::mosaic::layout::LayoutConfig;
use maskforge_core::mosaic::plan::{DEFAULT_TEMPLATE, PlanConfig, plan_sample};
use maskforge_core::mosaic::sample::{GenerateConfig, Refine, Sample, finish_sample};
use maskforge_core::schedulers::SchedulerKind;

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
    pub model_config: Option<PathBuf>,
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
    #[arg(long, value_parser = SchedulerKind::from_str)]
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
    /// Generate only samples k with k mod N = I (`I/N`); default from Slurm array variables
    /// (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` with `MASKFORGE_SHARDS`), else 0/1.
    /// Shards may share one output folder; `maskforge collect OUT` assembles it afterwards.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `I/N` with `I < N`.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected I/N with 0 <= I < N, got `{s}`");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<u64>().map_err(|_| bad())?,
        n.trim().parse::<u64>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard from the environment of a Slurm array job or a Kubernetes Indexed Job.
fn shard_from_env() -> Result<(u64, u64)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let num = |k: &str, v: String| {
        v.parse::<u64>()
            .with_context(|| format!("environment variable {k}={v} is not a whole number"))
    };
    if let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        let min = var("SLURM_ARRAY_TASK_MIN")
            .map(|m| num("SLURM_ARRAY_TASK_MIN", m))
            .transpose()?;
        let i = num("SLURM_ARRAY_TASK_ID", id)? - min.unwrap_or(0);
        let n = num("SLURM_ARRAY_TASK_COUNT", count)?;
        return parse_shard(&format!("{i}/{n}"))
            .map_err(|e| anyhow::anyhow!("Slurm array shard: {e}"));
    }
    if let Some(index) = var("JOB_COMPLETION_INDEX") {
        let n = var("MASKFORGE_SHARDS").context(
            "JOB_COMPLETION_INDEX is set: give the number of shards in MASKFORGE_SHARDS or --shard I/N",
        )?;
        let (i, n) = (
            num("JOB_COMPLETION_INDEX", index)?,
            num("MASKFORGE_SHARDS", n)?,
        );
        return parse_shard(&format!("{i}/{n}"))
            .map_err(|e| anyhow::anyhow!("Indexed Job shard: {e}"));
    }
    Ok((0, 1))
}

/// Expands `--config run.toml` in the arguments of `maskforge generate` (`args` without the
/// program and subcommand names): every key of the file (`num_images` or `num-images`) becomes
/// its flag unless that flag is given on the command line, which wins.
pub fn expand_config_file(args: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>> {
    use clap::Args as _;
    let mut path = None;
    let mut rest = Vec::new();
    let mut iter = args.into_iter();
    while let Some(a) = iter.next() {
        match a.to_str() {
            Some("--config") => path = Some(iter.next().context("--config needs a file")?),
            Some(s) if s.starts_with("--config=") => path = Some(s["--config=".len()..].into()),
            _ => rest.push(a),
        }
    }
    let Some(path) = path else { return Ok(rest) };
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    let command = GenerateArgs::augment_args(clap::Command::new("generate"));
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let given = |flag: &str| {
        rest.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    let mut expanded = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if !known.contains(&name) || name == "config" {
            bail!(
                "{}: unknown key `{key}` (keys are the flags of `maskforge generate`)",
                path.display()
            );
        }
        let flag = format!("--{name}");
        if given(&flag) {
            continue;
        }
        let text = match &value {
            toml::Value::Boolean(true) => {
                expanded.push(flag.into());
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => bail!(
                "{}: `{key}` has an unsupported value {other}",
                path.display()
            ),
        };
        expanded.push(flag.into());
        expanded.push(text.into());
    }
    expanded.extend(rest);
    Ok(expanded)
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
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| ![8, 16, 32, 64].contains(*r))
        {
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

    let (shard, shards) = match args.shard {
        Some(s) => s,
        None => shard_from_env()?,
    };
    let images_dir = args.out.join("images");
    let records_dir = args.out.join("samples");
    for dir in [&args.out, &images_dir, &records_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    }
    write_run_file(&args.out, &args, &categories)?;

    let selected = device::select(args.device, args.dtype)?;
    let sd = match &args.model {
        Some(m) => model::load_logged(
            m,
            args.model_config.as_deref(),
            &selected.device,
            selected.dtype,
        )?,
        None => {
            tracing::info!("no --model: using {}", embedded::NAME);
            embedded::load(&selected.device, selected.dtype)?
        }
    };
    if sd.tokenizer.encode("a photo") != tokenizer.encode("a photo") {
        tracing::warn!(
            "the model's tokenizer differs from CLIP's: token positions come from the model's"
        );
    }

    let mine: Vec<u64> = (0..args.num_images)
        .filter(|k| k % shards == shard)
        .collect();
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(mine.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} samples {per_sec} {elapsed} (eta {eta}) {msg}",
            )
            .expect("static template"),
        )
    };
    // Stale temporary files of a killed run: every sample belongs to one shard, so each
    // shard clears its own.
    remove_stale_temporaries(&images_dir, &records_dir, &mine, &config.image_extension)?;

    // The device thread denoises; masks, RLE, PNG encoding and writing run on a blocking
    // pool, overlapped with the next sample's denoising (at most `IN_FLIGHT` waiting).
    const IN_FLIGHT: usize = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(IN_FLIGHT)
        .build()
        .context("starting the writer pool")?;
    let config = std::sync::Arc::new(config);
    let start = std::time::Instant::now();
    let mut records = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    let mut device_wait = std::time::Duration::ZERO;
    let mut unet_time = std::time::Duration::ZERO;
    let mut denoise_time = std::time::Duration::ZERO;
    let mut generated = 0usize;
    let wait_for = |pending: &mut std::collections::VecDeque<
        tokio::task::JoinHandle<Result<SampleRecord>>,
    >,
                    records: &mut Vec<SampleRecord>|
     -> Result<std::time::Duration> {
        let waited = std::time::Instant::now();
        let task = pending.pop_front().expect("called with pending work");
        let record = runtime
            .block_on(task)
            .map_err(|e| anyhow::anyhow!("writer task failed: {e}"))??;
        records.push(record);
        Ok(waited.elapsed())
    };
    for &k in &mine {
        let record_path = records_dir.join(format!("{:012}.json", k + 1));
        if let Some(record) = read_record(&record_path)? {
            records.push(record);
            bar.inc(1);
            continue;
        }
        let plan = plan_sample(
            k,
            args.seed,
            &categories,
            &pool,
            &config.plan,
            &sd.tokenizer,
        )?;
        let denoise_start = std::time::Instant::now();
        let denoised = sd.denoise_sample(&plan, &config, |i, n| {
            bar.set_message(format!("step {i}/{n}"))
        })?;
        denoise_time += denoise_start.elapsed();
        unet_time += denoised.unet_time;
        generated += 1;
        while pending.len() >= IN_FLIGHT {
            device_wait += wait_for(&mut pending, &mut records)?;
        }
        let (config, images_dir, bar) = (config.clone(), images_dir.clone(), bar.clone());
        let scheduler = sd.default_scheduler;
        pending.push_back(runtime.spawn_blocking(move || -> Result<SampleRecord> {
            let sample = finish_sample(&plan, &config, &scheduler, denoised)?;
            write_sample(&sample, &images_dir, &record_path)?;
            bar.inc(1);
            Ok(sample.record)
        }));
    }
    while !pending.is_empty() {
        wait_for(&mut pending, &mut records)?;
    }
    bar.finish_and_clear();

    if shards == 1 {
        write_outputs(&args.out, &categories, &records)?;
    } else {
        eprintln!(
            "shard {shard}/{shards} done; after every shard, run `maskforge collect {}`",
            args.out.display()
        );
    }
    let kept = records.iter().filter(|r| r.kept).count();
    let instances: usize = records.iter().map(|r| r.annotations.len()).sum();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for r in records.iter().filter(|r| !r.kept) {
        let reason = r.reason.clone().unwrap_or_default();
        // "region 2: …" → group by what happened, not where.
        let what = reason.split_once(": ").map_or(reason.as_str(), |(_, w)| w);
        *reasons
            .entry(what.split(" (").next().unwrap_or(what).to_string())
            .or_default() += 1;
    }
    let total = start.elapsed().as_secs_f64();
    if generated > 0 {
        eprintln!(
            "{generated} generated at {:.0} samples/hour; UNet {:.0}% of the time, denoising and \
             decoding {:.0}%; the device waited {:.2}s in all for mask and file work",
            generated as f64 / total * 3600.0,
            100.0 * unet_time.as_secs_f64() / total,
            100.0 * denoise_time.as_secs_f64() / total,
            device_wait.as_secs_f64()
        );
    }
    eprintln!(
        "{} samples in {total:.1}s: {kept} kept with {instances} instances, {} dropped{}",
        records.len(),
        records.len() - kept,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({reasons:?})")
        }
    );
    Ok(())
}

/// `OUT/run.json`: the categories and every argument that decides the samples. A folder holds
/// one run: shards and reruns must agree with it.
fn write_run_file(
    out: &Path,
    args: &GenerateArgs,
    categories: &[maskforge_core::mosaic::categories::Category],
) -> Result<()> {
    let run = serde_json::json!({
        "model": args.model.clone().unwrap_or_else(|| embedded::NAME.into()),
        "num_images": args.num_images,
        "seed": args.seed,
        "regions": args.regions,
        "region_size": [args.region_size.0, args.region_size.1],
        "overlap": [args.overlap.0, args.overlap.1],
        "steps": args.steps,
        "guidance": args.guidance,
        "scheduler": args.scheduler.map(|s| s.cli_name()),
        "main_frequency": args.main_frequency,
        "prompt_template": args.prompt_template,
        "component_policy": args.component_policy,
        "min_area_frac": args.min_area_frac,
        "max_area_frac": args.max_area_frac,
        "refine": args.refine,
        "threshold": args.threshold,
        "attention_resolutions": args.attention_resolutions,
        "image_format": args.image_format,
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "categories": categories.iter().map(|c| serde_json::Value::Object(c.source.clone())).collect::<Vec<_>>(),
    });
    let path = out.join("run.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let existing: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: unreadable run file", path.display()))?;
            if existing != run {
                let differs: Vec<&String> = run
                    .as_object()
                    .expect("an object")
                    .iter()
                    .filter(|(k, v)| existing.get(k.as_str()) != Some(*v))
                    .map(|(k, _)| k)
                    .collect();
                bail!(
                    "{} holds a run with other settings ({}); use a new --out folder",
                    out.display(),
                    differs
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec_pretty(&run).expect("JSON values serialise");
            crate::write_bytes_atomically(&path, &bytes)
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// `maskforge collect OUT`: assembles `annotations.json` and `manifest.jsonl` from the sample
/// records of (possibly sharded) runs into OUT.
pub fn collect(out: &Path) -> Result<()> {
    let path = out.join("run.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: cannot read (is this a `maskforge generate` folder?)",
            path.display()
        )
    })?;
    let run: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable run file", path.display()))?;
    let categories = serde_json::to_vec(&run["categories"]).expect("JSON values serialise");
    let categories = parse_categories(&categories, &path.display().to_string())?;
    let num_images = run["num_images"]
        .as_u64()
        .with_context(|| format!("{}: no num_images", path.display()))?;
    let records_dir = out.join("samples");
    let mut records = Vec::new();
    let mut missing = Vec::new();
    for k in 0..num_images {
        match read_record(&records_dir.join(format!("{:012}.json", k + 1)))? {
            Some(r) => records.push(r),
            None => missing.push(k),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: {} of {num_images} samples are not finished (first: sample {}); rerun the shards",
            out.display(),
            missing.len(),
            missing[0]
        );
    }
    write_outputs(out, &categories, &records)?;
    eprintln!(
        "{}: {} samples, {} kept",
        out.display(),
        records.len(),
        records.iter().filter(|r| r.kept).count()
    );
    Ok(())
}

/// Removes temporary files (`.<name>.tmp-<pid>`, see [`crate::write_atomically`]) left in
/// the output folders by a killed run, for the samples `mine`.
fn remove_stale_temporaries(
    images_dir: &Path,
    records_dir: &Path,
    mine: &[u64],
    extension: &str,
) -> Result<()> {
    let mine: std::collections::BTreeSet<u64> = mine.iter().copied().collect();
    for (dir, ext) in [(images_dir, extension), (records_dir, "json")] {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((file, _pid)) = name.strip_prefix('.').and_then(|n| n.split_once(".tmp-"))
            else {
                continue;
            };
            let id = file
                .strip_suffix(&format!(".{ext}"))
                .and_then(|id| id.parse::<u64>().ok());
            if id.is_some_and(|id| id >= 1 && mine.contains(&(id - 1))) {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("{}: cannot remove", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The record of a finished sample, if there is one.
fn read_record(path: &Path) -> Result<Option<SampleRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: unreadable sample record (delete it to redo the sample)",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Writes the image (kept samples), then the record that marks the sample finished.
fn write_sample(sample: &Sample, images_dir: &Path, record_path: &Path) -> Result<()> {
    if let Some(image) = &sample.record.image {
        let path = images_dir.join(&image.file_name);
        let img = image::RgbImage::from_raw(
            sample.width as u32,
            sample.height as u32,
            sample.rgb.clone(),
        )
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
    crate::write_bytes_atomically(record_path, &json)
}

/// `annotations.json` and `manifest.jsonl` from all records, sorted by sample.
fn write_outputs(
    out: &Path,
    categories: &[maskforge_core::mosaic::categories::Category],
    records: &[SampleRecord],
) -> Result<()> {
    let path = out.join("manifest.jsonl");
    crate::write_bytes_atomically(&path, &manifest_jsonl(records))?;
    let annotations = assemble_annotations(categories, records)?;
    let path = out.join("annotations.json");
    let bytes = serde_json::to_vec(&annotations).expect("JSON values serialise");
    crate::write_bytes_atomically(&path, &bytes)
}
