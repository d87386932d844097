//! `nn.Conv2d` with stride 1, dilation 1 and one group on f32 NCHW data, as one sgemm per
//! tile of output positions.
//!
//! The input is copied once into a zero-padded `[C_in, B, H_p, W_p]` buffer. Output position
//! `(b, y, x)` is column `q = (b·H_p + y)·W_p + x` of that buffer, and kernel tap `(i, j)`
//! reads column `q + i·W_p + j`, so each row of the im2col matrix (`c, i, j`) is one
//! contiguous slice of the padded buffer: building it is a `memcpy` per row. Columns that
//! fall in the padding (x ≥ W_out or y ≥ H_out) are computed and dropped, which costs
//! `(K_w − 1)/W_p` extra work. 1×1 convolutions without padding skip the copies and multiply
//! each image directly.

use super::sgemm::Provider;

/// The im2col tile holds at most this many floats (16 MB), bounding memory at any size.
const TILE_FLOATS: usize = 1 << 22;

/// Shapes and padding of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    /// `[B, C_in, H, W]`
    pub input: [usize; 4],
    /// `[C_out, C_in, K_h, K_w]`
    pub weight: [usize; 4],
    /// `[top, left, bottom, right]`
    pub padding: [usize; 4],
    /// `[vertical, horizontal]`; [`conv2d`] takes only `[1, 1]`.
    pub stride: [usize; 2],
}

impl Conv2dShape {
    /// `[B, C_out, H_out, W_out]`, or `None` when the kernel is larger than the padded input
    /// or a stride is 0.
    pub fn output(&self) -> Option<[usize; 4]> {
        let [b, _, h, w] = self.input;
        let [c_out, _, kh, kw] = self.weight;
        let [top, left, bottom, right] = self.padding;
        let [sh, sw] = self.stride;
        if sh == 0 || sw == 0 {
            return None;
        }
        let ho = (h + top + bottom).checked_sub(kh)? / sh + 1;
        let wo = (w + left + right).checked_sub(kw)? / sw + 1;
        Some([b, c_out, ho, wo])
    }
}

/// Cross-correlation of `x` with `weight` plus `bias`, as `torch.nn.functional.conv2d`.
///
/// # Shapes
/// `x`: `[B, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `bias`: `[C_out]` →
/// `[B, C_out, H_out, W_out]` (row-major, flattened)
///
/// # Panics
/// If the slices do not match `shape`, the channel counts differ, or the stride is not 1.
pub fn conv2d(
    gemm: &Provider,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Conv2dShape,
) -> Vec<f32> {
    let [b, c_in, h, w] = shape.input;
    let [c_out, w_in, kh, kw] = shape.weight;
    let [top, left, bottom, right] = shape.padding;
    let [_, _, ho, wo] = shape
        .output()
        .expect("conv2d: kernel larger than the input");
    assert_eq!(c_in, w_in, "conv2d: input and weight channels differ");
    assert_eq!(shape.stride, [1, 1], "conv2d: stride must be 1");
    assert_eq!(x.len(), b * c_in * h * w, "conv2d: input length");
    assert_eq!(
        weight.len(),
        c_out * c_in * kh * kw,
        "conv2d: weight length"
    );
    assert!(bias.is_none_or(|v| v.len() == c_out), "conv2d: bias length");

    if kh == 1 && kw == 1 && shape.padding == [0; 4] {
        return pointwise(gemm, x, weight, bias, [b, c_in, h * w, c_out]);
    }

    let (hp, wp) = (h + top + bottom, w + left + right);
    let image = hp * wp;
    // Columns up to the last valid output position; the taps of the last one reach
    // `(K_h − 1)·W_p + K_w − 1` further, which stays inside the buffer.
    let columns = (b - 1) * image + (ho - 1) * wp + wo;
    let row_len = b * image;
    let mut padded = vec![0.0f32; c_in * row_len];
    for c in 0..c_in {
        for bi in 0..b {
            for y in 0..h {
                let src = ((bi * c_in + c) * h + y) * w;
                let dst = c * row_len + bi * image + (y + top) * wp + left;
                padded[dst..dst + w].copy_from_slice(&x[src..src + w]);
            }
        }
    }

    let k = c_in * kh * kw;
    let tile = (TILE_FLOATS / k).max(64).min(columns);
    let mut full = vec![0.0f32; c_out * columns];
    let mut cols = vec![0.0f32; k * tile];
    for start in (0..columns).step_by(tile) {
        let n = tile.min(columns - start);
        for c in 0..c_in {
            for i in 0..kh {
                for j in 0..kw {
                    let row = (c * kh + i) * kw + j;
                    let src = c * row_len + start + i * wp + j;
                    cols[row * n..(row + 1) * n].copy_from_slice(&padded[src..src + n]);
                }
            }
        }
        gemm.sgemm(
            [c_out, n, k],
            weight,
            k,
            &cols,
            n,
            0.0,
            &mut full[start..],
            columns,
        );
    }

    let mut out = Vec::with_capacity(b * c_out * ho * wo);
    for bi in 0..b {
        for co in 0..c_out {
            let add = bias.map_or(0.0, |v| v[co]);
            for y in 0..ho {
                let src = co * columns + bi * image + y * wp;
                out.extend(full[src..src + wo].iter().map(|v| v + add));
            }
        }
    }
    out
}

/// A 1×1 convolution without padding: `out[b] = W · x[b] + bias` per image.
///
/// # Shapes
/// `x`: `[B, C_in, P]`, `weight`: `[C_out, C_in]` → `[B, C_out, P]`
fn pointwise(
    gemm: &Provider,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    [b, c_in, p, c_out]: [usize; 4],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * c_out * p);
    for _ in 0..b {
        for co in 0..c_out {
            let v = bias.map_or(0.0, |v| v[co]);
            out.extend(std::iter::repeat_n(v, p));
        }
    }
    for (xb, ob) in x
        .chunks_exact(c_in * p)
        .zip(out.chunks_exact_mut(c_out * p))
    {
        gemm.sgemm([c_out, p, c_in], weight, c_in, xb, p, 1.0, ob, p);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Direct convolution, the reference for both CPU convolutions.
    pub(crate) fn direct_reference(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        shape: Conv2dShape,
    ) -> Vec<f32> {
        let [b, c_in, h, w] = shape.input;
        let [c_out, _, kh, kw] = shape.weight;
        let [top, left, ..] = shape.padding;
        let [sh, sw] = shape.stride;
        let [_, _, ho, wo] = shape.output().unwrap();
        let mut out = vec![0.0; b * c_out * ho * wo];
        for bi in 0..b {
            for co in 0..c_out {
                for y in 0..ho {
                    for xo in 0..wo {
                        let mut acc = bias[co];
                        for ci in 0..c_in {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let (yy, xx) = (
                                        (y * sh + i) as isize - top as isize,
                                        (xo * sw + j) as isize - left as isize,
                                    );
                                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w
                                    {
                                        acc += x[((bi * c_in + ci) * h + yy as usize) * w
                                            + xx as usize]
                                            * weight[((co * c_in + ci) * kh + i) * kw + j];
                                    }
                                }
                            }
                        }
                        out[((bi * c_out + co) * ho + y) * wo + xo] = acc;
                    }
                }
            }
        }
        out
    }

    /// Shapes that cover every path, each with input, weight and bias values.
    pub(crate) fn test_shapes() -> Vec<(Conv2dShape, Vec<f32>, Vec<f32>, Vec<f32>)> {
        let s = |input, weight, padding, stride| Conv2dShape {
            input,
            weight,
            padding,
            stride,
        };
        [
            // 3×3, padding 1, odd sizes, batch 2 (columns cross image boundaries).
            s([2, 5, 7, 9], [6, 5, 3, 3], [1; 4], [1, 1]),
            // The VAE encoder's bottom/right-only padding, at stride 1 and its real stride 2.
            s([1, 3, 6, 5], [4, 3, 3, 3], [0, 0, 1, 1], [1, 1]),
            s([2, 3, 8, 7], [4, 3, 3, 3], [0, 0, 1, 1], [2, 2]),
            // The UNet's downsampler: stride 2, padding 1.
            s([1, 4, 9, 8], [5, 4, 3, 3], [1; 4], [2, 2]),
            // No padding, non-square kernel.
            s([2, 2, 6, 8], [3, 2, 3, 2], [0; 4], [1, 1]),
            // 1×1 (direct per-image path) and 1×1 with padding (im2col path).
            s([2, 8, 4, 5], [3, 8, 1, 1], [0; 4], [1, 1]),
            s([1, 4, 3, 3], [2, 4, 1, 1], [1; 4], [1, 1]),
            // Two im2col tiles: k = 576 gives tiles of 2^22 / 576 = 7281 columns, and the
            // image has 21·502 − 2 columns.
            s([1, 64, 20, 500], [2, 64, 3, 3], [1; 4], [1, 1]),
        ]
        .into_iter()
        .map(|shape| {
            let [b, c_in, h, w] = shape.input;
            let [c_out, _, kh, kw] = shape.weight;
            let x = (0..b * c_in * h * w)
                .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let weight = (0..c_out * c_in * kh * kw)
                .map(|i| ((i * 11) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let bias = (0..c_out).map(|i| i as f32 * 0.25 - 1.0).collect();
            (shape, x, weight, bias)
        })
        .collect()
    }

    fn check(provider: &Provider) {
        for (shape, x, weight, bias) in test_shapes() {
            if shape.stride != [1, 1] {
                continue;
            }
            let got = conv2d(provider, &x, &weight, Some(&bias), shape);
            let want = direct_reference(&x, &weight, &bias, shape);
            assert_eq!(got.len(), want.len());
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                    "{shape:?} [{i}]: {g} vs {r}"
                );
            }
        }
    }

    #[test]
    fn matches_direct_convolution_with_the_gemm_crate() {
        check(&Provider::Gemm {
            reason: "test".into(),
        });
    }

    #[test]
    fn matches_direct_convolution_with_the_found_provider() {
        check(super::super::sgemm::provider());
    }

    #[test]
    fn output_size_follows_padding_and_stride() {
        let s = |padding, stride| Conv2dShape {
            input: [1, 1, 2, 2],
            weight: [1, 1, 3, 3],
            padding,
            stride,
        };
        assert_eq!(s([0; 4], [1, 1]).output(), None);
        assert_eq!(s([1, 0, 0, 1], [1, 1]).output(), Some([1, 1, 1, 1]));
        assert_eq!(s([1; 4], [2, 2]).output(), Some([1, 1, 1, 1]));
        assert_eq!(s([1; 4], [0, 1]).output(), None);
    }
}
