//! Small segments of a decoded colour map absorbed into their neighbours, as SAM's
//! `min_mask_region_area` removes small islands and holes. A drawn map's colours blend where
//! classes meet, and nearest-colour decoding turns a blend into specks of third classes.
//!
//! A segment is a 4-connected set of non-edge pixels of one class (unlabelled included). Every
//! segment under the minimum area, smallest first (ties: raster order of its first pixel), takes
//! the class of the neighbouring segment it shares the longest border with (ties: the lower
//! class id), and joins it; neighbours of the same class then join too. A segment with no
//! neighbour but edge pixels keeps its class. Edge pixels never change.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::Decoded;
use super::maps::neighbours4;

impl Decoded {
    /// Absorbs every segment smaller than `min_area` pixels (see the module's doc); `0` and
    /// `1` change nothing. O(pixels · log).
    pub fn absorb_small_segments(&mut self, min_area: usize) {
        if min_area <= 1 {
            return;
        }
        let mut segments = Segments::of(self);
        segments.absorb(min_area);
        // Each segment's final class once, not a root search per pixel.
        let class: Vec<u16> = (0..segments.class.len())
            .map(|s| segments.class[segments.root(s)])
            .collect();
        for (label, (&s, &edge)) in self
            .labels
            .iter_mut()
            .zip(segments.of_pixel.iter().zip(&self.edges))
        {
            if !edge {
                *label = class[s];
            }
        }
    }
}

/// Segments in raster order of their first pixel, with their borders; merged ones point to the
/// segment they joined (union-find).
struct Segments {
    /// Segment of each pixel (meaningless on edge pixels).
    of_pixel: Vec<usize>,
    class: Vec<u16>,
    area: Vec<usize>,
    parent: Vec<usize>,
    /// Neighbouring root → border length in pixel pairs, for each root.
    borders: Vec<BTreeMap<usize, usize>>,
}

impl Segments {
    fn of(d: &Decoded) -> Self {
        let (w, h) = (d.width, d.height);
        let mut of_pixel = vec![usize::MAX; w * h];
        let (mut class, mut area) = (Vec::new(), Vec::new());
        let mut stack = Vec::new();
        for start in 0..w * h {
            if d.edges[start] || of_pixel[start] != usize::MAX {
                continue;
            }
            let (s, c) = (class.len(), d.labels[start]);
            class.push(c);
            area.push(0);
            of_pixel[start] = s;
            stack.push(start);
            while let Some(i) = stack.pop() {
                area[s] += 1;
                for j in neighbours4(i, w, h) {
                    if of_pixel[j] == usize::MAX && !d.edges[j] && d.labels[j] == c {
                        of_pixel[j] = s;
                        stack.push(j);
                    }
                }
            }
        }
        let mut borders = vec![BTreeMap::new(); class.len()];
        for i in 0..w * h {
            if d.edges[i] {
                continue;
            }
            // Right and down neighbours: each pair once.
            for j in [
                (i % w + 1 < w).then(|| i + 1),
                (i + w < w * h).then(|| i + w),
            ]
            .into_iter()
            .flatten()
            {
                let (a, b) = (of_pixel[i], of_pixel[j]);
                if !d.edges[j] && a != b {
                    *borders[a].entry(b).or_insert(0) += 1;
                    *borders[b].entry(a).or_insert(0) += 1;
                }
            }
        }
        Self {
            of_pixel,
            parent: (0..class.len()).collect(),
            class,
            area,
            borders,
        }
    }

    fn root(&self, mut s: usize) -> usize {
        while self.parent[s] != s {
            s = self.parent[s];
        }
        s
    }

    fn absorb(&mut self, min_area: usize) {
        let mut small: BinaryHeap<Reverse<(usize, usize)>> = (0..self.class.len())
            .filter(|&s| self.area[s] < min_area)
            .map(|s| Reverse((self.area[s], s)))
            .collect();
        while let Some(Reverse((area, s))) = small.pop() {
            // Stale entries: joined since, or grown since.
            if self.parent[s] != s || self.area[s] != area {
                continue;
            }
            let Some(into) = self.borders[s]
                .iter()
                .max_by_key(|&(&t, &len)| (len, Reverse(self.class[t]), Reverse(t)))
                .map(|(&t, _)| t)
            else {
                continue;
            };
            self.join(s, into);
            let same: Vec<usize> = self.borders[into]
                .keys()
                .copied()
                .filter(|&t| self.class[t] == self.class[into])
                .collect();
            for t in same {
                self.join(t, into);
            }
            if self.area[into] < min_area {
                small.push(Reverse((self.area[into], into)));
            }
        }
    }

    /// Root `s` joins root `into`, taking its class; their borders are summed.
    fn join(&mut self, s: usize, into: usize) {
        self.parent[s] = into;
        self.area[into] += self.area[s];
        for (t, len) in std::mem::take(&mut self.borders[s]) {
            self.borders[t].remove(&s);
            if t != into {
                *self.borders[t].entry(into).or_insert(0) += len;
                *self.borders[into].entry(t).or_insert(0) += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded map from rows of digits (class ids) and `#` (edge pixels).
    fn decoded(rows: &[&str]) -> Decoded {
        let (width, height) = (rows[0].len(), rows.len());
        let cells: Vec<char> = rows.iter().flat_map(|r| r.chars()).collect();
        Decoded {
            width,
            height,
            labels: cells
                .iter()
                .map(|&c| c.to_digit(10).unwrap_or(0) as u16)
                .collect(),
            edges: cells.iter().map(|&c| c == '#').collect(),
        }
    }

    fn absorbed(rows: &[&str], min_area: usize) -> Decoded {
        let mut d = decoded(rows);
        d.absorb_small_segments(min_area);
        d
    }

    #[test]
    fn specks_and_holes_take_the_class_around_them() {
        let rows = [
            "000000", //
            "011110", //
            "012110", //
            "011010", //
            "011110", //
            "000003",
        ];
        // The speck of 2, the hole of 0 and the corner of 3 are one pixel each.
        let d = absorbed(&rows, 2);
        assert_eq!(
            d,
            decoded(&["000000", "011110", "011110", "011110", "011110", "000000"])
        );
        assert_eq!(absorbed(&rows, 0), decoded(&rows));
        assert_eq!(absorbed(&rows, 1), decoded(&rows));
    }

    #[test]
    fn segments_at_the_minimum_stay() {
        let rows = ["1100", "1100", "2222", "2222"];
        assert_eq!(absorbed(&rows, 4), decoded(&rows));
        // At 5 the 1s (4 pixels, first in raster order) go first: their borders with the 0s and
        // the 2s are equally long, so to the lower class; the 0s are then 8 pixels and stay.
        assert_eq!(
            absorbed(&rows, 5),
            decoded(&["0000", "0000", "2222", "2222"])
        );
    }

    #[test]
    fn the_longest_border_wins() {
        // The 3s border the 1s along two pixel pairs and the 2s along four.
        let rows = ["1111", "2332", "2222"];
        assert_eq!(absorbed(&rows, 3), decoded(&["1111", "2222", "2222"]));
    }

    #[test]
    fn joined_pieces_of_a_class_count_as_one() {
        // The 3s cut the 1s into two pieces of 4; once the 3s join the left piece, the right
        // one joins too, 10 pixels, which 5 leaves alone. Apart, each piece goes to the 0s.
        let rows = ["11311", "11311", "00000"];
        assert_eq!(absorbed(&rows, 5), decoded(&["11111", "11111", "00000"]));
        let rows = ["11011", "11011", "00000"];
        assert_eq!(absorbed(&rows, 5), decoded(&["00000", "00000", "00000"]));
    }

    #[test]
    fn edges_separate_and_never_change() {
        // The lone 2 touches only edge pixels and stays; the 3 borders the 1s across no edge.
        let rows = ["1#2#", "1###", "13##"];
        assert_eq!(absorbed(&rows, 3), decoded(&["1#2#", "1###", "11##"]));
    }
}
