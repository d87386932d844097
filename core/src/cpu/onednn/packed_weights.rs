//! Convolution weights kept in the layout a primitive chose, so that a layer's weights are
//! reordered once rather than on every call.

use std::any::Any;
use std::sync::Arc;

use super::execute::Scratch;
use super::plans::Plan;

/// Where a layer keeps its convolution weights in oneDNN's layout between calls.
pub type PackSlot = Option<Box<dyn Any + Send>>;

/// A convolution weight reordered for one plan, kept in the layer's [`PackSlot`]. Reordering
/// SD 1.5's 2.2 GB of UNet convolution weights on every call is a noticeable share of the call.
pub(super) struct PackedWeights {
    plan: Arc<Plan>,
    /// Address of the weights it was made from. `_owner` keeps that buffer alive, so no other
    /// weights can be at this address while the copy exists.
    weight: usize,
    pub(super) buffer: Scratch,
    _owner: Box<dyn Any + Send>,
}

impl PackedWeights {
    /// An empty packing of `weight` for `plan`; the first reorder into `buffer` fills it.
    pub(super) fn new(plan: &Arc<Plan>, weight: *const f32, owner: Box<dyn Any + Send>) -> Self {
        Self {
            plan: plan.clone(),
            weight: weight as usize,
            buffer: Scratch::default(),
            _owner: owner,
        }
    }

    /// The packing in `slot`, when it was made for `plan` from the buffer at `weight`.
    pub(super) fn find<'a>(
        slot: &'a mut PackSlot,
        plan: &Arc<Plan>,
        weight: *const f32,
    ) -> Option<&'a mut Self> {
        slot.as_mut()
            .and_then(|b| b.downcast_mut::<Self>())
            .filter(|p| Arc::ptr_eq(&p.plan, plan) && p.weight == weight as usize)
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::conv2d::tests::test_shapes;
    use crate::cpu::onednn::library::tests::loaded;

    /// A slot packed from one weight buffer is not reused for another one.
    #[test]
    fn packed_weights_follow_the_buffer() {
        let Some(dnn) = loaded() else { return };
        let (shape, x, weight, bias) = test_shapes().swap_remove(0);
        let other: Vec<f32> = weight.iter().map(|w| w * -0.5 + 0.125).collect();
        let mut slot = None;
        for w in [&weight, &other, &weight] {
            let got = dnn
                .conv2d(&x, w, Some(&bias), shape, Some((&mut slot, Box::new(()))))
                .unwrap();
            assert_eq!(got, dnn.conv2d(&x, w, Some(&bias), shape, None).unwrap());
        }
    }
}
