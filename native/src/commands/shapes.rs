//! `maskforge shapes`: the shapes world, a dataset with exact ground truth (images, LVIS/COCO
//! annotations, label maps, colour maps, palette, captions).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use maskforge_core::dataset::run::SAMPLES_DIR;
use maskforge_core::dataset::{Progress, Shard, generate_samples};
use maskforge_core::shapes::world::{COLORS_DIR, IMAGES_DIR, LABELS_DIR};
use maskforge_core::shapes::{self, ShapesWorld};

use crate::pool::WriterPool;
use crate::storage::DirStorage;

/// Arguments of `maskforge shapes`.
#[derive(Debug, Args)]
pub struct ShapesArgs {
    /// Number of images.
    #[arg(long)]
    pub num_images: u64,
    /// Width and height of the images, 32 to 4096 pixels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// At most this many objects per scene (1 to 4): 1 gives single-object images, as
    /// MosaicFusion's regions.
    #[arg(long, default_value_t = 4)]
    pub max_objects: usize,
    /// Base seed: image k is the scene of seed + k.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Counts finished samples on an indicatif bar.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn sample_done(&self) {
        self.0.inc(1);
    }
}

/// Runs `shapes`; a rerun into the same folder keeps the images already made.
pub fn run(args: ShapesArgs) -> Result<()> {
    let world = ShapesWorld::new(args.size)
        .context("--size")?
        .with_max_objects(args.max_objects)
        .context("--max-objects")?;
    let run_file = world
        .run_file(args.num_images, args.seed)
        .context("--num-images")?;
    let folders = [IMAGES_DIR, LABELS_DIR, COLORS_DIR, SAMPLES_DIR];
    let storage = Arc::new(DirStorage::create(&args.out, &folders)?);
    let dataset = shapes::start(storage.clone(), &run_file)?;
    let indices: BTreeSet<u64> = (0..args.num_images).collect();
    for folder in folders {
        storage.remove_stale_temporaries(folder, &indices)?;
    }

    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.num_images).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images {per_sec} {elapsed} (eta {eta})",
            )
            .expect("static template"),
        )
    };
    let progress: Arc<dyn Progress> = Arc::new(Bar(bar.clone()));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut pool = WriterPool::new(threads)?;
    let start = Instant::now();
    let made = generate_samples(
        &world,
        &dataset,
        run_file.samples(Shard::WHOLE),
        &mut pool,
        &progress,
    )?;
    bar.finish_and_clear();
    let records = shapes::finish(storage.as_ref())?;
    let objects: usize = records.iter().map(|r| r.details.annotations.len()).sum();
    let occluded = records
        .iter()
        .flat_map(|r| &r.details.objects)
        .filter(|o| o.area < o.full_area)
        .count();
    eprintln!(
        "{}: {} images ({made} made now) with {objects} objects ({occluded} partly hidden) in {:.2}s",
        args.out.display(),
        records.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
