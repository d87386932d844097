//! A SegGen sample's files and record: the image, the label map (ADE20K layout) and, where the
//! mask was drawn, the colour map, the panoptic PNG with its segments and the instances.

use image::ExtendedColorType;

use super::record::{SegGenDetails, SegmentInfo};
use super::text2mask::DrawnMask;
use super::{Instances, LabelMap, Palette, segment_color};
use crate::dataset::{AnnotationRecord, SampleId, SampleOutput, SampleRecord};
use crate::imaging::encode::encode_png;
use crate::{Error, Result};

/// Folders of a SegGen dataset, relative to its root.
pub const IMAGES_DIR: &str = "images";
pub const LABELS_DIR: &str = "annotations";
pub const COLORS_DIR: &str = "colors";
pub const PANOPTIC_DIR: &str = "panoptic";

/// A sample as the device leaves it: its record without the file fields, the image and the mask.
#[derive(Debug, Clone)]
pub struct SegGenSample {
    pub sample: SampleId,
    pub model: String,
    pub scheduler: String,
    pub steps: usize,
    /// The record's details; `image`, `labels`, `color`, `panoptic`, `segments` and
    /// `annotations` are filled by [`SegGenSample::into_output`].
    pub details: SegGenDetails,
    /// Interleaved RGB, `[height, width, 3]`.
    pub rgb: Vec<u8>,
    pub labels: LabelMap,
    /// MaskSyn: the drawing the labels were read from.
    pub drawn: Option<DrawnMask>,
}

impl SegGenSample {
    /// Encodes the files and completes the record.
    pub fn into_output(self, palette: &Palette) -> Result<SampleOutput<SegGenDetails>> {
        let stem = format!("{:012}", self.sample.image_id());
        let (w, h) = (self.labels.width, self.labels.height);
        if self.rgb.len() != w * h * 3 {
            return Err(Error::Invalid(format!(
                "sample {}: the image is not {w}x{h}",
                self.sample.index
            )));
        }
        let mut details = self.details;
        let mut files = Vec::new();
        let image = format!("{IMAGES_DIR}/{stem}.png");
        files.push((
            image.clone(),
            encode_png(&image, &self.rgb, w, h, ExtendedColorType::Rgb8)?,
        ));
        let labels = format!("{LABELS_DIR}/{stem}.png");
        files.push((labels.clone(), self.labels.to_png(&labels)?));
        details.image = image;
        details.labels = labels;
        if let Some(drawn) = &self.drawn {
            let color = format!("{COLORS_DIR}/{stem}.png");
            let c = &drawn.color;
            let png = encode_png(&color, &c.rgb, c.width, c.height, ExtendedColorType::Rgb8)?;
            files.push((color.clone(), png));
            details.color = Some(color);

            let panoptic = Panoptic::of(palette, &drawn.instances);
            let path = format!("{PANOPTIC_DIR}/{stem}.png");
            let rgb: Vec<u8> = panoptic
                .ids
                .iter()
                .flat_map(|&id| segment_color(id))
                .collect();
            files.push((
                path.clone(),
                encode_png(&path, &rgb, w, h, ExtendedColorType::Rgb8)?,
            ));
            details.panoptic = Some(path);
            details.annotations = panoptic.instance_annotations(self.sample.image_id(), w, h)?;
            details.segments = panoptic.segments;
        }
        Ok(SampleOutput {
            record: SampleRecord {
                id: self.sample.image_id(),
                index: self.sample.index,
                seed: self.sample.seed,
                kept: true,
                reason: None,
                model: self.model,
                scheduler: self.scheduler,
                steps: self.steps,
                details,
            },
            files,
        })
    }
}

/// Panoptic segments of a drawn mask: every instance of a thing class is a segment (every
/// instance, when the palette does not say which classes are things); the instances of a stuff
/// class merge into one segment.
#[derive(Debug, Clone, PartialEq)]
struct Panoptic {
    /// Segment id of each pixel (0 void), numbered from 1 in raster order.
    ids: Vec<u32>,
    segments: Vec<SegmentInfo>,
    /// Per segment: a thing (an instance annotation) or stuff.
    things: Vec<bool>,
}

impl Panoptic {
    fn of(palette: &Palette, instances: &Instances) -> Self {
        let is_thing = |class: u16| {
            palette
                .get(class as u32)
                .is_none_or(|e| e.isthing != Some(false))
        };
        let (w, h) = (instances.width, instances.height);
        // Segment of each instance; stuff instances share their class's segment.
        let mut segment_of = vec![0u32; instances.classes.len() + 1];
        let mut stuff = std::collections::HashMap::<u16, u32>::new();
        let mut segments = Vec::<SegmentInfo>::new();
        let mut things = Vec::new();
        let mut ids = vec![0u32; w * h];
        for (i, &instance) in instances.ids.iter().enumerate() {
            if instance == 0 {
                continue;
            }
            let class = instances.classes[instance as usize - 1];
            if segment_of[instance as usize] == 0 {
                let existing = (!is_thing(class))
                    .then(|| stuff.get(&class).copied())
                    .flatten();
                segment_of[instance as usize] = existing.unwrap_or_else(|| {
                    segments.push(SegmentInfo {
                        id: segments.len() as u32 + 1,
                        category_id: class as u64,
                        area: 0,
                        bbox: [0; 4],
                        iscrowd: 0,
                    });
                    things.push(is_thing(class));
                    let id = segments.len() as u32;
                    if !is_thing(class) {
                        stuff.insert(class, id);
                    }
                    id
                });
            }
            ids[i] = segment_of[instance as usize];
        }
        // Areas and boxes.
        let mut extents = vec![[usize::MAX, usize::MAX, 0, 0]; segments.len()];
        for (i, &id) in ids.iter().enumerate() {
            if id == 0 {
                continue;
            }
            let (x, y) = (i % w, i / w);
            let s = id as usize - 1;
            segments[s].area += 1;
            let e = &mut extents[s];
            *e = [e[0].min(x), e[1].min(y), e[2].max(x + 1), e[3].max(y + 1)];
        }
        for (s, [x1, y1, x2, y2]) in segments.iter_mut().zip(extents) {
            s.bbox = [x1, y1, x2 - x1, y2 - y1].map(|v| v as u64);
        }
        Self {
            ids,
            segments,
            things,
        }
    }

    /// Instance annotations (RLE) of the thing segments.
    fn instance_annotations(
        &self,
        image_id: u64,
        width: usize,
        height: usize,
    ) -> Result<Vec<AnnotationRecord>> {
        self.segments
            .iter()
            .zip(&self.things)
            .filter(|(_, thing)| **thing)
            .map(|(s, _)| {
                let mask: Vec<bool> = self.ids.iter().map(|&id| id == s.id).collect();
                AnnotationRecord::from_mask(&mask, height, width, image_id, s.category_id)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two things of class 1 and two pieces of stuff class 2 (the palette says 2 is stuff).
    fn instances() -> Instances {
        #[rustfmt::skip]
        let ids = vec![
            1, 1, 0, 2,
            3, 0, 4, 4,
        ];
        Instances {
            width: 4,
            height: 2,
            ids,
            classes: vec![1, 1, 2, 2],
        }
    }

    fn palette() -> Palette {
        Palette::from_json(
            "p.json",
            br#"[{"id":1,"name":"cat","color":[200,0,0],"isthing":1},
                 {"id":2,"name":"grass","color":[0,200,0],"isthing":0}]"#,
        )
        .unwrap()
    }

    #[test]
    fn stuff_merges_and_things_stay_apart() {
        let p = Panoptic::of(&palette(), &instances());
        assert_eq!(p.ids, vec![1, 1, 0, 2, 3, 0, 3, 3]);
        let got: Vec<_> = p
            .segments
            .iter()
            .map(|s| (s.id, s.category_id, s.area, s.bbox))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, 2, [0, 0, 2, 1]),
                (2, 1, 1, [3, 0, 1, 1]),
                (3, 2, 3, [0, 1, 4, 1])
            ]
        );
        let anns = p.instance_annotations(9, 4, 2).unwrap();
        assert_eq!(anns.len(), 2, "stuff has no instance annotation");
        assert_eq!((anns[0].area, anns[0].bbox), (2.0, [0.0, 0.0, 2.0, 1.0]));
        assert_eq!(anns[1].image_id, 9);
    }

    #[test]
    fn without_isthing_every_instance_is_a_thing() {
        let palette = Palette::from_json(
            "p.json",
            br#"[{"id":1,"name":"cat","color":[200,0,0]},{"id":2,"name":"dog","color":[0,200,0]}]"#,
        )
        .unwrap();
        let p = Panoptic::of(&palette, &instances());
        assert_eq!(p.segments.len(), 4);
        assert_eq!(p.instance_annotations(1, 4, 2).unwrap().len(), 4);
    }
}
