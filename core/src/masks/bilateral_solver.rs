//! The fast bilateral solver (Barron & Poole, ECCV 2016), as the Python reference implementation
//! that MosaicFusion uses to snap coarse attention masks to image edges.
//!
//! The image is splatted onto a sparse 5-D grid (x, y, luma, chroma U, chroma V). A smooth,
//! edge-aware version of a per-pixel target is found on the grid's vertices by minimising
//! `λ·yᵀ(Dm − Dn·B·Dn)y + Σ w·(y − x)²` with Jacobi-preconditioned conjugate gradient (scipy's
//! `cg`), then sliced back to pixels. All arithmetic is f64.

use crate::error::{Error, Result};

/// Grid bandwidths, smoothness and solver settings. [`Default`] holds MosaicFusion's values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BilateralSolverParams {
    /// Spatial bandwidth in pixels.
    pub sigma_spatial: f64,
    /// Luma (Y) bandwidth.
    pub sigma_luma: f64,
    /// Chroma (U, V) bandwidth.
    pub sigma_chroma: f64,
    /// Strength of the smoothness term.
    pub lambda: f64,
    /// Confidence of every target pixel.
    pub confidence: f64,
    /// Iterations of the bistochastization of the grid blur.
    pub bistochastize_iters: usize,
    /// Maximum conjugate-gradient iterations.
    pub cg_max_iter: usize,
    /// Relative tolerance of conjugate gradient (`rtol`).
    pub cg_tol: f64,
    /// Lower clamp of the Jacobi preconditioner's diagonal.
    pub a_diag_min: f64,
}

impl Default for BilateralSolverParams {
    fn default() -> Self {
        Self {
            sigma_spatial: 16.0,
            sigma_luma: 16.0,
            sigma_chroma: 8.0,
            lambda: 256.0,
            confidence: 0.999,
            bistochastize_iters: 10,
            cg_max_iter: 25,
            cg_tol: 1e-5,
            a_diag_min: 1e-5,
        }
    }
}

/// Dimensions of the grid: x, y, Y, U, V.
const DIM: usize = 5;
/// Base of the coordinate hash (the reference's `MAX_VAL`).
const HASH_BASE: i64 = 255;
/// Marks an absent neighbour.
const NONE: u32 = u32::MAX;

/// JPEG full-range RGB → YUV matrix rows; U and V are offset by 128.
const RGB_TO_YUV: [[f64; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [-0.168736, -0.331264, 0.5],
    [0.5, -0.418688, -0.081312],
];

/// YUV of one RGB pixel. Each row is evaluated as `fma(b, m2, fma(g, m1, r·m0))`, the rounding of
/// the reference's `np.tensordot` through OpenBLAS's FMA (Haswell and later) dgemm kernels:
/// bit-identical for all 2²⁴ colours, which matters where `Y/σ` lands on an integer.
pub fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [f64; 3] {
    let (r, g, b) = (r as f64, g as f64, b as f64);
    let offset = [0.0, 128.0, 128.0];
    std::array::from_fn(|c| {
        let m = RGB_TO_YUV[c];
        b.mul_add(m[2], g.mul_add(m[1], r * m[0])) + offset[c]
    })
}

/// The bistochastized bilateral grid of a reference image: pixel → vertex map, the ±1 neighbours
/// of each vertex in every dimension, and the normalisations `n`, `m` (`Dn`, `Dm`).
#[derive(Clone, Debug)]
pub struct BilateralGrid {
    /// Vertex of each pixel (the splat matrix `S`).
    vertex_of_pixel: Vec<u32>,
    /// Per vertex, its neighbours in the order −dim4 … −dim0, +dim0 … +dim4 (ascending vertex index,
    /// as vertices are sorted by hash); [`NONE`] where absent.
    neighbours: Vec<[u32; 2 * DIM]>,
    /// Bistochastization `n` (`Dn`).
    n: Vec<f64>,
    /// Bistochastization `m` (`Dm`).
    m: Vec<f64>,
}

impl BilateralGrid {
    /// Builds the grid of the row-major, interleaved `height`×`width`×3 `rgb` image with the
    /// bandwidths and `bistochastize_iters` of `params`.
    pub fn new(
        rgb: &[u8],
        height: usize,
        width: usize,
        params: &BilateralSolverParams,
    ) -> Result<Self> {
        let npixels = pixel_count(height, width)?;
        if npixels.checked_mul(3) != Some(rgb.len()) {
            return Err(Error::Invalid(format!(
                "bilateral grid: rgb has {} bytes, expected {height}x{width}x3",
                rgb.len()
            )));
        }
        for (name, s) in [
            ("sigma_spatial", params.sigma_spatial),
            ("sigma_luma", params.sigma_luma),
            ("sigma_chroma", params.sigma_chroma),
        ] {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::Invalid(format!(
                    "bilateral grid: {name} = {s} must be > 0"
                )));
            }
        }
        let powers: [i64; DIM] = std::array::from_fn(|d| HASH_BASE.pow(d as u32));
        let overflow = || Error::Invalid("bilateral grid: coordinate hash overflows i64".into());

        // 5-D coordinates truncated toward zero (numpy `astype(int)`), hashed as Σ c_d·255^d.
        let hashes = (0..npixels)
            .map(|i| {
                let px = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
                let [y, u, v] = rgb_to_yuv(px);
                let coords = [
                    ((i % width) as f64 / params.sigma_spatial) as i64,
                    ((i / width) as f64 / params.sigma_spatial) as i64,
                    (y / params.sigma_luma) as i64,
                    (u / params.sigma_chroma) as i64,
                    (v / params.sigma_chroma) as i64,
                ];
                coords.iter().zip(powers).try_fold(0i64, |h, (&c, p)| {
                    c.checked_mul(p)
                        .and_then(|t| h.checked_add(t))
                        .ok_or_else(overflow)
                })
            })
            .collect::<Result<Vec<i64>>>()?;

        // Vertices: sorted unique hashes (np.unique order); each pixel maps to its hash's vertex.
        let mut order: Vec<(i64, u32)> = hashes.into_iter().zip(0..).collect();
        order.sort_unstable();
        let mut unique: Vec<i64> = Vec::new();
        let mut vertex_of_pixel = vec![0u32; npixels];
        for &(h, pixel) in &order {
            if unique.last() != Some(&h) {
                unique.push(h);
            }
            vertex_of_pixel[pixel as usize] = (unique.len() - 1) as u32;
        }
        let index_of = |h: i64| unique.binary_search(&h).ok().map(|k| k as u32);

        // Neighbours by exact hash match, like the reference (aliasing included).
        let neighbours = unique
            .iter()
            .map(|&h| {
                std::array::from_fn(|k| {
                    let (d, sign) = if k < DIM {
                        (DIM - 1 - k, -1)
                    } else {
                        (k - DIM, 1)
                    };
                    h.checked_add(sign * powers[d])
                        .and_then(index_of)
                        .unwrap_or(NONE)
                })
            })
            .collect();

        let mut grid = Self {
            vertex_of_pixel,
            neighbours,
            n: Vec::new(),
            m: Vec::new(),
        };
        grid.bistochastize(npixels, params.bistochastize_iters);
        Ok(grid)
    }

    /// Number of pixels of the reference image.
    pub fn num_pixels(&self) -> usize {
        self.vertex_of_pixel.len()
    }

    /// Number of occupied grid vertices.
    pub fn num_vertices(&self) -> usize {
        self.neighbours.len()
    }

    /// Solves for the edge-aware smoothing of the per-pixel `target` (one value per pixel) with
    /// uniform confidence `params.confidence`; uses `lambda`, `confidence` and the `cg_*`/
    /// `a_diag_min` settings of `params`.
    pub fn solve(&self, target: &[f64], params: &BilateralSolverParams) -> Result<Vec<f64>> {
        if target.len() != self.num_pixels() {
            return Err(Error::Invalid(format!(
                "bilateral solve: target has {} values, the image {} pixels",
                target.len(),
                self.num_pixels()
            )));
        }
        let w = params.confidence;
        if !(w.is_finite() && w > 0.0) {
            return Err(Error::Invalid(format!(
                "bilateral solve: confidence = {w} must be > 0"
            )));
        }
        if !(params.lambda.is_finite() && params.lambda >= 0.0) {
            return Err(Error::Invalid(format!(
                "bilateral solve: lambda = {} must be >= 0",
                params.lambda
            )));
        }
        let xw: Vec<f64> = target.iter().map(|&x| x * w).collect();
        let b = self.splat(&xw);
        let w_splat = self.splat(&vec![w; target.len()]);
        let a = SystemMatrix::new(self, params.lambda, &w_splat);
        let m_inv: Vec<f64> = a.diag().map(|d| 1.0 / d.max(params.a_diag_min)).collect();
        let y0 = b.iter().zip(&w_splat).map(|(b, w)| b / w).collect();
        let y = conjugate_gradient(&a, &b, y0, &m_inv, params.cg_tol, params.cg_max_iter);
        Ok(self.slice(&y))
    }

    /// `S·x`: sums pixel values into their vertices (in pixel order).
    fn splat(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.num_vertices()];
        for (&v, &xi) in self.vertex_of_pixel.iter().zip(x) {
            out[v as usize] += xi;
        }
        out
    }

    /// `Sᵀ·y`: reads each pixel's vertex value.
    fn slice(&self, y: &[f64]) -> Vec<f64> {
        self.vertex_of_pixel
            .iter()
            .map(|&v| y[v as usize])
            .collect()
    }

    /// `B·x` with the [1 2 1] kernel in every dimension: `2·dim·x + Σ_d (x[−d] + x[+d])`, summed
    /// per dimension in ascending vertex order like the reference's per-dimension CSR products.
    fn blur(&self, x: &[f64]) -> Vec<f64> {
        let get = |k: u32| if k == NONE { None } else { Some(x[k as usize]) };
        self.neighbours
            .iter()
            .zip(x)
            .map(|(nb, &xi)| {
                (0..DIM).fold((2 * DIM) as f64 * xi, |acc, d| {
                    match (get(nb[DIM - 1 - d]), get(nb[DIM + d])) {
                        (Some(lo), Some(hi)) => acc + (lo + hi),
                        (Some(v), None) | (None, Some(v)) => acc + v,
                        (None, None) => acc,
                    }
                })
            })
            .collect()
    }

    /// Bistochastization: `m = S·1`, `n = 1`; `iters` times `n = sqrt(n·m / B·n)`; then
    /// `m = n·B·n`.
    fn bistochastize(&mut self, npixels: usize, iters: usize) {
        let m = self.splat(&vec![1.0; npixels]);
        let mut n = vec![1.0; self.num_vertices()];
        for _ in 0..iters {
            let bn = self.blur(&n);
            for ((ni, mi), bi) in n.iter_mut().zip(&m).zip(&bn) {
                *ni = (*ni * mi / bi).sqrt();
            }
        }
        let bn = self.blur(&n);
        self.m = n.iter().zip(&bn).map(|(ni, bi)| ni * bi).collect();
        self.n = n;
    }
}

/// `A = λ·(Dm − Dn·B·Dn) + diag(S·w)` on the grid, row by row in ascending column order: up to
/// five lower neighbours, the diagonal, up to five upper neighbours.
struct SystemMatrix<'a> {
    grid: &'a BilateralGrid,
    /// Per row: the 11 coefficients in column order (0 where the neighbour is absent).
    rows: Vec<[f64; 2 * DIM + 1]>,
}

impl<'a> SystemMatrix<'a> {
    fn new(grid: &'a BilateralGrid, lambda: f64, w_splat: &[f64]) -> Self {
        let (n, m) = (&grid.n, &grid.m);
        let rows = grid
            .neighbours
            .iter()
            .enumerate()
            .map(|(i, nb)| {
                let off = |k: u32| match k {
                    NONE => 0.0,
                    j => -(lambda * (n[i] * n[j as usize])),
                };
                let mut row = [0.0; 2 * DIM + 1];
                for (slot, &k) in nb.iter().enumerate() {
                    row[if slot < DIM { slot } else { slot + 1 }] = off(k);
                }
                row[DIM] = lambda * (m[i] - n[i] * ((2 * DIM) as f64 * n[i])) + w_splat[i];
                row
            })
            .collect();
        Self { grid, rows }
    }

    fn diag(&self) -> impl Iterator<Item = f64> + '_ {
        self.rows.iter().map(|r| r[DIM])
    }

    /// `A·x`, each row summed in column order like scipy's CSR product.
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        for (i, (row, nb)) in self.rows.iter().zip(&self.grid.neighbours).enumerate() {
            let mut sum = 0.0;
            for (slot, &k) in nb[..DIM].iter().enumerate() {
                if k != NONE {
                    sum += row[slot] * x[k as usize];
                }
            }
            sum += row[DIM] * x[i];
            for (slot, &k) in nb[DIM..].iter().enumerate() {
                if k != NONE {
                    sum += row[DIM + 1 + slot] * x[k as usize];
                }
            }
            out[i] = sum;
        }
    }
}

/// Preconditioned conjugate gradient, step for step as `scipy.sparse.linalg.cg` (scipy ≥ 1.12)
/// with `rtol`, `atol = 0` and the diagonal preconditioner `m_inv`.
fn conjugate_gradient(
    a: &SystemMatrix,
    b: &[f64],
    mut x: Vec<f64>,
    m_inv: &[f64],
    rtol: f64,
    max_iter: usize,
) -> Vec<f64> {
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
    let b_norm = dot(b, b).sqrt();
    if b_norm == 0.0 {
        return b.to_vec();
    }
    let atol = rtol * b_norm;
    let len = b.len();
    let mut r = vec![0.0; len];
    a.apply(&x, &mut r);
    for (ri, bi) in r.iter_mut().zip(b) {
        *ri = bi - *ri;
    }
    let (mut p, mut q, mut z) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
    let mut rho_prev = 0.0;
    for iteration in 0..max_iter {
        if dot(&r, &r).sqrt() < atol {
            break;
        }
        for ((zi, ri), mi) in z.iter_mut().zip(&r).zip(m_inv) {
            *zi = mi * ri;
        }
        let rho = dot(&r, &z);
        if iteration > 0 {
            let beta = rho / rho_prev;
            for (pi, zi) in p.iter_mut().zip(&z) {
                *pi = *pi * beta + zi;
            }
        } else {
            p.copy_from_slice(&z);
        }
        a.apply(&p, &mut q);
        let alpha = rho / dot(&p, &q);
        for i in 0..len {
            x[i] += alpha * p[i];
            r[i] -= alpha * q[i];
        }
        rho_prev = rho;
    }
    x
}

/// Solves the bilateral problem for `target` (one value per pixel) on the `height`×`width` RGB
/// image `rgb`: [`BilateralGrid::new`] then [`BilateralGrid::solve`].
pub fn bilateral_solve(
    rgb: &[u8],
    height: usize,
    width: usize,
    target: &[f64],
    params: &BilateralSolverParams,
) -> Result<Vec<f64>> {
    BilateralGrid::new(rgb, height, width, params)?.solve(target, params)
}

/// MosaicFusion's mask refinement: `times` passes of solving for `255·mask` and keeping
/// `out / max(out) > threshold` (all false where `max(out) <= 0` or is NaN). MosaicFusion uses
/// `times = 2`, `threshold = 0.5`.
pub fn refine_mask(
    rgb: &[u8],
    height: usize,
    width: usize,
    mask: &[bool],
    params: &BilateralSolverParams,
    times: usize,
    threshold: f64,
) -> Result<Vec<bool>> {
    let grid = BilateralGrid::new(rgb, height, width, params)?;
    if mask.len() != grid.num_pixels() {
        return Err(Error::Invalid(format!(
            "refine mask: mask has {} pixels, the image {}",
            mask.len(),
            grid.num_pixels()
        )));
    }
    let mut mask = mask.to_vec();
    for _ in 0..times {
        let target: Vec<f64> = mask.iter().map(|&m| if m { 255.0 } else { 0.0 }).collect();
        let out = grid.solve(&target, params)?;
        // NaN-propagating max, like numpy.
        let max = out.iter().fold(f64::NEG_INFINITY, |a, &v| {
            if a.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                a.max(v)
            }
        });
        mask = if max > 0.0 {
            out.iter().map(|&v| v / max > threshold).collect()
        } else {
            vec![false; out.len()]
        };
    }
    Ok(mask)
}

/// `height·width`, checked: non-empty and addressable by `u32` indices.
fn pixel_count(height: usize, width: usize) -> Result<usize> {
    match height.checked_mul(width) {
        Some(n) if n > 0 && n < u32::MAX as usize => Ok(n),
        _ => Err(Error::Invalid(format!(
            "bilateral grid: image size {height}x{width} must be non-empty and below 2^32 pixels"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(height: usize, width: usize) -> Vec<u8> {
        (0..height * width * 3)
            .map(|i| (i * 37 % 251) as u8)
            .collect()
    }

    #[test]
    fn bad_sizes_are_errors() {
        let p = BilateralSolverParams::default();
        let rgb = image(4, 5);
        assert!(matches!(
            BilateralGrid::new(&rgb[1..], 4, 5, &p),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            BilateralGrid::new(&[], 0, 5, &p),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            bilateral_solve(&rgb, 4, 5, &[0.0; 19], &p),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            refine_mask(&rgb, 4, 5, &[true; 21], &p, 2, 0.5),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn bad_params_are_errors() {
        let rgb = image(4, 5);
        for p in [
            BilateralSolverParams {
                sigma_luma: 0.0,
                ..Default::default()
            },
            BilateralSolverParams {
                sigma_spatial: f64::NAN,
                ..Default::default()
            },
            BilateralSolverParams {
                sigma_chroma: 1e-300,
                ..Default::default()
            },
            BilateralSolverParams {
                confidence: 0.0,
                ..Default::default()
            },
            BilateralSolverParams {
                lambda: -1.0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                bilateral_solve(&rgb, 4, 5, &[1.0; 20], &p),
                Err(Error::Invalid(_))
            ));
        }
    }

    #[test]
    fn constant_target_is_a_fixed_point() {
        let p = BilateralSolverParams::default();
        let out = bilateral_solve(&image(12, 9), 12, 9, &[3.0; 108], &p).unwrap();
        assert!(out.iter().all(|v| (v - 3.0).abs() < 1e-9), "{out:?}");
        let zero = bilateral_solve(&image(12, 9), 12, 9, &[0.0; 108], &p).unwrap();
        assert!(zero.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn empty_mask_refines_to_empty() {
        let p = BilateralSolverParams::default();
        let out = refine_mask(&image(6, 7), 6, 7, &[false; 42], &p, 2, 0.5).unwrap();
        assert!(out.iter().all(|&m| !m));
    }

    #[test]
    fn grey_16_falls_in_luma_bin_0() {
        // As in numpy: Y of grey 16 rounds to 15.999999999999998, so Y/16 truncates to 0.
        assert_eq!(rgb_to_yuv([16, 16, 16])[0], 15.999999999999998);
    }
}
