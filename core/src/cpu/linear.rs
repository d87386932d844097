//! `nn.Linear` on f32 data as one sgemm.

use super::sgemm::Provider;

/// `x · weight + bias`, with the weight in burn's `[d_in, d_out]` layout.
///
/// # Shapes
/// `x`: `[rows, d_in]`, `weight`: `[d_in, d_out]`, `bias`: `[d_out]` → `[rows, d_out]`
///
/// # Panics
/// If the slices do not match the shapes.
pub fn linear(
    gemm: &Provider,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    [rows, d_in, d_out]: [usize; 3],
) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "linear: input length");
    assert_eq!(weight.len(), d_in * d_out, "linear: weight length");
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), d_out, "linear: bias length");
            bias.repeat(rows)
        }
        None => vec![0.0; rows * d_out],
    };
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    gemm.sgemm(
        [rows, d_out, d_in],
        x,
        d_in,
        weight,
        d_out,
        beta,
        &mut out,
        d_out,
    );
    out
}
