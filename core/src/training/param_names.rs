//! [`ParamNames`]: the weight-file key of every trainable parameter of a module.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::weights::{HostTensor, HostWeights, StoredParam, VarBuilder};

/// The stored key and layout of each float parameter of a model, in the order burn visits
/// them. Found once per architecture by building the model from [`VarBuilder::tagged`], then
/// bound to any instance of it by [`bind`](Self::bind).
#[derive(Debug, Clone)]
pub struct ParamNames {
    params: Vec<StoredParam>,
}

impl ParamNames {
    /// Runs `build` (the model's loader) on a tagged builder and reads back which key each
    /// parameter came from. Fails when a parameter mixes several keys (a weight computed at
    /// load time, which training could not write back).
    pub fn of<M: Module>(build: impl FnOnce(&VarBuilder) -> Result<M>) -> Result<Self> {
        let (vb, stored) = VarBuilder::tagged();
        let module = build(&vb)?;
        let stored = stored.lock().expect("tagged params").clone();
        let mut reader = TagReader::default();
        module.visit(&mut reader);
        let mut params = Vec::with_capacity(reader.tags.len());
        for tag in reader.tags {
            let entry = tag
                .filter(|&t| t >= 1.0 && t.fract() == 0.0 && (t as usize) <= stored.len())
                .and_then(|t| stored.get(t as usize - 1))
                .ok_or_else(|| {
                    Error::Invalid(
                        "a parameter of the model is not read from a single stored weight"
                            .to_string(),
                    )
                })?;
            params.push(entry.clone());
        }
        Ok(Self { params })
    }

    /// A new model's weights: every parameter as [`VarBuilder::init`] draws it from `seed`.
    pub fn init_weights(&self, seed: u64, origin: impl Into<String>) -> HostWeights {
        HostWeights {
            tensors: self
                .params
                .iter()
                .map(|p| {
                    let data = VarBuilder::init_values(seed, &p.key, &p.shape);
                    let host = HostTensor {
                        shape: p.shape.clone(),
                        data,
                    };
                    (p.key.clone(), host)
                })
                .collect(),
            origin: origin.into(),
        }
    }

    /// The parameters, in visiting order.
    pub fn params(&self) -> &[StoredParam] {
        &self.params
    }

    /// Index into [`params`](Self::params) of each parameter of `module`, by its id.
    pub fn bind<M: Module>(&self, module: &M) -> Result<HashMap<ParamId, usize>> {
        let mut ids = IdReader::default();
        module.visit(&mut ids);
        if ids.ids.len() != self.params.len() {
            return Err(Error::Invalid(format!(
                "the model has {} parameters, its architecture {}",
                ids.ids.len(),
                self.params.len()
            )));
        }
        Ok(ids.ids.into_iter().zip(0..).collect())
    }

    /// Flattened parameter values (by index) under their stored keys and shapes (what a
    /// diffusers weight file holds).
    pub fn to_host(&self, values: Vec<Tensor<1>>) -> Vec<(String, HostTensor)> {
        self.params
            .iter()
            .zip(values)
            .map(|(p, t)| {
                let data = t
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default();
                let data = if p.transposed {
                    let [rows, cols] = [p.shape[0], p.shape[1]];
                    let mut out = vec![0.0; data.len()];
                    for (c, col) in data.chunks_exact(rows).enumerate() {
                        for (r, &v) in col.iter().enumerate() {
                            out[r * cols + c] = v;
                        }
                    }
                    out
                } else {
                    data
                };
                let host = HostTensor {
                    shape: p.shape.clone(),
                    data,
                };
                (p.key.clone(), host)
            })
            .collect()
    }
}

/// The constant each float parameter is filled with, `None` when it is not constant.
#[derive(Default)]
struct TagReader {
    tags: Vec<Option<f32>>,
}

impl ModuleVisitor for TagReader {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let first = values.first().copied();
        self.tags
            .push(first.filter(|&f| values.iter().all(|&v| v == f)));
    }
}

#[derive(Default)]
struct IdReader {
    ids: Vec<ParamId>,
}

impl ModuleVisitor for IdReader {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.push(param.id);
    }
}
