//! `nn.GroupNorm` (affine), optionally followed by SiLU, as one kernel: one cube per (batch
//! item, group) sums the group in f32 (mean, then the biased variance about it, each reduced
//! through shared memory, no subgroup operations), then writes the normalised, scaled and
//! shifted values. burn's own group norm is about nine kernels under fusion (a layout copy, two
//! reductions, the division and the affine apart), and the UNet and VAE have two in every ResNet
//! block.

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Dispatch, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor};
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::{CubeCount, CubeDim};

use crate::ops::KernelOps;
use crate::resample::is_cube_device;

/// Units per cube at most: a power of two every WebGPU adapter allows.
const MAX_UNITS: usize = 256;

/// The largest group (channels per group × positions) the kernel takes. Its parallelism is one
/// cube per group, so larger groups (a VAE decoder's full-resolution layers, where a group can
/// hold millions of values) would leave most of a GPU idle: burn's kernels take those.
const MAX_GROUP: usize = 1 << 18;

mod kernel {
    use cubecl::prelude::*;

    /// The offset of element `(b, c, s)` of `t` (`[B, C, ...]`, any strides), `s` indexing
    /// the trailing dimensions in row-major order.
    #[cube]
    fn offset<F: Float>(t: &Tensor<F>, b: usize, c: usize, s: usize) -> usize {
        let mut off = b * t.stride(0) + c * t.stride(1);
        let mut rest = s;
        let mut d = t.rank();
        while d > 2 {
            d -= 1;
            let size = t.shape(d);
            off += (rest % size) * t.stride(d);
            rest /= size;
        }
        off
    }

    /// The sum of every unit's `value`, for all units (the cube's size a power of two).
    /// `partial` holds one value per unit.
    #[cube]
    fn cube_sum(partial: &mut Shared<[f32]>, value: f32) -> f32 {
        let unit = UNIT_POS_X as usize;
        partial[unit] = value;
        sync_cube();
        // Started from the (runtime) cube size: a binding made from a comptime value is a
        // constant, which the loop could not halve.
        let mut half = CUBE_DIM_X as usize / 2;
        while half > 0 {
            if unit < half {
                let pair = partial[unit] + partial[unit + half];
                partial[unit] = pair;
            }
            sync_cube();
            half /= 2;
        }
        let total = partial[0];
        sync_cube();
        total
    }

    /// Element `i` of a group of `per_group` channels from `c0` over `spatial` positions, as
    /// `(channel, position)`: channel-major, or position-major for channels-last tensors (so
    /// neighbouring units touch neighbouring memory).
    #[cube]
    fn element(
        i: usize,
        c0: usize,
        per_group: usize,
        spatial: usize,
        #[comptime] channels_last: bool,
    ) -> (usize, usize) {
        if channels_last {
            (c0 + i % per_group, i / per_group)
        } else {
            (c0 + i / spatial, i % spatial)
        }
    }

    #[cube(launch)]
    pub fn group_norm<F: Float>(
        input: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        output: &mut Tensor<F>,
        groups: u32,
        epsilon: f32,
        #[comptime] units: u32,
        #[comptime] silu: bool,
        #[comptime] channels_last: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let groups = groups as usize;
        let b = CUBE_POS_X as usize / groups;
        let group = CUBE_POS_X as usize % groups;
        let channels = input.shape(1);
        let per_group = channels / groups;
        let mut spatial = 1usize;
        for d in 2..input.rank() {
            spatial *= input.shape(d);
        }
        let n = per_group * spatial;
        let c0 = group * per_group;
        let step = units as usize;
        let mut partial = Shared::<[f32]>::new_slice(comptime!(units as usize));

        let mut sum = 0.0f32;
        let mut i = UNIT_POS_X as usize;
        while i < n {
            let (c, s) = element(i, c0, per_group, spatial, channels_last);
            sum += f32::cast_from(input[offset(input, b, c, s)]);
            i += step;
        }
        let mean = cube_sum(&mut partial, sum) / f32::cast_from(n);

        let mut squares = 0.0f32;
        let mut i = UNIT_POS_X as usize;
        while i < n {
            let (c, s) = element(i, c0, per_group, spatial, channels_last);
            let x = f32::cast_from(input[offset(input, b, c, s)]) - mean;
            squares += x * x;
            i += step;
        }
        let variance = cube_sum(&mut partial, squares) / f32::cast_from(n);
        let rstd = 1.0f32 / f32::sqrt(variance + epsilon);

        let mut i = UNIT_POS_X as usize;
        while i < n {
            let (c, s) = element(i, c0, per_group, spatial, channels_last);
            let x = f32::cast_from(input[offset(input, b, c, s)]);
            let scale = f32::cast_from(gamma[c * gamma.stride(0)]) * rstd;
            let mut y = (x - mean) * scale + f32::cast_from(beta[c * beta.stride(0)]);
            if silu {
                y = y / (1.0f32 + f32::exp(-y));
            }
            // The output is contiguous in [B, C, ...] or, channels-last, in [B, ..., C].
            let at = if channels_last {
                (b * spatial + s) * channels + c
            } else {
                (b * channels + c) * spatial + s
            };
            output[at] = F::cast_from(y);
            i += step;
        }
    }
}

/// How [`group_norm`] normalises: the number of groups, the variance's epsilon, and whether
/// SiLU follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormParams {
    pub groups: usize,
    pub epsilon: f64,
    pub silu: bool,
}

/// `torch.nn.GroupNorm(groups, C, eps)(x) · gamma + beta` (biased variance, statistics in f32),
/// then SiLU when `params.silu`, in one kernel on a CubeCL device. `None` for tensors on another
/// device, for dtypes other than f32, f16 and bf16, when `groups` does not divide `C`, and for
/// groups of more than [`MAX_GROUP`] values.
///
/// # Shapes
/// `x`: `[B, C, ...]` (rank ≥ 3, any strides), `gamma`, `beta`: `[C]` → `[B, C, ...]`
pub fn group_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    params: GroupNormParams,
) -> Option<Tensor<D>> {
    let dims = x.dims();
    if !is_cube_device(&x.device())
        || D < 3
        || float_kind(x.dtype()).is_none()
        || gamma.dtype() != x.dtype()
        || beta.dtype() != x.dtype()
        || params.groups == 0
        || !dims[1].is_multiple_of(params.groups)
        || gamma.dims() != [dims[1]]
        || beta.dims() != [dims[1]]
        || dims[0] * params.groups > u16::MAX as usize
        || dims.contains(&0)
        || dims[1..].iter().product::<usize>() / params.groups > MAX_GROUP
    {
        return None;
    }
    Some(Tensor::from_dispatch(Dispatch::group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        params,
    )))
}

fn float_kind(dtype: DType) -> Option<FloatKind> {
    match dtype {
        DType::F32 => Some(FloatKind::F32),
        DType::F16 => Some(FloatKind::F16),
        DType::BF16 => Some(FloatKind::BF16),
        _ => None,
    }
}

/// Launches the kernel on CubeCL tensors (see [`KernelOps::group_norm`]). The output keeps a
/// channels-last input's layout (what burn's convolutions produce and read), else is contiguous.
pub(crate) fn launch(
    input: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    params: GroupNormParams,
) -> CubeTensor {
    let shape = input.shape();
    let rank = shape.num_dims();
    let client = input.client.clone();
    let dtype = input.dtype;
    let kind = float_kind(dtype).expect("checked in group_norm");
    let channels_last = shape[1] > 1 && input.meta.strides()[1] == 1;
    // [B, C, ...] or, channels-last, [B, ..., C] permuted back to [B, C, ...].
    let (stored, order): (Vec<usize>, Vec<usize>) = if channels_last {
        let order = [0]
            .into_iter()
            .chain(2..rank)
            .chain([1])
            .collect::<Vec<_>>();
        let back = [0, rank - 1].into_iter().chain(1..rank - 1).collect();
        (order.iter().map(|&d| shape[d]).collect(), back)
    } else {
        (shape.iter().copied().collect(), (0..rank).collect())
    };
    let mut output = CubeTensor::new_contiguous(
        client.clone(),
        input.device.clone(),
        Shape::from(stored),
        client.empty(shape.num_elements() * dtype.size()),
        dtype,
    );
    output
        .meta
        .permute(&order)
        .expect("a permutation of the output's dimensions");
    // About four values per unit for small groups: every unit of a cube takes part in its
    // barriers, which a software GPU (SwiftShader) pays per unit.
    let per_group = shape.num_elements() / shape[0] / params.groups;
    let units = (per_group / 4).next_power_of_two().clamp(32, MAX_UNITS) as u32;
    kernel::group_norm::launch(
        &client,
        CubeCount::Static((shape[0] * params.groups) as u32, 1, 1),
        CubeDim::new_1d(units),
        input.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        params.groups as u32,
        params.epsilon as f32,
        units,
        params.silu,
        channels_last,
        ElemType::Float(kind),
    );
    output
}
