//! `maskforge convert`: a PyTorch checkpoint (`.pth`, `.pt`, `pytorch_model.bin`) or a
//! safetensors file to safetensors, dtypes kept. PyTorch files are read by the core's
//! restricted unpickler: no pickle code runs, and a file that would run any is refused.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use maskforge_core::weights::{PthFile, is_pth};
use safetensors::{Dtype, SafeTensors, View};

use crate::source::map_file;
use crate::write_atomically;

/// Arguments of `maskforge convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The checkpoint: a `torch.save` file (`.pth`, `.pt`, `.bin`; detectron2's `model` entry
    /// or a `state_dict` entry is taken when present) or a `.safetensors` file.
    pub input: PathBuf,
    /// The `.safetensors` file to write.
    pub output: PathBuf,
    /// Store F32 tensors as F16 (round to nearest), as committed fp16 weights are.
    #[arg(long)]
    pub half: bool,
}

/// One tensor to write.
struct Tensor<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl View for &Tensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Runs `convert`; prints a one-line summary.
pub fn run(args: ConvertArgs) -> Result<()> {
    let bytes = map_file(&args.input)?;
    let name = args.input.display().to_string();
    let raw: &[u8] = (*bytes).as_ref();
    let mut from = name.clone();
    let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let pth;
    let st;
    let tensors: Vec<(String, Tensor)> = if is_pth(raw) {
        pth = PthFile::parse(&name, bytes.clone())?;
        if let Some(entry) = pth.entry() {
            from += &format!(" (`{entry}` entry)");
        }
        if !pth.skipped().is_empty() {
            from += &format!("; left out non-tensors: {}", pth.skipped().join(", "));
        }
        pth.keys()
            .map(|key| {
                let t = pth.tensor(key).expect("listed key");
                let data = pth.data(key)?.expect("listed key");
                let shape = t.shape.clone();
                Ok((
                    key.to_string(),
                    Tensor {
                        dtype: t.dtype,
                        shape,
                        data,
                    },
                ))
            })
            .collect::<Result<_>>()?
    } else {
        st = SafeTensors::deserialize(raw).map_err(|e| {
            anyhow!("{name}: neither a PyTorch checkpoint nor a safetensors file ({e})")
        })?;
        if let Ok((_, m)) = SafeTensors::read_metadata(raw)
            && let Some(m) = m.metadata()
        {
            metadata.extend(m.clone());
        }
        st.tensors()
            .into_iter()
            .map(|(key, view)| {
                let data = Cow::Borrowed(view.data());
                let t = Tensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data,
                };
                (key, t)
            })
            .collect()
    };
    let tensors: Vec<(String, Tensor)> = match args.half {
        true => tensors.into_iter().map(|(k, t)| (k, to_half(t))).collect(),
        false => tensors,
    };
    write_atomically(&args.output, |tmp| {
        safetensors::serialize_to_file(
            tensors.iter().map(|(k, t)| (k.as_str(), t)),
            Some(metadata),
            tmp,
        )
        .with_context(|| format!("{}: cannot write", args.output.display()))
    })?;
    let parameters: usize = tensors
        .iter()
        .map(|(_, t)| t.shape.iter().product::<usize>())
        .sum();
    let mut dtypes = BTreeMap::new();
    for (_, t) in &tensors {
        *dtypes.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!(
        "{}: {} tensors, {parameters} parameters ({}) from {from}",
        args.output.display(),
        tensors.len(),
        dtypes.join(", "),
    );
    Ok(())
}

/// `t` with F32 values stored as F16; other dtypes unchanged.
fn to_half(t: Tensor<'_>) -> Tensor<'_> {
    if t.dtype != Dtype::F32 {
        return t;
    }
    let data: Vec<u8> = t
        .data
        .chunks_exact(4)
        .flat_map(|b| {
            let v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            half::f16::from_f32(v).to_le_bytes()
        })
        .collect();
    Tensor {
        dtype: Dtype::F16,
        shape: t.shape,
        data: Cow::Owned(data),
    }
}
