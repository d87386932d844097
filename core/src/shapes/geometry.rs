//! Shape geometry: each class as a region of the unit disc, and poses that place it in an
//! image. Only IEEE-exact `f64` operations (no libm), so every platform draws the same pixels.

use std::f64::consts::TAU;
use std::sync::LazyLock;

use super::classes::ShapeClass;

/// `(sin, cos)` of `turns` full turns by a fixed Taylor series on `[-π, π]`: additions,
/// multiplications and divisions only, so the bits are the same everywhere (libm's `sin` and
/// `cos` may differ between platforms in the last place).
pub fn sin_cos_turns(turns: f64) -> (f64, f64) {
    let x = (turns - turns.round()) * TAU;
    let x2 = x * x;
    let (mut sin, mut cos) = (0.0, 0.0);
    let (mut sin_term, mut cos_term) = (x, 1.0);
    for k in 0..24 {
        sin += sin_term;
        cos += cos_term;
        let k = k as f64;
        sin_term *= -x2 / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        cos_term *= -x2 / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    (sin, cos)
}

/// `n` points at radius `r`, the first at `start` turns, counter-clockwise.
fn regular(n: usize, start: f64, radius: impl Fn(usize) -> f64) -> Vec<[f64; 2]> {
    (0..n)
        .map(|k| {
            let (s, c) = sin_cos_turns(start + k as f64 / n as f64);
            [radius(k) * c, radius(k) * s]
        })
        .collect()
}

/// The polygons among the classes, in local coordinates (`v` up), circumradius 1.
struct Polygons {
    triangle: Vec<[f64; 2]>,
    hexagon: Vec<[f64; 2]>,
    star: Vec<[f64; 2]>,
}

static POLYGONS: LazyLock<Polygons> = LazyLock::new(|| Polygons {
    triangle: regular(3, 0.25, |_| 1.0),
    hexagon: regular(6, 0.0, |_| 1.0),
    star: regular(10, 0.25, |k| if k % 2 == 0 { 1.0 } else { 0.45 }),
});

/// Even-odd rule.
fn in_polygon(vertices: &[[f64; 2]], u: f64, v: f64) -> bool {
    let mut inside = false;
    let mut j = vertices.len() - 1;
    for i in 0..vertices.len() {
        let ([xi, yi], [xj, yj]) = (vertices[i], vertices[j]);
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

impl ShapeClass {
    /// Whether the local point `(u, v)` (`v` up, the shape upright) is inside the shape. Every
    /// shape lies within the unit disc.
    pub fn contains(self, u: f64, v: f64) -> bool {
        let r2 = u * u + v * v;
        if r2 > 1.0 {
            return false;
        }
        let polygons = &*POLYGONS;
        match self {
            Self::Circle => true,
            Self::Square => u.abs() <= 0.7 && v.abs() <= 0.7,
            Self::Triangle => in_polygon(&polygons.triangle, u, v),
            Self::Star => in_polygon(&polygons.star, u, v),
            Self::Ring => r2 >= 0.55 * 0.55,
            Self::Cross => {
                (u.abs() <= 0.28 && v.abs() <= 0.95) || (v.abs() <= 0.28 && u.abs() <= 0.95)
            }
            Self::Heart => {
                // A square on its corner with a disc on each upper side.
                const H: f64 = 0.78;
                const BASE: f64 = -0.2;
                const R2: f64 = H * H / 2.0;
                let lobe = |cu: f64| {
                    let (du, dv) = (u - cu, v - (BASE + H / 2.0));
                    du * du + dv * dv <= R2
                };
                u.abs() + (v - BASE).abs() <= H || lobe(-H / 2.0) || lobe(H / 2.0)
            }
            Self::Hexagon => in_polygon(&polygons.hexagon, u, v),
            Self::Crescent => {
                let du = u - 0.45;
                du * du + v * v > 0.8 * 0.8
            }
            Self::Arrow => {
                let shaft = v.abs() <= 0.18 && (-0.95..=0.25).contains(&u);
                let head = u >= 0.25 && v.abs() <= 0.5 * (0.95 - u) / 0.7;
                shaft || head
            }
        }
    }
}

/// Where a shape is: centre (pixels, `y` down), circumradius (pixels) and counter-clockwise
/// rotation (degrees).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub center: [f64; 2],
    pub radius: f64,
    pub rotation: f64,
}

/// A shape in its pose, ready for point tests.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub class: ShapeClass,
    pub pose: Pose,
    sin: f64,
    cos: f64,
}

impl Placed {
    pub fn new(class: ShapeClass, pose: Pose) -> Self {
        let (sin, cos) = sin_cos_turns(pose.rotation / 360.0);
        Self {
            class,
            pose,
            sin,
            cos,
        }
    }

    /// Whether the image point `(x, y)` (pixels, `y` down) is inside the shape.
    pub fn covers(&self, x: f64, y: f64) -> bool {
        let [cx, cy] = self.pose.center;
        let (qx, qy) = ((x - cx) / self.pose.radius, (cy - y) / self.pose.radius);
        let u = qx * self.cos + qy * self.sin;
        let v = qy * self.cos - qx * self.sin;
        self.class.contains(u, v)
    }

    /// The pixels `x0..x1 × y0..y1` of a `size × size` image that the shape may touch.
    pub fn pixel_box(&self, size: usize) -> [usize; 4] {
        let [cx, cy] = self.pose.center;
        let r = self.pose.radius;
        let clamp = |v: f64| (v.max(0.0) as usize).min(size);
        [
            clamp((cx - r).floor()),
            clamp((cx + r).ceil() + 1.0),
            clamp((cy - r).floor()),
            clamp((cy + r).ceil() + 1.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_libm() {
        for k in -1000..=1000 {
            let turns = k as f64 / 361.0;
            let (s, c) = sin_cos_turns(turns);
            let x = turns * TAU;
            assert!((s - x.sin()).abs() < 1e-13, "sin of {turns} turns");
            assert!((c - x.cos()).abs() < 1e-13, "cos of {turns} turns");
        }
    }

    /// Each shape fills a plausible part of the unit disc, and none reaches outside it.
    #[test]
    fn shapes_fill_the_unit_disc() {
        let n = 400;
        let cell = 2.2 / n as f64;
        for class in ShapeClass::ALL {
            let mut inside = 0usize;
            for i in 0..n {
                for j in 0..n {
                    let (u, v) = (
                        -1.1 + (i as f64 + 0.5) * cell,
                        -1.1 + (j as f64 + 0.5) * cell,
                    );
                    if class.contains(u, v) {
                        assert!(u * u + v * v <= 1.0);
                        inside += 1;
                    }
                }
            }
            let fraction = inside as f64 * cell * cell / std::f64::consts::PI;
            assert!((0.2..=1.01).contains(&fraction), "{class:?}: {fraction}");
        }
        assert!(ShapeClass::Ring.contains(0.0, 0.8) && !ShapeClass::Ring.contains(0.0, 0.0));
        assert!(ShapeClass::Star.contains(0.0, 0.9) && !ShapeClass::Star.contains(0.0, -0.9));
        assert!(ShapeClass::Arrow.contains(0.9, 0.0) && !ShapeClass::Arrow.contains(-0.9, 0.4));
        assert!(ShapeClass::Heart.contains(0.0, -0.9) && !ShapeClass::Heart.contains(0.0, 0.9));
        assert!(ShapeClass::Crescent.contains(-0.9, 0.0));
        assert!(!ShapeClass::Crescent.contains(0.5, 0.0));
    }

    #[test]
    fn poses_move_rotate_and_scale() {
        let pose = Pose {
            center: [50.0, 40.0],
            radius: 20.0,
            rotation: 90.0,
        };
        // The arrow points right when upright; turned 90° counter-clockwise it points up.
        let arrow = Placed::new(ShapeClass::Arrow, pose);
        assert!(arrow.covers(50.0, 40.0 - 18.0));
        assert!(!arrow.covers(50.0 + 18.0, 40.0));
        assert!(arrow.covers(50.0, 40.0 + 18.0) && !arrow.covers(58.0, 40.0 + 18.0));
        assert_eq!(arrow.pixel_box(64), [30, 64, 20, 61]);
    }
}
