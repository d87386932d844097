//! Single-precision GEMM for the CPU fast paths.
//!
//! When oneDNN runs the convolutions ([`super::onednn`]), its `dnnl_sgemm` runs the linear
//! layers too, so that one thread pool (oneDNN's OpenMP) serves both: with OpenBLAS's own
//! threads beside it the SD 1.5 UNet was slower. Otherwise a system CBLAS (OpenBLAS, MKL,
//! BLIS or Apple Accelerate) is loaded at run time when one is installed: OpenBLAS is
//! markedly faster than the `gemm` crate that burn's flex backend uses. Without one, the
//! `gemm` crate is used, so nothing needs a BLAS to build or run. `MASKFORGE_BLAS=off` forces
//! the `gemm` crate; `MASKFORGE_BLAS=<library>` loads that library instead of searching.

use std::sync::OnceLock;

/// `cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
type CblasSgemm = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

/// oneDNN's `dnnl_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`,
/// row-major, returning a status.
pub type DnnlSgemm = unsafe extern "C" fn(
    std::ffi::c_char,
    std::ffi::c_char,
    i64,
    i64,
    i64,
    f32,
    *const f32,
    i64,
    *const f32,
    i64,
    f32,
    *mut f32,
    i64,
) -> i32;

const CBLAS_ROW_MAJOR: i32 = 101;
const CBLAS_NO_TRANS: i32 = 111;

/// Libraries tried in order when `MASKFORGE_BLAS` is unset. Reference BLAS (`libblas.so.3`)
/// is left out on purpose: it is slower than the `gemm` crate.
const CANDIDATES: &[&str] = &[
    "libopenblas.so.0",
    "libopenblas.so",
    "libmkl_rt.so.2",
    "libmkl_rt.so",
    "libblis.so.4",
    "/System/Library/Frameworks/Accelerate.framework/Accelerate",
    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    "libopenblas.dll",
    "mkl_rt.2.dll",
];

/// Which GEMM the CPU fast paths use.
pub enum Provider {
    /// `cblas_sgemm` from a library loaded at run time, with the library's own threads.
    Cblas {
        /// The library name or path that was loaded.
        library: String,
        sgemm: CblasSgemm,
        /// Kept loaded for the life of the process.
        _library: libloading::Library,
    },
    /// oneDNN's `dnnl_sgemm`, when oneDNN runs the convolutions: one thread pool for both.
    OneDnn {
        /// oneDNN's description.
        library: String,
        sgemm: DnnlSgemm,
    },
    /// The `gemm` crate; `reason` says why no CBLAS is used.
    Gemm { reason: String },
}

impl Provider {
    /// Searches for a CBLAS as described in the module documentation.
    fn detect() -> Self {
        match std::env::var("MASKFORGE_BLAS") {
            Ok(v) if v == "off" || v == "0" || v == "none" => Self::Gemm {
                reason: "MASKFORGE_BLAS=off".into(),
            },
            Ok(library) => Self::load(&library).unwrap_or_else(|e| Self::Gemm {
                reason: format!("MASKFORGE_BLAS={library}: {e}"),
            }),
            Err(_) => match super::onednn::onednn() {
                Ok(dnn) => Self::OneDnn {
                    library: dnn.describe().to_string(),
                    sgemm: dnn.sgemm(),
                },
                Err(_) => CANDIDATES
                    .iter()
                    .find_map(|name| Self::load(name).ok())
                    .unwrap_or_else(|| Self::Gemm {
                        reason: "no CBLAS library found (install OpenBLAS for faster CPU runs)"
                            .into(),
                    }),
            },
        }
    }

    fn load(library: &str) -> Result<Self, String> {
        // SAFETY: loading a shared library runs its initialisers; the candidates are BLAS
        // libraries, and `cblas_sgemm` has the signature above in every CBLAS.
        unsafe {
            let lib = libloading::Library::new(library).map_err(|e| e.to_string())?;
            let sgemm = *lib
                .get::<CblasSgemm>(b"cblas_sgemm\0")
                .map_err(|e| e.to_string())?;
            Ok(Self::Cblas {
                library: library.to_string(),
                sgemm,
                _library: lib,
            })
        }
    }

    /// A short description for reports: `cblas (libopenblas.so.0)` or `gemm crate (why)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Cblas { library, .. } => format!("cblas ({library})"),
            Self::OneDnn { library, .. } => library.clone(),
            Self::Gemm { reason } => format!("gemm crate ({reason})"),
        }
    }

    /// `C = A·B + beta·C` with row-major matrices: `A` is `m×k` with row stride `lda`, `B` is
    /// `k×n` with row stride `ldb`, `C` is `m×n` with row stride `ldc`.
    ///
    /// # Panics
    /// If a slice is too short for its shape and stride, or a size exceeds `i32`.
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm(
        &self,
        [m, n, k]: [usize; 3],
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        let needed = |rows: usize, cols: usize, ld: usize| (rows - 1) * ld + cols;
        assert!(
            lda >= k && ldb >= n && ldc >= n,
            "sgemm: leading dimension too small"
        );
        assert!(k == 0 || a.len() >= needed(m, k, lda), "sgemm: A too short");
        assert!(k == 0 || b.len() >= needed(k, n, ldb), "sgemm: B too short");
        assert!(c.len() >= needed(m, n, ldc), "sgemm: C too short");
        match self {
            Self::Cblas { sgemm, .. } => {
                let int = |v: usize| i32::try_from(v).expect("sgemm: size exceeds i32");
                // SAFETY: the asserts above keep every access inside the slices.
                unsafe {
                    sgemm(
                        CBLAS_ROW_MAJOR,
                        CBLAS_NO_TRANS,
                        CBLAS_NO_TRANS,
                        int(m),
                        int(n),
                        int(k),
                        1.0,
                        a.as_ptr(),
                        int(lda.max(1)),
                        b.as_ptr(),
                        int(ldb.max(1)),
                        beta,
                        c.as_mut_ptr(),
                        int(ldc),
                    )
                }
            }
            Self::OneDnn { sgemm, .. } => {
                let int = |v: usize| v as i64;
                // SAFETY: as above.
                let status = unsafe {
                    sgemm(
                        b'N' as std::ffi::c_char,
                        b'N' as std::ffi::c_char,
                        int(m),
                        int(n),
                        int(k),
                        1.0,
                        a.as_ptr(),
                        int(lda.max(1)),
                        b.as_ptr(),
                        int(ldb.max(1)),
                        beta,
                        c.as_mut_ptr(),
                        int(ldc),
                    )
                };
                assert_eq!(status, 0, "dnnl_sgemm failed");
            }
            // SAFETY: as above. The `gemm` crate computes `dst = alpha·dst + beta·lhs·rhs`.
            Self::Gemm { .. } => unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    ldc as isize,
                    beta != 0.0,
                    a.as_ptr(),
                    1,
                    lda as isize,
                    b.as_ptr(),
                    1,
                    ldb as isize,
                    beta,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                )
            },
        }
    }
}

/// The provider for this process, found on first use.
pub fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(Provider::detect)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain triple loop, the reference for both providers.
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        c0: &[f32],
        beta: f32,
    ) -> Vec<f32> {
        (0..m * n)
            .map(|i| {
                let (r, col) = (i / n, i % n);
                beta * c0[i] + (0..k).map(|p| a[r * k + p] * b[p * n + col]).sum::<f32>()
            })
            .collect()
    }

    fn check(provider: &Provider) {
        let (m, n, k) = (37, 53, 29);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5) % 13) as f32 * 0.5 - 3.0)
            .collect();
        let c0: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
        for beta in [0.0, 1.0] {
            let mut c = if beta == 0.0 {
                vec![f32::NAN; m * n]
            } else {
                c0.clone()
            };
            provider.sgemm([m, n, k], &a, k, &b, n, beta, &mut c, n);
            let want = reference(m, n, k, &a, &b, &c0, beta);
            for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-3 * y.abs().max(1.0),
                    "{}: [{i}] {x} vs {y}",
                    provider.describe()
                );
            }
        }
    }

    #[test]
    fn onednn_sgemm_matches_reference() {
        if let Ok(dnn) = super::super::onednn::onednn() {
            check(&Provider::OneDnn {
                library: dnn.describe().to_string(),
                sgemm: dnn.sgemm(),
            });
        }
    }

    #[test]
    fn gemm_crate_matches_reference() {
        check(&Provider::Gemm {
            reason: "test".into(),
        });
    }

    /// CI installs OpenBLAS, so there the CBLAS path must be found and checked; elsewhere it
    /// is checked when present.
    #[test]
    fn cblas_matches_reference() {
        match CANDIDATES.iter().find_map(|name| Provider::load(name).ok()) {
            Some(p) => check(&p),
            None => assert!(
                std::env::var_os("CI").is_none(),
                "CI installs OpenBLAS (libopenblas0-pthread) but no CBLAS library loads"
            ),
        }
    }
}
