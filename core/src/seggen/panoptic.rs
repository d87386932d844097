//! COCO panoptic segments: the PNG's segment ids (`R + 256·G + 256²·B`, as panopticapi's
//! `rgb2id`) and the segments JSON.

use std::collections::HashSet;

use serde_json::Value;

use super::ColorMap;
use crate::{Error, Result};

/// One segment of a panoptic annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Segment id, `1..2^24` (0 is void).
    pub id: u32,
    pub category_id: u32,
}

/// Segment id of each pixel, `[height, width]`: `R + 256·G + 256²·B`.
pub fn segment_ids(map: &ColorMap) -> Vec<u32> {
    map.rgb
        .chunks_exact(3)
        .map(|p| p[0] as u32 + 256 * p[1] as u32 + 65536 * p[2] as u32)
        .collect()
}

/// The PNG colour of segment `id` (panopticapi's `id2rgb`).
pub fn segment_color(id: u32) -> [u8; 3] {
    [id as u8, (id >> 8) as u8, (id >> 16) as u8]
}

/// Parses the segments of `file`: a COCO panoptic annotation object (its `segments_info`) or a
/// list of `{"id", "category_id", ...}`. Ids are unique and in `1..2^24`.
pub fn parse_segments(file: &str, bytes: &[u8]) -> Result<Vec<Segment>> {
    let bad = |message: String| Error::bad_file(file, message);
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("bad JSON: {e}")))?;
    let list = match &value {
        Value::Array(list) => list,
        Value::Object(o) => match o.get("segments_info") {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(bad(
                    "an annotation object needs a `segments_info` list".into()
                ));
            }
        },
        _ => {
            return Err(bad(
                "expected a COCO panoptic annotation (with `segments_info`) or a list of segments"
                    .into(),
            ));
        }
    };
    let mut seen = HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let field = |key: &str| {
                s.get(key).and_then(Value::as_u64).ok_or_else(|| {
                    bad(format!(
                        "segment {i}: `{key}` is missing or not a non-negative integer"
                    ))
                })
            };
            let (id, category_id) = (field("id")?, field("category_id")?);
            if id == 0 || id >= 1 << 24 {
                return Err(bad(format!("segment {i}: id {id} is not in 1..2^24")));
            }
            if !seen.insert(id) {
                return Err(bad(format!("segment id {id} is listed twice")));
            }
            let category_id = u32::try_from(category_id).map_err(|_| {
                bad(format!(
                    "segment {i}: category_id {category_id} is too large"
                ))
            })?;
            Ok(Segment {
                id: id as u32,
                category_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_colours() {
        for id in [1, 255, 256, 70_000, (1 << 24) - 1] {
            let c = segment_color(id);
            let map = ColorMap::new(1, 1, c.to_vec()).unwrap();
            assert_eq!(segment_ids(&map), vec![id]);
        }
        assert_eq!(segment_color(1 + 2 * 256 + 3 * 65536), [1, 2, 3]);
    }

    #[test]
    fn both_json_forms() {
        let object = br#"{"image_id": 1, "file_name": "a.png",
            "segments_info": [{"id": 5, "category_id": 1, "area": 3, "iscrowd": 0}]}"#;
        let list = br#"[{"id": 5, "category_id": 1}]"#;
        let want = vec![Segment {
            id: 5,
            category_id: 1,
        }];
        assert_eq!(parse_segments("a.json", object).unwrap(), want);
        assert_eq!(parse_segments("a.json", list).unwrap(), want);
        for (json, needle) in [
            (&b"{"[..], "bad JSON"),
            (br#"{"annotations": []}"#, "segments_info"),
            (br#"[{"id": 5}]"#, "category_id"),
            (br#"[{"id": 0, "category_id": 1}]"#, "id 0"),
            (
                br#"[{"id": 5, "category_id": 1}, {"id": 5, "category_id": 2}]"#,
                "twice",
            ),
            (br#"3"#, "list of segments"),
        ] {
            let e = parse_segments("a.json", json).unwrap_err().to_string();
            assert!(e.starts_with("a.json: ") && e.contains(needle), "{e}");
        }
    }
}
