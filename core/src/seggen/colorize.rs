//! Masks to colour maps: semantic label maps by palette lookup, panoptic segments in their
//! category's colour with the edge colour on every boundary between two segments.

use std::collections::{BTreeMap, HashMap};

use super::maps::neighbours4;
use super::{ColorMap, LabelMap, Palette, Segment, UNLABELLED_COLOR, segment_ids};
use crate::{Error, Result};

/// The colour of every pixel's class; label 0 is black. An id the palette lacks is an error
/// naming the id and its pixel count.
pub fn colorize_semantic(palette: &Palette, labels: &LabelMap) -> Result<ColorMap> {
    let table = palette.color_table();
    let mut rgb = Vec::with_capacity(labels.ids.len() * 3);
    let mut unknown = BTreeMap::<u16, usize>::new();
    for &id in &labels.ids {
        match table.get(id as usize).copied().flatten() {
            Some(c) => rgb.extend_from_slice(&c),
            None => *unknown.entry(id).or_default() += 1,
        }
    }
    if let Some((&id, &count)) = unknown.iter().next() {
        let more = match unknown.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more unknown ids)"),
        };
        return Err(Error::Invalid(format!(
            "label id {id} ({count} pixels) is not in palette {}{more}",
            palette.name
        )));
    }
    ColorMap::new(labels.width, labels.height, rgb)
}

/// Checks that `edge_color` differs from black and from every class colour of `palette`.
pub(crate) fn check_edge_color(palette: &Palette, edge_color: [u8; 3]) -> Result<()> {
    if edge_color == UNLABELLED_COLOR {
        return Err(Error::Invalid(
            "the edge colour must not be black (unlabelled)".into(),
        ));
    }
    match palette.entries().iter().find(|e| e.color == edge_color) {
        Some(e) => Err(Error::Invalid(format!(
            "the edge colour {edge_color:?} is the colour of class {} (\"{}\") of palette {}; choose another edge colour",
            e.id, e.name, palette.name
        ))),
        None => Ok(()),
    }
}

/// Colours a COCO panoptic PNG (`panoptic`, segment ids as RGB) with `segments`: each segment in
/// its category's colour, void (id 0) black, and every segment pixel with a 4-neighbour in
/// another segment in `edge_color` (both sides of a boundary, so edges are two pixels wide).
/// PNG ids missing from `segments`, segments without pixels and categories missing from the
/// palette are errors.
pub fn colorize_panoptic(
    palette: &Palette,
    panoptic: &ColorMap,
    segments: &[Segment],
    edge_color: [u8; 3],
) -> Result<ColorMap> {
    check_edge_color(palette, edge_color)?;
    let mut colors = HashMap::new();
    for s in segments {
        let entry = palette.get(s.category_id).ok_or_else(|| {
            Error::Invalid(format!(
                "segment {} has category_id {}, which is not in palette {}",
                s.id, s.category_id, palette.name
            ))
        })?;
        colors.insert(s.id, (entry.color, 0usize));
    }
    let ids = segment_ids(panoptic);
    let mut unknown = BTreeMap::<u32, usize>::new();
    for &id in &ids {
        if id != 0 {
            match colors.get_mut(&id) {
                Some((_, count)) => *count += 1,
                None => *unknown.entry(id).or_default() += 1,
            }
        }
    }
    if let Some((&id, &count)) = unknown.iter().next() {
        return Err(Error::Invalid(format!(
            "segment id {id} ({count} pixels) of the PNG is not in the segments JSON ({} ids missing)",
            unknown.len()
        )));
    }
    if let Some(s) = segments.iter().find(|s| colors[&s.id].1 == 0) {
        return Err(Error::Invalid(format!(
            "segment id {} of the segments JSON has no pixel in the PNG",
            s.id
        )));
    }
    let (w, h) = (panoptic.width, panoptic.height);
    let mut rgb = Vec::with_capacity(ids.len() * 3);
    let mut last = (0, UNLABELLED_COLOR);
    for (i, &id) in ids.iter().enumerate() {
        let color = if id == 0 {
            UNLABELLED_COLOR
        } else if neighbours4(i, w, h).any(|j| ids[j] != 0 && ids[j] != id) {
            edge_color
        } else {
            if last.0 != id {
                last = (id, colors[&id].0);
            }
            last.1
        };
        rgb.extend_from_slice(&color);
    }
    ColorMap::new(w, h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seggen::{DEFAULT_EDGE_COLOR, DecodeOptions, decode, segment_color};

    fn labels(width: usize, rows: &[&[u16]]) -> LabelMap {
        LabelMap::new(width, rows.len(), rows.concat()).unwrap()
    }

    #[test]
    fn semantic_round_trip() {
        for palette in [Palette::ade20k(), Palette::coco_panoptic()] {
            let ids: Vec<u16> = palette.entries().iter().map(|e| e.id).collect();
            // Every class (but ADE's 49, which shares 7's colour) and unlabelled pixels.
            let ids: Vec<u16> = ids
                .into_iter()
                .filter(|&id| !(palette.name == "ade20k" && id == 49))
                .chain([0])
                .collect();
            let map = LabelMap::new(ids.len(), 1, ids).unwrap();
            let colors = colorize_semantic(&palette, &map).unwrap();
            assert_eq!(colors.pixel(map.ids.len() - 1), [0, 0, 0]);
            let back = decode(&palette, &colors, &DecodeOptions::default()).unwrap();
            assert_eq!(back.labels, map.ids, "{}", palette.name);
            assert!(back.edges.iter().all(|&e| !e));
        }
        let map = labels(3, &[&[1, 1, 2], &[0, 3, 2]]);
        let c = colorize_semantic(&Palette::ade20k(), &map).unwrap();
        assert_eq!(c.pixel(0), [120, 120, 120]);
        assert_eq!(c.pixel(2), [180, 120, 120]);
        assert_eq!(c.pixel(3), [0, 0, 0]);
        assert_eq!(c.pixel(4), [6, 230, 230]);
    }

    #[test]
    fn unknown_labels_name_the_id_and_count() {
        let map = labels(3, &[&[151, 151, 1], &[200, 0, 151]]);
        let e = colorize_semantic(&Palette::ade20k(), &map)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("label id 151 (3 pixels)") && e.contains("ade20k") && e.contains("1 more"),
            "{e}"
        );
    }

    /// Two touching instances (segments 1 and 2) of COCO's person, a car (3) and void.
    #[test]
    fn panoptic_edges_between_touching_instances() {
        let (w, h) = (6, 4);
        let seg = [
            [1, 1, 1, 2, 2, 0],
            [1, 1, 1, 2, 2, 0],
            [3, 3, 3, 2, 2, 0],
            [3, 3, 3, 2, 2, 0],
        ];
        let rgb = seg
            .iter()
            .flatten()
            .flat_map(|&id| segment_color(id))
            .collect();
        let png = ColorMap::new(w, h, rgb).unwrap();
        let segments = [
            Segment {
                id: 1,
                category_id: 1,
            },
            Segment {
                id: 2,
                category_id: 1,
            },
            Segment {
                id: 3,
                category_id: 3,
            },
        ];
        let palette = Palette::coco_panoptic();
        let out = colorize_panoptic(&palette, &png, &segments, DEFAULT_EDGE_COLOR).unwrap();
        let (p, c, e, v) = ([220, 20, 60], [0, 0, 142], DEFAULT_EDGE_COLOR, [0, 0, 0]);
        let want = [
            [p, p, e, e, p, v],
            [e, e, e, e, p, v],
            [e, e, e, e, p, v],
            [c, c, e, e, p, v],
        ];
        assert_eq!(
            out.rgb,
            want.iter()
                .flatten()
                .flatten()
                .copied()
                .collect::<Vec<u8>>()
        );
    }

    #[test]
    fn panoptic_mismatches_are_errors() {
        let png = ColorMap::new(2, 1, [segment_color(1), segment_color(9)].concat()).unwrap();
        let palette = Palette::coco_panoptic();
        let one = [Segment {
            id: 1,
            category_id: 1,
        }];
        let e = colorize_panoptic(&palette, &png, &one, DEFAULT_EDGE_COLOR).unwrap_err();
        assert!(e.to_string().contains("segment id 9 (1 pixels)"), "{e}");
        let extra = [
            one[0],
            Segment {
                id: 9,
                category_id: 1,
            },
            Segment {
                id: 4,
                category_id: 1,
            },
        ];
        let e = colorize_panoptic(&palette, &png, &extra, DEFAULT_EDGE_COLOR).unwrap_err();
        assert!(
            e.to_string()
                .contains("segment id 4 of the segments JSON has no pixel"),
            "{e}"
        );
        let bad_cat = [
            one[0],
            Segment {
                id: 9,
                category_id: 12,
            },
        ];
        let e = colorize_panoptic(&palette, &png, &bad_cat, DEFAULT_EDGE_COLOR).unwrap_err();
        assert!(e.to_string().contains("category_id 12"), "{e}");
        let both = [
            one[0],
            Segment {
                id: 9,
                category_id: 2,
            },
        ];
        let e = colorize_panoptic(&palette, &png, &both, [255, 255, 255]).unwrap_err();
        assert!(e.to_string().contains("\"snow\""), "{e}");
    }
}
