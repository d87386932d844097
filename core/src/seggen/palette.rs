//! Palettes: class id ↦ name and colour. ADE20K-150, COCO panoptic and the shapes world's ship
//! with the core; any other comes as a JSON list of `{"id", "name", "color": [r, g, b]}` (optional `isthing`).

use serde::Deserialize;

use crate::{Error, Result};

/// The colour of label 0 (unlabelled, void).
pub const UNLABELLED_COLOR: [u8; 3] = [0, 0, 0];

/// The default colour of panoptic segment edges: a light green that no shipped palette uses,
/// more than 71 RGB units from every ADE20K and COCO colour and from black. (White, the obvious
/// choice, is COCO's "snow".)
pub const DEFAULT_EDGE_COLOR: [u8; 3] = [120, 255, 70];

/// The largest class id: label maps are at most 16-bit.
pub const MAX_CLASS_ID: u32 = u16::MAX as u32;

/// One class of a palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaletteEntry {
    /// Class id, `1..=MAX_CLASS_ID` (0 is unlabelled).
    pub id: u16,
    pub name: String,
    pub color: [u8; 3],
    /// COCO panoptic's `isthing`, when the palette says.
    pub isthing: Option<bool>,
}

/// Classes with their colours, sorted by id, ids unique.
#[derive(Debug, Clone)]
pub struct Palette {
    /// What the palette was loaded from (`ade20k`, `coco-panoptic`, `shapes` or a file), for
    /// messages and records.
    pub name: String,
    entries: Vec<PaletteEntry>,
    /// Entry index of each id, `[max id + 1]`.
    index: Vec<Option<u16>>,
}

/// A palette entry as written in JSON, checked by [`Palette::from_json`]; other fields (e.g.
/// `supercategory` of panopticapi's category files) are ignored.
#[derive(Deserialize)]
struct RawEntry {
    id: i64,
    name: String,
    color: Vec<i64>,
    #[serde(default)]
    isthing: Option<serde_json::Value>,
}

impl Palette {
    /// ADE20K's 150 classes (ADEChallengeData2016 ids 1–150), names and colours of
    /// mmsegmentation's `ADE20KDataset.METAINFO`: id k ↦ `palette[k - 1]`. Ids 7 (road) and
    /// 49 (skyscraper) share `[140, 140, 140]`; decoding gives 7.
    pub fn ade20k() -> Palette {
        Self::from_json("ade20k", include_bytes!("palettes/ade20k.json"))
            .expect("the embedded ADE20K palette is valid")
    }

    /// COCO panoptic's 133 categories: ids, names, colours and `isthing` of detectron2's
    /// `COCO_CATEGORIES`.
    pub fn coco_panoptic() -> Palette {
        Self::from_json(
            "coco-panoptic",
            include_bytes!("palettes/coco_panoptic.json"),
        )
        .expect("the embedded COCO panoptic palette is valid")
    }

    /// A shipped palette by name: `ade20k`, `coco-panoptic`, or `shapes` (the shapes world's
    /// classes, as its `palette.json` lists them).
    pub fn builtin(name: &str) -> Option<Palette> {
        match name {
            "ade20k" => Some(Self::ade20k()),
            "coco-panoptic" => Some(Self::coco_panoptic()),
            "shapes" => Some(crate::shapes::classes::palette()),
            _ => None,
        }
    }

    /// Parses a JSON list of `{"id", "name", "color": [r, g, b], "isthing"?}` read from `file`.
    /// Ids are `1..=65535` and unique; colours are three integers `0..=255`.
    pub fn from_json(file: &str, bytes: &[u8]) -> Result<Palette> {
        let bad = |message: String| Error::bad_file(file, message);
        let raw: Vec<RawEntry> = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "not a palette (a JSON list of {{\"id\", \"name\", \"color\": [r, g, b]}}): {e}"
            ))
        })?;
        if raw.is_empty() {
            return Err(bad("the palette has no classes".into()));
        }
        let mut entries = Vec::with_capacity(raw.len());
        for (i, e) in raw.into_iter().enumerate() {
            let what = format!("entry {i} (id {}, \"{}\")", e.id, e.name);
            if e.id == 0 {
                return Err(bad(format!(
                    "{what}: id 0 is reserved for unlabelled pixels (black)"
                )));
            }
            let id = u16::try_from(e.id)
                .map_err(|_| bad(format!("{what}: id must be in 1..={MAX_CLASS_ID}")))?;
            let color = match e.color.as_slice() {
                [r, g, b] if [r, g, b].iter().all(|c| (0..=255).contains(*c)) => {
                    [*r as u8, *g as u8, *b as u8]
                }
                c => {
                    return Err(bad(format!(
                        "{what}: color {c:?} is not three integers in 0..=255"
                    )));
                }
            };
            let isthing = match e.isthing {
                None => None,
                Some(serde_json::Value::Bool(b)) => Some(b),
                Some(v) if v.as_u64() == Some(0) || v.as_u64() == Some(1) => {
                    Some(v.as_u64() == Some(1))
                }
                Some(v) => return Err(bad(format!("{what}: isthing {v} is not 0, 1 or a bool"))),
            };
            entries.push(PaletteEntry {
                id,
                name: e.name,
                color,
                isthing,
            });
        }
        entries.sort_by_key(|e| e.id);
        if let Some(w) = entries.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(bad(format!(
                "id {} is used twice (\"{}\" and \"{}\")",
                w[0].id, w[0].name, w[1].name
            )));
        }
        let mut index = vec![None; entries.last().map_or(0, |e| e.id as usize) + 1];
        for (i, e) in entries.iter().enumerate() {
            index[e.id as usize] = Some(i as u16);
        }
        Ok(Palette {
            name: file.to_string(),
            entries,
            index,
        })
    }

    /// The classes, sorted by id.
    pub fn entries(&self) -> &[PaletteEntry] {
        &self.entries
    }

    /// The class of `id`, if the palette has it.
    pub fn get(&self, id: u32) -> Option<&PaletteEntry> {
        let i = (*self.index.get(id as usize)?)?;
        Some(&self.entries[i as usize])
    }

    /// The largest class id.
    pub fn max_id(&self) -> u16 {
        self.entries.last().map_or(0, |e| e.id)
    }

    /// Colour of each id `0..=max_id` (0 black), `None` for ids the palette lacks.
    pub fn color_table(&self) -> Vec<Option<[u8; 3]>> {
        let mut table: Vec<_> = self
            .index
            .iter()
            .map(|i| i.map(|i| self.entries[i as usize].color))
            .collect();
        table[0] = Some(UNLABELLED_COLOR);
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `tests/fixtures/expected/palettes.json`, written by `tests/fixtures/palettes_ref.py` from
    /// the mmsegmentation wheel and detectron2's `builtin_meta.py`.
    fn reference() -> Value {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/expected/palettes.json"
        ))
        .unwrap()
    }

    fn color(v: &Value) -> [u8; 3] {
        let c: Vec<u8> = serde_json::from_value(v.clone()).unwrap();
        [c[0], c[1], c[2]]
    }

    #[test]
    fn ade20k_equals_mmsegmentation() {
        let r = reference();
        let classes = r["ade20k"]["classes"].as_array().unwrap();
        let colors = r["ade20k"]["palette"].as_array().unwrap();
        let p = Palette::ade20k();
        assert_eq!(p.entries().len(), 150);
        assert_eq!(classes.len(), 150);
        for (k, e) in (1..=150u32).zip(p.entries()) {
            assert_eq!(e.id as u32, k);
            assert_eq!(
                e.name,
                classes[k as usize - 1].as_str().unwrap(),
                "name of {k}"
            );
            assert_eq!(e.color, color(&colors[k as usize - 1]), "colour of {k}");
            assert_eq!(e.isthing, None);
        }
    }

    #[test]
    fn coco_panoptic_equals_detectron2() {
        let r = reference();
        let cats = r["coco_panoptic"].as_array().unwrap();
        let p = Palette::coco_panoptic();
        assert_eq!(cats.len(), 133);
        assert_eq!(p.entries().len(), 133);
        for (c, e) in cats.iter().zip(p.entries()) {
            assert_eq!(e.id as u64, c["id"].as_u64().unwrap());
            assert_eq!(e.name, c["name"].as_str().unwrap());
            assert_eq!(e.color, color(&c["color"]), "colour of {}", e.id);
            assert_eq!(e.isthing, Some(c["isthing"].as_u64().unwrap() == 1));
        }
    }

    #[test]
    fn default_edge_color_is_in_no_shipped_palette() {
        for name in ["ade20k", "coco-panoptic", "shapes"] {
            let p = Palette::builtin(name).unwrap();
            assert_eq!(p.name, name);
            assert!(
                p.entries().iter().all(|e| e.color != DEFAULT_EDGE_COLOR),
                "{}",
                p.name
            );
            assert!(
                p.entries().iter().all(|e| e.color != UNLABELLED_COLOR),
                "{}",
                p.name
            );
        }
        assert_ne!(DEFAULT_EDGE_COLOR, UNLABELLED_COLOR);
    }

    #[test]
    fn lookup() {
        let p = Palette::coco_panoptic();
        assert_eq!(p.get(159).unwrap().name, "snow");
        assert!(p.get(12).is_none() && p.get(0).is_none() && p.get(70_000).is_none());
        assert_eq!(p.max_id(), 200);
        let table = p.color_table();
        assert_eq!(table.len(), 201);
        assert_eq!(table[0], Some([0, 0, 0]));
        assert_eq!(table[1], Some([220, 20, 60]));
        assert_eq!(table[12], None);
        assert!(Palette::builtin("ade20k").is_some() && Palette::builtin("ade").is_none());
    }

    #[test]
    fn custom_palettes_and_their_errors() {
        let p = Palette::from_json(
            "mine.json",
            br#"[{"id": 3, "name": "b", "color": [1, 2, 3], "isthing": true, "supercategory": "x"},
                 {"id": 1, "name": "a", "color": [4, 5, 6]}]"#,
        )
        .unwrap();
        assert_eq!(p.entries()[0].name, "a");
        assert_eq!(p.get(3).unwrap().isthing, Some(true));
        let bad = [
            (&b"[{"[..], "not a palette"),
            (br#"[{"id": 1, "name": "a"}]"#, "color"),
            (br#"[{"id": 1, "color": [1, 2, 3]}]"#, "name"),
            (br#"[{"id": 1, "name": "a", "color": [1, 2, 3]}, {"id": 1, "name": "b", "color": [0, 2, 3]}]"#, "id 1 is used twice"),
            (br#"[{"id": 1, "name": "a", "color": [1, 256, 3]}]"#, "0..=255"),
            (br#"[{"id": 1, "name": "a", "color": [1, 2]}]"#, "three integers"),
            (br#"[{"id": 0, "name": "a", "color": [1, 2, 3]}]"#, "id 0"),
            (br#"[{"id": 70000, "name": "a", "color": [1, 2, 3]}]"#, "1..=65535"),
            (br#"[]"#, "no classes"),
        ];
        for (json, needle) in bad {
            let e = Palette::from_json("mine.json", json)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("mine.json: ") && e.contains(needle), "{e}");
        }
    }
}
