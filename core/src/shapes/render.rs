//! Rendering a scene: textured low-colour backgrounds, and shapes drawn without blending.
//!
//! Edges are not blended into the background: a pixel belongs wholly to whatever covers most
//! of its 4×4 sample points (the topmost shape at each point; ties go to the upper layer), and
//! takes that shape's colour or the background's. So every pixel obeys the colour rule and the
//! label map, the instance masks and the image agree exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::colors::background_color;
use super::geometry::{Placed, sin_cos_turns};
use super::scene::{Background, Scene, Texture};

/// Sample points per pixel side.
const SUPERSAMPLE: usize = 4;

/// The most shapes [`owners`] tells apart.
pub const MAX_LAYERS: usize = 15;

/// Who owns each pixel of `x0..x1 × y0..y1` (row-major in that box) of a `size`-wide image:
/// 0 for the background, `k + 1` for `shapes[k]`; later shapes lie on top.
pub fn owners(shapes: &[Placed], size: usize, [x0, x1, y0, y1]: [usize; 4]) -> Vec<u8> {
    assert!(shapes.len() <= MAX_LAYERS, "at most {MAX_LAYERS} shapes");
    let boxes: Vec<[usize; 4]> = shapes.iter().map(|s| s.pixel_box(size)).collect();
    let step = 1.0 / SUPERSAMPLE as f64;
    let mut out = Vec::with_capacity((x1 - x0) * (y1 - y0));
    let mut here = Vec::with_capacity(shapes.len());
    for y in y0..y1 {
        for x in x0..x1 {
            here.clear();
            here.extend((0..shapes.len()).rev().filter(|&k| {
                let [bx0, bx1, by0, by1] = boxes[k];
                (bx0..bx1).contains(&x) && (by0..by1).contains(&y)
            }));
            if here.is_empty() {
                out.push(0);
                continue;
            }
            let mut counts = [0u8; MAX_LAYERS + 1];
            for sy in 0..SUPERSAMPLE {
                let py = y as f64 + (sy as f64 + 0.5) * step;
                for sx in 0..SUPERSAMPLE {
                    let px = x as f64 + (sx as f64 + 0.5) * step;
                    let top = here.iter().find(|&&k| shapes[k].covers(px, py));
                    counts[top.map_or(0, |&k| k + 1)] += 1;
                }
            }
            let mut best = 0;
            for (k, &c) in counts.iter().enumerate().take(shapes.len() + 1) {
                if c >= counts[best] {
                    best = k;
                }
            }
            out.push(best as u8);
        }
    }
    out
}

/// The background's interleaved RGB, `size × size`.
pub fn background(b: &Background, size: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(b.grain_seed);
    let (sin, cos) = sin_cos_turns(b.angle / 360.0);
    let half = size as f64 / 2.0;
    let cells = (size as f64 / b.period).ceil() as usize + 2;
    let grid: Vec<f64> = match b.texture {
        Texture::Noise => (0..cells * cells)
            .map(|_| rng.random_range(-1.0..=1.0))
            .collect(),
        _ => Vec::new(),
    };
    let mut rgb = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let a = (px - half) * cos + (py - half) * sin;
            let t = match b.texture {
                Texture::Gradient => (a / (0.75 * size as f64)).clamp(-1.0, 1.0),
                Texture::Stripes => {
                    let w = a / b.period;
                    1.0 - 4.0 * (w - w.floor() - 0.5).abs()
                }
                Texture::Checker => {
                    let c = (py - half) * cos - (px - half) * sin;
                    let parity = (a / b.period).floor() + (c / b.period).floor();
                    if parity.rem_euclid(2.0) == 0.0 {
                        1.0
                    } else {
                        -1.0
                    }
                }
                Texture::Noise => {
                    let (gx, gy) = (px / b.period, py / b.period);
                    let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
                    let smooth = |f: f64| f * f * (3.0 - 2.0 * f);
                    let (fx, fy) = (smooth(gx - ix as f64), smooth(gy - iy as f64));
                    let at = |i: usize, j: usize| grid[j * cells + i];
                    let top = at(ix, iy) * (1.0 - fx) + at(ix + 1, iy) * fx;
                    let bottom = at(ix, iy + 1) * (1.0 - fx) + at(ix + 1, iy + 1) * fx;
                    top * (1.0 - fy) + bottom * fy
                }
            };
            let grain = rng.random_range(-1.0..=1.0) * b.grain;
            let value = b.value + b.contrast * t + grain;
            rgb.extend_from_slice(&background_color(value, b.hue, b.saturation));
        }
    }
    rgb
}

/// A rendered scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Interleaved RGB, `size × size`.
    pub rgb: Vec<u8>,
    /// Class id of each pixel (0 background): the ADE-style label map.
    pub labels: Vec<u8>,
    /// Object of each pixel: 0 background, `k + 1` for `scene.objects[k]`.
    pub owners: Vec<u8>,
}

impl Rendered {
    /// The instance mask of object `k`.
    pub fn mask(&self, k: usize) -> Vec<bool> {
        self.owners.iter().map(|&o| o as usize == k + 1).collect()
    }
}

/// Draws `scene`: the background, then each object in its named colour, back to front.
pub fn render(scene: &Scene) -> Rendered {
    let size = scene.size;
    let placed: Vec<Placed> = scene.objects.iter().map(|o| o.placed()).collect();
    let owners = owners(&placed, size, [0, size, 0, size]);
    let mut rgb = background(&scene.background, size);
    let mut labels = vec![0u8; size * size];
    for (i, &o) in owners.iter().enumerate() {
        if o > 0 {
            let object = &scene.objects[o as usize - 1];
            rgb[3 * i..3 * i + 3].copy_from_slice(&object.color.rgb);
            labels[i] = object.class.id();
        }
    }
    Rendered {
        rgb,
        labels,
        owners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::classes::ShapeClass;
    use crate::shapes::colors::is_background_color;
    use crate::shapes::geometry::Pose;

    #[test]
    fn owners_take_the_majority_and_the_top() {
        let disc = |cx: f64, r: f64| {
            Placed::new(
                ShapeClass::Circle,
                Pose {
                    center: [cx, 8.0],
                    radius: r,
                    rotation: 0.0,
                },
            )
        };
        let shapes = [disc(8.0, 6.0), disc(12.0, 4.0)];
        let o = owners(&shapes, 16, [0, 16, 0, 16]);
        assert_eq!(o[8 * 16 + 4], 1);
        assert_eq!(o[8 * 16 + 12], 2, "the upper disc wins where both cover");
        assert_eq!(o[0], 0);
        // A box gives the same owners as the whole image there.
        let part = owners(&shapes, 16, [4, 10, 6, 9]);
        for (j, y) in (6..9).enumerate() {
            assert_eq!(part[j * 6..j * 6 + 6], o[y * 16 + 4..y * 16 + 10]);
        }
        // A disc of radius 6 covers about π·36 pixels.
        let area = owners(&shapes[..1], 16, [0, 16, 0, 16])
            .iter()
            .filter(|&&v| v == 1)
            .count();
        assert!((105..=121).contains(&area), "{area}");
    }

    #[test]
    fn every_texture_is_low_colour() {
        for texture in [
            Texture::Noise,
            Texture::Stripes,
            Texture::Checker,
            Texture::Gradient,
        ] {
            let b = Background {
                texture,
                hue: 0.3,
                saturation: 0.15,
                value: 0.6,
                contrast: 0.3,
                period: 9.5,
                angle: 30.0,
                grain: 0.05,
                grain_seed: 7,
            };
            let rgb = background(&b, 40);
            assert!(
                rgb.chunks(3)
                    .all(|c| is_background_color([c[0], c[1], c[2]]))
            );
            let values: std::collections::BTreeSet<u8> =
                rgb.chunks(3).map(|c| *c.iter().max().unwrap()).collect();
            assert!(values.len() > 10, "{texture:?} is textured");
            assert_eq!(rgb, background(&b, 40));
        }
    }
}
