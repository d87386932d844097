//! `maskforge palette`: SegGen's colour maps: masks to colour maps (`colorize`) and back
//! (`decode`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use image::{DynamicImage, ExtendedColorType};
use maskforge_core::imaging::encode::encode_png;
use maskforge_core::seggen::{
    self, ColorMap, DEFAULT_EDGE_COLOR, DecodeOptions, LabelMap, Palette,
};

/// Arguments of `maskforge palette`.
#[derive(Debug, Args)]
pub struct PaletteArgs {
    #[command(subcommand)]
    pub command: PaletteCommand,
}

/// The two directions of the conversion.
#[derive(Debug, Subcommand)]
pub enum PaletteCommand {
    /// Draw a mask as a colour map: a semantic label PNG (`--labels`), or a COCO panoptic PNG
    /// with its segments JSON (`--panoptic`, `--segments`), boundaries between segments in the
    /// edge colour.
    Colorize(ColorizeArgs),
    /// Read a colour map back as a label PNG: each pixel gets the class of the nearest palette
    /// colour (black is 0); edge-coloured pixels get the class of the nearest instance.
    Decode(DecodeArgs),
}

/// Arguments of `maskforge palette colorize`.
#[derive(Debug, Args)]
pub struct ColorizeArgs {
    /// `ade20k`, `coco-panoptic`, `shapes` (the shapes world's classes) or a JSON file: a list of
    /// `{"id", "name", "color": [r, g, b]}`.
    #[arg(long)]
    pub palette: String,
    /// A semantic label PNG (8- or 16-bit grayscale class ids, 0 unlabelled).
    #[arg(
        long,
        required_unless_present = "panoptic",
        conflicts_with = "panoptic"
    )]
    pub labels: Option<PathBuf>,
    /// A COCO panoptic PNG (segment id = R + 256·G + 256²·B, 0 void).
    #[arg(long, requires = "segments")]
    pub panoptic: Option<PathBuf>,
    /// The panoptic PNG's segments: a COCO panoptic annotation (with `segments_info`) or a
    /// list of `{"id", "category_id"}`.
    #[arg(long, requires = "panoptic")]
    pub segments: Option<PathBuf>,
    /// Colour of the boundaries between segments, `R,G,B` (default 120,255,70).
    #[arg(long, value_parser = parse_rgb, requires = "panoptic")]
    pub edge_color: Option<[u8; 3]>,
    /// The colour map (PNG).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `maskforge palette decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// `ade20k`, `coco-panoptic`, `shapes` (the shapes world's classes) or a JSON file: a list of
    /// `{"id", "name", "color": [r, g, b]}`.
    #[arg(long)]
    pub palette: String,
    /// The colour map (PNG, JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// The label PNG: 8-bit, or 16-bit when the palette has ids above 255.
    #[arg(long)]
    pub out: PathBuf,
    /// Pixels farther than this (RGB distance) from every colour are left unlabelled (0).
    #[arg(long, allow_negative_numbers = true)]
    pub max_distance: Option<f64>,
    /// Colour of the edges between segments, `R,G,B` (default 120,255,70, unless the palette
    /// uses it for a class: then no colour marks edges).
    #[arg(long, value_parser = parse_rgb)]
    pub edge_color: Option<[u8; 3]>,
    /// Segments (4-connected pixels of one class) smaller than this many pixels take the class
    /// of the neighbour they share the longest border with; 0 keeps every pixel's nearest colour.
    #[arg(long, default_value_t = 0)]
    pub min_area: usize,
}

/// Runs `palette colorize` or `palette decode`; prints a one-line summary.
pub fn run(args: PaletteArgs) -> Result<()> {
    match args.command {
        PaletteCommand::Colorize(args) => colorize(args),
        PaletteCommand::Decode(args) => decode(args),
    }
}

fn colorize(args: ColorizeArgs) -> Result<()> {
    let palette = load_palette(&args.palette)?;
    let colors = match (&args.labels, &args.panoptic, &args.segments) {
        (Some(labels), _, _) => {
            let map = read_labels(labels)?;
            seggen::colorize_semantic(&palette, &map)
                .map_err(|e| anyhow!("{}: {e}", labels.display()))?
        }
        (None, Some(png), Some(json)) => {
            let map = read_rgb(png, false)?;
            let bytes = read(json)?;
            let segments = seggen::parse_segments(&json.display().to_string(), &bytes)?;
            let edge = args.edge_color.unwrap_or(DEFAULT_EDGE_COLOR);
            seggen::colorize_panoptic(&palette, &map, &segments, edge)
                .map_err(|e| anyhow!("{} with {}: {e}", png.display(), json.display()))?
        }
        _ => bail!("give --labels, or --panoptic with --segments"),
    };
    write_png(
        &args.out,
        colors.width,
        colors.height,
        &colors.rgb,
        ExtendedColorType::Rgb8,
    )?;
    println!(
        "{}: {}x{} colour map",
        args.out.display(),
        colors.width,
        colors.height
    );
    Ok(())
}

fn decode(args: DecodeArgs) -> Result<()> {
    let palette = load_palette(&args.palette)?;
    let map = read_rgb(&args.image, true)?;
    let defaults = DecodeOptions::for_palette(&palette);
    let options = DecodeOptions {
        max_distance: args.max_distance,
        edge_color: args.edge_color.or(defaults.edge_color),
        min_area: args.min_area,
    };
    let decoded = seggen::decode(&palette, &map, &options)
        .map_err(|e| anyhow!("{}: {e}", args.image.display()))?;
    let instances = seggen::instances(&decoded);
    let labels = instances.semantic();
    let file = args.out.display().to_string();
    let png = if palette.max_id() > 255 {
        let bytes: Vec<u8> = labels.ids.iter().flat_map(|v| v.to_ne_bytes()).collect();
        encode_png(
            &file,
            &bytes,
            labels.width,
            labels.height,
            ExtendedColorType::L16,
        )?
    } else {
        labels.to_png(&file)?
    };
    crate::write_bytes_atomically(&args.out, &png)?;
    let edges = decoded.edges.iter().filter(|&&e| e).count();
    println!(
        "{}: {}x{} labels, {} instances, {edges} edge pixels",
        args.out.display(),
        labels.width,
        labels.height,
        instances.classes.len()
    );
    Ok(())
}

/// A shipped palette by name, or a palette JSON file.
pub(crate) fn load_palette(spec: &str) -> Result<Palette> {
    if let Some(p) = Palette::builtin(spec) {
        return Ok(p);
    }
    let path = Path::new(spec);
    if !path.exists() && !spec.ends_with(".json") {
        bail!("unknown palette `{spec}`: use ade20k, coco-panoptic, shapes or a JSON file");
    }
    Ok(Palette::from_json(spec, &read(path)?)?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Decodes the image file at `path` (format guessed from its content); errors name the file.
pub(crate) fn read_image(path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a readable image", path.display()))
}

/// An 8- or 16-bit grayscale label PNG.
pub(crate) fn read_labels(path: &Path) -> Result<LabelMap> {
    Ok(LabelMap::from_png(
        &path.display().to_string(),
        &read(path)?,
    )?)
}

/// An RGB image; `any` accepts every colour type (converted), else only 8-bit RGB(A), as a
/// panoptic PNG must be.
fn read_rgb(path: &Path, any: bool) -> Result<ColorMap> {
    let img = read_image(path)?;
    if !any
        && !matches!(
            img,
            DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_)
        )
    {
        bail!(
            "{}: a panoptic PNG must be 8-bit RGB (segment id = R + 256·G + 256²·B), not {:?}",
            path.display(),
            img.color()
        );
    }
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(ColorMap::new(w as usize, h as usize, rgb.into_raw())?)
}

pub(crate) fn write_png(
    path: &Path,
    w: usize,
    h: usize,
    bytes: &[u8],
    color: ExtendedColorType,
) -> Result<()> {
    let png = encode_png(&path.display().to_string(), bytes, w, h, color)?;
    crate::write_bytes_atomically(path, &png)
}

/// Parses `R,G,B` with components in 0..=255.
fn parse_rgb(s: &str) -> Result<[u8; 3], String> {
    let parts: Vec<_> = s.split(',').map(|p| p.trim().parse::<u8>()).collect();
    match parts.as_slice() {
        [Ok(r), Ok(g), Ok(b)] => Ok([*r, *g, *b]),
        _ => Err(format!("`{s}` is not R,G,B with each in 0..=255")),
    }
}
