//! `maskforge text2mask`: a Text2Mask checkpoint draws a colour map for a prompt; it is read
//! back as a label map by nearest palette colour.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use clap::Args;
use image::ExtendedColorType;
use maskforge_core::readback::{Readback, now};
use maskforge_core::schedulers::SchedulerKind;
use maskforge_core::seggen::options::TEXT2MASK_STEPS;
use maskforge_core::seggen::{DecodeOptions, SynthesisOptions, text2mask};

use super::palette::{load_palette, write_png};
use crate::device::{self, DTypeArg, DeviceArg};
use crate::model;

/// Arguments of `maskforge text2mask`.
#[derive(Debug, Args)]
pub struct Text2MaskArgs {
    /// The Text2Mask model: diffusers folder or single-file checkpoint.
    #[arg(long)]
    pub model: String,
    /// `ade20k`, `coco-panoptic`, `shapes` (the shapes world's classes) or a JSON file: a list of
    /// `{"id", "name", "color": [r, g, b]}`.
    #[arg(long)]
    pub palette: String,
    #[arg(long)]
    pub prompt: String,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    #[arg(long)]
    pub height: usize,
    #[arg(long)]
    pub width: usize,
    /// The colour map as drawn (PNG).
    #[arg(long)]
    pub out_color: PathBuf,
    /// Its labels (PNG of palette ids; 16-bit when the palette has ids above 255).
    #[arg(long)]
    pub out_labels: PathBuf,
    #[arg(long, default_value_t = TEXT2MASK_STEPS)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// ddim, pndm, euler, euler-a, dpmpp-2m, lms or heun; default: the model's own.
    #[arg(long, value_parser = SchedulerKind::from_str)]
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas (euler, dpmpp-2m, heun, lms), as diffusers' `use_karras_sigmas=True`.
    #[arg(long)]
    pub karras_sigmas: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pixels farther than this (RGB distance) from every colour are left unlabelled (0).
    #[arg(long)]
    pub max_distance: Option<f64>,
    /// Segments (4-connected pixels of one class) smaller than this many pixels take the class
    /// of the neighbour they share the longest border with; 0 keeps every pixel's nearest colour.
    #[arg(long, default_value_t = 0)]
    pub min_area: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

/// Runs `text2mask`; prints a one-line summary.
pub fn run(args: Text2MaskArgs) -> Result<()> {
    let palette = load_palette(&args.palette)?;
    let options = SynthesisOptions {
        negative_prompt: args.negative_prompt.clone(),
        height: Some(args.height),
        width: Some(args.width),
        mask_steps: args.steps,
        guidance: args.guidance,
        scheduler: args.scheduler,
        karras_sigmas: args.karras_sigmas,
        max_distance: args.max_distance,
        min_area: args.min_area,
        ..Default::default()
    };
    options.check()?;
    let selected = device::select(args.device, args.dtype)?;
    let sd = model::load_logged(&args.model, None, &selected.device, selected.dtype)?;
    sd.check_size(args.height, args.width)?;
    let params = options.params(
        &args.prompt,
        [args.height, args.width],
        args.steps,
        args.seed,
        vec![],
    );
    let decode = DecodeOptions {
        max_distance: args.max_distance,
        min_area: args.min_area,
        ..DecodeOptions::for_palette(&palette)
    };
    let bar = indicatif::ProgressBar::new(args.steps as u64);
    let drawn = now(text2mask(
        &sd,
        &params,
        &palette,
        &decode,
        Readback::Blocking,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    ))?;
    bar.finish_and_clear();
    let c = &drawn.color;
    write_png(
        &args.out_color,
        c.width,
        c.height,
        &c.rgb,
        ExtendedColorType::Rgb8,
    )?;
    let labels = drawn.labels();
    let png = labels.to_png(&args.out_labels.display().to_string())?;
    crate::write_bytes_atomically(&args.out_labels, &png)?;
    println!(
        "{}, {}: {}x{}, {} instances of {} classes",
        args.out_color.display(),
        args.out_labels.display(),
        args.width,
        args.height,
        drawn.instances.classes.len(),
        {
            let mut classes = drawn.instances.classes.clone();
            classes.sort_unstable();
            classes.dedup();
            classes.len()
        }
    );
    Ok(())
}
