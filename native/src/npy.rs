//! Latents as NumPy `.npy` files (float32), the format diffusers users already have.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result, bail};
use npyz::WriterBuilder;

/// Reads a float32 (or float64, converted) `.npy` file: its shape and row-major values.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.header().order() == npyz::Order::Fortran {
        bail!(
            "{}: Fortran-ordered arrays are not supported",
            path.display()
        );
    }
    let descr = npy.dtype().descr();
    let data = match descr.trim_matches('\'') {
        "<f4" => npy.into_vec::<f32>(),
        "<f8" => npy
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        other => bail!(
            "{}: dtype {other} is not float32 (save with arr.astype(np.float32))",
            path.display()
        ),
    }
    .with_context(|| format!("{}: truncated or corrupt data", path.display()))?;
    let expected: usize = shape.iter().product();
    if data.len() != expected {
        bail!(
            "{}: holds {} values for shape {shape:?}",
            path.display(),
            data.len()
        );
    }
    Ok((shape, data))
}

/// Writes `data` of `shape` as a float32 `.npy` file.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    writer
        .extend(data.iter().copied())
        .and_then(|_| writer.finish())
        .with_context(|| format!("{}: cannot write", path.display()))
}
