//! Zero-copy access to the f32 buffers of tensors on burn's flex (CPU) backend.

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};

/// A contiguous f32 flex tensor, read in place.
#[derive(Clone)]
pub struct FlexF32(FlexTensor);

impl FlexF32 {
    /// The tensor's flex primitive when it is an f32 tensor on the flex backend (sharing its
    /// buffer; copied only when its layout is strided), or `None` on any other backend or dtype.
    pub fn of<const D: usize>(tensor: &Tensor<D>) -> Option<Self> {
        if tensor.dtype() != DType::F32 {
            return None;
        }
        let flex = tensor.clone().try_into_primitive::<Flex>().ok()?;
        let flex = if flex.layout().contiguous_offsets().is_some() {
            flex
        } else {
            flex.to_contiguous()
        };
        Some(Self(flex))
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        let (start, end) = self
            .0
            .layout()
            .contiguous_offsets()
            .expect("made contiguous in `of`");
        &self.0.storage::<f32>()[start..end]
    }
}

/// A layer's weight and optional bias, when all are f32 on the flex backend.
pub fn weight_and_bias<const D: usize>(
    weight: &Param<Tensor<D>>,
    bias: Option<&Param<Tensor<1>>>,
) -> Option<(FlexF32, Option<FlexF32>)> {
    let weight = FlexF32::of(&weight.val())?;
    let bias = match bias {
        Some(b) => Some(FlexF32::of(&b.val())?),
        None => None,
    };
    Some((weight, bias))
}

/// Wraps `data` (row-major) as a flex tensor of `shape` without copying.
pub fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(data, shape)))
}
