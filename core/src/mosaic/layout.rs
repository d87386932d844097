//! MosaicFusion's mosaic layout: 1, 2 or 4 regions of `region` size, overlapping by a band
//! centred on randomly placed split lines (the original's `mosaic_coord`).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Pixel box of one region on the canvas: rows `y1..y2`, columns `x1..x2` (multiples of 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionBox {
    pub y1: usize,
    pub y2: usize,
    pub x1: usize,
    pub x2: usize,
}

impl RegionBox {
    pub fn height(&self) -> usize {
        self.y2 - self.y1
    }

    pub fn width(&self) -> usize {
        self.x2 - self.x1
    }
}

/// Sizes of a layout; defaults are MosaicFusion's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayoutConfig {
    /// Size of one region (the canvas is 1×1, 1×2, 2×1 or 2×2 regions).
    pub region_height: usize,
    pub region_width: usize,
    /// Height and width of the band two neighbouring regions share.
    pub overlap_height: usize,
    pub overlap_width: usize,
    /// The split line lies at `U(lo, hi) ×` the region size from the canvas edge.
    pub center_ratio: (f64, f64),
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            region_height: 384,
            region_width: 512,
            overlap_height: 48,
            overlap_width: 64,
            center_ratio: (0.75, 1.25),
        }
    }
}

impl LayoutConfig {
    /// Checks sizes: regions multiples of 8, overlaps multiples of 16 (half on each side of a
    /// split line, on the 8-pixel latent grid) and narrower than the smallest region.
    pub fn validate(&self) -> Result<()> {
        let (rh, rw) = (self.region_height, self.region_width);
        if rh == 0 || rw == 0 || rh % 8 != 0 || rw % 8 != 0 {
            return Err(Error::Invalid(format!(
                "region size must be positive multiples of 8, got {rh}x{rw}"
            )));
        }
        let (oh, ow) = (self.overlap_height, self.overlap_width);
        if oh % 16 != 0 || ow % 16 != 0 {
            return Err(Error::Invalid(format!(
                "overlap must be multiples of 16 (8 pixels on each side of a split), got {oh}x{ow}"
            )));
        }
        let (lo, hi) = self.center_ratio;
        if !(lo > 0.0 && lo <= hi && hi < 2.0) {
            return Err(Error::Invalid(format!(
                "center ratio range must satisfy 0 < lo <= hi < 2, got {lo}..{hi}"
            )));
        }
        // The smallest region spans from a split line at its extreme to the canvas edge.
        let min_h = rh * 2 - (hi * rh as f64) as usize / 8 * 8;
        let min_w = rw * 2 - (hi * rw as f64) as usize / 8 * 8;
        let min_h = min_h.min((lo * rh as f64) as usize / 8 * 8);
        let min_w = min_w.min((lo * rw as f64) as usize / 8 * 8);
        if oh >= min_h || ow >= min_w {
            return Err(Error::Invalid(format!(
                "overlap {oh}x{ow} must be smaller than the smallest region a split can leave, \
                 {min_h}x{min_w} for region size {rh}x{rw}"
            )));
        }
        Ok(())
    }
}

/// The random draws that fix a layout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayoutDraws {
    One,
    /// Two regions side by side (`stacked = false`) or one above the other, split at
    /// `ratio × region size`.
    Two {
        stacked: bool,
        ratio: f64,
    },
    /// Four regions split at `ratio_x × region width` and `ratio_y × region height`.
    Four {
        ratio_x: f64,
        ratio_y: f64,
    },
}

impl LayoutDraws {
    /// Draws in the original's order: the orientation (two regions), then the x ratio, then
    /// the y ratio, each ratio `U(lo, hi)`.
    pub fn sample(regions: usize, config: &LayoutConfig, rng: &mut impl Rng) -> Result<Self> {
        let (lo, hi) = config.center_ratio;
        let uniform = |rng: &mut _| lo + (hi - lo) * Rng::random::<f64>(rng);
        match regions {
            1 => Ok(Self::One),
            2 => {
                let stacked = rng.random_range(0..2) == 1;
                let ratio = uniform(&mut *rng);
                Ok(Self::Two { stacked, ratio })
            }
            4 => {
                let ratio_x = uniform(&mut *rng);
                let ratio_y = uniform(&mut *rng);
                Ok(Self::Four { ratio_x, ratio_y })
            }
            n => Err(Error::Invalid(format!(
                "number of regions must be 1, 2 or 4, got {n}"
            ))),
        }
    }
}

/// A canvas and its regions, in the original's order (top-left, top-right, bottom-left,
/// bottom-right).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub canvas_height: usize,
    pub canvas_width: usize,
    pub regions: Vec<RegionBox>,
}

impl Layout {
    /// The layout `draws` give under `config` (which must be valid).
    pub fn new(config: &LayoutConfig, draws: &LayoutDraws) -> Self {
        let (h, w) = (config.region_height, config.region_width);
        let (half_h, half_w) = (config.overlap_height / 2, config.overlap_width / 2);
        // `int(U · size) // 8 * 8`
        let split = |ratio: f64, size: usize| (ratio * size as f64) as usize / 8 * 8;
        let b = |y1, y2, x1, x2| RegionBox { y1, y2, x1, x2 };
        match *draws {
            LayoutDraws::One => Self {
                canvas_height: h,
                canvas_width: w,
                regions: vec![b(0, h, 0, w)],
            },
            LayoutDraws::Two {
                stacked: false,
                ratio,
            } => {
                let cx = split(ratio, w);
                Self {
                    canvas_height: h,
                    canvas_width: 2 * w,
                    regions: vec![b(0, h, 0, cx + half_w), b(0, h, cx - half_w, 2 * w)],
                }
            }
            LayoutDraws::Two {
                stacked: true,
                ratio,
            } => {
                let cy = split(ratio, h);
                Self {
                    canvas_height: 2 * h,
                    canvas_width: w,
                    regions: vec![b(0, cy + half_h, 0, w), b(cy - half_h, 2 * h, 0, w)],
                }
            }
            LayoutDraws::Four { ratio_x, ratio_y } => {
                let cx = split(ratio_x, w);
                let cy = split(ratio_y, h);
                let (top, bottom) = ((0, cy + half_h), (cy - half_h, 2 * h));
                let (left, right) = ((0, cx + half_w), (cx - half_w, 2 * w));
                Self {
                    canvas_height: 2 * h,
                    canvas_width: 2 * w,
                    regions: vec![
                        b(top.0, top.1, left.0, left.1),
                        b(top.0, top.1, right.0, right.1),
                        b(bottom.0, bottom.1, left.0, left.1),
                        b(bottom.0, bottom.1, right.0, right.1),
                    ],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(l: &Layout) -> Vec<[usize; 4]> {
        l.regions.iter().map(|r| [r.y1, r.y2, r.x1, r.x2]).collect()
    }

    #[test]
    fn four_regions_match_the_original_formula() {
        // ratio_x 1.1 → cx = int(563.2)//8*8 = 560; ratio_y 0.9 → cy = int(345.6)//8*8 = 344.
        let l = Layout::new(
            &LayoutConfig::default(),
            &LayoutDraws::Four {
                ratio_x: 1.1,
                ratio_y: 0.9,
            },
        );
        assert_eq!((l.canvas_height, l.canvas_width), (768, 1024));
        assert_eq!(
            boxes(&l),
            vec![
                [0, 368, 0, 592],
                [0, 368, 528, 1024],
                [320, 768, 0, 592],
                [320, 768, 528, 1024]
            ]
        );
    }

    #[test]
    fn two_and_one_regions() {
        let c = LayoutConfig::default();
        let side = Layout::new(
            &c,
            &LayoutDraws::Two {
                stacked: false,
                ratio: 0.75,
            },
        );
        assert_eq!((side.canvas_height, side.canvas_width), (384, 1024));
        assert_eq!(boxes(&side), vec![[0, 384, 0, 416], [0, 384, 352, 1024]]);
        let stacked = Layout::new(
            &c,
            &LayoutDraws::Two {
                stacked: true,
                ratio: 1.2499,
            },
        );
        assert_eq!((stacked.canvas_height, stacked.canvas_width), (768, 512));
        // int(479.96)//8*8 = 472
        assert_eq!(boxes(&stacked), vec![[0, 496, 0, 512], [448, 768, 0, 512]]);
        let one = Layout::new(&c, &LayoutDraws::One);
        assert_eq!(boxes(&one), vec![[0, 384, 0, 512]]);
    }

    #[test]
    fn every_coordinate_is_on_the_latent_grid() {
        use rand::SeedableRng;
        let c = LayoutConfig::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [1, 2, 4, 2, 4, 4] {
            let l = Layout::new(&c, &LayoutDraws::sample(n, &c, &mut rng).unwrap());
            assert_eq!(l.regions.len(), n);
            for r in &l.regions {
                for v in [r.y1, r.y2, r.x1, r.x2] {
                    assert_eq!(v % 8, 0);
                }
                assert!(r.y2 <= l.canvas_height && r.x2 <= l.canvas_width);
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let mut c = LayoutConfig::default();
        c.region_height = 380;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiples of 8")
        );
        let mut c = LayoutConfig::default();
        c.overlap_width = 608;
        assert!(c.validate().unwrap_err().to_string().contains("smaller"));
        let mut c = LayoutConfig::default();
        c.overlap_height = 40;
        assert!(c.validate().unwrap_err().to_string().contains("16"));
        assert!(LayoutConfig::default().validate().is_ok());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        use rand::SeedableRng as _;
        assert!(LayoutDraws::sample(3, &LayoutConfig::default(), &mut rng).is_err());
    }
}
