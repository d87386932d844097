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
            gemm.q_kt(rows, m, d, scale, q, hd, k, hd, scores);
            let sums: Vec<f32> = scores
                .chunks_mut(m)
                .enumerate()
                .map(|(r, row)| {
                    let visible = if causal { r0 + r + 1 } else { m };
                    row[visible..].fill(0.0);
                    softmax_numerators(&mut row[..visible])
                })
                .collect();
            // SAFETY: this task alone writes rows r0.. r0+rows of head `hi` of item `bi`:
            // the `rows × d` block at `(bi·N + r0)·H·D + hi·D` with row stride H·D.
            let o = unsafe {
                let start = (bi * n + r0) * hd + hi * d;
                std::slice::from_raw_parts_mut(out_ptr.get().add(start), (rows - 1) * hd + d)
            };
            gemm.p_v(rows, d, m, scores, m, v, hd, o, hd);
            for (r, sum) in sums.into_iter().enumerate() {
                let inv = 1.0 / sum;
                o[r * hd..r * hd + d].iter_mut().for_each(|x| *x *= inv);
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

    /// `s = alpha·q·kᵀ`: `q` is `rows × d` (row stride `ldq`), `k` is `m × d` (row stride
    /// `ldk`), `s` is `rows × m`, contiguous.
    #[allow(clippy::too_many_arguments)]
    fn q_kt(
        self,
        rows: usize,
        m: usize,
        d: usize,
        alpha: f32,
        q: &[f32],
        ldq: usize,
        k: &[f32],
        ldk: usize,
        s: &mut [f32],
    ) {
        assert!(q.len() >= (rows - 1) * ldq + d && k.len() >= (m - 1) * ldk + d);
        assert!(s.len() >= rows * m);
        match self {
            // SAFETY: the asserts keep every access inside the slices.
            Self::OneDnn(sgemm) => unsafe {
                let status = sgemm(
                    b'N' as _,
                    b'T' as _,
                    rows as i64,
                    m as i64,
                    d as i64,
                    alpha,
                    q.as_ptr(),
                    ldq as i64,
                    k.as_ptr(),
                    ldk as i64,
                    0.0,
                    s.as_mut_ptr(),
                    m as i64,
                );
                assert_eq!(status, 0, "dnnl_sgemm failed");
            },
            // SAFETY: as above; the transpose of `k` is read through its strides.
            Self::Crate => unsafe {
                gemm::gemm(
                    rows,
                    m,
                    d,
                    s.as_mut_ptr(),
                    1,
                    m as isize,
                    false,
                    q.as_ptr(),
                    1,
                    ldq as isize,
                    k.as_ptr(),
                    ldk as isize,
                    1,
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

    /// `o = p·v`: `p` is `rows × m` (row stride `ldp`), `v` is `m × d` (row stride `ldv`),
    /// `o` is `rows × d` (row stride `ldo`).
    #[allow(clippy::too_many_arguments)]
    fn p_v(
        self,
        rows: usize,
        d: usize,
        m: usize,
        p: &[f32],
        ldp: usize,
        v: &[f32],
        ldv: usize,
        o: &mut [f32],
        ldo: usize,
    ) {
        assert!(p.len() >= (rows - 1) * ldp + m && v.len() >= (m - 1) * ldv + d);
        assert!(o.len() >= (rows - 1) * ldo + d);
        match self {
            // SAFETY: the asserts keep every access inside the slices.
            Self::OneDnn(sgemm) => unsafe {
                let status = sgemm(
                    b'N' as _,
                    b'N' as _,
                    rows as i64,
                    d as i64,
                    m as i64,
                    1.0,
                    p.as_ptr(),
                    ldp as i64,
                    v.as_ptr(),
                    ldv as i64,
                    0.0,
                    o.as_mut_ptr(),
                    ldo as i64,
                );
                assert_eq!(status, 0, "dnnl_sgemm failed");
            },
            // SAFETY: as above.
            Self::Crate => unsafe {
                gemm::gemm(
                    rows,
                    d,
                    m,
                    o.as_mut_ptr(),
                    1,
                    ldo as isize,
                    false,
                    p.as_ptr(),
                    1,
                    ldp as isize,
                    v.as_ptr(),
                    1,
                    ldv as isize,
                    0.0,
                    1.0,
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
