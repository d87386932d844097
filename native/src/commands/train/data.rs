//! Training data: a folder of images with a captions file, read and batched reproducibly.
//!
//! The captions file is the shapes world's `captions.jsonl` (`{"image", "caption", "colors",
//! ...}`, paths relative to the folder) or a Hugging Face image folder's `metadata.jsonl`
//! (`{"file_name", "text"}`). `--image-field` picks another path field as the training image
//! (`colors`: the colour maps, for Text2Mask) and `--conditioning-field` the ControlNet's
//! conditioning image (`colors` for Mask2Img).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One training example.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: PathBuf,
    /// The captions it may be trained with (one is drawn per use).
    pub captions: Vec<String>,
    pub conditioning: Option<PathBuf>,
    /// The label map (pixel = category id) and the objects drawn, when the captions file
    /// has them (the shapes world's `labels` and `objects`): what token grounding needs.
    pub objects: Option<ObjectLabels>,
}

/// An example's label map and the `(name, category id)` of each object in it.
#[derive(Debug, Clone)]
pub struct ObjectLabels {
    pub labels: PathBuf,
    pub objects: Vec<(String, u32)>,
}

/// The examples of a data folder, all images of one size.
#[derive(Debug)]
pub struct TrainingData {
    pub examples: Vec<Example>,
    /// `(width, height)` of every image.
    pub size: (u32, u32),
}

impl TrainingData {
    /// The images of `dir` without captions (for a VAE): through its captions file when it
    /// has one, else every PNG and JPEG in it.
    pub fn open_images(dir: &Path, image_field: &str) -> Result<Self> {
        if captions_file(dir).is_some() {
            return Self::open(dir, image_field, &[], None);
        }
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        let mut images: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                matches!(ext.as_str(), "png" | "jpg" | "jpeg")
            })
            .collect();
        images.sort();
        let examples = images
            .into_iter()
            .map(|image| Example {
                image,
                captions: Vec::new(),
                conditioning: None,
                objects: None,
            })
            .collect();
        Self::checked(examples, &dir.display().to_string())
    }

    /// Reads `dir`'s captions file and checks that every image exists and has the same size.
    /// `caption_fields` name the captions of an example (fields or JSON pointers such as
    /// `/objects/0/caption`; empty: `caption` or `text`).
    pub fn open(
        dir: &Path,
        image_field: &str,
        caption_fields: &[String],
        conditioning_field: Option<&str>,
    ) -> Result<Self> {
        let (file, text) = captions_file(dir).with_context(|| {
            format!(
                "{}: no captions file (captions.jsonl as `maskforge shapes` writes, or an \
                 image folder's metadata.jsonl with file_name and text)",
                dir.display()
            )
        })?;
        let mut examples = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("{} line {}", file.display(), n + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: invalid JSON", at()))?;
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
            };
            let image_names: &[&str] = if image_field == "image" {
                &["image", "file_name"]
            } else {
                &[image_field]
            };
            let image =
                field(image_names).with_context(|| format!("{}: no `{image_field}` path", at()))?;
            let captions = if caption_fields.is_empty() {
                vec![
                    field(&["caption", "text"])
                        .with_context(|| format!("{}: no caption (`caption` or `text`)", at()))?,
                ]
            } else {
                caption_fields
                    .iter()
                    .map(|f| {
                        let value = if f.starts_with('/') {
                            v.pointer(f)
                        } else {
                            v.get(f)
                        };
                        value
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                            .with_context(|| format!("{}: no caption `{f}`", at()))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let conditioning = match conditioning_field {
                Some(f) => {
                    Some(dir.join(field(&[f]).with_context(|| format!("{}: no `{f}` path", at()))?))
                }
                None => None,
            };
            let objects = field(&["labels"]).map(|labels| ObjectLabels {
                labels: dir.join(labels),
                objects: v
                    .get("objects")
                    .and_then(|o| o.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|o| {
                        let name = o.get("name")?.as_str()?.to_string();
                        Some((name, u32::try_from(o.get("category_id")?.as_u64()?).ok()?))
                    })
                    .collect(),
            });
            examples.push(Example {
                image: dir.join(image),
                captions,
                conditioning,
                objects,
            });
        }
        Self::checked(examples, &file.display().to_string())
    }

    /// The examples of `origin` once every image is readable and of one size.
    fn checked(examples: Vec<Example>, origin: &str) -> Result<Self> {
        if examples.is_empty() {
            bail!("{origin}: no examples");
        }
        let mut size = None;
        for ex in &examples {
            for path in std::iter::once(&ex.image).chain(&ex.conditioning) {
                let dims = image::image_dimensions(path)
                    .with_context(|| format!("{}: cannot read the image", path.display()))?;
                match size {
                    None => size = Some((dims, path.clone())),
                    Some((first, ref first_path)) if first != dims => bail!(
                        "{}: {}×{} pixels, but {} has {}×{}: the images of a data folder must \
                         all have one size",
                        path.display(),
                        dims.0,
                        dims.1,
                        first_path.display(),
                        first.0,
                        first.1
                    ),
                    _ => {}
                }
            }
        }
        let size = size.expect("at least one example").0;
        Ok(Self { examples, size })
    }

    /// The example indices of micro-batch `k` (of `batch` examples): the examples in a
    /// shuffled order per epoch, drawn from `seed` and the epoch only, so a resumed run
    /// sees the same batches.
    pub fn batch_indices(&self, seed: u64, k: usize, batch: usize) -> Vec<usize> {
        let n = self.examples.len();
        // One shuffle per epoch the batch touches (a batch spans at most a few).
        let mut order: Option<(usize, Vec<usize>)> = None;
        (k * batch..(k + 1) * batch)
            .map(|i| {
                let epoch = i / n;
                if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    let mut shuffled: Vec<usize> = (0..n).collect();
                    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(
                        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ));
                    order = Some((epoch, shuffled));
                }
                order.as_ref().expect("set above").1[i % n]
            })
            .collect()
    }
}

fn captions_file(dir: &Path) -> Option<(PathBuf, String)> {
    ["captions.jsonl", "metadata.jsonl"]
        .iter()
        .map(|name| dir.join(name))
        .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
}

/// Images as a `[B, 3, H, W]` tensor in `[lo, hi]` (`[-1, 1]` for the VAE, `[0, 1]` for a
/// ControlNet's conditioning).
pub fn load_images(paths: &[&Path], device: &Device, lo: f32, hi: f32) -> Result<Tensor<4>> {
    let mut data = Vec::new();
    let mut dims = (0, 0);
    for path in paths {
        let img = image::open(path)
            .with_context(|| format!("{}: cannot read the image", path.display()))?
            .to_rgb8();
        dims = img.dimensions();
        let (w, h) = (dims.0 as usize, dims.1 as usize);
        let mut planes = vec![0f32; 3 * w * h];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                planes[c * w * h + i] = lo + (hi - lo) * p.0[c] as f32 / 255.0;
            }
        }
        data.extend(planes);
    }
    let shape = [paths.len(), 3, dims.1 as usize, dims.0 as usize];
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}
