//! [`VarBuilder`]: hands modules their weights by diffusers' parameter paths, checking shapes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};

use crate::error::{Error, Result};

/// A tensor read from a weight file, converted to f32, still on the host.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Dimensions as stored.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A set of named tensors (a safetensors file, a renamed single-file checkpoint, ...).
pub trait Weights: Send + Sync {
    /// The tensor stored under `key`, or `None` if there is none.
    fn read(&self, key: &str) -> Result<Option<HostTensor>>;
    /// The file(s) behind these weights, for messages.
    fn origin(&self) -> String;
    /// Every key stored, where the format lists them (for a
    /// [`KeyReport`](super::KeyReport)); `None` otherwise.
    fn keys(&self) -> Option<Vec<String>> {
        None
    }
}

#[derive(Clone)]
enum Source {
    Weights(Arc<dyn Weights>),
    /// Normal(0, 0.02) values of whatever shape is asked for: real architectures without a download.
    Random,
    /// PyTorch's default initialisation, seeded per key: a model trained from scratch.
    Init(u64),
    /// Zeros of whatever shape is asked for, each key recorded: the keys a model reads.
    Probe(Arc<Mutex<BTreeSet<String>>>),
    /// Each parameter filled with its 1-based index in the list: which key a module's
    /// parameter was read from (see [`crate::training::ParamNames`]).
    Tagged(Arc<Mutex<Vec<StoredParam>>>),
}

/// How a parameter handed out by a [`VarBuilder`] is stored in its weight file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredParam {
    /// Its key (`down_blocks.0.resnets.1.conv1.weight`).
    pub key: String,
    /// Its dimensions in the file.
    pub shape: Vec<usize>,
    /// Whether the module holds it transposed (a linear weight in burn's layout).
    pub transposed: bool,
}

/// Builds module parameters from a [`Weights`] set, addressed by `.`-joined paths that mirror the
/// diffusers/transformers module tree (`down_blocks.0.resnets.1.conv1.weight`).
#[derive(Clone)]
pub struct VarBuilder {
    source: Source,
    prefix: String,
    device: Device,
    dtype: DType,
}

impl VarBuilder {
    /// Parameters read from `weights`, created on `device` as `dtype` (F32, or F16 where supported).
    pub fn from_weights(weights: Arc<dyn Weights>, device: &Device, dtype: DType) -> Self {
        Self {
            source: Source::Weights(weights),
            prefix: String::new(),
            device: device.clone(),
            dtype,
        }
    }

    /// Random parameters of the requested shapes (benchmarks of real architectures).
    pub fn random(device: &Device, dtype: DType) -> Self {
        Self {
            source: Source::Random,
            prefix: String::new(),
            device: device.clone(),
            dtype,
        }
    }

    /// Parameters initialised as PyTorch's layers initialise themselves, each drawn from `seed`
    /// and its key (so independent of the loading order): weights of rank ≥ 2 uniform in
    /// `±1/√fan_in` (`kaiming_uniform_(a=√5)`), norm weights one, biases zero.
    pub fn init(seed: u64, device: &Device, dtype: DType) -> Self {
        Self {
            source: Source::Init(seed),
            prefix: String::new(),
            device: device.clone(),
            dtype,
        }
    }

    /// The values [`init`](Self::init) gives parameter `key` stored as `stored`.
    pub fn init_values(seed: u64, key: &str, stored: &[usize]) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let n: usize = stored.iter().product();
        if stored.len() < 2 {
            let one = key.ends_with("weight");
            return vec![if one { 1.0 } else { 0.0 }; n];
        }
        let fan_in: usize = stored[1..].iter().product();
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ hash);
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    }

    /// Zero parameters on the CPU, recording every key asked for: building a model from it
    /// lists the keys the model reads (for a [`KeyReport`](super::KeyReport)).
    pub fn probe() -> (Self, Arc<Mutex<BTreeSet<String>>>) {
        let keys = Arc::new(Mutex::new(BTreeSet::new()));
        let vb = Self {
            source: Source::Probe(keys.clone()),
            prefix: String::new(),
            device: Device::flex(),
            dtype: DType::F32,
        };
        (vb, keys)
    }

    /// Parameters on the CPU filled with their 1-based index in the returned list, which
    /// records every key asked for with its stored layout: building a model from it tells
    /// which key each of the model's parameters comes from.
    pub fn tagged() -> (Self, Arc<Mutex<Vec<StoredParam>>>) {
        let params = Arc::new(Mutex::new(Vec::new()));
        let vb = Self {
            source: Source::Tagged(params.clone()),
            prefix: String::new(),
            device: Device::flex(),
            dtype: DType::F32,
        };
        (vb, params)
    }

    fn tag<const D: usize>(
        &self,
        params: &Mutex<Vec<StoredParam>>,
        key: String,
        stored: Vec<usize>,
        transposed: bool,
        shape: [usize; D],
    ) -> Tensor<D> {
        let mut params = params.lock().expect("tagged params");
        params.push(StoredParam {
            key,
            shape: stored,
            transposed,
        });
        Tensor::full(shape, params.len() as f32, (&self.device, self.dtype))
    }

    /// The builder for the sub-module `name` (`vb.pp("encoder").pp(3)`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            prefix: self.path(&name.to_string()),
            ..self.clone()
        }
    }

    /// The full key of `name` below this builder.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype parameters are created as.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the weights hold `name` (random builders hold everything).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Random | Source::Init(_) | Source::Probe(_) | Source::Tagged(_) => true,
            Source::Weights(w) => matches!(w.read(&self.path(name)), Ok(Some(_))),
        }
    }

    /// The parameter `name` with exactly `shape`. A stored shape that differs only by size-1
    /// dimensions (a 1×1 convolution kernel stored for a linear layer) is accepted and reshaped.
    pub fn get<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let key = self.path(name);
        match &self.source {
            Source::Random => Ok(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.02),
                (&self.device, self.dtype),
            )),
            Source::Probe(keys) => {
                keys.lock().expect("probe keys").insert(key);
                Ok(Tensor::zeros(shape, (&self.device, self.dtype)))
            }
            Source::Tagged(params) => Ok(self.tag(params, key, shape.to_vec(), false, shape)),
            Source::Init(seed) => Ok(Tensor::from_data(
                TensorData::new(Self::init_values(*seed, &key, &shape), shape),
                (&self.device, self.dtype),
            )),
            Source::Weights(weights) => {
                let host = weights.read(&key)?.ok_or_else(|| Error::MissingTensor {
                    file: weights.origin(),
                    key: key.clone(),
                })?;
                let squeeze =
                    |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
                if host.shape != shape && squeeze(&host.shape) != squeeze(&shape) {
                    return Err(Error::ShapeMismatch {
                        file: weights.origin(),
                        key,
                        expected: shape.to_vec(),
                        found: host.shape,
                    });
                }
                Ok(Tensor::from_data(
                    TensorData::new(host.data, shape),
                    (&self.device, self.dtype),
                ))
            }
        }
    }

    /// The 2-D parameter `name` stored as `[rows, cols]`, returned transposed as a contiguous
    /// `[cols, rows]` tensor (PyTorch's linear weight in burn's layout, without a strided view
    /// that kernels would copy on every call).
    pub fn get_transposed(&self, name: &str, [rows, cols]: [usize; 2]) -> Result<Tensor<2>> {
        let key = self.path(name);
        let weights = match &self.source {
            Source::Weights(weights) => weights,
            Source::Tagged(params) => {
                return Ok(self.tag(params, key, vec![rows, cols], true, [cols, rows]));
            }
            Source::Init(seed) => {
                let stored = Self::init_values(*seed, &key, &[rows, cols]);
                let mut data = vec![0.0; rows * cols];
                for (r, row) in stored.chunks_exact(cols).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        data[c * rows + r] = v;
                    }
                }
                return Ok(Tensor::from_data(
                    TensorData::new(data, [cols, rows]),
                    (&self.device, self.dtype),
                ));
            }
            _ => return self.get(name, [cols, rows]),
        };
        let host = weights.read(&key)?.ok_or_else(|| Error::MissingTensor {
            file: weights.origin(),
            key: key.clone(),
        })?;
        if host.shape.iter().product::<usize>() != rows * cols
            || host.shape.iter().filter(|&&d| d != 1).count() > 2
            || host.shape.first() != Some(&rows)
        {
            return Err(Error::ShapeMismatch {
                file: weights.origin(),
                key,
                expected: vec![rows, cols],
                found: host.shape,
            });
        }
        let mut data = vec![0.0; rows * cols];
        for (r, row) in host.data.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                data[c * rows + r] = v;
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [cols, rows]),
            (&self.device, self.dtype),
        ))
    }
}
