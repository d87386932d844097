//! The attention aggregation of [`attention_mask`](super::attention_mask) on a wgpu device:
//! normalisation and averaging as burn tensor operations, Pillow's bicubic resize as the
//! `maskforge-shaders` resampling kernel (rows, then the transposed image). Single-precision
//! throughout, so an 8-bit value may differ by one from the host's float64 path.

use burn::tensor::Tensor;

use super::denoise::PendingMap;
use crate::error::Result;
use crate::imaging::resize::Filter;

/// The 8-bit average of `chosen` at `height × width` as a `[height, width]` f32 tensor of whole
/// values, left on the device where the maps were captured; `None` on devices without CubeCL
/// kernels (the host aggregates there).
pub fn aggregate_on_device(
    chosen: &[&PendingMap],
    height: usize,
    width: usize,
) -> Option<Result<Tensor<2>>> {
    let device = chosen.first()?.mean.device();
    if !maskforge_shaders::resample::is_cube_device(&device) {
        return None;
    }
    let taps = |n_in, n_out| -> (Vec<usize>, Vec<Vec<f32>>) {
        Filter::Bicubic
            .taps(n_in, n_out)
            .into_iter()
            .map(|(s, w)| (s, w.into_iter().map(|v| v as f32).collect()))
            .unzip()
    };
    let mut sum: Option<Tensor<2>> = None;
    for m in chosen {
        let bytes = to_bytes(m.mean.clone().reshape([m.height, m.width]));
        let (starts_w, weights_w) = taps(m.width, width);
        let rows = maskforge_shaders::resample::resample_rows(bytes, &starts_w, &weights_w)?;
        let (starts_h, weights_h) = taps(m.height, height);
        let cols =
            maskforge_shaders::resample::resample_rows(rows.transpose(), &starts_h, &weights_h)?;
        let resized = cols.transpose() / 255.0;
        sum = Some(match sum {
            Some(s) => s + resized,
            None => resized,
        });
    }
    let average = sum? / chosen.len() as f64;
    Some(Ok(to_bytes(average)))
}

/// `floor(255 · t / max(t))` clamped to 0..255, 0 where undefined (an all-zero map).
fn to_bytes(t: Tensor<2>) -> Tensor<2> {
    let [h, w] = t.dims();
    let max = t.clone().max().reshape([1, 1]).expand([h, w]);
    let x = (t * 255.0 / max).floor().clamp(0.0, 255.0);
    x.clone().mask_fill(x.is_nan(), 0.0)
}
