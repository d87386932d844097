//! Instances from a decoded colour map: each class's pixels split by the edge pixels into
//! 4-connected components, then every edge pixel given to the nearest instance.
//!
//! "Nearest" is the 4-connected path length through edge pixels: a breadth-first search from
//! all instances at once, one layer at a time, where a pixel of the next layer takes the lowest
//! instance id among its neighbours already reached (ties go to the lowest instance). Edge
//! pixels that no path of edge pixels links to an instance stay unassigned (instance 0,
//! class 0).

use super::maps::neighbours4;
use super::{Decoded, LabelMap};

/// Instances of a colour map: `ids: [height, width]` (0 none, instances numbered from 1 in
/// raster order of their first pixel) and `classes[i - 1]`, the class of instance `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    pub width: usize,
    pub height: usize,
    pub ids: Vec<u32>,
    pub classes: Vec<u16>,
}

impl Instances {
    /// The class of each pixel's instance (0 where none): the decoded labels with edges filled.
    pub fn semantic(&self) -> LabelMap {
        let ids = self
            .ids
            .iter()
            .map(|&i| {
                if i == 0 {
                    0
                } else {
                    self.classes[i as usize - 1]
                }
            })
            .collect();
        LabelMap {
            width: self.width,
            height: self.height,
            ids,
        }
    }
}

/// Splits `decoded` into instances; O(pixels).
pub fn instances(decoded: &Decoded) -> Instances {
    let (w, h) = (decoded.width, decoded.height);
    let (labels, edges) = (&decoded.labels, &decoded.edges);
    let mut ids = vec![0u32; w * h];
    let mut classes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        let class = labels[start];
        if class == 0 || edges[start] || ids[start] != 0 {
            continue;
        }
        classes.push(class);
        let id = classes.len() as u32;
        ids[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            for j in neighbours4(i, w, h) {
                if ids[j] == 0 && !edges[j] && labels[j] == class {
                    ids[j] = id;
                    stack.push(j);
                }
            }
        }
    }
    // Breadth-first over edge pixels, layer by layer.
    let mut queued: Vec<bool> = edges.iter().map(|&e| !e).collect();
    let mut layer: Vec<usize> = (0..w * h)
        .filter(|&i| edges[i] && neighbours4(i, w, h).any(|j| ids[j] != 0))
        .collect();
    for &i in &layer {
        queued[i] = true;
    }
    while !layer.is_empty() {
        let reached: Vec<u32> = layer
            .iter()
            .map(|&i| {
                neighbours4(i, w, h)
                    .map(|j| ids[j])
                    .filter(|&id| id != 0)
                    .min()
                    .expect("a layer pixel touches a reached pixel")
            })
            .collect();
        for (&i, &id) in layer.iter().zip(&reached) {
            ids[i] = id;
        }
        let mut next = Vec::new();
        for &i in &layer {
            for j in neighbours4(i, w, h) {
                if !queued[j] {
                    queued[j] = true;
                    next.push(j);
                }
            }
        }
        layer = next;
    }
    Instances {
        width: w,
        height: h,
        ids,
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seggen::{
        ColorMap, DEFAULT_EDGE_COLOR, DecodeOptions, Palette, Segment, colorize_panoptic, decode,
        segment_color,
    };

    fn decoded(rows: &[&str]) -> Decoded {
        // `.` unlabelled, `#` edge, a digit a class.
        let (w, h) = (rows[0].len(), rows.len());
        let cells: Vec<char> = rows.concat().chars().collect();
        Decoded {
            width: w,
            height: h,
            labels: cells
                .iter()
                .map(|c| c.to_digit(10).unwrap_or(0) as u16)
                .collect(),
            edges: cells.iter().map(|&c| c == '#').collect(),
        }
    }

    #[test]
    fn edges_split_a_class_and_go_to_the_nearest_instance() {
        let d = decoded(&["11#11", "11#11", "#####", "22#..", "22#.#"]);
        let inst = instances(&d);
        assert_eq!(inst.classes, [1, 1, 2]);
        #[rustfmt::skip]
        let want = [
            1, 1, 1, 2, 2,
            1, 1, 1, 2, 2,
            1, 1, 1, 2, 2,
            3, 3, 3, 0, 0,
            3, 3, 3, 0, 0,
        ];
        assert_eq!(inst.ids, want);
        assert_eq!(inst.semantic().ids[..5], [1, 1, 1, 1, 1]);
        assert_eq!(inst.semantic().ids[15..], [2, 2, 2, 0, 0, 2, 2, 2, 0, 0]);
    }

    /// Panoptic ground truth → colour map → decode → instances gives back every segment.
    #[test]
    fn recovers_known_instances() {
        let (w, h) = (40, 30);
        // Two persons (1, 2) side by side, a third (3) below both, a car (4) touching 2 and 3,
        // void on the right.
        let seg = |x: usize, y: usize| match (x, y) {
            (35.., _) => 0,
            (_, 20..) if x < 25 => 3,
            (0..12, _) => 1,
            (12..25, _) => 2,
            _ => 4,
        };
        let truth: Vec<u32> = (0..w * h).map(|i| seg(i % w, i / w)).collect();
        let rgb = truth.iter().flat_map(|&id| segment_color(id)).collect();
        let png = ColorMap::new(w, h, rgb).unwrap();
        let segments =
            [(1, 1), (2, 1), (3, 1), (4, 3)].map(|(id, category_id)| Segment { id, category_id });
        let palette = Palette::coco_panoptic();
        let colors = colorize_panoptic(&palette, &png, &segments, DEFAULT_EDGE_COLOR).unwrap();
        let d = decode(&palette, &colors, &DecodeOptions::default()).unwrap();
        assert!(d.edges.iter().filter(|&&e| e).count() > 50);
        let inst = instances(&d);
        assert_eq!(inst.classes.len(), 4);
        // The same partition, with the right classes: exact off the edges; on them, only
        // pixels two steps from several segments (where three meet) may go to another one.
        let mut map = std::collections::HashMap::new();
        for ((&t, &i), &e) in truth.iter().zip(&inst.ids).zip(&d.edges) {
            assert_eq!(t == 0, i == 0);
            if t != 0 && !e {
                assert_eq!(*map.entry(t).or_insert(i), i, "segment {t}");
                let cat = segments[t as usize - 1].category_id as u16;
                assert_eq!(inst.classes[i as usize - 1], cat);
            }
        }
        let wrong = truth
            .iter()
            .zip(&inst.ids)
            .filter(|(t, i)| **t != 0 && map[*t] != **i)
            .count();
        assert!(wrong <= 2, "{wrong} edge pixels in the wrong instance");
        assert_eq!(map.len(), 4);
    }
}
