//! Multi-head scaled dot-product attention on f32 tokens, with the heads read and written in
//! place. burn's flex backend needs the heads split into `[B, H, N, D]` copies and merged
//! back, evaluates the softmax with scalar `expf`, and runs on rayon beside oneDNN's OpenMP
//! threads (see [`super::parallel`]).
//!
//! Each task takes one head of one batch item and a block of query rows: `S = scale·Q·Kᵀ`
//! with one sgemm, the softmax of each row in place, `O = S·V` with another, and `O`'s rows
//! divided by the softmax sums.

use std::cell::RefCell;

use super::group_norm::exp;
use super::parallel::{Pool, SendPtr, for_each, pool};
use super::simd::{self, multiversion};

/// Query rows per task: the scores of one task (`ROWS × M`) stay in L2 up to M = 4096.
const ROWS: usize = 64;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    /// Query tokens (N).
    pub queries: usize,
    /// Key and value tokens (M).
    pub keys: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// `softmax(Q·Kᵀ/√D [+ causal mask])·V` for every head, as `torch.nn.functional.
/// scaled_dot_product_attention` on `[B, H, ·, D]` views of the inputs. With `causal`, query
/// `i` sees keys `0..=i` (CLIP's mask; requires N ≤ M).
///
/// # Shapes
/// `q`: `[B, N, H·D]`, `k`, `v`: `[B, M, H·D]` → `[B, N, H·D]`
///
/// # Panics
/// If the slices do not match `shape`, or `causal` with N > M.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: AttentionShape, causal: bool) -> Vec<f32> {
    attention_with(Gemm::for_pool(), q, k, v, shape, causal)
}

fn attention_with(
    gemm: Gemm,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttentionShape,
    causal: bool,
) -> Vec<f32> {
    let AttentionShape {
        batch: b,
        queries: n,
        keys: m,
        heads: h,
        head_dim: d,
    } = shape;
    let hd = h * d;
    assert_eq!(q.len(), b * n * hd, "attention: query length");
    assert!(
        k.len() == b * m * hd && v.len() == b * m * hd,
        "attention: key/value length"
    );
    assert!(
        !causal || n <= m,
        "attention: causal with more queries than keys"
    );
    let mut out = vec![0.0f32; b * n * hd];
    if out.is_empty() || m == 0 {
        return out;
    }
    let scale = 1.0 / (d as f32).sqrt();
    let blocks = n.div_ceil(ROWS);
    let out_ptr = SendPtr(out.as_mut_ptr());
    for_each(b * h * blocks, |task| {
        let (bh, block) = (task / blocks, task % blocks);
        let (bi, hi) = (bh / h, bh % h);
        let r0 = block * ROWS;
        let rows = ROWS.min(n - r0);
        let q = &q[(bi * n + r0) * hd + hi * d..];
        let k = &k[bi * m * hd + hi * d..];
        let v = &v[bi * m * hd + hi * d..];
        SCORES.with_borrow_mut(|scores| {
            scores.clear();
            scores.resize(rows * m, 0.0);
            // SAFETY: `scores` holds `rows × m` elements and is this thread's own.
            unsafe {
                gemm.run(
                    [rows, m, d],
                    scale,
                    q,
                    hd,
                    (k, hd, true),
                    scores.as_mut_ptr(),
                    m,
                )
            };
            let mut sums = [0.0f32; ROWS];
            for ((r, row), sum) in scores.chunks_mut(m).enumerate().zip(&mut sums) {
                let visible = if causal { r0 + r + 1 } else { m };
                row[visible..].fill(0.0);
                *sum = softmax_numerators(&mut row[..visible]);
            }
            // This task alone writes rows r0..r0+rows of head `hi` of item `bi`: the
            // `rows × d` block at `(bi·N + r0)·H·D + hi·D`, row stride H·D. Other tasks write
            // the columns between those rows, so the block is only reached through pointers
            // and one `d`-long slice per row.
            // SAFETY: the block lies inside `out`, which outlives `for_each`.
            let o = unsafe { out_ptr.get().add((bi * n + r0) * hd + hi * d) };
            // SAFETY: as above; `scores` is `rows × m` and `v` holds `m` rows of stride H·D.
            unsafe { gemm.run([rows, d, m], 1.0, scores, m, (v, hd, false), o, hd) };
            for (r, sum) in sums[..rows].iter().enumerate() {
                // SAFETY: row `r` of the block, written by this task only.
                let row = unsafe { std::slice::from_raw_parts_mut(o.add(r * hd), d) };
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
        });
    });
    out
}

thread_local! {
    /// One task's scores, reused across calls.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

multiversion! {
    /// Replaces `row` by `exp(row - max(row))` and returns its sum (`row` not empty).
    fn softmax_numerators(row: &mut [f32]) -> f32 {
        let max = simd::max(row);
        simd::map_and_sum(row, |x| exp(x - max))
    }
}

/// The single-threaded GEMM a task runs: `dnnl_sgemm` inside an OpenMP region (where it
/// keeps to its own thread), else the `gemm` crate without threads.
#[derive(Clone, Copy)]
enum Gemm {
    OneDnn(super::sgemm::DnnlSgemm),
    Crate,
}

impl Gemm {
    fn for_pool() -> Self {
        match (pool(), super::onednn::onednn()) {
            (Pool::OpenMp(_), Ok(dnn)) => Self::OneDnn(dnn.sgemm()),
            _ => Self::Crate,
        }
    }

    /// `c = alpha·a·op(b)` with row-major matrices: `a` is `m × k` with row stride `lda`;
    /// `op(b)` is `k × n`, stored as `b.0` with row stride `b.1`, transposed (stored `n × k`)
    /// when `b.2`; `c` is `m × n` with row stride `ldc`.
    ///
    /// # Safety
    /// `c` must be valid for writes of its `m × n` elements, which no one else may access
    /// during the call.
    ///
    /// # Panics
    /// If `a` or `b` is too short for its shape and stride.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        self,
        [m, n, k]: [usize; 3],
        alpha: f32,
        a: &[f32],
        lda: usize,
        (b, ldb, transposed): (&[f32], usize, bool),
        c: *mut f32,
        ldc: usize,
    ) {
        let (b_rows, b_cols) = if transposed { (n, k) } else { (k, n) };
        assert!(m > 0 && n > 0 && k > 0, "attention gemm: empty");
        assert!(a.len() >= (m - 1) * lda + k, "attention gemm: A too short");
        assert!(
            b.len() >= (b_rows - 1) * ldb + b_cols,
            "attention gemm: B too short"
        );
        match self {
            // SAFETY: the asserts keep reads inside `a` and `b`; `c` is the caller's contract.
            Self::OneDnn(sgemm) => unsafe {
                let status = sgemm(
                    b'N' as _,
                    if transposed { b'T' } else { b'N' } as _,
                    m as i64,
                    n as i64,
                    k as i64,
                    alpha,
                    a.as_ptr(),
                    lda as i64,
                    b.as_ptr(),
                    ldb as i64,
                    0.0,
                    c,
                    ldc as i64,
                );
                assert_eq!(status, 0, "dnnl_sgemm failed");
            },
            // SAFETY: as above; a transposed `b` is read through its strides.
            Self::Crate => unsafe {
                let (rhs_cs, rhs_rs) = if transposed { (ldb, 1) } else { (1, ldb) };
                gemm::gemm(
                    m,
                    n,
                    k,
                    c,
                    1,
                    ldc as isize,
                    false,
                    a.as_ptr(),
                    1,
                    lda as isize,
                    b.as_ptr(),
                    rhs_cs as isize,
                    rhs_rs as isize,
                    0.0,
                    alpha,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention by its definition, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape, causal: bool) -> Vec<f64> {
        let (hd, d) = (s.heads * s.head_dim, s.head_dim);
        let mut out = vec![0.0; s.batch * s.queries * hd];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.queries {
                    let visible = if causal { i + 1 } else { s.keys };
                    let logits: Vec<f64> = (0..visible)
                        .map(|j| {
                            (0..d)
                                .map(|c| {
                                    q[(b * s.queries + i) * hd + h * d + c] as f64
                                        * k[(b * s.keys + j) * hd + h * d + c] as f64
                                })
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..d {
                        out[(b * s.queries + i) * hd + h * d + c] = (0..visible)
                            .map(|j| e[j] * v[(b * s.keys + j) * hd + h * d + c] as f64)
                            .sum::<f64>()
                            / sum;
                    }
                }
            }
        }
        out
    }

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 37 + seed * 11) % 29) as f32 - 14.0) * 0.15)
            .collect()
    }

    /// Several query blocks, keys fewer and more than a lane multiple, odd head sizes, and
    /// the causal mask, with oneDNN's sgemm (when installed) and the `gemm` crate.
    #[test]
    fn matches_the_definition() {
        for (shape, causal) in [
            ((2, 150, 77, 3, 8), false),
            ((1, 77, 77, 2, 5), true),
            ((3, 5, 33, 1, 16), false),
            ((1, 1, 1, 1, 1), true),
        ] {
            let (batch, queries, keys, heads, head_dim) = shape;
            let s = AttentionShape {
                batch,
                queries,
                keys,
                heads,
                head_dim,
            };
            let hd = heads * head_dim;
            let q = data(batch * queries * hd, 1);
            let k = data(batch * keys * hd, 2);
            let v = data(batch * keys * hd, 3);
            let want = reference(&q, &k, &v, s, causal);
            let mut gemms = vec![Gemm::Crate];
            if let Ok(dnn) = crate::cpu::onednn::onednn() {
                gemms.push(Gemm::OneDnn(dnn.sgemm()));
            }
            for gemm in gemms {
                let got = attention_with(gemm, &q, &k, &v, s, causal);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() < 1e-5, "{s:?} [{i}] {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn softmax_numerators_sum_and_peak() {
        let mut row: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let sum = softmax_numerators(&mut row);
        assert_eq!(row[36], 1.0);
        let want: f64 = (0..37).map(|i| ((i as f64 - 36.0) * 0.5).exp()).sum();
        assert!((sum as f64 - want).abs() < 1e-5, "{sum} vs {want}");
    }
}
