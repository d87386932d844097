//! `maskforge merge`: appends synthetic COCO/LVIS annotation files to an existing dataset.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Arguments of `maskforge merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The dataset to merge into (COCO/LVIS JSON, e.g. lvis_v1_train.json); streamed twice,
    /// never loaded whole.
    #[arg(long)]
    pub base: PathBuf,
    /// A (small) COCO/LVIS file whose images, annotations and categories are added; repeat
    /// for more. Its images and annotations get new ids after the base's largest.
    #[arg(long = "add", required = true)]
    pub adds: Vec<PathBuf>,
    /// The merged dataset, written atomically; must not be an input.
    #[arg(long)]
    pub out: PathBuf,
    /// Leave out added annotations whose detector agreement (`maskforge score`, then
    /// `collect`) is below this.
    #[arg(long)]
    pub min_agreement: Option<f64>,
}

/// Runs `merge`: prints a one-line summary.
pub fn run(args: MergeArgs) -> Result<()> {
    let summary = crate::merge::merge_files(&args.base, &args.adds, &args.out, args.min_agreement)?;
    println!("{}: {summary}", args.out.display());
    Ok(())
}
