//! CLIP byte-level BPE tokenizer, as transformers' `CLIPTokenizer` (5.x, backed by the
//! `tokenizers` library) runs it for Stable Diffusion pipelines:
//!
//! 1. special tokens (`<|startoftext|>`, `<|endoftext|>`, the pad token) are split out of the
//!    raw text, or out of the normalised text for tokens declared `"normalized": true`;
//! 2. normalisation: NFC, every run of whitespace → one space, per-character lowercasing;
//! 3. pre-tokenisation with CLIP's regex (whitespace dropped), then the byte-level
//!    pre-tokeniser's GPT-2 split and the `bytes_to_unicode` mapping;
//! 4. BPE per word with `</w>` appended to the word's last symbol, merges by rank;
//! 5. `bos + ids + eos`, truncated to `model_max_length` (77) and optionally padded.
//!
//! transformers 5 applies neither ftfy nor HTML unescaping (`&amp;` stays `&`, `amp`, `;`),
//! unlike OpenAI's / open_clip's reference tokenizer; this module follows transformers, which
//! is what diffusers pipelines use.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";

/// CLIP's pre-tokenisation pattern (`pre_tokenizers.Split(..., invert=True)`): the matches are
/// the pieces, everything else (whitespace) is dropped.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The byte-level pre-tokeniser's GPT-2 pattern, restricted to text without whitespace (CLIP
/// pieces never contain any). It only changes the special-token pieces: `<|`, `endoftext`, `|>`.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";

/// A special token matched before BPE (`AddedToken(special=True)`).
#[derive(Debug, Clone)]
struct SpecialToken {
    content: String,
    id: u32,
    /// Matched in the normalised text (`true`) or in the raw text (`false`).
    normalized: bool,
}

/// CLIP tokenizer: vocabulary, merge ranks and special tokens.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    /// `(left id, right id) → (rank, merged id)`.
    merges: HashMap<(u32, u32), (usize, u32)>,
    /// `bytes_to_unicode`: the printable character standing for each byte.
    byte_chars: [char; 256],
    clip_re: Regex,
    gpt2_re: Regex,
    specials: Vec<SpecialToken>,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    unk_id: Option<u32>,
    max_length: usize,
}

impl ClipTokenizer {
    /// Builds the tokenizer from `vocab.json` and `merges.txt` with transformers' defaults:
    /// bos `<|startoftext|>`, eos/unk/pad `<|endoftext|>`, `model_max_length` 77.
    pub fn from_bytes(vocab_json: &[u8], merges_txt: &[u8]) -> Result<Self, String> {
        let vocab: HashMap<String, u32> =
            serde_json::from_slice(vocab_json).map_err(|e| format!("vocab.json: {e}"))?;
        let merges_txt = std::str::from_utf8(merges_txt).map_err(|e| format!("merges.txt: {e}"))?;
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| format!("token {token:?} is not in vocab.json"))
        };
        let mut merges = HashMap::new();
        let lines = merges_txt
            .lines()
            .enumerate()
            .filter(|(i, line)| !(*i == 0 && line.starts_with("#version")) && !line.is_empty());
        for (rank, (i, line)) in lines.enumerate() {
            let (a, b) = line
                .split_once(' ')
                .filter(|(_, b)| !b.contains(' '))
                .ok_or_else(|| format!("merges.txt line {}: expected two tokens", i + 1))?;
            merges.insert((id(a)?, id(b)?), (rank, id(&format!("{a}{b}"))?));
        }
        let (bos_id, eos_id) = (id(BOS)?, id(EOS)?);
        let special = |content: &str, id| SpecialToken {
            content: content.into(),
            id,
            normalized: false,
        };
        Ok(Self {
            merges,
            byte_chars: bytes_to_unicode(),
            clip_re: Regex::new(CLIP_PATTERN).map_err(|e| e.to_string())?,
            gpt2_re: Regex::new(GPT2_PATTERN).map_err(|e| e.to_string())?,
            specials: vec![special(BOS, bos_id), special(EOS, eos_id)],
            bos_id,
            eos_id,
            pad_id: eos_id,
            unk_id: Some(eos_id),
            max_length: 77,
            vocab,
        })
    }

    /// Sets the padding token (SD1: `<|endoftext|>`, SD2: `!`); like transformers it also
    /// becomes a special token, so a `!` in an SD2 prompt encodes as the pad id.
    pub fn with_pad_token(self, token: &str) -> Result<Self, String> {
        self.with_special(SpecialRole::Pad, token, false)
    }

    /// Builds the tokenizer from a diffusers `tokenizer/` folder: special tokens and
    /// `model_max_length` come from `tokenizer_config.json`, overridden by
    /// `special_tokens_map.json` unless the config has an `added_tokens_decoder` (as in
    /// transformers' `from_pretrained`).
    pub fn from_folder_files(
        vocab_json: &[u8],
        merges_txt: &[u8],
        special_tokens_map_json: Option<&[u8]>,
        tokenizer_config_json: Option<&[u8]>,
    ) -> Result<Self, String> {
        let parse =
            |name: &str, bytes: Option<&[u8]>| -> Result<serde_json::Map<String, Value>, String> {
                match bytes {
                    None => Ok(Default::default()),
                    Some(bytes) => match serde_json::from_slice(bytes) {
                        Ok(Value::Object(map)) => Ok(map),
                        Ok(_) => Err(format!("{name}: expected a JSON object")),
                        Err(e) => Err(format!("{name}: {e}")),
                    },
                }
            };
        let config = parse("tokenizer_config.json", tokenizer_config_json)?;
        let mut tokens = config.clone();
        if !config.contains_key("added_tokens_decoder") {
            tokens.extend(parse("special_tokens_map.json", special_tokens_map_json)?);
        }
        let mut tokenizer = Self::from_bytes(vocab_json, merges_txt)?;
        // transformers registers them in this order; a later one with the same content wins.
        for role in [
            SpecialRole::Bos,
            SpecialRole::Eos,
            SpecialRole::Unk,
            SpecialRole::Pad,
        ] {
            if let Some(value) = tokens.get(role.key()).filter(|v| !v.is_null()) {
                let (content, normalized) = added_token(role.key(), value)?;
                tokenizer = tokenizer.with_special(role, &content, normalized)?;
            }
        }
        match config.get("model_max_length") {
            None => {}
            Some(Value::Number(n)) => {
                tokenizer.max_length = n
                    .as_u64()
                    .filter(|&n| (2..=65_536).contains(&n))
                    .ok_or_else(|| format!("unsupported model_max_length {n}"))?
                    as usize;
            }
            Some(v) => return Err(format!("model_max_length: expected a number, got {v}")),
        }
        Ok(tokenizer)
    }

    fn with_special(
        mut self,
        role: SpecialRole,
        content: &str,
        normalized: bool,
    ) -> Result<Self, String> {
        let id = *self
            .vocab
            .get(content)
            .ok_or_else(|| format!("{} {content:?} is not in vocab.json", role.key()))?;
        match role {
            SpecialRole::Bos => self.bos_id = id,
            SpecialRole::Eos => self.eos_id = id,
            SpecialRole::Unk => self.unk_id = Some(id),
            SpecialRole::Pad => self.pad_id = id,
        }
        self.specials.retain(|s| s.content != content);
        self.specials.push(SpecialToken {
            content: content.into(),
            id,
            normalized,
        });
        Ok(self)
    }

    /// Maximum sequence length (`model_max_length`, 77 for Stable Diffusion).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// `tokenizer(text, truncation=True).input_ids`: `bos + ids + eos`, at most `max_length`
    /// ids, `eos` last.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = self.tokenize_word_ids(text);
        ids.truncate(self.max_length - 2);
        ids.insert(0, self.bos_id);
        ids.push(self.eos_id);
        ids
    }

    /// `tokenizer(text, padding="max_length", truncation=True).input_ids`: exactly
    /// `max_length` ids.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let mut ids = self.encode(text);
        ids.resize(self.max_length, self.pad_id);
        ids
    }

    /// The ids of `text` without bos/eos and without truncation (e.g. to find a category's
    /// sub-tokens inside a prompt).
    pub fn tokenize_word_ids(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for raw in split_specials(text, &self.specials, false) {
            let raw = match raw {
                Segment::Special(id) => {
                    ids.push(id);
                    continue;
                }
                Segment::Text(raw) => raw,
            };
            let normalized = normalize(raw);
            for segment in split_specials(&normalized, &self.specials, true) {
                match segment {
                    Segment::Special(id) => ids.push(id),
                    Segment::Text(text) => {
                        for piece in self.clip_re.find_iter(text) {
                            for word in self.gpt2_re.find_iter(piece.as_str()) {
                                self.bpe(word.as_str(), &mut ids);
                            }
                        }
                    }
                }
            }
        }
        ids
    }

    /// Byte-level BPE of one pre-tokenised word, appending its ids.
    fn bpe(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<char> = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
        let mut symbols: Vec<u32> = Vec::with_capacity(chars.len());
        let mut buf = String::new();
        for (i, c) in chars.iter().enumerate() {
            buf.clear();
            buf.push(*c);
            if i + 1 == chars.len() {
                buf.push_str(END_OF_WORD);
            }
            // Unknown symbols become `unk` (impossible with a complete byte-level vocabulary).
            if let Some(id) = self.vocab.get(&buf).copied().or(self.unk_id) {
                symbols.push(id);
            }
        }
        // Repeatedly merge the adjacent pair of lowest rank (leftmost first).
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(rank, id)| (rank, i, id))
                })
                .min();
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        ids.extend(symbols);
    }
}

#[derive(Debug, Clone, Copy)]
enum SpecialRole {
    Bos,
    Eos,
    Unk,
    Pad,
}

impl SpecialRole {
    fn key(self) -> &'static str {
        match self {
            SpecialRole::Bos => "bos_token",
            SpecialRole::Eos => "eos_token",
            SpecialRole::Unk => "unk_token",
            SpecialRole::Pad => "pad_token",
        }
    }
}

/// `(content, normalized)` of a special token given as a string (not normalised) or as a
/// serialised `AddedToken` (`normalized` defaults to `false` for special tokens).
fn added_token(key: &str, value: &Value) -> Result<(String, bool), String> {
    match value {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(map) => {
            let content = map
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{key}: missing \"content\""))?;
            let flag = |name: &str| map.get(name).and_then(Value::as_bool).unwrap_or(false);
            if flag("lstrip") || flag("rstrip") || flag("single_word") {
                return Err(format!(
                    "{key}: lstrip/rstrip/single_word are not supported"
                ));
            }
            Ok((content.to_string(), flag("normalized")))
        }
        other => Err(format!(
            "{key}: expected a string or an AddedToken, got {other}"
        )),
    }
}

enum Segment<'a> {
    Text(&'a str),
    Special(u32),
}

/// Splits `text` on the special tokens whose `normalized` flag equals `normalized`
/// (leftmost-longest match, as the `tokenizers` added-vocabulary does).
fn split_specials<'a>(
    text: &'a str,
    specials: &[SpecialToken],
    normalized: bool,
) -> Vec<Segment<'a>> {
    let specials: Vec<&SpecialToken> = specials
        .iter()
        .filter(|s| s.normalized == normalized)
        .collect();
    let mut segments = Vec::new();
    let (mut start, mut pos) = (0, 0);
    while pos < text.len() {
        let rest = &text[pos..];
        let found = specials
            .iter()
            .filter(|s| rest.starts_with(&s.content))
            .max_by_key(|s| s.content.len());
        match found {
            Some(special) => {
                if start < pos {
                    segments.push(Segment::Text(&text[start..pos]));
                }
                segments.push(Segment::Special(special.id));
                pos += special.content.len();
                start = pos;
            }
            None => pos += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        segments.push(Segment::Text(&text[start..]));
    }
    segments
}

/// `normalizers.Sequence([NFC(), Replace(Regex(r"\s+"), " "), Lowercase()])`.
fn normalize(text: &str) -> String {
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(text);
    let mut out = String::with_capacity(nfc.len());
    let mut in_space = false;
    for c in nfc.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            // Per character, as `tokenizers` does (no context-dependent final sigma).
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the others to U+0100.. in
/// byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (see tests/fixtures/README.md)"))
    }

    fn from_folder(dir: &str) -> ClipTokenizer {
        ClipTokenizer::from_folder_files(
            &fixture(&format!("{dir}/tokenizer/vocab.json")),
            &fixture(&format!("{dir}/tokenizer/merges.txt")),
            Some(&fixture(&format!(
                "{dir}/tokenizer/special_tokens_map.json"
            ))),
            Some(&fixture(&format!("{dir}/tokenizer/tokenizer_config.json"))),
        )
        .expect("tokenizer")
    }

    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        ids_sd1: Vec<u32>,
        ids_sd2: Vec<u32>,
    }

    /// Every prompt of `tokens.json` (transformers' `CLIPTokenizer`, padded to 77) with the SD1
    /// (pad `<|endoftext|>`) and SD2 (pad `!`) tokenizer folders. Its `ids_openclip_ref`
    /// column (open_clip: ftfy + HTML unescaping) is deliberately not compared: diffusers
    /// uses transformers.
    #[test]
    fn matches_transformers_fixture() {
        let rows: Vec<Row> = serde_json::from_slice(&fixture("expected/tokens.json")).unwrap();
        let sd1 = from_folder("tiny-sd15");
        let sd2 = from_folder("tiny-sd2v");
        assert_eq!(
            (sd1.pad_id(), sd2.pad_id(), sd1.max_length()),
            (49407, 0, 77)
        );
        for row in &rows {
            assert_eq!(
                sd1.encode_padded(&row.text),
                row.ids_sd1,
                "sd1 {:?}",
                row.text
            );
            assert_eq!(
                sd2.encode_padded(&row.text),
                row.ids_sd2,
                "sd2 {:?}",
                row.text
            );
        }
        // Same pad tokens through the programmatic constructors.
        let (vocab, merges) = (
            fixture("tiny-sd15/tokenizer/vocab.json"),
            fixture("tiny-sd15/tokenizer/merges.txt"),
        );
        let plain = ClipTokenizer::from_bytes(&vocab, &merges).unwrap();
        let bang = ClipTokenizer::from_bytes(&vocab, &merges)
            .unwrap()
            .with_pad_token("!")
            .unwrap();
        for row in &rows {
            assert_eq!(
                plain.encode_padded(&row.text),
                row.ids_sd1,
                "{:?}",
                row.text
            );
            assert_eq!(bang.encode_padded(&row.text), row.ids_sd2, "{:?}", row.text);
        }
    }

    /// Edge cases checked with transformers 5.23 on the fixture tokenizers (SD1, SD2 ids).
    #[test]
    fn edge_cases_match_transformers() {
        let sd1 = from_folder("tiny-sd15");
        let sd2 = from_folder("tiny-sd2v");
        let cases: &[(&str, &[u32], &[u32])] = &[
            // SD1's eos is raw-matched (the pad string wins); SD2's is `normalized`.
            (
                "<|ENDOFTEXT|>x",
                &[27, 347, 40786, 4160, 91, 285, 343],
                &[49407, 343],
            ),
            ("hello!world", &[3306, 256, 1002], &[3306, 0, 1002]),
            ("A!!", &[320, 748], &[320, 0, 0]),
            ("don'T I'M", &[847, 713, 328, 880], &[847, 713, 328, 880]),
            (
                "\u{2019}s \u{2019}t",
                &[728, 503, 338, 728, 503, 339],
                &[728, 503, 338, 728, 503, 339],
            ),
            (
                "a\u{3000}b\u{a0}c\u{200b}d",
                &[320, 321, 322, 9844, 323],
                &[320, 321, 322, 9844, 323],
            ),
            (
                "x<|startoftext|><|endoftext|>y",
                &[343, 49406, 49407, 344],
                &[343, 49406, 49407, 344],
            ),
            (
                "\u{3a3}\u{391}\u{3a3}",
                &[139, 225, 138, 109, 139, 481],
                &[139, 225, 138, 109, 139, 481],
            ),
            ("\u{130}stanbul", &[328, 16384, 11231], &[328, 16384, 11231]),
            ("nai\u{308}ve", &[1097, 35689, 563], &[1097, 35689, 563]),
            (
                "<|endoftext|",
                &[27, 347, 40786, 4160, 347],
                &[27, 347, 40786, 4160, 347],
            ),
            ("   ", &[], &[]),
            ("'s's", &[568, 568], &[568, 568]),
            (
                "1/2 \u{bd} \u{b2}",
                &[272, 270, 273, 33613, 41175],
                &[272, 270, 273, 33613, 41175],
            ),
            ("\u{fb03}", &[171, 105, 481], &[171, 105, 481]),
            ("\u{0}a\u{1}", &[444, 320, 445], &[444, 320, 445]),
        ];
        for (text, ids1, ids2) in cases {
            assert_eq!(sd1.tokenize_word_ids(text), *ids1, "sd1 {text:?}");
            assert_eq!(sd2.tokenize_word_ids(text), *ids2, "sd2 {text:?}");
        }
        // One 200-letter word: 50 ids, no truncation needed.
        let word = sd1.encode(&"x".repeat(200));
        assert_eq!((word.len(), word[50], word[51]), (52, 22819, 49407));
        // 100 words: truncated to 77 with eos last.
        let long = "x y ".repeat(50);
        let ids = sd1.encode(&long);
        assert_eq!(ids.len(), 77);
        assert_eq!((ids[0], ids[1], ids[75], ids[76]), (49406, 343, 343, 49407));
        assert_eq!(sd1.tokenize_word_ids(&long).len(), 100);
        assert_eq!(sd2.encode_padded(&long), ids);
    }

    #[test]
    fn bytes_to_unicode_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(
            (t[b'!' as usize], t[0], t[b' ' as usize], t[0xAD]),
            ('!', 'Ā', 'Ġ', 'Ń')
        );
    }

    #[test]
    fn errors_instead_of_panics() {
        assert!(ClipTokenizer::from_bytes(b"{", b"").is_err());
        assert!(ClipTokenizer::from_bytes(br#"{"a": 0}"#, b"").is_err());
        let vocab = br#"{"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b</w>": 3}"#;
        assert!(ClipTokenizer::from_bytes(vocab, b"#version: 0.2\na b</w>\n").is_err());
        let tok = ClipTokenizer::from_bytes(vocab, b"#version: 0.2\n").unwrap();
        assert!(tok.clone().with_pad_token("!").is_err());
        assert_eq!(tok.encode("ab"), vec![0, 2, 3, 1]);
        assert!(
            ClipTokenizer::from_folder_files(
                vocab,
                b"",
                None,
                Some(br#"{"model_max_length": 1e30}"#)
            )
            .is_err()
        );
    }
}
