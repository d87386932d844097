//! The shape classes: ids, names, colour-map colours, and the category list and palette that a
//! shapes dataset carries.

use serde_json::{Map, Value, json};

use crate::dataset::Category;
use crate::seggen::Palette;

/// A shape class. Its category id (and label-map id) is its position in [`ShapeClass::ALL`]
/// plus one; 0 is the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeClass {
    Circle,
    Square,
    Triangle,
    Star,
    Ring,
    Cross,
    Heart,
    Hexagon,
    Crescent,
    Arrow,
}

impl ShapeClass {
    /// Every class, in id order.
    pub const ALL: [ShapeClass; 10] = [
        Self::Circle,
        Self::Square,
        Self::Triangle,
        Self::Star,
        Self::Ring,
        Self::Cross,
        Self::Heart,
        Self::Hexagon,
        Self::Crescent,
        Self::Arrow,
    ];

    /// Category id and label-map id, `1..=10`.
    pub fn id(self) -> u8 {
        Self::ALL.iter().position(|&c| c == self).expect("listed") as u8 + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Circle => "circle",
            Self::Square => "square",
            Self::Triangle => "triangle",
            Self::Star => "star",
            Self::Ring => "ring",
            Self::Cross => "cross",
            Self::Heart => "heart",
            Self::Hexagon => "hexagon",
            Self::Crescent => "crescent",
            Self::Arrow => "arrow",
        }
    }

    /// The class's colour in colour maps (SegGen's Text2Mask / Mask2Img): distinct, far from
    /// black (unlabelled) and from the default edge colour.
    pub fn map_color(self) -> [u8; 3] {
        match self {
            Self::Circle => [230, 25, 75],
            Self::Square => [0, 130, 200],
            Self::Triangle => [255, 225, 25],
            Self::Star => [145, 30, 180],
            Self::Ring => [245, 130, 48],
            Self::Cross => [70, 240, 240],
            Self::Heart => [240, 50, 230],
            Self::Hexagon => [0, 128, 128],
            Self::Crescent => [170, 110, 40],
            Self::Arrow => [0, 0, 128],
        }
    }
}

/// The category objects of a shapes dataset (`id`, `name`, `supercategory`). They have no
/// `def`, so `generate`'s default prompt for them is the shapes world's own caption.
pub fn category_objects() -> Vec<Map<String, Value>> {
    ShapeClass::ALL
        .iter()
        .map(|c| {
            let Value::Object(o) =
                json!({"id": c.id(), "name": c.name(), "supercategory": "shape"})
            else {
                unreachable!("an object literal")
            };
            o
        })
        .collect()
}

/// The shape classes as dataset categories.
pub fn categories() -> Vec<Category> {
    category_objects()
        .into_iter()
        .zip(ShapeClass::ALL)
        .map(|(source, c)| Category {
            id: c.id() as u64,
            name: c.name().to_string(),
            def: None,
            frequency: None,
            source,
        })
        .collect()
}

/// `palette.json`: the classes as a custom palette, `[{"id", "name", "color": [r, g, b]}]`.
pub fn palette_json() -> Vec<u8> {
    let entries: Vec<Value> = ShapeClass::ALL
        .iter()
        .map(|c| json!({"id": c.id(), "name": c.name(), "color": c.map_color()}))
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&entries).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

/// The classes' palette, as `palette.json` loads; the shipped palette `shapes`.
pub fn palette() -> Palette {
    Palette::from_json("shapes", &palette_json()).expect("the shapes palette is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seggen::{DEFAULT_EDGE_COLOR, UNLABELLED_COLOR};

    fn distance(a: [u8; 3], b: [u8; 3]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, y)| (x as f64 - y as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn ids_names_and_palette() {
        let ids: Vec<u8> = ShapeClass::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<u8>>());
        let p = palette();
        assert_eq!(p.entries().len(), ShapeClass::ALL.len());
        for c in ShapeClass::ALL {
            let e = p.get(c.id() as u32).unwrap();
            assert_eq!((e.name.as_str(), e.color), (c.name(), c.map_color()));
        }
        let mut colors: Vec<[u8; 3]> = ShapeClass::ALL.iter().map(|c| c.map_color()).collect();
        colors.push(UNLABELLED_COLOR);
        colors.push(DEFAULT_EDGE_COLOR);
        for (i, &a) in colors.iter().enumerate() {
            for &b in &colors[i + 1..] {
                assert!(distance(a, b) > 71.0, "{a:?} and {b:?} are too close");
            }
        }
    }

    #[test]
    fn categories_parse_back() {
        let file = json!({"categories": category_objects()});
        let parsed =
            crate::dataset::parse_categories(&serde_json::to_vec(&file).unwrap(), "x").unwrap();
        let mine = categories();
        assert_eq!(parsed.len(), mine.len());
        for (a, b) in parsed.iter().zip(&mine) {
            assert_eq!((a.id, &a.name, &a.def), (b.id, &b.name, &None));
            assert_eq!(a.source, b.source);
        }
    }
}
