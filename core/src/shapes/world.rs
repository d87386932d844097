//! The shapes world as a dataset generator: sample k is the scene of seed `base + k`, with its
//! image, label map, colour map, instance annotations and captions; the run also holds the
//! palette, `prompts.jsonl` and `captions.jsonl`.
//!
//! A dataset folder:
//! - `images/<id>.png`: the scenes;
//! - `annotations/<id>.png`: ADE-style label maps (8-bit class ids, 0 background);
//! - `colors/<id>.png`: the label maps in `palette.json`'s colours (SegGen's colour maps);
//! - `annotations.json` (LVIS/COCO, RLE instance masks), `manifest.jsonl`, `run.json`,
//!   `samples/`;
//! - `prompts.jsonl`: `{"labels": "<id>.png", "caption"}` per image, label paths relative to
//!   `annotations/`;
//! - `captions.jsonl`: per image its files, scene caption and each object's captions.

use std::sync::Arc;

use serde::Serialize;

use super::captions::single_caption;
use super::classes::{category_objects, palette, palette_json};
use super::record::{ObjectRecord, ShapesDetails, ShapesRecord};
use super::render::render;
use super::scene::{MAX_OBJECTS, sample_scene};
use crate::dataset::run::collect;
use crate::dataset::{
    AnnotationRecord, DatasetRun, HostWork, ImageRecord, RunFile, SampleGenerator, SampleId,
    SampleOutput, SampleRecord, Storage, image_file_name,
};
use crate::error::{Error, Result};
use image::ExtendedColorType;

use crate::imaging::encode::{encode_image, encode_png};
use crate::seggen::{LabelMap, Palette, colorize_semantic};

/// `info.description` of shapes datasets.
pub const DESCRIPTION: &str = "Synthetic shapes world rendered by MaskForge (exact instance masks)";
/// The `model` of the run and its records.
pub const MODEL: &str = "shapes";
/// Smallest and largest image side.
pub const MIN_SIZE: usize = 32;
pub const MAX_SIZE: usize = 4096;

pub const IMAGES_DIR: &str = "images";
pub const LABELS_DIR: &str = "annotations";
pub const COLORS_DIR: &str = "colors";
pub const PALETTE_FILE: &str = "palette.json";
pub const PROMPTS_FILE: &str = "prompts.jsonl";
pub const CAPTIONS_FILE: &str = "captions.jsonl";

/// What `run.json` holds besides the common run fields.
#[derive(Debug, Clone, Serialize)]
pub struct ShapesSettings {
    pub size: usize,
    /// Written only when below [`MAX_OBJECTS`], so older runs keep their `run.json`.
    #[serde(skip_serializing_if = "all_objects")]
    pub max_objects: usize,
}

fn all_objects(n: &usize) -> bool {
    *n == MAX_OBJECTS
}

/// Scenes of `size × size` pixels.
#[derive(Debug, Clone)]
pub struct ShapesWorld {
    size: usize,
    max_objects: usize,
    palette: Palette,
}

impl ShapesWorld {
    /// Checks `size` (`MIN_SIZE..=MAX_SIZE`).
    pub fn new(size: usize) -> Result<Self> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
            return Err(Error::Invalid(format!(
                "image size {size} is out of range: use {MIN_SIZE} to {MAX_SIZE} pixels"
            )));
        }
        Ok(Self {
            size,
            max_objects: MAX_OBJECTS,
            palette: palette(),
        })
    }

    /// Scenes of 1 to `n` objects (`1..=MAX_OBJECTS`) instead of up to [`MAX_OBJECTS`].
    pub fn with_max_objects(mut self, n: usize) -> Result<Self> {
        if !(1..=MAX_OBJECTS).contains(&n) {
            return Err(Error::Invalid(format!(
                "at most {n} objects per scene is out of range: use 1 to {MAX_OBJECTS}"
            )));
        }
        self.max_objects = n;
        Ok(self)
    }

    /// The run of `num_images` (at least 1) samples from `seed`.
    pub fn run_file(&self, num_images: u64, seed: u64) -> Result<RunFile<ShapesSettings>> {
        if num_images == 0 {
            return Err(Error::Invalid(
                "the number of images must be at least 1".into(),
            ));
        }
        Ok(RunFile {
            model: MODEL.into(),
            num_images,
            seed,
            categories: category_objects(),
            settings: ShapesSettings {
                size: self.size,
                max_objects: self.max_objects,
            },
        })
    }

    /// Sample `sample`: its record and files.
    pub fn sample(&self, sample: SampleId) -> Result<SampleOutput<ShapesDetails>> {
        let size = self.size;
        let scene = sample_scene(sample.seed, size, self.max_objects);
        if scene.objects.is_empty() {
            return Err(Error::Invalid(format!(
                "sample {}: no shape could be placed",
                sample.index
            )));
        }
        let rendered = render(&scene);
        let image_id = sample.image_id();
        let file_name = image_file_name(image_id, "png");
        let mut annotations = Vec::new();
        let mut objects = Vec::new();
        for (k, o) in scene.objects.iter().enumerate() {
            let category_id = o.class.id() as u64;
            let mask = rendered.mask(k);
            annotations.push(AnnotationRecord::from_mask(
                &mask,
                size,
                size,
                image_id,
                category_id,
            )?);
            objects.push(ObjectRecord {
                category_id,
                name: o.class.name().into(),
                color: o.color.name.into(),
                rgb: o.color.rgb,
                center: o.pose.center,
                radius: o.pose.radius,
                rotation: o.pose.rotation,
                area: o.area,
                full_area: o.full_area,
                caption: single_caption(o.class.name(), Some(o.color.name)),
                caption_plain: single_caption(o.class.name(), None),
            });
        }
        let labels = LabelMap::new(
            size,
            size,
            rendered.labels.iter().map(|&l| l as u16).collect(),
        )?;
        let colors = colorize_semantic(&self.palette, &labels)?;
        let paths = [IMAGES_DIR, LABELS_DIR, COLORS_DIR].map(|d| format!("{d}/{file_name}"));
        let files = vec![
            (
                paths[0].clone(),
                encode_image(rendered.rgb, size, size, &paths[0])?,
            ),
            (
                paths[1].clone(),
                encode_png(
                    &paths[1],
                    &rendered.labels,
                    size,
                    size,
                    ExtendedColorType::L8,
                )?,
            ),
            (
                paths[2].clone(),
                encode_image(colors.rgb, size, size, &paths[2])?,
            ),
        ];
        let [image_path, labels_path, colors_path] = paths;
        let record = SampleRecord {
            id: image_id,
            index: sample.index,
            seed: sample.seed,
            kept: true,
            reason: None,
            model: MODEL.into(),
            scheduler: "none".into(),
            steps: 0,
            details: ShapesDetails {
                size,
                labels: labels_path,
                colors: colors_path,
                caption: scene.caption(),
                background: scene.background,
                objects,
                image: Some(ImageRecord {
                    id: image_id,
                    file_name,
                    coco_url: image_path,
                    width: size,
                    height: size,
                    neg_category_ids: vec![],
                    not_exhaustive_category_ids: vec![],
                }),
                annotations,
            },
        };
        Ok(SampleOutput { record, files })
    }
}

impl SampleGenerator for ShapesWorld {
    type Details = ShapesDetails;
    /// Nothing is fixed before the host work, which draws the scene and renders it.
    type Plan = SampleId;
    const DESCRIPTION: &'static str = DESCRIPTION;

    fn plan(&self, sample: SampleId) -> Result<SampleId> {
        Ok(sample)
    }

    fn run(
        &self,
        sample: SampleId,
        _on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<HostWork<ShapesDetails>> {
        let world = self.clone();
        Ok(Box::new(move || world.sample(sample)))
    }
}

/// Starts or rejoins `run` in `storage` (see [`DatasetRun::open`]) and writes `palette.json`.
pub fn start(storage: Arc<dyn Storage>, run: &RunFile<ShapesSettings>) -> Result<DatasetRun> {
    let dataset = DatasetRun::open(storage.clone(), run)?;
    storage.write(PALETTE_FILE, &palette_json())?;
    Ok(dataset)
}

/// Assembles a finished run: `annotations.json`, `manifest.jsonl`, `prompts.jsonl` and
/// `captions.jsonl`. Returns the records, sorted by sample.
pub fn finish(storage: &dyn Storage) -> Result<Vec<ShapesRecord>> {
    let records: Vec<ShapesRecord> = collect(storage, DESCRIPTION)?;
    storage.write(PROMPTS_FILE, &prompts_jsonl(&records))?;
    storage.write(CAPTIONS_FILE, &captions_jsonl(&records))?;
    Ok(records)
}

fn jsonl<T: Serialize>(lines: impl Iterator<Item = T>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, &line).expect("records serialise");
        out.push(b'\n');
    }
    out
}

/// The label map's file name (in [`LABELS_DIR`]) and the scene caption of each image.
pub fn prompts_jsonl(records: &[ShapesRecord]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a> {
        labels: &'a str,
        caption: &'a str,
    }
    jsonl(records.iter().filter_map(|r| {
        let image = r.details.image.as_ref()?;
        Some(Line {
            labels: &image.file_name,
            caption: &r.details.caption,
        })
    }))
}

/// Each image's files (relative to the dataset folder), its scene caption, and each object's
/// captions with and without its colour.
pub fn captions_jsonl(records: &[ShapesRecord]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Object<'a> {
        category_id: u64,
        name: &'a str,
        color: &'a str,
        caption: &'a str,
        caption_plain: &'a str,
    }
    #[derive(Serialize)]
    struct Line<'a> {
        image: &'a str,
        labels: &'a str,
        colors: &'a str,
        caption: &'a str,
        objects: Vec<Object<'a>>,
    }
    jsonl(records.iter().filter_map(|r| {
        let image = r.details.image.as_ref()?;
        Some(Line {
            image: &image.coco_url,
            labels: &r.details.labels,
            colors: &r.details.colors,
            caption: &r.details.caption,
            objects: r
                .details
                .objects
                .iter()
                .map(|o| Object {
                    category_id: o.category_id,
                    name: &o.name,
                    color: &o.color,
                    caption: &o.caption,
                    caption_plain: &o.caption_plain,
                })
                .collect(),
        })
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::dataset::{Inline, MemoryStorage, Progress, Quiet, Shard, generate_samples};
    use crate::seggen::{ColorMap, DecodeOptions, decode};
    use crate::shapes::colors::{is_background_color, is_object_color};

    /// A whole run in memory: its files, by path.
    fn run(size: usize, num_images: u64, seed: u64) -> BTreeMap<String, Vec<u8>> {
        let storage = Arc::new(MemoryStorage::new());
        let world = ShapesWorld::new(size).unwrap();
        let run_file = world.run_file(num_images, seed).unwrap();
        let dataset = start(storage.clone(), &run_file).unwrap();
        let progress: Arc<dyn Progress> = Arc::new(Quiet);
        let samples = run_file.samples(Shard::WHOLE);
        let made = generate_samples(&world, &dataset, samples, &mut Inline, &progress).unwrap();
        assert_eq!(made as u64, num_images);
        finish(storage.as_ref()).unwrap();
        drop(dataset);
        Arc::try_unwrap(storage).unwrap().into_files()
    }

    fn lines(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The files read back: annotations decode to the label map's pixels, the colour map
    /// decodes to the label map, the image obeys the colour rule, and every caption file
    /// points at files that exist.
    #[test]
    fn a_run_reads_back() {
        let files = run(72, 6, 40);
        let annotations: Value = serde_json::from_slice(&files["annotations.json"]).unwrap();
        assert_eq!(annotations["info"]["description"], DESCRIPTION);
        let categories = annotations["categories"].as_array().unwrap();
        assert_eq!(categories.len(), 10);
        assert_eq!(categories[3]["name"], "star");
        let images = annotations["images"].as_array().unwrap();
        assert_eq!(images.len(), 6);
        let palette = Palette::from_json(PALETTE_FILE, &files[PALETTE_FILE]).unwrap();
        let mut covered: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for a in annotations["annotations"].as_array().unwrap() {
            let id = a["image_id"].as_u64().unwrap();
            let rle = hotcoco::mask::rle_from_string(
                a["segmentation"]["counts"].as_str().unwrap(),
                72,
                72,
            )
            .unwrap();
            let column_major = hotcoco::mask::decode(&rle);
            let area = column_major.iter().filter(|&&v| v == 1).count();
            assert!(area > 0 && area as f64 == a["area"].as_f64().unwrap());
            let labels = image::load_from_memory(&files[&format!("annotations/{id:012}.png")])
                .unwrap()
                .into_luma8()
                .into_raw();
            let cover = covered.entry(id).or_insert_with(|| vec![0; 72 * 72]);
            for x in 0..72 {
                for y in 0..72 {
                    if column_major[x * 72 + y] == 1 {
                        assert_eq!(
                            labels[y * 72 + x] as u64,
                            a["category_id"].as_u64().unwrap()
                        );
                        cover[y * 72 + x] += 1;
                    }
                }
            }
        }
        for image in images {
            let name = image["file_name"].as_str().unwrap();
            let id = image["id"].as_u64().unwrap();
            let labels = image::load_from_memory(&files[&format!("annotations/{name}")]).unwrap();
            assert!(matches!(labels, image::DynamicImage::ImageLuma8(_)));
            let labels = labels.into_luma8().into_raw();
            let cover = &covered[&id];
            assert!(labels.iter().zip(cover).all(|(&l, &c)| c == (l != 0) as u8));
            let rgb = image::load_from_memory(&files[&format!("images/{name}")])
                .unwrap()
                .into_rgb8()
                .into_raw();
            for (i, &l) in labels.iter().enumerate() {
                let c = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
                assert_eq!(is_object_color(c), l != 0);
                assert!(l != 0 || is_background_color(c));
            }
            let colors = image::load_from_memory(&files[&format!("colors/{name}")])
                .unwrap()
                .into_rgb8()
                .into_raw();
            let decoded = decode(
                &palette,
                &ColorMap::new(72, 72, colors).unwrap(),
                &DecodeOptions::default(),
            )
            .unwrap();
            let back: Vec<u8> = decoded.labels.iter().map(|&v| v as u8).collect();
            assert_eq!(back, labels);
        }
        let prompts = lines(&files[PROMPTS_FILE]);
        let captions = lines(&files[CAPTIONS_FILE]);
        assert_eq!((prompts.len(), captions.len()), (6, 6));
        for (p, c) in prompts.iter().zip(&captions) {
            let labels = p["labels"].as_str().unwrap();
            assert!(files.contains_key(&format!("{LABELS_DIR}/{labels}")));
            assert_eq!(p.as_object().unwrap().len(), 2);
            assert_eq!(p["caption"], c["caption"]);
            for key in ["image", "labels", "colors"] {
                assert!(files.contains_key(c[key].as_str().unwrap()), "{key}");
            }
            for o in c["objects"].as_array().unwrap() {
                let (color, name) = (o["color"].as_str().unwrap(), o["name"].as_str().unwrap());
                assert!(
                    c["caption"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("{color} {name}"))
                );
                assert_eq!(
                    o["caption"],
                    format!("a photo of a single {color} {name}").as_str()
                );
                assert_eq!(
                    o["caption_plain"],
                    format!("a photo of a single {name}").as_str()
                );
            }
        }
        let manifest = lines(&files["manifest.jsonl"]);
        assert_eq!(manifest.len(), 6);
        assert_eq!(manifest[0]["seed"], 40);
        assert!(manifest[5]["objects"][0]["area"].as_u64().is_some());
    }

    #[test]
    fn runs_are_byte_identical() {
        let a = run(48, 3, 7);
        assert_eq!(a, run(48, 3, 7));
        assert_ne!(
            a["images/000000000001.png"],
            run(48, 3, 8)["images/000000000001.png"]
        );
    }

    #[test]
    fn bad_sizes_and_counts_are_refused() {
        for size in [0, 31, 4097] {
            let e = ShapesWorld::new(size).unwrap_err().to_string();
            assert!(e.contains(&format!("image size {size}")), "{e}");
        }
        let e = ShapesWorld::new(32).unwrap().run_file(0, 0).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
}
