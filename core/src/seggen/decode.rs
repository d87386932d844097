//! Colour maps to masks: every pixel takes the class of the nearest colour (Euclidean RGB),
//! black being unlabelled and the edge colour marking edges.

use super::colorize::check_edge_color;
use super::{ColorMap, DEFAULT_EDGE_COLOR, Palette, UNLABELLED_COLOR};
use crate::{Error, Result};

/// How to read a colour map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Pixels farther than this from every colour (palette, black, edge) stay unlabelled.
    pub max_distance: Option<f64>,
    /// The colour of edges; `None` when the map has none.
    pub edge_color: Option<[u8; 3]>,
    /// Segments smaller than this many pixels take their neighbours' class
    /// ([`Decoded::absorb_small_segments`]); 0 keeps every pixel's nearest colour.
    pub min_area: usize,
}

impl DecodeOptions {
    /// The defaults for `palette`: the default edge colour, unless the palette gives it to a
    /// class (then no colour marks edges).
    pub fn for_palette(palette: &Palette) -> Self {
        let taken = palette
            .entries()
            .iter()
            .any(|e| e.color == DEFAULT_EDGE_COLOR);
        Self {
            max_distance: None,
            edge_color: (!taken).then_some(DEFAULT_EDGE_COLOR),
            min_area: 0,
        }
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_distance: None,
            edge_color: Some(DEFAULT_EDGE_COLOR),
            min_area: 0,
        }
    }
}

/// A decoded colour map: `labels: [height, width]` class ids (0 unlabelled, and 0 on edges),
/// `edges: [height, width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u16>,
    pub edges: Vec<bool>,
}

/// What a colour decodes to: a class id, or [`EDGE`].
pub(super) type Code = u32;
pub(super) const EDGE: Code = u32::MAX;
/// Entries of the direct-mapped colour cache (a power of two).
const CACHE: usize = 1 << 12;
/// A cache key no packed colour (`< 2^24`) equals.
const EMPTY: u32 = u32::MAX;

/// Nearest-colour search over a few hundred colours with a direct-mapped cache keyed by the
/// packed colour, so a map with few distinct colours costs one lookup per pixel.
struct Nearest {
    /// Candidates in tie order: black (0), the classes by id, the edge colour.
    colors: Vec<([i32; 3], Code)>,
    max_d2: Option<f64>,
    cache: Vec<(u32, Code)>,
}

impl Nearest {
    fn code(&mut self, c: [u8; 3]) -> Code {
        let key = u32::from_le_bytes([c[0], c[1], c[2], 0]);
        let slot = (key.wrapping_mul(0x9E37_79B1) >> (32 - CACHE.trailing_zeros())) as usize;
        if self.cache[slot].0 == key {
            return self.cache[slot].1;
        }
        let c = c.map(i32::from);
        let mut best = (i32::MAX, 0);
        for &(p, code) in &self.colors {
            let d2 = (c[0] - p[0]).pow(2) + (c[1] - p[1]).pow(2) + (c[2] - p[2]).pow(2);
            if d2 < best.0 {
                best = (d2, code);
            }
        }
        let code = match self.max_d2 {
            Some(max) if best.0 as f64 > max => 0,
            _ => best.1,
        };
        self.cache[slot] = (key, code);
        code
    }
}

/// Decodes `map` with `palette`: the id of the nearest colour, ties to the lowest id (black,
/// id 0, first; the edge colour last), then small segments absorbed (`options.min_area`).
pub fn decode(palette: &Palette, map: &ColorMap, options: &DecodeOptions) -> Result<Decoded> {
    let mut nearest = Nearest {
        colors: candidates(palette, options)?,
        max_d2: options.max_distance.map(|d| d * d),
        cache: vec![(EMPTY, 0); CACHE],
    };
    let codes = map
        .rgb
        .chunks_exact(3)
        .map(|p| nearest.code([p[0], p[1], p[2]]));
    let mut decoded = Decoded::from_codes(map.width, map.height, codes);
    decoded.absorb_small_segments(options.min_area);
    Ok(decoded)
}

/// The colours a pixel may decode to, in tie order (black as 0, the classes by id, the edge
/// colour as [`EDGE`]), after checking `options`.
pub(super) fn candidates(
    palette: &Palette,
    options: &DecodeOptions,
) -> Result<Vec<([i32; 3], Code)>> {
    if let Some(d) = options.max_distance
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(Error::Invalid(format!(
            "max distance {d} is not a non-negative number"
        )));
    }
    let to_i32 = |c: [u8; 3]| c.map(i32::from);
    let mut colors = vec![(to_i32(UNLABELLED_COLOR), 0)];
    colors.extend(
        palette
            .entries()
            .iter()
            .map(|e| (to_i32(e.color), e.id as Code)),
    );
    if let Some(edge) = options.edge_color {
        check_edge_color(palette, edge)?;
        colors.push((to_i32(edge), EDGE));
    }
    Ok(colors)
}

impl Decoded {
    /// Labels and edges from each pixel's code, row-major.
    pub(super) fn from_codes(
        width: usize,
        height: usize,
        codes: impl Iterator<Item = Code>,
    ) -> Self {
        let (mut labels, mut edges) = (Vec::with_capacity(width * height), Vec::new());
        for code in codes {
            edges.push(code == EDGE);
            labels.push(if code == EDGE { 0 } else { code as u16 });
        }
        Self {
            width,
            height,
            labels,
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seggen::{LabelMap, colorize_semantic};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn map(pixels: &[[u8; 3]]) -> ColorMap {
        ColorMap::new(pixels.len(), 1, pixels.concat()).unwrap()
    }

    #[test]
    fn nearest_colour_ties_and_max_distance() {
        let p = Palette::ade20k();
        let m = map(&[
            [120, 120, 120],
            [140, 140, 140], // road (7) and skyscraper (49): the lower id
            [121, 119, 122],
            [0, 0, 0],
            [3, 2, 1],
            DEFAULT_EDGE_COLOR,
            [118, 250, 75],
            [120, 120, 130],
        ]);
        let d = decode(&p, &m, &DecodeOptions::default()).unwrap();
        assert_eq!(d.labels, [1, 7, 1, 0, 0, 0, 0, 1]);
        assert_eq!(
            d.edges,
            [false, false, false, false, false, true, true, false]
        );
        let d = decode(
            &p,
            &m,
            &DecodeOptions {
                max_distance: Some(5.0),
                edge_color: None,
                min_area: 0,
            },
        )
        .unwrap();
        assert_eq!(d.labels, [1, 7, 1, 0, 0, 0, 0, 0]);
        assert!(d.edges.iter().all(|&e| !e));
        let d = decode(
            &p,
            &m,
            &DecodeOptions {
                max_distance: None,
                edge_color: None,
                min_area: 0,
            },
        )
        .unwrap();
        assert_eq!(d.labels[7], 1);
        for bad in [-1.0, f64::NAN] {
            let o = DecodeOptions {
                max_distance: Some(bad),
                ..Default::default()
            };
            assert!(decode(&p, &m, &o).is_err());
        }
        let o = DecodeOptions {
            edge_color: Some([120, 120, 120]),
            ..Default::default()
        };
        assert!(
            decode(&p, &m, &o)
                .unwrap_err()
                .to_string()
                .contains("\"wall\"")
        );
    }

    /// A 256×256 map of the ADE classes that are at least 50 RGB units from every other
    /// palette colour: bands of unaligned widths, a disc and unlabelled pixels.
    fn scene() -> (Palette, LabelMap) {
        let p = Palette::ade20k();
        let far: Vec<u16> = p
            .entries()
            .iter()
            .filter(|e| {
                p.entries()
                    .iter()
                    .chain(Some(&crate::seggen::PaletteEntry {
                        id: 0,
                        name: String::new(),
                        color: [0, 0, 0],
                        isthing: None,
                    }))
                    .filter(|o| o.id != e.id)
                    .all(|o| {
                        let d2: i32 = (0..3)
                            .map(|k| (e.color[k] as i32 - o.color[k] as i32).pow(2))
                            .sum();
                        d2 >= 50 * 50
                    })
            })
            .map(|e| e.id)
            .collect();
        assert!(far.len() >= 6, "{far:?}");
        let (w, h) = (256usize, 256usize);
        let ids = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                if (x - 150.0).powi(2) + (y - 120.0).powi(2) < 50.0f64.powi(2) {
                    far[0]
                } else if y > 220.0 {
                    0
                } else {
                    far[1 + (x as usize * 5 / 3 + y as usize / 3) / 61 % (far.len() - 1)]
                }
            })
            .collect();
        (p, LabelMap::new(w, h, ids).unwrap())
    }

    fn accuracy(got: &[u16], want: &[u16]) -> f64 {
        got.iter().zip(want).filter(|(a, b)| a == b).count() as f64 / want.len() as f64
    }

    #[test]
    fn gaussian_noise_decodes_back() {
        let (p, labels) = scene();
        let mut colors = colorize_semantic(&p, &labels).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let sigma = 8.0;
        for v in colors.rgb.iter_mut() {
            // Box–Muller.
            let (u1, u2): (f64, f64) = (rng.random::<f64>(), rng.random::<f64>());
            let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            *v = (*v as f64 + sigma * z).round().clamp(0.0, 255.0) as u8;
        }
        let d = decode(&p, &colors, &DecodeOptions::default()).unwrap();
        let acc = accuracy(&d.labels, &labels.ids);
        assert!(acc >= 0.99, "accuracy {acc}");
    }

    #[test]
    fn jpeg_round_trip_decodes_back() {
        let (p, labels) = scene();
        let colors = colorize_semantic(&p, &labels).unwrap();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode(&colors.rgb, 256, 256, image::ExtendedColorType::Rgb8)
            .unwrap();
        let back = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        let back = ColorMap::new(256, 256, back.into_raw()).unwrap();
        assert_ne!(back, colors);
        let d = decode(&p, &back, &DecodeOptions::default()).unwrap();
        let acc = accuracy(&d.labels, &labels.ids);
        assert!(acc >= 0.99, "accuracy {acc}");
    }
}
