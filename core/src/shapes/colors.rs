//! Colours and the rule that makes the truth measurable: every object pixel has HSV saturation
//! ≥ 0.6 and value ≥ 0.4, every background pixel saturation ≤ 0.2. Checked on the 8-bit
//! values exactly, in integers.

/// A named object colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedColor {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

/// The object colours; each obeys [`is_object_color`].
pub const OBJECT_COLORS: [NamedColor; 10] = [
    NamedColor {
        name: "red",
        rgb: [220, 30, 30],
    },
    NamedColor {
        name: "orange",
        rgb: [245, 130, 20],
    },
    NamedColor {
        name: "yellow",
        rgb: [235, 205, 20],
    },
    NamedColor {
        name: "green",
        rgb: [30, 160, 50],
    },
    NamedColor {
        name: "cyan",
        rgb: [20, 190, 210],
    },
    NamedColor {
        name: "blue",
        rgb: [30, 70, 210],
    },
    NamedColor {
        name: "purple",
        rgb: [120, 40, 180],
    },
    NamedColor {
        name: "magenta",
        rgb: [210, 30, 180],
    },
    NamedColor {
        name: "pink",
        rgb: [240, 80, 160],
    },
    NamedColor {
        name: "brown",
        rgb: [140, 75, 25],
    },
];

/// Lowest HSV saturation of an object pixel.
pub const MIN_OBJECT_SATURATION: f64 = 0.6;
/// Lowest HSV value of an object pixel.
pub const MIN_OBJECT_VALUE: f64 = 0.4;
/// Highest HSV saturation of a background pixel.
pub const MAX_BACKGROUND_SATURATION: f64 = 0.2;

/// HSV saturation and value of an 8-bit colour (saturation 0 for black).
pub fn saturation_value(rgb: [u8; 3]) -> (f64, f64) {
    let max = *rgb.iter().max().expect("three channels") as f64;
    let min = *rgb.iter().min().expect("three channels") as f64;
    let saturation = if max == 0.0 { 0.0 } else { (max - min) / max };
    (saturation, max / 255.0)
}

fn max_min(rgb: [u8; 3]) -> (u32, u32) {
    let max = *rgb.iter().max().expect("three channels") as u32;
    let min = *rgb.iter().min().expect("three channels") as u32;
    (max, min)
}

/// Saturation ≥ 0.6 and value ≥ 0.4, exactly.
pub fn is_object_color(rgb: [u8; 3]) -> bool {
    let (max, min) = max_min(rgb);
    5 * (max - min) >= 3 * max && 5 * max >= 2 * 255
}

/// Saturation ≤ 0.2, exactly.
pub fn is_background_color(rgb: [u8; 3]) -> bool {
    let (max, min) = max_min(rgb);
    5 * (max - min) <= max
}

/// A background colour: HSV value `value` (clamped to `[0, 1]`), hue `hue` (turns) and
/// saturation `saturation`, capped at 0.2 in integers so that [`is_background_color`] holds.
pub fn background_color(value: f64, hue: f64, saturation: f64) -> [u8; 3] {
    let v = (value.clamp(0.0, 1.0) * 255.0).round() as u32;
    let chroma = ((v as f64 * saturation.max(0.0)).floor() as u32).min(v / 5);
    let h6 = (hue - hue.floor()) * 6.0;
    let sector = (h6.floor() as usize).min(5);
    let fraction = h6 - sector as f64;
    // The middle channel rises (even sectors) or falls (odd ones) between min and max.
    let rise = (chroma as f64 * fraction).round() as u32;
    let (max, min) = (v, v - chroma);
    let mid = if sector.is_multiple_of(2) {
        min + rise
    } else {
        max - rise
    };
    let [r, g, b] = match sector {
        0 => [max, mid, min],
        1 => [mid, max, min],
        2 => [min, max, mid],
        3 => [min, mid, max],
        4 => [mid, min, max],
        _ => [max, min, mid],
    };
    [r as u8, g as u8, b as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_colors_obey_the_rule() {
        for c in OBJECT_COLORS {
            assert!(is_object_color(c.rgb), "{}", c.name);
            let (s, v) = saturation_value(c.rgb);
            assert!(
                s >= MIN_OBJECT_SATURATION && v >= MIN_OBJECT_VALUE,
                "{}",
                c.name
            );
        }
        let names: std::collections::BTreeSet<_> = OBJECT_COLORS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), OBJECT_COLORS.len());
    }

    /// The integer predicates agree with the HSV definition, on every 8-bit colour with a few
    /// values of the third channel.
    #[test]
    fn predicates_are_the_hsv_thresholds() {
        for r in 0..=255u8 {
            for g in 0..=255u8 {
                for b in [0u8, 1, 37, 101, 102, 200, 255] {
                    let (s, v) = saturation_value([r, g, b]);
                    // `0.6` and `0.4` are not exact in binary: compare with a tolerance only
                    // where a colour sits on the threshold.
                    let object =
                        s >= MIN_OBJECT_SATURATION - 1e-12 && v >= MIN_OBJECT_VALUE - 1e-12;
                    assert_eq!(is_object_color([r, g, b]), object, "{r} {g} {b}");
                    let background = s <= MAX_BACKGROUND_SATURATION + 1e-12;
                    assert_eq!(is_background_color([r, g, b]), background, "{r} {g} {b}");
                }
            }
        }
    }

    #[test]
    fn background_colors_stay_low() {
        for i in 0..=200 {
            let value = i as f64 / 200.0;
            for hue in [0.0, 0.1, 0.3, 0.5, 0.62, 0.85, 0.99] {
                for saturation in [0.0, 0.1, 0.19, 0.2, 0.5] {
                    let c = background_color(value, hue, saturation);
                    assert!(is_background_color(c), "{value} {hue} {saturation}: {c:?}");
                    assert_eq!(*c.iter().max().unwrap() as f64, (value * 255.0).round());
                }
            }
        }
        // A tint shows where it can.
        let c = background_color(0.8, 0.0, 0.15);
        assert!(c[0] > c[2], "{c:?}");
    }
}
