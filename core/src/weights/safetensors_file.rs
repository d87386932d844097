//! One or more `.safetensors` files parsed once, read tensor by tensor without copying the file.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use super::file_source::Bytes;
use super::var_builder::{HostTensor, Weights};
use crate::error::{Error, Result};

/// A parsed safetensors file: its header, and its bytes kept alive.
pub struct SafetensorsFile {
    name: String,
    bytes: Bytes,
    data_start: usize,
    tensors: HashMap<String, (Dtype, Vec<usize>, (usize, usize))>,
}

impl SafetensorsFile {
    /// Parses the header of `bytes` (the file called `name` in messages). Truncated files, bad
    /// headers and offsets outside the file are errors naming the file.
    pub fn parse(name: impl Into<String>, bytes: Bytes) -> Result<Self> {
        let name = name.into();
        let (header_len, metadata) = SafeTensors::read_metadata((*bytes).as_ref())
            .map_err(|e| Error::bad_file(&name, format!("not a valid safetensors file: {e}")))?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(key, info)| (key, (info.dtype, info.shape.clone(), info.data_offsets)))
            .collect();
        Ok(Self {
            name,
            bytes,
            data_start: 8 + header_len,
            tensors,
        })
    }

    /// The file name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every tensor key in the file.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor under `key` converted to f32, or `None` if the file has no such key.
    pub fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        let Some((dtype, shape, (start, end))) = self.tensors.get(key) else {
            return Ok(None);
        };
        let raw = &(*self.bytes).as_ref()[self.data_start + start..self.data_start + end];
        let data = to_f32(*dtype, raw, &self.name, key)?;
        Ok(Some(HostTensor {
            shape: shape.clone(),
            data,
        }))
    }
}

/// Little-endian values of a floating-point `dtype` as f32; other dtypes are an error naming
/// `file` and `key`.
pub(super) fn to_f32(dtype: Dtype, raw: &[u8], file: &str, key: &str) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => {
            return Err(Error::UnsupportedDType {
                file: file.to_string(),
                key: key.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// The weights of one model component, possibly sharded over several files.
pub struct SafetensorsWeights {
    files: Vec<SafetensorsFile>,
    index: HashMap<String, usize>,
}

impl SafetensorsWeights {
    /// Indexes the keys of all `files`; a key present in two files is an error.
    pub fn new(files: Vec<SafetensorsFile>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for key in file.keys() {
                if let Some(j) = index.insert(key.to_string(), i) {
                    return Err(Error::bad_file(
                        file.name(),
                        format!("tensor `{key}` is also in {}", files[j].name()),
                    ));
                }
            }
        }
        Ok(Self { files, index })
    }

    /// Every key of every file.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl Weights for SafetensorsWeights {
    fn read(&self, key: &str) -> Result<Option<HostTensor>> {
        match self.index.get(key) {
            Some(&i) => self.files[i].read(key),
            None => Ok(None),
        }
    }

    fn origin(&self) -> String {
        match self.files.as_slice() {
            [one] => one.name().to_string(),
            many => many
                .iter()
                .map(SafetensorsFile::name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn keys(&self) -> Option<Vec<String>> {
        Some(SafetensorsWeights::keys(self).map(str::to_string).collect())
    }
}
