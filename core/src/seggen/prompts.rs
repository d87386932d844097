//! The prompt files of ImgSyn and MaskSyn: JSON lines, one sample source per line.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A line of ImgSyn's prompt file: a label map (a file name relative to the labels folder) and
/// the caption of the images drawn for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImgSynPrompt {
    pub labels: String,
    pub caption: String,
}

/// A line of MaskSyn's prompt file: the caption that Text2Mask draws a mask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSynPrompt {
    pub caption: String,
}

/// Parses JSON lines (blank lines skipped); errors name `file` and the line number.
pub fn parse_jsonl<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<Vec<T>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::bad_file(file, format!("not UTF-8 text: {e}")))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line)
            .map_err(|e| Error::bad_file(file, format!("line {}: {e}", n + 1)))?;
        lines.push(value);
    }
    if lines.is_empty() {
        return Err(Error::bad_file(
            file,
            "no prompts (the file has no JSON lines)",
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_errors_name_the_line() {
        let ok = b"{\"labels\": \"a.png\", \"caption\": \"a room\"}\n\n{\"labels\": \"b.png\", \"caption\": \"x\"}\n";
        let lines: Vec<ImgSynPrompt> = parse_jsonl("p.jsonl", ok).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].labels, "b.png");

        let bad = b"{\"caption\": \"fine\"}\n{\"caption\": 3}\n";
        let e = parse_jsonl::<MaskSynPrompt>("p.jsonl", bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.jsonl: line 2:"), "{e}");

        let missing = b"{\"caption\": \"no labels\"}\n";
        let e = parse_jsonl::<ImgSynPrompt>("p.jsonl", missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("labels"), "{e}");

        let e = parse_jsonl::<MaskSynPrompt>("p.jsonl", b"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no prompts"), "{e}");
    }
}
