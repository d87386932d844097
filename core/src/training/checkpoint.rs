//! Training state as bytes: weights as diffusers safetensors, and AdamW's moments, the EMA
//! and the step counts under the parameters' keys (`train_state.safetensors`).

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::adamw::AdamW;
use super::optimizer::ModelOptimizer;
use crate::error::{Error, Result};
use crate::weights::HostTensor;

/// `tensors` as a safetensors file of f32 (or f16 with `half`) values.
pub fn safetensors_bytes(
    tensors: &[(String, HostTensor)],
    metadata: Option<HashMap<String, String>>,
    half: bool,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| {
            if half {
                t.data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect()
            } else {
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if half { Dtype::F16 } else { Dtype::F32 };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((k, t), b)| {
            TensorView::new(dtype, t.shape.clone(), b)
                .map(|v| (k.as_str(), v))
                .map_err(|e| Error::Invalid(format!("{k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::Invalid(e.to_string()))
}

/// `optimizer`'s state (moments, EMA, step counts) as a safetensors file.
pub fn state_bytes(optimizer: &ModelOptimizer) -> Result<Vec<u8>> {
    let keys: Vec<String> = optimizer
        .names()
        .params()
        .iter()
        .map(|p| p.key.clone())
        .collect();
    let mut tensors: Vec<(String, HostTensor)> = optimizer
        .adamw
        .to_named(&keys)
        .into_iter()
        .map(|(k, data)| {
            (
                k,
                HostTensor {
                    shape: vec![data.len()],
                    data,
                },
            )
        })
        .collect();
    let mut metadata = HashMap::from([
        ("format".to_string(), "maskforge-train-state".to_string()),
        ("adamw_step".to_string(), optimizer.adamw.step.to_string()),
    ]);
    if let Some(ema) = &optimizer.ema {
        metadata.insert("ema_step".into(), ema.step.to_string());
        for (key, t) in keys.iter().zip(ema.shadow()) {
            let data = t
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            tensors.push((
                format!("ema.{key}"),
                HostTensor {
                    shape: vec![data.len()],
                    data,
                },
            ));
        }
    }
    safetensors_bytes(&tensors, Some(metadata), false)
}

/// Restores into `optimizer` the state [`state_bytes`] wrote (`file` names it in errors).
pub fn restore_state(
    optimizer: &mut ModelOptimizer,
    bytes: &[u8],
    file: &str,
    device: &Device,
) -> Result<()> {
    let bad = |m: String| Error::bad_file(file, m);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some("maskforge-train-state") {
        return Err(bad("not a MaskForge training state".into()));
    }
    let number = |k: &str| -> Result<Option<usize>> {
        meta.get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{k} is not a number: {v:?}")))
            })
            .transpose()
    };
    let read = |name: &str| -> Result<Option<Vec<f32>>> {
        let Ok(view) = st.tensor(name) else {
            return Ok(None);
        };
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("{name} is {:?}, not F32", view.dtype())));
        }
        Ok(Some(
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    };
    let params = optimizer.names().params();
    let keys: Vec<String> = params.iter().map(|p| p.key.clone()).collect();
    let sizes: Vec<usize> = params.iter().map(|p| p.shape.iter().product()).collect();
    let step = number("adamw_step")?.ok_or_else(|| bad("adamw_step is missing".into()))?;
    optimizer.adamw = AdamW::from_named(
        optimizer.adamw.config,
        step,
        &keys,
        &sizes,
        read,
        device,
        file,
    )?;
    if let Some(ema) = &mut optimizer.ema {
        ema.step = number("ema_step")?.ok_or_else(|| bad("the EMA is missing".into()))?;
        for ((key, &n), shadow) in keys.iter().zip(&sizes).zip(ema.shadow.iter_mut()) {
            let v = read(&format!("ema.{key}"))?
                .filter(|v| v.len() == n)
                .ok_or_else(|| bad(format!("ema.{key} is missing or has the wrong size")))?;
            *shadow = Tensor::from_data(TensorData::new(v, [n]), device);
        }
    }
    Ok(())
}
