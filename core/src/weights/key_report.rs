//! Missing and unexpected checkpoint keys, summarised by module: a checkpoint for another
//! model or another variant gives a handful of lines (`backbone.bottom_up.res2: 30 of 30
//! missing (0.conv1.weight, …)`), not hundreds of keys.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{Error, Result};

/// At most this many module lines for the missing keys, and as many for the unexpected ones.
const MAX_GROUPS: usize = 8;
/// Keys named per module line.
const EXAMPLES: usize = 3;

/// The keys a model expects that a checkpoint lacks, and those it has that the model does not
/// use. Its [`Display`](fmt::Display) groups both by module.
#[derive(Debug, Clone)]
pub struct KeyReport {
    expected: BTreeSet<String>,
    present: BTreeSet<String>,
    missing: Vec<String>,
    unexpected: Vec<String>,
}

impl KeyReport {
    /// Compares the keys a model `expected` with those `present` in a checkpoint.
    pub fn new<'a>(
        expected: impl IntoIterator<Item = &'a str>,
        present: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let expected: BTreeSet<String> = expected.into_iter().map(str::to_string).collect();
        let present: BTreeSet<String> = present.into_iter().map(str::to_string).collect();
        let missing = expected.difference(&present).cloned().collect();
        let unexpected = present.difference(&expected).cloned().collect();
        Self {
            expected,
            present,
            missing,
            unexpected,
        }
    }

    /// Expected keys absent from the checkpoint, sorted.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Checkpoint keys the model does not use, sorted.
    pub fn unexpected(&self) -> &[String] {
        &self.unexpected
    }

    /// Whether the checkpoint holds exactly the expected keys.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// An error naming `file` and listing the keys by module when any key is missing;
    /// unexpected keys alone are not an error (a caller may warn with the report).
    pub fn check(&self, file: &str) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        Err(Error::bad_file(
            file,
            format!("the checkpoint does not fit the model:\n{self}"),
        ))
    }
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let lists = [
            (&self.missing, &self.expected, "missing"),
            (&self.unexpected, &self.present, "unexpected"),
        ];
        for (keys, reference, what) in lists {
            if keys.is_empty() {
                continue;
            }
            if !first {
                writeln!(f)?;
            }
            first = false;
            let s = if keys.len() == 1 { "" } else { "s" };
            write!(f, "{} {what} key{s}:", keys.len())?;
            let count_in = |prefix: &str| reference.iter().filter(|k| within(k, prefix)).count();
            for (prefix, members) in groups(keys, count_in, MAX_GROUPS) {
                let module = if prefix.is_empty() {
                    "(top level)"
                } else {
                    prefix
                };
                let count = if what == "missing" {
                    format!("{} of {}", members.len(), count_in(prefix))
                } else {
                    members.len().to_string()
                };
                let names: Vec<&str> = (members.iter().take(EXAMPLES))
                    .map(|k| relative(k, prefix))
                    .collect();
                let more = if members.len() > EXAMPLES {
                    ", …"
                } else {
                    ""
                };
                write!(f, "\n  {module}: {count} ({}{more})", names.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Whether `key` lies below the module `prefix` (everything lies below the empty prefix).
fn within(key: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// `key` without `prefix.`.
fn relative<'a>(key: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() {
        key
    } else {
        &key[prefix.len() + 1..]
    }
}

/// `keys` (sorted) grouped by module prefix. A module all of whose keys are listed
/// (`count_in(prefix)` of the reference set) is one group; other groups are split by their next
/// name component (keys directly in the module stay in its group), the largest first, while
/// the split fits in `max` groups. A chain of single children collapses into their common prefix.
fn groups(keys: &[String], count_in: impl Fn(&str) -> usize, max: usize) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = vec![("", keys.iter().map(String::as_str).collect())];
    loop {
        let mut order: Vec<usize> = (0..groups.len())
            .filter(|&i| groups[i].0.is_empty() || groups[i].1.len() < count_in(groups[i].0))
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(groups[i].1.len()));
        let split = order.into_iter().find_map(|i| {
            let children = split(groups[i].0, &groups[i].1);
            let useful = children.len() > 1 || children[0].0 != groups[i].0;
            (useful && groups.len() - 1 + children.len() <= max).then_some((i, children))
        });
        let Some((i, children)) = split else {
            break;
        };
        groups.splice(i..=i, children);
    }
    groups.sort_by(|a, b| a.0.cmp(b.0));
    groups
}

/// The keys of module `prefix` by the module one level deeper (`prefix` itself for keys
/// directly in it), in key order.
fn split<'a>(prefix: &str, keys: &[&'a str]) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&'a str, Vec<&'a str>)> = Vec::new();
    for &key in keys {
        let rest = relative(key, prefix);
        let module = match rest.find('.') {
            // `key` starts with `prefix`, so the module is a prefix of `key` itself.
            Some(dot) => &key[..key.len() - rest.len() + dot],
            None => &key[..prefix.len()],
        };
        match out.iter_mut().find(|(m, _)| *m == module) {
            Some((_, members)) => members.push(key),
            None => out.push((module, vec![key])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet_keys(stage: &str, blocks: usize) -> Vec<String> {
        let mut keys = Vec::new();
        for b in 0..blocks {
            for conv in ["conv1", "conv2", "conv3"] {
                for p in ["weight", "norm.weight", "norm.bias"] {
                    keys.push(format!("backbone.bottom_up.{stage}.{b}.{conv}.{p}"));
                }
            }
        }
        keys
    }

    #[test]
    fn a_missing_stage_is_one_line() {
        let mut expected = resnet_keys("res2", 3);
        expected.extend(resnet_keys("res3", 4));
        expected.push("head.cls.weight".into());
        let present: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .filter(|k| !k.contains("res2"))
            .chain(["pixel_mean", "head.extra.bias"])
            .collect();
        let report = KeyReport::new(expected.iter().map(String::as_str), present);
        assert_eq!(report.missing().len(), 27);
        assert_eq!(report.unexpected(), ["head.extra.bias", "pixel_mean"]);
        assert_eq!(
            report.to_string(),
            "27 missing keys:\n  backbone.bottom_up.res2: 27 of 27 (0.conv1.norm.bias, \
             0.conv1.norm.weight, 0.conv1.weight, …)\n\
             2 unexpected keys:\n  (top level): 1 (pixel_mean)\n  head.extra: 1 (bias)"
        );
        let err = report.check("ckpt.pth").unwrap_err().to_string();
        assert!(err.starts_with("ckpt.pth: the checkpoint does not fit the model:\n27 missing"));
    }

    #[test]
    fn many_modules_stay_within_the_line_budget() {
        let expected: Vec<String> = (0..40)
            .flat_map(|i| {
                [
                    format!("blocks.{i}.attn.qkv.weight"),
                    format!("blocks.{i}.mlp.fc1.weight"),
                ]
            })
            .chain(["norm.weight".to_string()])
            .collect();
        let report = KeyReport::new(expected.iter().map(String::as_str), []);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "81 missing keys:");
        assert!(lines.len() - 1 <= MAX_GROUPS, "{text}");
        assert!(
            text.contains("  blocks: 80 of 80 (0.attn.qkv.weight"),
            "{text}"
        );
        assert!(text.contains("  norm: 1 of 1 (weight)"), "{text}");
    }

    #[test]
    fn partly_missing_modules_count_what_the_model_expects() {
        let expected = [
            "fpn.lateral.weight",
            "fpn.lateral.bias",
            "fpn.output.weight",
        ];
        let report = KeyReport::new(expected, ["fpn.lateral.weight", "fpn.output.weight"]);
        assert_eq!(
            report.to_string(),
            "1 missing key:\n  fpn.lateral: 1 of 2 (bias)"
        );
        assert!(KeyReport::new(expected, expected).is_clean());
        let extra = KeyReport::new(["a.weight"], ["a.weight", "b"]);
        assert!(extra.check("f").is_ok() && !extra.is_clean());
    }
}
