//! `maskforge generate`: a MosaicFusion dataset (images, LVIS/COCO annotations, manifest).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use maskforge_core::arch;
use maskforge_core::dataset::run::SAMPLES_DIR;
use maskforge_core::dataset::{
    DatasetRun, Progress, RunFile, SampleGenerator, SampleId, Shard, collect, generate_samples,
    main_pool, parse_categories, read_run_file,
};
use maskforge_core::mosaic::plan::plan_sample;
use maskforge_core::mosaic::{MosaicFusion, MosaicOptions, MosaicRecord};
use serde::{Deserialize, Serialize};

use crate::device::{self, DTypeArg, DeviceArg};
use crate::pool::WriterPool;
use crate::progress::{Bar, sample_bar};
use crate::storage::DirStorage;
use crate::{embedded, model, source};

/// Arguments of `maskforge generate`. `--config run.toml` supplies any of them (keys are the
/// flag names, `num_images` or `num-images`); flags on the command line win.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A TOML file of settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Diffusers folder, single-file checkpoint or repo id; default: the embedded shapes
    /// model, with its own settings (64x64 regions, 16x16 overlap, 25 steps, guidance 16) under
    /// the flags and `--config`.
    #[arg(long)]
    pub model: Option<String>,
    /// Diffusers folder whose configs a single-file checkpoint uses.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// LVIS/COCO annotation file (its `categories`), a JSON array of categories, or a text
    /// file with one name per line (required).
    #[arg(long)]
    pub categories: Option<PathBuf>,
    /// Number of samples (required).
    #[arg(long)]
    pub num_images: Option<u64>,
    /// Output folder (required).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Base seed: sample k uses seed + k [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub options: OptionFlags,
    /// [default: auto]
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// [default: f32]
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// Generate only samples k with k mod N = I (`I/N`); default from Slurm array variables
    /// (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` with `MASKFORGE_SHARDS`), else 0/1.
    /// Shards may share one output folder; `maskforge collect OUT` assembles it afterwards.
    #[arg(long)]
    pub shard: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The settings of the run and of the shell, from the flags over the `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ShellSettings {
    model: Option<String>,
    model_config: Option<PathBuf>,
    categories: Option<PathBuf>,
    num_images: Option<u64>,
    out: Option<PathBuf>,
    seed: Option<u64>,
    device: Option<String>,
    dtype: Option<String>,
    shard: Option<String>,
    quiet: Option<bool>,
}

/// What a `generate` invocation resolves to.
struct Resolved {
    model: Option<String>,
    model_config: Option<PathBuf>,
    categories: PathBuf,
    num_images: u64,
    out: PathBuf,
    seed: u64,
    device: DeviceArg,
    dtype: DTypeArg,
    shard: Option<Shard>,
    quiet: bool,
    options: MosaicOptions,
}

impl GenerateArgs {
    /// The flags over the `--config` file's keys over the model's own settings (its
    /// `mosaic.json`; the embedded model's without a model) over the defaults. The MosaicFusion
    /// keys deserialize into the core's [`MosaicOptions`].
    fn resolve(&self) -> Result<Resolved> {
        let (file, mut table) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let table: toml::Table = text
                    .parse()
                    .with_context(|| format!("{}: not valid TOML", path.display()))?;
                let json = serde_json::to_value(table).expect("TOML values are JSON values");
                let serde_json::Value::Object(map) = json else {
                    unreachable!("a TOML table is an object")
                };
                let map = map
                    .into_iter()
                    .map(|(k, v)| (k.replace('-', "_"), v))
                    .collect();
                (path.display().to_string(), map)
            }
            None => ("the command line".to_string(), serde_json::Map::new()),
        };
        let flags = serde_json::to_value(&self.options).expect("flags serialise");
        table.extend(flags.as_object().expect("flags are an object").clone());
        let model = match table.get("model") {
            Some(serde_json::Value::String(m)) => Some(m.clone()),
            _ => None,
        };
        for (key, value) in model::mosaic_settings(self.model.as_deref().or(model.as_deref()))? {
            table.entry(key).or_insert(value);
        }
        const SHELL_KEYS: [&str; 10] = [
            "model",
            "model_config",
            "categories",
            "num_images",
            "out",
            "seed",
            "device",
            "dtype",
            "shard",
            "quiet",
        ];
        let (shell, options): (serde_json::Map<_, _>, serde_json::Map<_, _>) = table
            .into_iter()
            .partition(|(k, _)| SHELL_KEYS.contains(&k.as_str()));
        let shell: ShellSettings = serde_json::from_value(shell.into())
            .with_context(|| format!("{file}: invalid setting"))?;
        let options: MosaicOptions = serde_json::from_value(options.into())
            .map_err(|e| anyhow::anyhow!("{file}: invalid option: {e}"))?;
        let required = |name: &str| {
            anyhow::anyhow!("--{name} is required (on the command line or in --config)")
        };
        fn value_enum<T: clap::ValueEnum>(file: &str, what: &str, v: String) -> Result<T> {
            T::from_str(&v, true).map_err(|_| anyhow::anyhow!("{file}: unknown {what} `{v}`"))
        }
        Ok(Resolved {
            model: self.model.clone().or(shell.model),
            model_config: self.model_config.clone().or(shell.model_config),
            categories: self
                .categories
                .clone()
                .or(shell.categories)
                .ok_or_else(|| required("categories"))?,
            num_images: self
                .num_images
                .or(shell.num_images)
                .ok_or_else(|| required("num-images"))?,
            out: self
                .out
                .clone()
                .or(shell.out)
                .ok_or_else(|| required("out"))?,
            seed: self.seed.or(shell.seed).unwrap_or(0),
            device: match self.device {
                Some(d) => d,
                None => shell
                    .device
                    .map(|d| value_enum(&file, "device", d))
                    .transpose()?
                    .unwrap_or(DeviceArg::Auto),
            },
            dtype: match self.dtype {
                Some(d) => d,
                None => shell
                    .dtype
                    .map(|d| value_enum(&file, "dtype", d))
                    .transpose()?
                    .unwrap_or(DTypeArg::F32),
            },
            shard: self
                .shard
                .clone()
                .or(shell.shard)
                .map(|s| s.parse::<Shard>().context("--shard"))
                .transpose()?,
            quiet: self.quiet || shell.quiet.unwrap_or(false),
            options,
        })
    }
}

/// The flags of [`MosaicOptions`], as given: the core holds their defaults and checks.
#[derive(Debug, Args, Serialize)]
pub struct OptionFlags {
    /// Region counts to draw from, e.g. `4` or `1,2,4` [default: 4].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<String>,
    /// Size of one region, HxW (the canvas is up to 2×2 regions) [default: 384x512].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_size: Option<String>,
    /// Band shared by neighbouring regions, HxW [default: 48x64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    /// Denoising steps [default: 50].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale [default: 7.5].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// ddim, pndm, euler, euler-a, dpmpp-2m, lms or heun; default: the model's own.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Karras sigmas (diffusers' use_karras_sigmas=True) with euler, dpmpp-2m, lms or heun.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub karras_sigmas: bool,
    /// Frequencies of the main category of each image, e.g. `r` or `r,c` (LVIS files);
    /// default: every category.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_frequency: Option<String>,
    /// Prompt with {name} and {def}; `, {def}` is dropped for categories without a definition
    /// [default: "a photo of a single {name}, {def}"].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
    /// strict (drop the image if a region has several components), largest, or all
    /// [default: largest].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_policy: Option<String>,
    /// [default: 0.05]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_area_frac: Option<f64>,
    /// [default: 0.95]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_area_frac: Option<f64>,
    /// none or bilateral (the fast bilateral solver, twice, as MosaicFusion) [default: bilateral].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refine: Option<String>,
    /// The bilateral solver's spatial bandwidth in pixels (MosaicFusion's, for regions of
    /// about 512 pixels) [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_spatial: Option<f64>,
    /// The bilateral solver's luma bandwidth (8-bit levels) [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_luma: Option<f64>,
    /// The bilateral solver's chroma bandwidth (8-bit levels) [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_chroma: Option<f64>,
    /// The fraction of its maximum the bilateral solver's output must exceed to stay in the
    /// mask [default: 0.5].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bfs_threshold: Option<f64>,
    /// otsu, or a fixed fraction in (0, 1) of the attention map's maximum [default: otsu].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Attention resolutions to average, as fractions of the region: 32 = 1/32
    /// [default: 32,16,8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_resolutions: Option<String>,
    /// png or jpg (masks are always lossless RLE) [default: png].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_format: Option<String>,
}

/// What `run.json` holds besides the core's run fields: the options and the dtype.
#[derive(Serialize)]
struct Settings<'a> {
    dtype: String,
    #[serde(flatten)]
    options: &'a MosaicOptions,
}

/// Runs `generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let args = args.resolve()?;
    let options = &args.options;
    let model_name = args.model.clone().unwrap_or_else(|| embedded::NAME.into());
    let config = options.config(model_name.clone())?;
    let categories_path = args.categories.display().to_string();
    let bytes = source::map_file(&args.categories)?;
    let categories = parse_categories((*bytes).as_ref(), &categories_path)?;
    drop(bytes);
    let pool = main_pool(&categories, options.main_frequencies()?.as_deref())
        .with_context(|| format!("--main-frequency with {categories_path}"))?;
    // Plans need only the tokenizer: the first ones are checked before the model loads.
    let tokenizer = arch::clip_tokenizer();
    for k in 0..args.num_images.min(pool.len() as u64) {
        plan_sample(k, args.seed, &categories, &pool, &config.plan, &tokenizer)?;
    }

    let shard = match args.shard {
        Some(s) => s,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::WHOLE),
    };
    let storage = Arc::new(DirStorage::create(&args.out, &["images", SAMPLES_DIR])?);
    let run_file = RunFile {
        model: model_name,
        num_images: args.num_images,
        seed: args.seed,
        categories: categories.iter().map(|c| c.source.clone()).collect(),
        settings: Settings {
            dtype: format!("{:?}", args.dtype).to_lowercase(),
            options,
        },
    };
    let run = DatasetRun::open(storage.clone(), &run_file)?;

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

    let mine: Vec<SampleId> = run_file.samples(shard).collect();
    let bar = sample_bar(mine.len(), args.quiet);
    let indices: BTreeSet<u64> = mine.iter().map(|s| s.index).collect();
    for folder in ["images", SAMPLES_DIR] {
        storage.remove_stale_temporaries(folder, &indices)?;
    }

    let generator = MosaicFusion::new(&sd, config, &categories, &pool, args.seed);
    // Host work of two samples at once: the device is the bottleneck.
    let mut writers = WriterPool::new(2)?;
    let progress: Arc<dyn Progress> = Arc::new(Bar(bar.clone()));
    let start = Instant::now();
    let generated = generate_samples(
        &generator,
        &run,
        mine.iter().copied(),
        &mut writers,
        &progress,
    )?;
    bar.finish_and_clear();

    let records: Vec<MosaicRecord> = if shard == Shard::WHOLE {
        collect(storage.as_ref(), MosaicFusion::DESCRIPTION)?
    } else {
        eprintln!(
            "shard {}/{} done; after every shard, run `maskforge collect {}`",
            shard.index,
            shard.count,
            args.out.display()
        );
        mine.iter()
            .map(|&s| run.record(s)?.context("a finished sample has no record"))
            .collect::<Result<_>>()?
    };
    let records: Vec<&MosaicRecord> = records
        .iter()
        .filter(|r| indices.contains(&r.index))
        .collect();
    let kept = records.iter().filter(|r| r.kept).count();
    let instances: usize = records.iter().map(|r| r.details.annotations.len()).sum();
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
            "{generated} generated at {:.0} samples/hour; UNet {:.0}% of the time; the device \
             waited {:.2}s in all for mask and file work",
            generated as f64 / total * 3600.0,
            100.0 * generator.unet_time().as_secs_f64() / total,
            writers.device_wait.as_secs_f64()
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

/// `maskforge collect OUT`: assembles the annotation files and `manifest.jsonl` from the
/// sample records of (possibly sharded) runs into OUT: a MosaicFusion run, or a SegGen one
/// (its `run.json` names the method).
pub fn collect_command(out: &Path, min_agreement: Option<f64>) -> Result<()> {
    let storage = DirStorage::open(out);
    let run = read_run_file(&storage)?;
    if let Some(method) = run.settings.get("method").and_then(|m| m.as_str()) {
        super::seggen::collect_command(out, method)?;
    } else {
        let records: Vec<MosaicRecord> = collect(&storage, MosaicFusion::DESCRIPTION)?;
        eprintln!(
            "{}: {} samples, {} kept",
            out.display(),
            records.len(),
            records.iter().filter(|r| r.kept).count()
        );
    }
    if let Some((kept, dropped)) = crate::agreement::apply(out, min_agreement)? {
        eprintln!(
            "{}: detector agreement added; {kept} annotations kept, {dropped} dropped",
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }

    fn resolve(extra: &[&str]) -> Resolved {
        let mut argv = vec!["generate", "--categories", "c.json", "--num-images", "1"];
        argv.extend_from_slice(&["--out", "out"]);
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args.resolve().unwrap()
    }

    #[test]
    fn a_models_own_settings_sit_under_config_and_flags() {
        let embedded = resolve(&[]).options;
        let own: MosaicOptions =
            serde_json::from_value(embedded::mosaic_defaults().into()).unwrap();
        assert_eq!(embedded, own);
        let flagged = resolve(&["--steps", "7"]).options;
        assert_eq!((flagged.steps, flagged.region_size), (7, (64, 64)));
        let other = resolve(&["--model", "some/model"]).options;
        assert_eq!(other, MosaicOptions::default());
        // A model folder's own settings, under the flags; a bad file is named.
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        std::fs::write(
            dir.path().join("mosaic.json"),
            r#"{"steps": 9, "guidance": 3}"#,
        )
        .unwrap();
        let folder_options = resolve(&["--model", folder, "--guidance", "2"]).options;
        assert_eq!((folder_options.steps, folder_options.guidance), (9, 2.0));
        std::fs::write(dir.path().join("mosaic.json"), "[1]").unwrap();
        let mut argv = vec![
            "generate",
            "--categories",
            "c",
            "--num-images",
            "1",
            "--out",
            "o",
        ];
        argv.extend(["--model", folder]);
        let e = Cli::parse_from(argv).args.resolve().err().unwrap();
        assert!(format!("{e:#}").contains("mosaic.json"), "{e:#}");
    }
}
