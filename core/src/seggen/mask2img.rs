//! Mask2Img: a ControlNet conditioned on a colour map draws the image of a mask.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use super::{ColorMap, LabelMap, Palette, colorize_semantic};
use crate::Result;
use crate::pipelines::{Control, ControlNet};

/// A colour map as a ControlNet's conditioning image: what diffusers' control image processor
/// makes of an RGB image of the output size (values / 255, no resizing).
///
/// # Shapes
/// → `[1, 3, height, width]` f32 in [0, 1]
pub fn control_tensor(map: &ColorMap, device: &Device) -> Tensor<4> {
    let (h, w) = (map.height, map.width);
    let mut planar = vec![0f32; 3 * h * w];
    for (i, p) in map.rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * h * w + i] = p[c] as f32 / 255.0;
        }
    }
    Tensor::from_data(TensorData::new(planar, [1, 3, h, w]), device)
}

/// The control of a Mask2Img run: `labels` coloured with `palette`, fed to `net` at `scale`.
/// Returns the colour map too.
pub fn mask_control(
    net: Arc<ControlNet>,
    palette: &Palette,
    labels: &LabelMap,
    scale: f32,
    device: &Device,
) -> Result<(Control, ColorMap)> {
    let color = colorize_semantic(palette, labels)?;
    let image = control_tensor(&color, device);
    Ok((Control { net, image, scale }, color))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_tensor_is_planar_and_scaled() {
        let map = ColorMap::new(2, 1, vec![255, 0, 51, 0, 102, 255]).unwrap();
        let t = control_tensor(&map, &Default::default());
        assert_eq!(t.dims(), [1, 3, 1, 2]);
        let v = t.into_data().try_into_vec::<f32>().unwrap();
        let want = [1.0, 0.0, 0.0, 0.4, 0.2, 1.0];
        for (g, w) in v.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{v:?}");
        }
    }
}
