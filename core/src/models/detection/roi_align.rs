//! ROIAlign as torchvision's `roi_align` (detectron2's `ROIAlign`, `ROIAlignV2` with
//! `aligned`): each output bin averages bilinear samples on a regular grid. On a CubeCL device
//! the `maskforge-shaders` kernel computes it; elsewhere the host does, with torchvision's
//! float32 arithmetic in its order, so CPU results equal PyTorch's.

use burn::tensor::{DType, Tensor, TensorData};

pub use maskforge_shaders::roi_align::RoiAlignParams;

/// ROIAlign of `features` over `boxes`, rows `(batch index, x1, y1, x2, y2)` in input
/// coordinates (scaled by `params.spatial_scale` onto the map). Returns the features' dtype.
///
/// # Shapes
/// `features`: `[N, C, H, W]`, `boxes`: `[R, 5]` → `[R, C, out, out]`
///
/// # Panics
/// When a batch index is not below `N` (host path).
pub fn roi_align(features: Tensor<4>, boxes: &[[f32; 5]], params: RoiAlignParams) -> Tensor<4> {
    let device = features.device();
    let dtype = features.dtype();
    let [n, c, h, w] = features.dims();
    let out = params.output_size;
    if boxes.is_empty() {
        return Tensor::<4>::zeros([0, c, out, out], &device).cast(dtype);
    }
    let features = features.cast(DType::F32);
    if maskforge_shaders::resample::is_cube_device(&device) {
        let flat: Vec<f32> = boxes.iter().flatten().copied().collect();
        let boxes = Tensor::<1>::from_data(TensorData::new(flat, [boxes.len() * 5]), &device);
        if let Some(pooled) =
            maskforge_shaders::roi_align::roi_align(features.clone(), boxes, params)
        {
            return pooled.cast(dtype);
        }
    }
    let data = features
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 features");
    let pooled = roi_align_host(&data, [n, c, h, w], boxes, params);
    Tensor::<4>::from_data(TensorData::new(pooled, [boxes.len(), c, out, out]), &device).cast(dtype)
}

/// The host computation over contiguous `[N, C, H, W]` values.
fn roi_align_host(
    data: &[f32],
    [n, c, h, w]: [usize; 4],
    boxes: &[[f32; 5]],
    params: RoiAlignParams,
) -> Vec<f32> {
    let out = params.output_size;
    let scale = params.spatial_scale;
    let offset = if params.aligned { 0.5f32 } else { 0.0 };
    let mut pooled = Vec::with_capacity(boxes.len() * c * out * out);
    for b in boxes {
        let batch = b[0] as usize;
        assert!(batch < n, "box batch index {} of {n} images", b[0]);
        let (start_w, start_h) = (b[1] * scale - offset, b[2] * scale - offset);
        let (mut roi_w, mut roi_h) = (
            b[3] * scale - offset - start_w,
            b[4] * scale - offset - start_h,
        );
        if !params.aligned {
            roi_w = roi_w.max(1.0);
            roi_h = roi_h.max(1.0);
        }
        let bin_h = roi_h / out as f32;
        let bin_w = roi_w / out as f32;
        // Adaptive grids are `ceil(roi / out)`; torchvision's loops run zero times when ≤ 0.
        let grid = |roi: f32| match params.sampling_ratio {
            0 => (roi / out as f32).ceil().max(0.0) as usize,
            s => s,
        };
        let (grid_h, grid_w) = (grid(roi_h), grid(roi_w));
        let count = ((grid_h * grid_w) as f32).max(1.0);
        // Sample positions are shared by every channel.
        let ys: Vec<Vec<f32>> = (0..out)
            .map(|ph| {
                (0..grid_h)
                    .map(|iy| {
                        start_h + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32
                    })
                    .collect()
            })
            .collect();
        let xs: Vec<Vec<f32>> = (0..out)
            .map(|pw| {
                (0..grid_w)
                    .map(|ix| {
                        start_w + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32
                    })
                    .collect()
            })
            .collect();
        for ch in 0..c {
            let plane = &data[(batch * c + ch) * h * w..][..h * w];
            for row in &ys {
                for col in &xs {
                    let mut acc = 0.0f32;
                    for &y in row {
                        for &x in col {
                            acc += bilinear(plane, h, w, y, x);
                        }
                    }
                    pooled.push(acc / count);
                }
            }
        }
    }
    pooled
}

/// torchvision's `bilinear_interpolate`: 0 beyond one pixel outside the map, else the
/// coordinates are clamped to it.
fn bilinear(plane: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return 0.0;
    }
    let clamp = |v: f32, size: usize| {
        let v = v.max(0.0);
        let low = v as usize;
        if low >= size - 1 {
            (size - 1, size - 1, (size - 1) as f32)
        } else {
            (low, low + 1, v)
        }
    };
    let (y_low, y_high, y) = clamp(y, h);
    let (x_low, x_high, x) = clamp(x, w);
    let ly = y - y_low as f32;
    let lx = x - x_low as f32;
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    hy * hx * plane[y_low * w + x_low]
        + hy * lx * plane[y_low * w + x_high]
        + ly * hx * plane[y_high * w + x_low]
        + ly * lx * plane[y_high * w + x_high]
}
