//! CPU fast paths for burn's flex backend: f32 convolutions through oneDNN when it is
//! installed (see [`onednn`]) or as im2col + sgemm, linear layers as single sgemm calls
//! through the fastest GEMM available (see [`sgemm`]), group norm fused with SiLU, layer
//! norm, and the GEGLU and quick-GELU activations. Everything else, and every other backend
//! or dtype, stays with burn's own kernels. The models reach these through `crate::nn`'s
//! layers.
//!
//! Why: burn 0.22's flex convolution re-lays out the weight on every call and multiplies in
//! 512-pixel tiles, the `gemm` crate stays well below the CPU's AVX-512 peak, and flex
//! evaluates SiLU and GELU with scalar libm calls; together they made the SD 1.5 UNet and
//! VAE much slower than PyTorch on the CPU (README, Performance, has the numbers).

pub mod attention;
pub mod conv2d;
mod flex;
pub mod geglu;
pub mod gelu;
pub mod group_norm;
pub mod layer_norm;
pub mod linear;
pub mod onednn;
pub mod parallel;
pub mod quick_gelu;
pub mod sgemm;
pub mod simd;

use std::sync::{Mutex, OnceLock};

use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;

use flex::FlexF32;

/// `conv.forward(x)` when `x` is f32 on the flex backend and the convolution has dilation 1,
/// one group and explicit padding: through [`onednn`] when it is installed, else through
/// [`conv2d::conv2d`] when the stride is 1; otherwise `None`.
///
/// # Shapes
/// `[B, C_in, H, W]` → `[B, C_out, H_out, W_out]`
///
/// `packed` is the layer's slot for its weight in oneDNN's layout (unused without oneDNN or
/// with `MASKFORGE_PACK_WEIGHTS=off`).
pub fn conv2d(
    conv: &burn::nn::conv::Conv2d,
    x: &Tensor<4>,
    packed: &Mutex<onednn::PackSlot>,
) -> Option<Tensor<4>> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return None;
    };
    if conv.dilation != [1, 1] || conv.groups != 1 {
        return None;
    }
    let shape = conv2d::Conv2dShape {
        input: x.dims(),
        weight: conv.weight.dims(),
        padding: [top, left, bottom, right],
        stride: conv.stride,
    };
    let out_shape = shape.output()?;
    // Empty tensors and mismatched channels are left to burn (and its errors).
    if shape.input[1] != shape.weight[1] || shape.input.contains(&0) || shape.weight.contains(&0) {
        return None;
    }
    let (Some(xs), Some((ws, bs))) = (
        FlexF32::of(x),
        flex::weight_and_bias(&conv.weight, conv.bias.as_ref()),
    ) else {
        return None;
    };
    let bias = bs.as_ref().map(FlexF32::data);
    let out = match onednn::onednn().map(|dnn| {
        let mut slot = packed.lock().unwrap_or_else(|e| e.into_inner());
        let pack = pack_weights().then(|| {
            let owner: Box<dyn std::any::Any + Send> = Box::new(ws.clone());
            (&mut *slot, owner)
        });
        dnn.conv2d(xs.data(), ws.data(), bias, shape, pack)
    }) {
        Ok(Ok(out)) => out,
        _ if shape.stride == [1, 1] => {
            conv2d::conv2d(sgemm::provider(), xs.data(), ws.data(), bias, shape)
        }
        _ => return None,
    };
    Some(flex::tensor(out, out_shape))
}

/// Whether layers keep their convolution weights in oneDNN's layout between calls: faster,
/// at the cost of a second copy of those weights (2.2 GB for SD 1.5's UNet in f32).
/// `MASKFORGE_PACK_WEIGHTS=off` turns it off.
fn pack_weights() -> bool {
    static PACK: OnceLock<bool> = OnceLock::new();
    *PACK.get_or_init(|| {
        !matches!(
            std::env::var("MASKFORGE_PACK_WEIGHTS").as_deref(),
            Ok("off" | "0" | "none")
        )
    })
}

/// Which library the CPU backend's convolutions use, for reports.
pub fn describe_conv() -> String {
    match onednn::onednn() {
        Ok(dnn) => dnn.describe().to_string(),
        Err(why) => format!("im2col + {} ({why})", sgemm::provider().describe()),
    }
}

/// `norm.forward(x)`, then SiLU when `silu`, through [`group_norm::group_norm`] when `x` is
/// f32 on the flex backend and the norm is affine; otherwise `None`.
///
/// # Shapes
/// `[B, C, ...]` → `[B, C, ...]`
pub fn group_norm<const D: usize>(
    norm: &burn::nn::GroupNorm,
    x: &Tensor<D>,
    silu: bool,
) -> Option<Tensor<D>> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return None;
    };
    let (gamma, beta) = (gamma.val(), beta.val());
    let (Some(xs), Some(gs), Some(bs)) = (FlexF32::of(x), FlexF32::of(&gamma), FlexF32::of(&beta))
    else {
        return None;
    };
    let dims = x.dims();
    if D < 2
        || dims.contains(&0)
        || dims[1] != norm.num_channels
        || norm.num_groups == 0
        || !dims[1].is_multiple_of(norm.num_groups)
    {
        return None;
    }
    let out = group_norm::group_norm(
        xs.data(),
        [dims[0], dims[1], dims[2..].iter().product()],
        norm.num_groups,
        gs.data(),
        bs.data(),
        norm.epsilon,
        silu,
    );
    Some(flex::tensor(out, dims))
}

/// diffusers' GEGLU gate through [`geglu::geglu`] when `x` is f32 on the flex backend;
/// otherwise `None`.
///
/// # Shapes
/// `[..., 2·inner]` → `[..., inner]`
pub fn geglu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    let xs = FlexF32::of(x)?;
    let mut dims = x.dims();
    if !dims[D - 1].is_multiple_of(2) || dims[D - 1] == 0 {
        return None;
    }
    dims[D - 1] /= 2;
    Some(flex::tensor(geglu::geglu(xs.data(), dims[D - 1]), dims))
}

/// `layer_norm(x, [d], weight, bias, eps)` through [`layer_norm::layer_norm`] when all are
/// f32 on the flex backend; otherwise `None`.
///
/// # Shapes
/// `x`: `[..., d]`, `weight`, `bias`: `[d]` → `[..., d]`
pub fn layer_norm<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<1>,
    bias: &Tensor<1>,
    eps: f64,
) -> Option<Tensor<D>> {
    let (Some(xs), Some(ws), Some(bs)) = (FlexF32::of(x), FlexF32::of(weight), FlexF32::of(bias))
    else {
        return None;
    };
    let dims = x.dims();
    let d = weight.dims()[0];
    if D == 0 || dims[D - 1] != d || d == 0 || bias.dims()[0] != d {
        return None;
    }
    let out = layer_norm::layer_norm(xs.data(), ws.data(), bs.data(), eps);
    Some(flex::tensor(out, dims))
}

/// CLIP's `x · sigmoid(1.702·x)` through [`quick_gelu::quick_gelu`] when `x` is f32 on the
/// flex backend; otherwise `None`.
///
/// # Shapes
/// any → same
pub fn quick_gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    elementwise(x, quick_gelu::quick_gelu)
}

/// Multi-head attention through [`attention::attention`] when all are f32 on the flex
/// backend; otherwise `None`.
///
/// # Shapes
/// `q`: `[B, N, H·D]`, `k`, `v`: `[B, M, H·D]` → `[B, N, H·D]`
pub fn attention(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    heads: usize,
    causal: bool,
) -> Option<Tensor<3>> {
    let (Some(qs), Some(ks), Some(vs)) = (FlexF32::of(q), FlexF32::of(k), FlexF32::of(v)) else {
        return None;
    };
    let [b, n, c] = q.dims();
    let [kb, m, kc] = k.dims();
    if heads == 0 || !c.is_multiple_of(heads) || [kb, kc] != [b, c] || v.dims() != [b, m, c] {
        return None;
    }
    if causal && n > m {
        return None;
    }
    let shape = attention::AttentionShape {
        batch: b,
        queries: n,
        keys: m,
        heads,
        head_dim: c / heads,
    };
    let out = attention::attention(qs.data(), ks.data(), vs.data(), shape, causal);
    Some(flex::tensor(out, [b, n, c]))
}

/// The exact GELU through [`gelu::gelu`] when `x` is f32 on the flex backend; otherwise
/// `None`.
///
/// # Shapes
/// any → same
pub fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    elementwise(x, gelu::gelu)
}

/// `f` over `x`'s elements when `x` is f32 on the flex backend; otherwise `None`.
fn elementwise<const D: usize>(x: &Tensor<D>, f: fn(&[f32]) -> Vec<f32>) -> Option<Tensor<D>> {
    let xs = FlexF32::of(x)?;
    Some(flex::tensor(f(xs.data()), x.dims()))
}

/// `linear.forward(x)` through [`linear::linear`] when `x` is f32 on the flex backend;
/// otherwise `None`.
///
/// # Shapes
/// `[..., d_in]` → `[..., d_out]`
pub fn linear<const D: usize>(linear: &burn::nn::Linear, x: &Tensor<D>) -> Option<Tensor<D>> {
    let (Some(xs), Some((ws, bs))) = (
        FlexF32::of(x),
        flex::weight_and_bias(&linear.weight, linear.bias.as_ref()),
    ) else {
        return None;
    };
    let dims = x.dims();
    let [d_in, d_out] = linear.weight.dims();
    if dims[D - 1] != d_in {
        return None;
    }
    let rows = dims[..D - 1].iter().product();
    let out = linear::linear(
        sgemm::provider(),
        xs.data(),
        ws.data(),
        bs.as_ref().map(FlexF32::data),
        [rows, d_in, d_out],
    );
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    Some(flex::tensor(out, out_dims))
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    /// The fast path gives burn's own result for every padding the models use.
    #[test]
    fn conv2d_matches_burn() {
        let device = Device::flex();
        for (kernel, padding) in [
            (3, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (3, PaddingConfig2d::Explicit(0, 0, 1, 1)),
            (1, PaddingConfig2d::Explicit(0, 0, 0, 0)),
        ] {
            let conv = Conv2dConfig::new([6, 5], [kernel, kernel])
                .with_padding(padding)
                .init(&device);
            let x = Tensor::<4>::random([2, 6, 9, 7], Distribution::Normal(0.0, 1.0), &device);
            let want = conv.forward(x.clone());
            let got = super::conv2d(&conv, &x, &Default::default()).expect("fast path taken");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// Group norm, with and without the SiLU, gives burn's result.
    #[test]
    fn group_norm_matches_burn() {
        let device = Device::flex();
        let mut norm = burn::nn::GroupNormConfig::new(3, 6).init(&device);
        norm.gamma = norm.gamma.map(|g| Param::from_tensor(g.val() * 1.5));
        norm.beta = norm.beta.map(|b| Param::from_tensor(b.val() + 0.25));
        let x = Tensor::<4>::random([2, 6, 5, 3], Distribution::Normal(1.0, 2.0), &device);
        let empty = Tensor::<4>::zeros([2, 6, 0, 3], &device);
        assert!(super::group_norm(&norm, &empty, true).is_none());
        for silu in [false, true] {
            let mut want = norm.forward(x.clone());
            if silu {
                want = burn::tensor::activation::silu(want);
            }
            let got = super::group_norm(&norm, &x, silu).expect("fast path taken");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// The GEGLU gate gives burn's `hidden * gelu(gate)`.
    #[test]
    fn geglu_matches_burn() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 2.0), &device);
        let [hidden, gate]: [Tensor<3>; 2] = x.clone().chunk(2, 2).try_into().unwrap();
        let want = hidden * burn::tensor::activation::gelu(gate);
        let got = super::geglu(&x).expect("fast path taken");
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }

    /// Layer norm, quick GELU and GELU give burn's results.
    #[test]
    fn layer_norm_and_quick_gelu_match_burn() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 5, 7], Distribution::Normal(1.0, 2.0), &device);
        let w = Tensor::<1>::random([7], Distribution::Normal(1.0, 0.5), &device);
        let b = Tensor::<1>::random([7], Distribution::Normal(0.0, 0.5), &device);
        let want = burn::tensor::module::layer_norm(x.clone(), w.clone(), Some(b.clone()), 1e-5);
        let got = super::layer_norm(&x, &w, &b, 1e-5).expect("fast path taken");
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        let want = x.clone() * burn::tensor::activation::sigmoid(x.clone() * 1.702);
        let got = super::quick_gelu(&x).expect("fast path taken");
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        let want = burn::tensor::activation::gelu(x.clone());
        let got = super::gelu(&x).expect("fast path taken");
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }

    /// Strided convolutions go through oneDNN when it is installed and are left to burn
    /// otherwise; empty inputs are always left to burn.
    #[test]
    fn conv2d_strides_and_empty_inputs() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([2, 3], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([1, 2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        match super::conv2d(&conv, &x, &Default::default()) {
            Some(got) => got
                .into_data()
                .assert_approx_eq::<f32>(&conv.forward(x).into_data(), Tolerance::absolute(1e-5)),
            None => assert!(super::onednn::onednn().is_err()),
        }
        let conv = Conv2dConfig::new([2, 2], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::zeros([0, 2, 4, 4], &device);
        assert!(super::conv2d(&conv, &x, &Default::default()).is_none());
    }

    /// Attention, plain and causal, gives burn's result on split heads.
    #[test]
    fn attention_matches_burn() {
        use burn::tensor::module::attention;
        use burn::tensor::ops::AttentionModuleOptions;
        let device = Device::flex();
        let (b, n, m, heads, d) = (2, 9, 7, 3, 4);
        let split = |t: &Tensor<3>, len| t.clone().reshape([b, len, heads, d]).swap_dims(1, 2);
        for (causal, m) in [(false, m), (true, n)] {
            let q = Tensor::<3>::random([b, n, heads * d], Distribution::Normal(0.0, 1.0), &device);
            let k = Tensor::<3>::random([b, m, heads * d], Distribution::Normal(0.0, 1.0), &device);
            let v = Tensor::<3>::random([b, m, heads * d], Distribution::Normal(0.0, 1.0), &device);
            let options = AttentionModuleOptions {
                is_causal: causal,
                ..Default::default()
            };
            let want = attention(
                split(&q, n),
                split(&k, m),
                split(&v, m),
                None,
                None,
                options,
            )
            .swap_dims(1, 2)
            .reshape([b, n, heads * d]);
            let got = super::attention(&q, &k, &v, heads, causal).expect("fast path taken");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// Linear layers with and without bias, on a 3-D input and a strided (transposed) one.
    #[test]
    fn linear_matches_burn() {
        let device = Device::flex();
        for bias in [true, false] {
            let mut linear = burn::nn::LinearConfig::new(8, 5)
                .with_bias(bias)
                .init(&device);
            if let Some(b) = &linear.bias {
                linear.bias = Some(Param::from_tensor(b.val() + 0.5));
            }
            let x = Tensor::<3>::random([2, 8, 3], Distribution::Normal(0.0, 1.0), &device)
                .swap_dims(1, 2);
            let want = linear.forward(x.clone());
            let got = super::linear(&linear, &x).expect("fast path taken");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
