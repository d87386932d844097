//! Wide vectors for the fast paths' element-wise kernels, and reductions that use them.
//!
//! The crate is built for baseline x86-64 (SSE2), so plain loops vectorise 4 floats wide.
//! [`multiversion!`] compiles a kernel also for AVX2 + FMA and for AVX-512 and picks one at
//! run time by what the CPU has. The reductions keep several partial sums so that they
//! vectorise and do not wait on one long chain of dependent additions.

/// Defines `fn name(args) -> ret { body }` compiled three times (baseline, AVX2 + FMA,
/// AVX-512) and dispatched on the running CPU's features. Arguments must be plain
/// identifiers.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                match $crate::cpu::simd::level() {
                    // SAFETY: `level` found these features on this CPU.
                    $crate::cpu::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::simd::Level::Baseline => {}
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// The widest vector extension [`multiversion!`] kernels use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// Detected once; `MASKFORGE_SIMD=baseline|avx2` caps it (for comparisons and tests).
pub fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let found = if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            Level::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Level::Avx2
        } else {
            Level::Baseline
        };
        #[cfg(not(target_arch = "x86_64"))]
        let found = Level::Baseline;
        match std::env::var("MASKFORGE_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") if found == Level::Avx512 => Level::Avx2,
            _ => found,
        }
    })
}

/// Partial sums kept by the reductions.
const LANES: usize = 16;

/// `Σ f(xᵢ)` in f64 over [`LANES`] partial sums.
#[inline(always)]
fn sum_by(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v as f64);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    acc.iter().sum::<f64>() + tail
}

/// Mean and biased variance of `x` (not empty), accumulated in f64 in two passes, as
/// PyTorch's CPU norms compute them.
#[inline(always)]
pub fn mean_and_variance(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = sum_by(x, |v| v) / n;
    let var = sum_by(x, |v| (v - mean) * (v - mean)) / n;
    (mean, var)
}

/// Largest element of `x` (`-∞` when empty; NaNs are skipped).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = pick(*a, v);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |a, &b| pick(a, b))
}

/// Replaces each `x` by `f(x)` and returns the f32 sum of the results over [`LANES`]
/// partial sums.
#[inline(always)]
pub fn map_and_sum(x: &mut [f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *v = f(*v);
            *a += *v;
        }
    }
    let mut total: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = f(*v);
        total += *v;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn double_all(x: &mut [f32]) {
            x.iter_mut().for_each(|v| *v *= 2.0);
        }
    }

    /// The kernels' own tests pass again with the dispatch capped at each narrower level (in
    /// child processes, as the level is fixed per process).
    #[test]
    fn kernel_tests_pass_at_every_level() {
        if std::env::var_os("MASKFORGE_SIMD").is_some() {
            return;
        }
        for cap in ["baseline", "avx2"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["cpu::", "--skip", "onednn", "--test-threads", "1"])
                .env("MASKFORGE_SIMD", cap)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "MASKFORGE_SIMD={cap}:\n{stdout}");
            assert!(stdout.contains("cpu::attention::tests::matches_the_definition ... ok"));
        }
    }

    #[test]
    fn reductions_match_plain_loops() {
        let x: Vec<f32> = (0..1003)
            .map(|i| ((i * 17) % 31) as f32 * 0.3 - 4.0)
            .collect();
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let (m, v) = mean_and_variance(&x);
        assert!((m - mean).abs() < 1e-12 && (v - var).abs() < 1e-12);
        assert_eq!(max(&x), x.iter().cloned().fold(f32::MIN, f32::max));
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let mut y = x.clone();
        let sum = map_and_sum(&mut y, |v| v * v);
        let want: f64 = x.iter().map(|&v| (v * v) as f64).sum();
        assert!((sum as f64 - want).abs() < 1e-3 * want);
        assert!(y.iter().zip(&x).all(|(a, b)| *a == b * b));
        double_all(&mut y[..5]);
        assert_eq!(y[4], 2.0 * x[4] * x[4]);
    }
}
