//! PyTorch checkpoints (`torch.save`: `.pth`, `.pt`, `pytorch_model.bin`) read without running
//! any pickle code. The zip format of torch ≥ 1.6 (`<dir>/data.pkl`, `<dir>/data/<key>`,
//! `<dir>/byteorder`) and the older sequential ("legacy") format are supported; the pickle is
//! interpreted by a restricted unpickler that refuses every global beyond tensor rebuilding and
//! plain containers, naming it.
//!
//! The state dict is the checkpoint's `model` entry (detectron2's `Checkpointer`), else its
//! `state_dict` entry, else the checkpoint itself. Its tensors keep their dtype ([`PthFile::data`]
//! gives contiguous little-endian bytes, as safetensors stores them); entries that are not tensors
//! are listed by [`PthFile::skipped`]. As detectron2 does, a `module.` prefix on every key (a
//! model saved inside `DistributedDataParallel`) is removed.

mod pickle;
#[cfg(test)]
mod tests;
mod zip;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use safetensors::Dtype;

use self::pickle::{Unpickled, Value, unpickle};
use super::file_source::Bytes;
use super::safetensors_file::{SafetensorsFile, SafetensorsWeights, to_f32};
use super::var_builder::{HostTensor, Weights};
use crate::error::{Error, Result};

/// The first pickle of a legacy checkpoint: protocol 2, the magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// Whether `bytes` look like a PyTorch checkpoint (a zip archive or the legacy format) rather
/// than a safetensors file.
pub fn is_pth(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&LEGACY_MAGIC)
}

/// The weights of one checkpoint file, PyTorch or safetensors (told apart by content), for a
/// [`VarBuilder`](super::VarBuilder).
pub fn checkpoint_weights(name: impl Into<String>, bytes: Bytes) -> Result<Arc<dyn Weights>> {
    let name = name.into();
    Ok(if is_pth((*bytes).as_ref()) {
        Arc::new(PthFile::parse(name, bytes)?)
    } else {
        Arc::new(SafetensorsWeights::new(vec![SafetensorsFile::parse(
            name, bytes,
        )?])?)
    })
}

/// A tensor of the state dict: its dtype and shape as stored, and where its elements are.
#[derive(Debug, Clone)]
pub struct PthTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    storage: String,
    /// Offset and strides in elements.
    offset: usize,
    stride: Vec<usize>,
}

/// A parsed PyTorch checkpoint: its state dict's tensors, read from the bytes on request.
pub struct PthFile {
    name: String,
    bytes: Bytes,
    /// Storage key → its bytes in `bytes`, with the zip CRC (0: none to check).
    storages: HashMap<String, (Range<usize>, u32)>,
    big_endian: bool,
    tensors: Vec<(String, PthTensor)>,
    index: HashMap<String, usize>,
    skipped: Vec<String>,
    entry: Option<&'static str>,
}

impl PthFile {
    /// Parses `bytes` (the file called `name` in messages). Errors name the file and the
    /// problem: not a checkpoint, truncated, a refused pickle global or opcode, no tensors.
    pub fn parse(name: impl Into<String>, bytes: Bytes) -> Result<Self> {
        let name = name.into();
        let b: &[u8] = (*bytes).as_ref();
        let bad = |m: String| Error::bad_file(&name, m);
        let (pickled, storages, big_endian) = if b.starts_with(b"PK\x03\x04") {
            read_zip(b).map_err(bad)?
        } else if b.starts_with(&LEGACY_MAGIC) {
            read_legacy(b).map_err(bad)?
        } else if b.first() == Some(&0x80) {
            return Err(bad(
                "a plain pickle, not a torch.save checkpoint (not supported: pickles can run \
                 code; re-save the weights with torch.save or as safetensors)"
                    .into(),
            ));
        } else {
            return Err(bad(
                "not a PyTorch checkpoint (neither a torch.save zip archive nor the legacy format)"
                    .into(),
            ));
        };
        let mut file = Self {
            name,
            bytes: bytes.clone(),
            storages,
            big_endian,
            tensors: Vec::new(),
            index: HashMap::new(),
            skipped: Vec::new(),
            entry: None,
        };
        file.select(&pickled)?;
        Ok(file)
    }

    /// Picks the state dict in the unpickled checkpoint and indexes its tensors.
    fn select(&mut self, p: &Unpickled) -> Result<()> {
        let top = p.dict(&p.value).ok_or_else(|| {
            Error::bad_file(
                &self.name,
                format!("the checkpoint is a {}, not a dict", p.value.kind()),
            )
        })?;
        // The (last) dict stored under `model`, else under `state_dict`.
        let lookup = |k: &str| {
            top.iter().rev().find_map(|(key, v)| match key {
                Value::Str(s) if &**s == k => p.dict(v),
                _ => None,
            })
        };
        let mut dict = top;
        for entry in ["model", "state_dict"] {
            if let Some(d) = lookup(entry) {
                dict = d;
                self.entry = Some(entry);
                break;
            }
        }
        for (k, v) in dict {
            let key = match k {
                Value::Str(s) => s.to_string(),
                other => format!("<{}>", other.kind()),
            };
            match (k, v) {
                (Value::Str(_), Value::Tensor(t)) => {
                    let tensor = PthTensor {
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        storage: t.storage.key.clone(),
                        offset: t.offset,
                        stride: t.stride.clone(),
                    };
                    self.check_storage(&key, &t.storage)?;
                    match self.index.get(&key) {
                        Some(&i) => self.tensors[i].1 = tensor,
                        None => {
                            self.index.insert(key.clone(), self.tensors.len());
                            self.tensors.push((key, tensor));
                        }
                    }
                }
                _ => self.skipped.push(key),
            }
        }
        if self.tensors.is_empty() {
            let keys: Vec<String> = top
                .iter()
                .take(8)
                .map(|(k, v)| match k {
                    Value::Str(s) => format!("{s} ({})", v.kind()),
                    other => other.kind().to_string(),
                })
                .collect();
            return Err(Error::bad_file(
                &self.name,
                format!(
                    "no tensors found (the checkpoint holds: {})",
                    if keys.is_empty() {
                        "nothing".into()
                    } else {
                        keys.join(", ")
                    }
                ),
            ));
        }
        if self.tensors.iter().all(|(k, _)| k.starts_with("module.")) {
            for (k, _) in &mut self.tensors {
                k.drain(.."module.".len());
            }
            self.index = (self.tensors.iter().enumerate())
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
        }
        Ok(())
    }

    /// Checks that the storage of tensor `key` is in the file and large enough.
    fn check_storage(&self, key: &str, s: &pickle::Storage) -> Result<()> {
        let (range, _) = self.storages.get(&s.key).ok_or_else(|| {
            Error::bad_file(
                &self.name,
                format!("tensor `{key}`: storage `{}` is not in the file", s.key),
            )
        })?;
        let needed = match s.dtype {
            Some(d) => (s.numel as u128) * (d.bitsize() / 8) as u128,
            None => s.numel as u128,
        };
        if (range.len() as u128) < needed {
            return Err(Error::bad_file(
                &self.name,
                format!(
                    "tensor `{key}`: storage `{}` holds {} bytes, {needed} expected",
                    s.key,
                    range.len()
                ),
            ));
        }
        Ok(())
    }

    /// The file name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state dict's keys, in the file's order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(k, _)| k.as_str())
    }

    /// The tensor `key`'s dtype and shape.
    pub fn tensor(&self, key: &str) -> Option<&PthTensor> {
        self.index.get(key).map(|&i| &self.tensors[i].1)
    }

    /// The checkpoint entry holding the state dict (`model`, `state_dict`), or `None` when the
    /// checkpoint is the state dict.
    pub fn entry(&self) -> Option<&str> {
        self.entry
    }

    /// Keys of state-dict entries that are not tensors (left out).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The elements of tensor `key`, contiguous (row-major) and little-endian: borrowed from
    /// the file when stored that way, gathered otherwise (transposed views, broadcasts).
    pub fn data(&self, key: &str) -> Result<Option<Cow<'_, [u8]>>> {
        let Some(t) = self.tensor(key) else {
            return Ok(None);
        };
        let bad = |m: String| Error::bad_file(&self.name, format!("tensor `{key}`: {m}"));
        let (range, crc) = &self.storages[&t.storage];
        let all: &[u8] = (*self.bytes).as_ref();
        let raw = zip::Entry {
            data: range.clone(),
            crc: *crc,
        }
        .bytes(all, &format!("storage {}", t.storage))
        .map_err(bad)?;
        gather(raw, t, self.big_endian).map(Some).map_err(bad)
    }
}

impl Weights for PthFile {
    fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        let Some(data) = self.data(key)? else {
            return Ok(None);
        };
        let t = &self.tensors[self.index[key]].1;
        Ok(Some(HostTensor {
            shape: t.shape.clone(),
            data: to_f32(t.dtype, &data, &self.name, key)?,
        }))
    }

    fn origin(&self) -> String {
        self.name.clone()
    }

    fn keys(&self) -> Option<Vec<String>> {
        Some(PthFile::keys(self).map(str::to_string).collect())
    }
}

type Storages = HashMap<String, (Range<usize>, u32)>;

/// The pickle and storages of a zip checkpoint.
fn read_zip(b: &[u8]) -> Result<(Unpickled, Storages, bool), String> {
    let entries = zip::entries(b)?;
    let pkl = entries
        .keys()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min()
        .ok_or("no `data.pkl` in the archive: not a torch.save checkpoint")?;
    let dir = &pkl[..pkl.len() - "data.pkl".len()];
    if entries.contains_key(&format!("{dir}constants.pkl")) {
        return Err(
            "a TorchScript archive (torch.jit.save), not a torch.save checkpoint: save the \
             model's state_dict() instead"
                .into(),
        );
    }
    let big_endian = match entries.get(&format!("{dir}byteorder")) {
        None => false,
        Some(e) => match e.bytes(b, "byteorder")? {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(format!(
                    "unknown byteorder `{}`",
                    String::from_utf8_lossy(other)
                ));
            }
        },
    };
    let pickle = entries[pkl].bytes(b, pkl)?;
    let pickled = unpickle(pickle, 0).map_err(|e| format!("{pkl}: {e}"))?;
    let data_dir = format!("{dir}data/");
    let storages = entries
        .into_iter()
        .filter_map(|(n, e)| Some((n.strip_prefix(&data_dir)?.to_string(), (e.data, e.crc))))
        .collect();
    Ok((pickled, storages, big_endian))
}

/// The pickles and storages of a legacy (torch < 1.6) checkpoint: magic number, protocol
/// version, system info, the object, the storage keys, then each storage as an 8-byte element
/// count and its bytes.
fn read_legacy(b: &[u8]) -> Result<(Unpickled, Storages, bool), String> {
    let version = unpickle(b, LEGACY_MAGIC.len())?;
    if !matches!(version.value, Value::Int(1001)) {
        return Err("legacy checkpoint of an unknown protocol version".into());
    }
    let info = unpickle(b, version.end)?;
    let little = info.dict(&info.value).and_then(|d| {
        d.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Bool(l)) if &**k == "little_endian" => Some(*l),
            _ => None,
        })
    });
    let Some(little) = little else {
        return Err("legacy checkpoint without system information".into());
    };
    let pickled = unpickle(b, info.end)?;
    let keys = unpickle(b, pickled.end)?;
    let mut at = keys.end;
    let mut storages = HashMap::new();
    for key in keys
        .list(&keys.value)
        .ok_or("legacy storage list missing")?
    {
        let Value::Str(key) = key else {
            return Err("legacy storage key is not a string".into());
        };
        let s = pickled
            .storages
            .get(&**key)
            .ok_or_else(|| format!("legacy storage `{key}` is not used by any tensor"))?;
        let truncated = || format!("storage `{key}` ends early (truncated file?)");
        let count: [u8; 8] = b
            .get(at..at + 8)
            .ok_or_else(truncated)?
            .try_into()
            .expect("8");
        let count = if little {
            u64::from_le_bytes(count)
        } else {
            u64::from_be_bytes(count)
        };
        let es = s.dtype.map_or(1, |d| d.bitsize() / 8);
        if count != s.numel as u64 {
            return Err(format!(
                "storage `{key}` holds {count} elements, {} expected",
                s.numel
            ));
        }
        let start = at + 8;
        let end = start
            .checked_add(s.numel.checked_mul(es).ok_or_else(truncated)?)
            .filter(|&e| e <= b.len())
            .ok_or_else(truncated)?;
        storages.insert(key.to_string(), (start..end, 0));
        at = end;
    }
    Ok((pickled, storages, !little))
}

/// The elements of `t` in `raw` (its storage), contiguous and little-endian.
fn gather<'a>(raw: &'a [u8], t: &PthTensor, big_endian: bool) -> Result<Cow<'a, [u8]>, String> {
    let es = t.dtype.bitsize() / 8;
    let numel: usize = t.shape.iter().product();
    if numel == 0 {
        return Ok(Cow::Borrowed(&[]));
    }
    // Row-major strides, ignoring dimensions of size 1.
    let mut expected = 1;
    let mut contiguous = true;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        contiguous &= d == 1 || s == expected;
        expected *= d;
    }
    let swap = big_endian && es > 1;
    if contiguous && !swap {
        return Ok(Cow::Borrowed(&raw[t.offset * es..(t.offset + numel) * es]));
    }
    let bytes = numel.checked_mul(es).ok_or("tensor too large to gather")?;
    let mut out = Vec::new();
    out.try_reserve_exact(bytes)
        .map_err(|_| format!("cannot allocate {bytes} bytes"))?;
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        let elem = &raw[at * es..(at + 1) * es];
        if swap {
            out.extend(elem.iter().rev());
        } else {
            out.extend_from_slice(elem);
        }
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Cow::Owned(out))
}
