//! `maskforge`: text-to-image and instance-segmentation datasets from diffusion models.

use clap::{Parser, Subcommand};
use maskforge_native::commands::{
    bench, convert, detect, eval, generate, merge, palette, score, seggen, shapes, text2mask,
    train, txt2img,
};

#[derive(Parser)]
#[command(name = "maskforge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a MosaicFusion dataset: multi-object images with instance masks from
    /// cross-attention, as LVIS/COCO annotations. `--config run.toml` supplies any flag
    /// (keys are flag names, e.g. `num_images = 100`); flags on the command line win.
    Generate(generate::GenerateArgs),
    /// Assemble the annotation files and manifest.jsonl of a sharded `generate`, `imgsyn` or
    /// `masksyn` output folder. When `maskforge score` was run on it, the detector's agreement
    /// is added to each annotation.
    Collect {
        /// The folder the shards wrote to.
        out: std::path::PathBuf,
        /// Drop annotations whose detector agreement (`maskforge score`) is below this.
        #[arg(long)]
        min_agreement: Option<f64>,
    },
    /// Generate one image from a prompt.
    Txt2img(txt2img::Txt2ImgArgs),
    /// Time the UNet, VAE decoder and text encoder; prints one JSON line.
    Bench(bench::BenchArgs),
    /// Merge synthetic COCO/LVIS annotation files into a dataset (streamed, bounded memory).
    Merge(merge::MergeArgs),
    /// SegGen colour maps: draw a semantic or panoptic mask in a palette's colours
    /// (`colorize`), or read a colour map back as a label PNG (`decode`).
    Palette(palette::PaletteArgs),
    /// SegGen Text2Mask: draw a colour map for a prompt and read it back as a label map.
    Text2mask(text2mask::Text2MaskArgs),
    /// SegGen ImgSyn: new images for existing label maps (a ControlNet on their colour maps).
    Imgsyn(seggen::ImgSynArgs),
    /// SegGen MaskSyn: new masks from captions (Text2Mask), and their images (Mask2Img).
    Masksyn(seggen::MaskSynArgs),
    /// Convert a PyTorch checkpoint (`.pth`, `.pt`, `.bin`; read without running pickle code)
    /// or a safetensors file to safetensors, keeping dtypes.
    Convert(convert::ConvertArgs),
    /// Render the shapes world: scenes of 1–4 coloured shapes on low-colour backgrounds with
    /// their exact instance masks (annotations.json), label maps, colour maps and captions.
    Shapes(shapes::ShapesArgs),
    /// Evaluate COCO results against a COCO or LVIS ground truth (pycocotools' and lvis-api's
    /// numbers, with hotcoco): the 12 COCO stats, or LVIS's 13 with APr/APc/APf.
    Eval(eval::EvalArgs),
    /// DiffusionInst / DiffusionDet instance segmentation from the original detectron2 config
    /// and checkpoint: COCO results JSON (boxes, scores, RLE masks) for images or folders.
    Detect(detect::DetectArgs),
    /// Score a generated dataset with DiffusionInst: per annotation, the best mask IoU with any
    /// detection (`agreement`) and with one of its category; sharded and resumable. `collect
    /// --min-agreement F` then drops weak annotations.
    Score(score::ScoreArgs),
    /// Train a UNet (text-to-image, or Text2Mask on colour maps) on burn's autodiff, on the
    /// CPU or wgpu; checkpoints, resume after a kill, a loss log and curve, and a diffusers
    /// folder as the result.
    Train(train::TrainArgs),
}

fn main() -> std::process::ExitCode {
    maskforge_native::alloc::keep_freed_buffers();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "maskforge=info,maskforge_native=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
        Command::Collect { out, min_agreement } => generate::collect_command(&out, min_agreement),
        Command::Txt2img(args) => txt2img::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Palette(args) => palette::run(args),
        Command::Text2mask(args) => text2mask::run(args),
        Command::Imgsyn(args) => seggen::imgsyn(args),
        Command::Masksyn(args) => seggen::masksyn(args),
        Command::Shapes(args) => shapes::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Score(args) => score::run(args),
        Command::Train(args) => train::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
