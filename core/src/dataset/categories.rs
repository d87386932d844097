//! Category lists: the `categories` of an LVIS/COCO annotation file, a JSON array of
//! category objects, or a plain text list (one name per line).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// LVIS frequency group: rare (1–10 training images), common (11–100), frequent (>100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub enum Frequency {
    #[serde(rename = "r")]
    Rare,
    #[serde(rename = "c")]
    Common,
    #[serde(rename = "f")]
    Frequent,
}

impl Frequency {
    /// Parses a comma-separated list such as `r,c`.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        s.split(',')
            .map(|f| match f.trim() {
                "r" => Ok(Self::Rare),
                "c" => Ok(Self::Common),
                "f" => Ok(Self::Frequent),
                other => Err(Error::Invalid(format!(
                    "unknown frequency `{other}`: use r (rare), c (common) or f (frequent)"
                ))),
            })
            .collect()
    }
}

/// One category: the fields MaskForge uses, plus the whole source object so that datasets keep
/// every other field (synset, synonyms, …).
#[derive(Debug, Clone)]
pub struct Category {
    pub id: u64,
    pub name: String,
    /// LVIS `def`: a one-sentence definition.
    pub def: Option<String>,
    pub frequency: Option<Frequency>,
    pub source: Map<String, Value>,
}

#[derive(Deserialize)]
struct AnnotationFile {
    categories: Vec<Map<String, Value>>,
}

/// Parses a category file's bytes; `file` names it in errors.
pub fn parse_categories(bytes: &[u8], file: &str) -> Result<Vec<Category>> {
    let text_start = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let objects = match text_start {
        None => return Err(Error::bad_file(file, "the category file is empty")),
        Some(b'{') => {
            serde_json::from_slice::<AnnotationFile>(bytes)
                .map_err(|e| Error::bad_file(file, format!("not an LVIS/COCO file: {e}")))?
                .categories
        }
        Some(b'[') => serde_json::from_slice::<Vec<Map<String, Value>>>(bytes)
            .map_err(|e| Error::bad_file(file, format!("not a JSON array of categories: {e}")))?,
        Some(_) => return parse_text_list(bytes, file),
    };
    let categories = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            category_from_object(o).map_err(|e| Error::bad_file(file, format!("category {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    check_nonempty_unique(categories, file)
}

fn category_from_object(source: Map<String, Value>) -> std::result::Result<Category, String> {
    let id = source
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("missing or non-integer `id`")?;
    let name = source
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or("missing or empty `name`")?
        .to_string();
    let def = source
        .get("def")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|d| !d.trim().is_empty());
    let frequency = match source.get("frequency") {
        None | Some(Value::Null) => None,
        Some(f) => Some(
            serde_json::from_value::<Frequency>(f.clone())
                .map_err(|_| format!("unknown frequency {f}: expected \"r\", \"c\" or \"f\""))?,
        ),
    };
    Ok(Category {
        id,
        name,
        def,
        frequency,
        source,
    })
}

/// One name per line; blank lines and lines starting with `#` are skipped; ids are 1, 2, …
fn parse_text_list(bytes: &[u8], file: &str) -> Result<Vec<Category>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::bad_file(file, format!("not UTF-8 text: {e}")))?;
    let categories = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, name)| {
            let id = i as u64 + 1;
            let mut source = Map::new();
            source.insert("id".into(), id.into());
            source.insert("name".into(), name.into());
            Category {
                id,
                name: name.to_string(),
                def: None,
                frequency: None,
                source,
            }
        })
        .collect();
    check_nonempty_unique(categories, file)
}

fn check_nonempty_unique(categories: Vec<Category>, file: &str) -> Result<Vec<Category>> {
    if categories.is_empty() {
        return Err(Error::bad_file(file, "the file lists no categories"));
    }
    let mut ids: Vec<u64> = categories.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::bad_file(
            file,
            format!("category id {} appears twice", w[0]),
        ));
    }
    Ok(categories)
}

/// Indices of the categories whose frequency is in `frequencies` (all when `None`).
pub fn main_pool(categories: &[Category], frequencies: Option<&[Frequency]>) -> Result<Vec<usize>> {
    let Some(wanted) = frequencies else {
        return Ok((0..categories.len()).collect());
    };
    if categories.iter().all(|c| c.frequency.is_none()) {
        return Err(Error::Invalid(
            "a main frequency was asked for, but the categories have no `frequency` field".into(),
        ));
    }
    let pool: Vec<usize> = categories
        .iter()
        .enumerate()
        .filter(|(_, c)| c.frequency.is_some_and(|f| wanted.contains(&f)))
        .map(|(i, _)| i)
        .collect();
    if pool.is_empty() {
        return Err(Error::Invalid(format!(
            "no category has frequency {wanted:?}"
        )));
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvis_json_text_list_and_errors() {
        let lvis = br#"{"images": [], "categories": [
            {"id": 3, "name": "bow_(weapon)", "def": "a weapon", "frequency": "r", "synset": "bow.n.04"},
            {"id": 5, "name": "cat", "def": "", "frequency": "f"}]}"#;
        let c = parse_categories(lvis, "lvis.json").unwrap();
        assert_eq!(c[0].name, "bow_(weapon)");
        assert_eq!(c[0].def.as_deref(), Some("a weapon"));
        assert_eq!(c[1].def, None);
        assert_eq!(c[0].source["synset"], "bow.n.04");
        assert_eq!(main_pool(&c, Some(&[Frequency::Rare])).unwrap(), vec![0]);
        assert!(main_pool(&c, Some(&[Frequency::Common])).is_err());

        let text = parse_categories(b"# animals\ncat\n\n dog \n", "list.txt").unwrap();
        assert_eq!(
            text.iter()
                .map(|c| (c.id, c.name.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "cat"), (2, "dog")]
        );
        assert!(
            main_pool(&text, Some(&[Frequency::Rare]))
                .unwrap_err()
                .to_string()
                .contains("frequency")
        );

        for (bytes, needle) in [
            (&b"  \n"[..], "empty"),
            (b"# only a comment\n", "no categories"),
            (b"{\"categories\": [", "not an LVIS"),
            (b"{\"categories\": [{\"id\": 1}]}", "name"),
            (
                b"[{\"id\": 1, \"name\": \"a\", \"frequency\": \"x\"}]",
                "frequency",
            ),
            (
                b"[{\"id\": 1, \"name\": \"a\"}, {\"id\": 1, \"name\": \"b\"}]",
                "twice",
            ),
        ] {
            let e = parse_categories(bytes, "cats.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains("cats.json") && e.contains(needle), "{e}");
        }
        assert!(
            Frequency::parse_list("r,q")
                .unwrap_err()
                .to_string()
                .contains("`q`")
        );
        assert_eq!(
            Frequency::parse_list("r, f").unwrap(),
            vec![Frequency::Rare, Frequency::Frequent]
        );
    }
}
