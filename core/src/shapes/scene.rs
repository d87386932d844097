//! Scenes drawn from a seed: a background and 1–4 shapes in distinct named colours, with
//! random class, size, position and rotation, placed so that occlusion stays partial.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::captions::scene_caption;
use super::classes::ShapeClass;
use super::colors::{NamedColor, OBJECT_COLORS};
use super::geometry::{Placed, Pose, sin_cos_turns};
use super::render::owners;

/// The most objects in a scene.
pub const MAX_OBJECTS: usize = 4;
/// Every object keeps at least this fraction of its own area visible.
pub const MIN_VISIBLE_FRACTION: f64 = 0.4;
/// Poses tried for an object before the scene is left with fewer objects.
const ATTEMPTS: usize = 50;

/// A background pattern; its value in `[-1, 1]` modulates the background's HSV value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Texture {
    /// Smooth value noise on a grid of `period` pixels.
    Noise,
    /// A triangle wave of `period` pixels across the direction `angle`.
    Stripes,
    /// Squares of `period` pixels turned by `angle`.
    Checker,
    /// A ramp along `angle`.
    Gradient,
}

/// A textured low-colour background.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Background {
    pub texture: Texture,
    /// Tint hue, in turns.
    pub hue: f64,
    /// Tint saturation (capped at 0.2 per pixel).
    pub saturation: f64,
    /// Mean HSV value.
    pub value: f64,
    /// How far the texture moves the value.
    pub contrast: f64,
    /// Texture scale, pixels.
    pub period: f64,
    /// Texture direction, degrees.
    pub angle: f64,
    /// Amplitude of per-pixel noise on the value.
    pub grain: f64,
    /// Seeds the noise grid and the grain.
    pub grain_seed: u64,
}

/// One object of a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneObject {
    pub class: ShapeClass,
    pub color: NamedColor,
    pub pose: Pose,
    /// Pixels it owns in the scene.
    pub area: usize,
    /// Pixels it would own alone.
    pub full_area: usize,
}

impl SceneObject {
    pub fn placed(&self) -> Placed {
        Placed::new(self.class, self.pose)
    }
}

/// A scene, back to front.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub size: usize,
    pub background: Background,
    pub objects: Vec<SceneObject>,
}

impl Scene {
    /// Its scene caption: its objects in order, "a red star and a blue ring".
    pub fn caption(&self) -> String {
        let named: Vec<(&str, &str)> = self
            .objects
            .iter()
            .map(|o| (o.color.name, o.class.name()))
            .collect();
        scene_caption(&named)
    }
}

/// `v` rounded to 1/1000: recorded values are the values drawn with.
fn quantize(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn sample_background(rng: &mut ChaCha8Rng, size: usize) -> Background {
    let textures = [
        Texture::Noise,
        Texture::Stripes,
        Texture::Checker,
        Texture::Gradient,
    ];
    Background {
        texture: *textures.choose(rng).expect("not empty"),
        hue: quantize(rng.random_range(0.0..1.0)),
        saturation: quantize(rng.random_range(0.0..0.15)),
        value: quantize(rng.random_range(0.3..0.85)),
        contrast: quantize(rng.random_range(0.04..0.2)),
        period: quantize(size as f64 * rng.random_range(0.05..0.3)),
        angle: quantize(rng.random_range(0.0..180.0)),
        grain: quantize(rng.random_range(0.0..0.04)),
        grain_seed: rng.random(),
    }
}

/// A pose for a shape of radius in `radii`: anywhere in the image, or (half the time, once
/// there are objects) next to one of them, so that shapes overlap often.
fn sample_pose(
    rng: &mut ChaCha8Rng,
    size: usize,
    radii: std::ops::Range<f64>,
    placed: &[SceneObject],
) -> Pose {
    let radius = quantize(rng.random_range(radii));
    let rotation = quantize(rng.random_range(0.0..360.0));
    let (lo, hi) = (radius, size as f64 - radius);
    let center = match placed.choose(rng) {
        Some(other) if rng.random_bool(0.5) => {
            let (sin, cos) = sin_cos_turns(rng.random_range(0.0..1.0));
            let d = rng.random_range(0.6..1.1) * other.pose.radius.max(radius);
            let [ox, oy] = other.pose.center;
            [(ox + d * cos).clamp(lo, hi), (oy + d * sin).clamp(lo, hi)]
        }
        _ => [rng.random_range(lo..=hi), rng.random_range(lo..=hi)],
    };
    Pose {
        center: center.map(quantize),
        radius,
        rotation,
    }
}

/// The scene of `seed` on a `size × size` image (`size` ≥ 32) with 1 to `max_objects`
/// (≤ [`MAX_OBJECTS`]) objects. The scene ends early at an object that finds no pose keeping
/// every object at least [`MIN_VISIBLE_FRACTION`] visible; the first always fits.
pub fn sample_scene(seed: u64, size: usize, max_objects: usize) -> Scene {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let background = sample_background(&mut rng, size);
    let wanted = rng.random_range(1..=max_objects.clamp(1, MAX_OBJECTS));
    let mut colors = OBJECT_COLORS;
    colors.shuffle(&mut rng);
    let max_radius = [0.32, 0.26, 0.22, 0.2][wanted - 1];
    let radii = 0.1 * size as f64..max_radius * size as f64;

    let mut owner = vec![0u8; size * size];
    let mut objects: Vec<SceneObject> = Vec::new();
    for &color in &colors[..wanted] {
        let class = *ShapeClass::ALL.choose(&mut rng).expect("not empty");
        let found = (0..ATTEMPTS).find_map(|_| {
            let pose = sample_pose(&mut rng, size, radii.clone(), &objects);
            try_place(&objects, &owner, size, class, color, pose)
        });
        let Some(Placement {
            object,
            area_box: [x0, x1, y0, y1],
            inside,
            areas,
        }) = found
        else {
            break;
        };
        let width = x1 - x0;
        for y in y0..y1 {
            owner[y * size + x0..y * size + x1]
                .copy_from_slice(&inside[(y - y0) * width..][..width]);
        }
        for (o, area) in objects.iter_mut().zip(areas) {
            o.area = area;
        }
        objects.push(object);
    }
    Scene {
        size,
        background,
        objects,
    }
}

/// A new object on top of a scene, and what it changes.
struct Placement {
    object: SceneObject,
    /// The object's pixel box `[x0, x1, y0, y1]`, and the box's new owners.
    area_box: [usize; 4],
    inside: Vec<u8>,
    /// Every earlier object's new area.
    areas: Vec<usize>,
}

/// Object `class` in `color` at `pose` on top of `objects` (who own `owner`), if every object
/// keeps enough of itself.
fn try_place(
    objects: &[SceneObject],
    owner: &[u8],
    size: usize,
    class: ShapeClass,
    color: NamedColor,
    pose: Pose,
) -> Option<Placement> {
    let candidate = Placed::new(class, pose);
    let area_box = candidate.pixel_box(size);
    let [x0, x1, y0, _] = area_box;
    let k = objects.len() as u8 + 1;
    let full_area = owners(&[candidate], size, area_box)
        .iter()
        .filter(|&&o| o == 1)
        .count();
    if full_area == 0 {
        return None;
    }
    let mut layers: Vec<Placed> = objects.iter().map(SceneObject::placed).collect();
    layers.push(candidate);
    let inside = owners(&layers, size, area_box);
    let mut areas: Vec<usize> = objects.iter().map(|o| o.area).collect();
    let width = x1 - x0;
    let mut area = 0;
    for (i, &new) in inside.iter().enumerate() {
        let old = owner[(y0 + i / width) * size + x0 + i % width];
        // Plurality voting: a new top layer may also hand a pixel to an earlier object.
        if old != new {
            if old > 0 {
                areas[old as usize - 1] -= 1;
            }
            if new > 0 && new != k {
                areas[new as usize - 1] += 1;
            }
        }
        if new == k {
            area += 1;
        }
    }
    let keeps = |area: usize, full: usize| area as f64 >= MIN_VISIBLE_FRACTION * full as f64;
    let all_keep = keeps(area, full_area)
        && objects
            .iter()
            .zip(&areas)
            .all(|(o, &a)| keeps(a, o.full_area));
    all_keep.then_some(Placement {
        object: SceneObject {
            class,
            color,
            pose,
            area,
            full_area,
        },
        area_box,
        inside,
        areas,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::shapes::colors::{is_background_color, is_object_color};
    use crate::shapes::render::render;

    /// Every pixel of many scenes obeys the colour rule and agrees with the label map and the
    /// instance masks; masks are disjoint, their union is the labelled pixels, every object
    /// keeps enough of itself, and the recorded areas are the rendered ones.
    #[test]
    fn many_scenes_obey_the_rules() {
        let (mut occluded, mut counts, mut classes, mut textures) = (
            0,
            [0usize; MAX_OBJECTS + 1],
            BTreeSet::new(),
            BTreeSet::new(),
        );
        let sizes = [32, 48, 64, 64, 97];
        for seed in 0..400u64 {
            let size = sizes[seed as usize % sizes.len()];
            let scene = sample_scene(seed, size, MAX_OBJECTS);
            let n = scene.objects.len();
            assert!((1..=MAX_OBJECTS).contains(&n), "seed {seed}: {n} objects");
            counts[n] += 1;
            textures.insert(format!("{:?}", scene.background.texture));
            let colors: BTreeSet<_> = scene.objects.iter().map(|o| o.color.name).collect();
            assert_eq!(colors.len(), n, "seed {seed}: colours are distinct");
            let r = render(&scene);
            assert_eq!(r.rgb.len(), size * size * 3);
            let mut areas = vec![0usize; n];
            for (i, &owner) in r.owners.iter().enumerate() {
                let rgb = [r.rgb[3 * i], r.rgb[3 * i + 1], r.rgb[3 * i + 2]];
                if owner == 0 {
                    assert!(is_background_color(rgb), "seed {seed}, pixel {i}: {rgb:?}");
                    assert_eq!(r.labels[i], 0);
                } else {
                    let o = &scene.objects[owner as usize - 1];
                    assert!(is_object_color(rgb), "seed {seed}, pixel {i}: {rgb:?}");
                    assert_eq!(rgb, o.color.rgb);
                    assert_eq!(r.labels[i], o.class.id());
                    areas[owner as usize - 1] += 1;
                }
            }
            let masks: Vec<Vec<bool>> = (0..n).map(|k| r.mask(k)).collect();
            for i in 0..size * size {
                let covering = masks.iter().filter(|m| m[i]).count();
                assert_eq!(
                    covering,
                    (r.labels[i] != 0) as usize,
                    "seed {seed}, pixel {i}"
                );
            }
            for (k, o) in scene.objects.iter().enumerate() {
                classes.insert(o.class.id());
                assert_eq!(areas[k], o.area, "seed {seed}, object {k}");
                assert!(o.area > 0);
                assert!(o.area as f64 >= MIN_VISIBLE_FRACTION * o.full_area as f64);
                let alone = owners(&[o.placed()], size, [0, size, 0, size]);
                assert_eq!(alone.iter().filter(|&&v| v == 1).count(), o.full_area);
                if o.area < o.full_area {
                    occluded += 1;
                }
                let [cx, cy] = o.pose.center;
                let r = o.pose.radius;
                assert!(cx >= r && cy >= r && cx <= size as f64 - r && cy <= size as f64 - r);
            }
        }
        assert_eq!(classes.len(), ShapeClass::ALL.len(), "every class is drawn");
        assert_eq!(textures.len(), 4, "every texture is drawn");
        assert!(
            counts[1..].iter().all(|&c| c > 40),
            "object counts {counts:?}"
        );
        assert!(occluded > 100, "partial occlusion is common: {occluded}");
    }

    #[test]
    fn scenes_are_a_function_of_the_seed() {
        for seed in [0, 1, 12345, u64::MAX] {
            let a = sample_scene(seed, 80, MAX_OBJECTS);
            assert_eq!(a, sample_scene(seed, 80, MAX_OBJECTS));
            assert_eq!(render(&a), render(&sample_scene(seed, 80, MAX_OBJECTS)));
        }
        assert_ne!(
            sample_scene(1, 80, MAX_OBJECTS),
            sample_scene(2, 80, MAX_OBJECTS)
        );
    }
}
