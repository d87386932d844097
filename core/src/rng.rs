//! Torch-compatible CPU random numbers.
//!
//! diffusers draws every random number of a pipeline run (initial latents, ancestral noise,
//! DDIM `eta` noise) with `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))`.
//! To give the same image for the same seed, [`TorchRng`] reproduces torch's CPU generator
//! (`at::mt19937` seeded by `manual_seed`) and its `normal_` kernel
//! (`aten/src/ATen/native/cpu/DistributionTemplates.h`):
//!
//! * `n >= 16` (`normal_fill`): `n` uniforms `(u32 & 0xFF_FFFF) * 2^-24` are drawn first, then
//!   Box–Muller turns each block of 16 into normals, pairing `j` with `j + 8` (radius from
//!   `1 - u[j]`, angle from `u[j + 8]`), all in `f32`. When `n % 16 != 0` the last 16 values
//!   are overwritten by 16 fresh uniforms transformed the same way.
//! * `n < 16`: each value comes from `at::normal_distribution<double>`: two 53-bit uniforms
//!   `u1, u2` give `r = sqrt(-2 ln(1 - u2))`, `θ = 2π u1`; `r cos θ` is returned and `r sin θ`
//!   is cached in the generator for the next scalar draw (the cache survives across calls and
//!   is ignored by the `n >= 16` path), exactly like `CPUGeneratorImpl`.
//!
//! On x86-64, torch's `f32` Box–Muller (`NormalFill16`) evaluates `log`, `sin` and `cos` with
//! the Cephes polynomials of `avx_mathfun.h` in AVX2 registers, with the multiply-adds that GCC
//! fuses into FMA instructions. `box_muller_16` replays that arithmetic operation by
//! operation, which makes the results bit-identical to torch on x86-64 (checked on 2^22 values).
//! torch on aarch64 uses libm's `logf`/`cosf`/`sinf` instead and differs by about one ulp.

use burn::tensor::{Device, Tensor, TensorData};

/// Mersenne twister state size (`MERSENNE_STATE_N` in `ATen/core/MT19937RNGEngine.h`).
const MT_N: usize = 624;
const MT_M: usize = 397;

/// `at::mt19937`: the standard 32-bit MT19937 engine.
#[derive(Debug, Clone)]
struct Mt19937 {
    state: [u32; MT_N],
    next: usize,
}

impl Mt19937 {
    /// `mt19937::init_with_uint32`: only the low 32 bits of the seed are used.
    fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed as u32;
        for j in 1..MT_N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Self { state, next: MT_N }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// `torch.Generator("cpu").manual_seed(seed)` with `torch.randn(..., dtype=torch.float32)`.
#[derive(Debug, Clone)]
pub struct TorchRng {
    engine: Mt19937,
    /// `CPUGeneratorImpl::next_double_normal_sample_`.
    next_double_normal: Option<f64>,
}

impl TorchRng {
    /// Same state as `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        Self {
            engine: Mt19937::new(seed),
            next_double_normal: None,
        }
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits, exact in `f32`.
    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`: 53 bits of `random64()` (high word first).
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `normal_distribution<double>(0, 1)` with the generator's cached second sample.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn((n,), generator=g)`: `n` standard normal `f32` values; the generator state
    /// advances exactly like torch's, so consecutive calls continue torch's sequence.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if n % 16 != 0 {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }

    /// `torch.randn((n,), dtype=torch.float64, generator=g)`: below 16 values the same
    /// scalar draws as [`randn`](Self::randn); from 16 on, `normal_fill<double>`: 53-bit
    /// uniforms and Box–Muller in f64 with libm's `log`, `cos` and `sin`.
    pub fn randn_f64(&mut self, n: usize) -> Vec<f64> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64()).collect();
        }
        let mut data: Vec<f64> = (0..n).map(|_| self.uniform_f64()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16_f64(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f64();
            }
            box_muller_16_f64(tail);
        }
        data
    }

    /// `torch.randn(shape, generator=g)` as a tensor on `device` (default float dtype).
    pub fn randn_tensor(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let values = self.randn(shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// `randn_tensor(like.shape, dtype=like.dtype, device=like.device, generator=g)`: drawn in
    /// `f32` like torch, then converted to `like`'s dtype.
    pub fn randn_like(&mut self, like: &Tensor<4>) -> Tensor<4> {
        let shape = like.dims();
        let values = self.randn(shape.iter().product());
        Tensor::from_data(
            TensorData::new(values, shape),
            (&like.device(), like.dtype()),
        )
    }
}

/// `normal_fill_16<double>`: Box–Muller on 16 uniforms, pairs `(j, j + 8)`.
fn box_muller_16_f64(data: &mut [f64]) {
    for j in 0..8 {
        let radius = (-2.0 * (1.0 - data[j]).ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * data[j + 8];
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

/// `NormalFill16<float>` (AVX2): Box–Muller on 16 uniforms, pairs `(j, j + 8)`.
fn box_muller_16(data: &mut [f32]) {
    const TWO_PI: f32 = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let radius = (-2.0 * cephes_log(1.0 - data[j])).sqrt();
        let (sin, cos) = cephes_sincos(TWO_PI * data[j + 8]);
        data[j] = radius * cos;
        data[j + 8] = radius * sin;
    }
}

/// `log256_ps` of `avx_mathfun.h` for `x` in `[2^-24, 1]`, with torch's FMA contractions.
fn cephes_log(x: f32) -> f32 {
    // The C source's double constants, rounded to float like `_PS256_CONST` does.
    const SQRTHF: f32 = 0.707106781186547524_f64 as f32;
    const P: [f32; 9] = [
        7.0376836292e-2_f64 as f32,
        -1.1514610310e-1_f64 as f32,
        1.1676998740e-1_f64 as f32,
        -1.2420140846e-1_f64 as f32,
        1.4249322787e-1_f64 as f32,
        -1.6668057665e-1_f64 as f32,
        2.0000714765e-1_f64 as f32,
        -2.4999993993e-1_f64 as f32,
        3.3333331174e-1_f64 as f32,
    ];
    const Q1: f32 = -2.12194440e-4_f64 as f32;
    const Q2: f32 = 0.693359375;
    let bits = x.to_bits();
    // x = m * 2^e with m in [0.5, 1).
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let x = if m < SQRTHF {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = x * x;
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(x, *p);
    }
    let y = (y * x).mul_add(z, e * Q1);
    let y = y - z * 0.5;
    e.mul_add(Q2, x + y)
}

/// `sincos256_ps` of `avx_mathfun.h` for `x >= 0`, with torch's FMA contractions:
/// `(sin x, cos x)`.
fn cephes_sincos(x: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516_f64 as f32; // 4 / π
    const DP: [f32; 3] = [
        -0.78515625,
        -2.4187564849853515625e-4_f64 as f32,
        -3.77489497744594108e-8_f64 as f32,
    ];
    const COS: [f32; 3] = [
        2.443315711809948e-5_f64 as f32,
        -1.388731625493765e-3_f64 as f32,
        4.166664568298827e-2_f64 as f32,
    ];
    const SIN: [f32; 3] = [
        -1.9515295891e-4_f64 as f32,
        8.3321608736e-3_f64 as f32,
        -1.6666654611e-1_f64 as f32,
    ];
    let j = ((x * FOPI) as i32 + 1) & !1;
    let y = j as f32;
    // Extended-precision reduction to [-π/4, π/4].
    let x = y.mul_add(DP[2], y.mul_add(DP[1], y.mul_add(DP[0], x)));
    let z = x * x;
    let cos_poly = COS[0].mul_add(z, COS[1]).mul_add(z, COS[2]) * z;
    let cos_poly = cos_poly.mul_add(z, -(z * 0.5)) + 1.0;
    let sin_poly = (SIN[0].mul_add(z, SIN[1]).mul_add(z, SIN[2]) * z).mul_add(x, x);
    let (sin, cos) = if j & 2 == 0 {
        (sin_poly, cos_poly)
    } else {
        (cos_poly, sin_poly)
    };
    let sin = if j & 4 != 0 { -sin } else { sin };
    let cos = if (j - 2) & 4 == 0 { -cos } else { cos };
    (sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_reference_sequence() {
        // std::mt19937 with the default seed 5489: the 10000th output is 4123659995.
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    /// Small literal check that needs no fixture: `torch.randn(3, generator=manual_seed(0))`
    /// (scalar path) and the first values of `torch.randn(16, ...)` (Box–Muller path).
    #[test]
    fn randn_literals() {
        let got = TorchRng::new(0).randn(3);
        let want = [1.540_996_2_f32, -0.293_428_8, -2.178_789_4];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    /// Replays a fixture key: `seed{S}.{A}x{B}x...` is one draw of that shape,
    /// `seed{S}.{shape}+{shape}+...` consecutive draws from one generator, and `seed{S}.seq`
    /// two draws of `(1, 4, 8, 8)`.
    fn replay(key: &str) -> Option<Vec<f32>> {
        let (seed, what) = key.strip_prefix("seed")?.split_once('.')?;
        let mut rng = TorchRng::new(seed.parse().ok()?);
        let what = if what == "seq" {
            "1x4x8x8+1x4x8x8"
        } else {
            what
        };
        let mut values = Vec::new();
        for shape in what.split('+') {
            let n = shape
                .split('x')
                .map(|d| d.parse::<usize>().ok())
                .product::<Option<usize>>()?;
            values.extend(rng.randn(n));
        }
        Some(values)
    }

    #[test]
    fn randn_matches_torch_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/expected/randn.safetensors"
        );
        let path = std::env::var("MASKFORGE_RANDN_FIXTURE").unwrap_or(path.to_string());
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (generated by tests/fixtures scripts)"));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let mut names = st.names();
        names.sort();
        for name in names {
            let view = st.tensor(name).expect("tensor");
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let want: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let got = replay(name).unwrap_or_else(|| panic!("unknown fixture key {name}"));
            assert_eq!(got.len(), want.len(), "{name}");
            let (mut max_err, mut mismatches) = (0f32, 0usize);
            for (g, w) in got.iter().zip(&want) {
                max_err = max_err.max((g - w).abs());
                mismatches += usize::from(g.to_bits() != w.to_bits());
            }
            eprintln!(
                "{name}: {} values, {mismatches} not bit-exact, max abs err {max_err:e}",
                want.len()
            );
            assert_eq!(mismatches, 0, "{name}: max abs err {max_err}");
        }
    }
}
