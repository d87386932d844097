//! [`decode`](super::decode()) on a wgpu device: the nearest-colour search as the
//! `maskforge-shaders` kernel, one thread per pixel. Distances are exact integers in f32, so the
//! labels equal the host's.

use burn::tensor::{Device, Tensor, TensorData};

use super::decode::{DecodeOptions, Decoded, candidates};
use super::{ColorMap, Palette};
use crate::error::{Error, Result};
use crate::readback::Readback;

/// `Some(decoded map)` on a CubeCL device, `None` on others (use [`decode`](super::decode())).
pub async fn decode_on_device(
    palette: &Palette,
    map: &ColorMap,
    options: &DecodeOptions,
    device: &Device,
    how: Readback,
) -> Option<Result<Decoded>> {
    if !maskforge_shaders::resample::is_cube_device(device) {
        return None;
    }
    Some(decode_with_kernel(palette, map, options, device, how).await)
}

async fn decode_with_kernel(
    palette: &Palette,
    map: &ColorMap,
    options: &DecodeOptions,
    device: &Device,
    how: Readback,
) -> Result<Decoded> {
    let colors = candidates(palette, options)?;
    let n = map.width * map.height;
    let as_f32 =
        |v: Vec<f32>, rows: usize| Tensor::<2>::from_data(TensorData::new(v, [rows, 3]), device);
    let pixels = as_f32(map.rgb.iter().map(|&c| f32::from(c)).collect(), n);
    let table = as_f32(
        colors
            .iter()
            .flat_map(|(c, _)| c.map(|v| v as f32))
            .collect(),
        colors.len(),
    );
    // Distances are whole numbers: `d² > max²` exactly when `d² > floor(max²)`.
    let max_d2 = options
        .max_distance
        .map_or(f32::MAX, |d| (d * d).floor().min(1e9) as f32);
    let nearest = maskforge_shaders::nearest_color::nearest_color(pixels, table, max_d2)
        .ok_or_else(|| Error::Device("the nearest-colour kernel needs a CubeCL device".into()))?;
    let index = how.read_f32(nearest).await?;
    let codes = index
        .into_iter()
        .map(|i| colors.get(i as usize).map_or(0, |&(_, code)| code));
    let mut decoded = Decoded::from_codes(map.width, map.height, codes);
    decoded.absorb_small_segments(options.min_area);
    Ok(decoded)
}
