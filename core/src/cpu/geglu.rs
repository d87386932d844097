//! diffusers' GEGLU gate, `hidden · gelu(gate)` with `hidden, gate = proj.chunk(2, -1)`, in
//! one pass over f32 data. burn's flex backend evaluates `erf` with scalar libm calls and
//! materialises both halves and the GELU.

use super::gelu::gelu_f32;
use super::parallel::for_each_chunk_mut;
use super::simd::multiversion;

/// Rows per task.
const ROWS_PER_TASK: usize = 16;

/// `x[.., :inner] · gelu(x[.., inner:])` with the exact (erf) GELU.
///
/// # Shapes
/// `x`: `[rows, 2·inner]` → `[rows, inner]`
///
/// # Panics
/// If `x.len()` is not a multiple of `2·inner`.
pub fn geglu(x: &[f32], inner: usize) -> Vec<f32> {
    assert!(
        inner > 0 && x.len().is_multiple_of(2 * inner),
        "geglu: input length"
    );
    let mut out = vec![0.0f32; x.len() / 2];
    for_each_chunk_mut(&mut out, inner * ROWS_PER_TASK, |i, dst| {
        let src = &x[i * 2 * inner * ROWS_PER_TASK..][..2 * dst.len()];
        geglu_rows(dst, src, inner);
    });
    out
}

multiversion! {
    /// Rows of `2·inner` inputs gated into rows of `inner` outputs.
    fn geglu_rows(dst: &mut [f32], src: &[f32], inner: usize) {
        for (d, row) in dst.chunks_mut(inner).zip(src.chunks(2 * inner)) {
            let (hidden, gate) = row.split_at(inner);
            for ((d, &h), &g) in d.iter_mut().zip(hidden).zip(gate) {
                *d = h * gelu_f32(g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_the_first_half_with_the_second() {
        let inner = 3;
        let x = [
            1.0, 2.0, -1.0, 0.0, 1.0, -2.0, 0.5, 0.5, 0.5, 3.0, -3.0, 0.1,
        ];
        let got = geglu(&x, inner);
        let want: Vec<f32> = x
            .chunks(2 * inner)
            .flat_map(|r| (0..inner).map(move |j| r[j] * gelu_f32(r[inner + j])))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got[1], 2.0 * gelu_f32(1.0));
    }
}
