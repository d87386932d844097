//! Running a convolution: the user buffers are reordered into the primitive's layouts,
//! convolved, and the result reordered back, on a per-thread stream and scratch buffers.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::Arc;

use super::library::{
    ARG_BIAS, ARG_DST, ARG_SRC, ARG_WEIGHTS, Api, ExecArg, Handle, MemoryDesc, ONEDNN, OneDnn,
    STREAM_DEFAULT_FLAGS, check,
};
use super::packed_weights::{PackSlot, PackedWeights};
use super::plans::{Operand, Plan, PlanKey};
use crate::cpu::conv2d::Conv2dShape;

impl OneDnn {
    /// Cross-correlation of `x` with `weight` plus `bias`, as `torch.nn.functional.conv2d`
    /// with `stride`, `shape.padding`, dilation 1 and one group.
    ///
    /// # Shapes
    /// `x`: `[B, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `bias`: `[C_out]` →
    /// `[B, C_out, H_out, W_out]` (row-major, flattened)
    ///
    /// With `pack`, the weight is reordered once and kept in the layer's slot with `owner`
    /// (anything that keeps `weight`'s buffer alive); later calls with the same buffer and
    /// shapes reuse it.
    ///
    /// # Errors
    /// If the slices do not match `shape`, or oneDNN rejects the convolution.
    pub fn conv2d(
        &self,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        shape: Conv2dShape,
        pack: Option<(&mut PackSlot, Box<dyn Any + Send>)>,
    ) -> Result<Vec<f32>, String> {
        let out_shape = shape
            .output()
            .ok_or("conv2d: kernel larger than the input")?;
        let [c_out, c_in, kh, kw] = shape.weight;
        if shape.input[1] != c_in
            || x.len() != shape.input.iter().product::<usize>()
            || weight.len() != c_out * c_in * kh * kw
            || bias.is_some_and(|b| b.len() != c_out)
        {
            return Err(format!("conv2d: slices do not match {shape:?}"));
        }
        let plan = self.plan(PlanKey {
            shape,
            bias: bias.is_some(),
        })?;
        let len = out_shape.iter().product();
        let mut out = Vec::<f32>::with_capacity(len);
        // One convolution at a time: each already uses every core through OpenMP, and calls
        // from several threads at once gave wrong results in the parallel parity tests (oneDNN
        // 2.x shares one scratchpad between primitives unless built for concurrent execution).
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        LOCAL.with(|local| -> Result<(), String> {
            let mut local = local.borrow_mut();
            let local = match &mut *local {
                Some(l) => l,
                None => local.insert(Local {
                    stream: Stream::new(self)?,
                    scratch: Default::default(),
                }),
            };
            // SAFETY: the user buffers have the sizes of the plan's user descriptors (checked
            // above); oneDNN only reads `x`, `weight` and `bias` and writes all of `out`.
            unsafe {
                self.execute(
                    &plan,
                    local,
                    x.as_ptr(),
                    weight.as_ptr(),
                    pack,
                    bias.map(<[f32]>::as_ptr),
                    out.as_mut_ptr(),
                )
            }
        })?;
        // SAFETY: the convolution (or the reorder after it) wrote all `len` elements.
        unsafe { out.set_len(len) };
        Ok(out)
    }

    /// Runs `plan` on user buffers: reorders in, convolves, reorders out.
    ///
    /// # Safety
    /// The pointers must hold the element counts of the plan's user descriptors.
    #[allow(clippy::too_many_arguments)]
    unsafe fn execute(
        &self,
        plan: &Arc<Plan>,
        local: &mut Local,
        x: *const f32,
        weight: *const f32,
        pack: Option<(&mut PackSlot, Box<dyn Any + Send>)>,
        bias: Option<*const f32>,
        out: *mut f32,
    ) -> Result<(), String> {
        let api = &self.api;
        let stream = local.stream.0;
        let [src_scratch, weights_scratch, dst_scratch] = &mut local.scratch;
        // SAFETY: `md` is a valid descriptor.
        let scratch = |buffer: &mut Scratch, md: *const MemoryDesc| {
            buffer.get(unsafe { (api.memory_desc_get_size)(md) })
        };
        // Every memory object made here, destroyed on return.
        let mut memories = Memories(api, Vec::new());
        let mut memory = |md: *const MemoryDesc, data: Handle| -> Result<Handle, String> {
            let mut m = std::ptr::null_mut();
            // SAFETY: `md` is a valid descriptor; `data` holds its size.
            check(
                unsafe { (api.memory_create)(&mut m, md, self.engine, data) },
                "memory_create",
            )?;
            memories.1.push(m);
            Ok(m)
        };
        let run = |p: Handle, args: &[ExecArg]| {
            // SAFETY: the arguments are memories made above for this primitive's descriptors.
            check(
                unsafe { (api.primitive_execute)(p, stream, args.len() as c_int, args.as_ptr()) },
                "primitive_execute",
            )
        };
        let mut input = |op: &Operand, data: *const f32, buffer| -> Result<Handle, String> {
            let user = memory(&*op.user, data as Handle)?;
            match op.reorder {
                None => Ok(user),
                Some((_, reorder)) => {
                    let inner = memory(op.inner, scratch(buffer, op.inner))?;
                    run(reorder, &reorder_args(user, inner))?;
                    Ok(inner)
                }
            }
        };
        let src = input(&plan.src, x, src_scratch)?;
        let weights = match (plan.weights.reorder, pack) {
            (Some(_), Some((slot, owner))) => {
                match PackedWeights::find(slot, plan, weight) {
                    Some(p) => memory(
                        plan.weights.inner,
                        scratch(&mut p.buffer, plan.weights.inner),
                    )?,
                    None => {
                        let mut packed = PackedWeights::new(plan, weight, owner);
                        // The buffer's heap block stays put when `packed` moves into the slot.
                        let inner = input(&plan.weights, weight, &mut packed.buffer)?;
                        *slot = Some(Box::new(packed));
                        inner
                    }
                }
            }
            _ => input(&plan.weights, weight, weights_scratch)?,
        };
        let dst_user = memory(&*plan.dst.user, out as Handle)?;
        let dst = match plan.dst.reorder {
            None => dst_user,
            Some(_) => memory(plan.dst.inner, scratch(dst_scratch, plan.dst.inner))?,
        };
        let mut args = vec![
            ExecArg {
                arg: ARG_SRC,
                memory: src,
            },
            ExecArg {
                arg: ARG_WEIGHTS,
                memory: weights,
            },
            ExecArg {
                arg: ARG_DST,
                memory: dst,
            },
        ];
        if let Some(b) = bias {
            args.push(ExecArg {
                arg: ARG_BIAS,
                memory: memory(&*plan.bias, b as Handle)?,
            });
        }
        run(plan.primitive, &args)?;
        if let Some((_, reorder)) = plan.dst.reorder {
            run(reorder, &reorder_args(dst, dst_user))?;
        }
        // SAFETY: `stream` is this thread's stream.
        check(unsafe { (api.stream_wait)(stream) }, "stream_wait")
    }
}

/// A grow-only buffer for one reordered operand. Kept per thread so that large layouts are
/// not mapped afresh (and page-faulted in) on every call.
#[derive(Default)]
pub(super) struct Scratch(Vec<u8>);

impl Scratch {
    /// A 64-byte-aligned buffer of at least `bytes` bytes: the same one on every call until a
    /// larger one is asked for.
    pub(super) fn get(&mut self, bytes: usize) -> Handle {
        if self.0.len() < bytes + 64 {
            self.0 = vec![0; bytes + 64];
        }
        let offset = self.0.as_ptr().align_offset(64);
        self.0[offset..].as_mut_ptr().cast()
    }
}

/// What each thread keeps: its stream (streams may not be shared between threads) and the
/// scratch buffers of the source, weights and destination.
struct Local {
    stream: Stream,
    scratch: [Scratch; 3],
}

/// The arguments of a reorder from `from` to `to`.
fn reorder_args(from: Handle, to: Handle) -> [ExecArg; 2] {
    [
        ExecArg {
            arg: ARG_SRC,
            memory: from,
        },
        ExecArg {
            arg: ARG_DST,
            memory: to,
        },
    ]
}

/// Memory objects destroyed when dropped.
struct Memories<'a>(&'a Api, Vec<Handle>);

impl Drop for Memories<'_> {
    fn drop(&mut self) {
        for &m in &self.1 {
            // SAFETY: each handle was created by `memory_create` and is destroyed once.
            unsafe { (self.0.memory_destroy)(m) };
        }
    }
}

/// A oneDNN stream.
struct Stream(Handle);

impl Stream {
    fn new(dnn: &OneDnn) -> Result<Self, String> {
        let mut s = std::ptr::null_mut();
        // SAFETY: `engine` is valid for the life of the process.
        check(
            unsafe { (dnn.api.stream_create)(&mut s, dnn.engine, STREAM_DEFAULT_FLAGS) },
            "stream_create",
        )?;
        Ok(Self(s))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(Ok(dnn)) = ONEDNN.get() {
            // SAFETY: the stream was created by this library and is destroyed once.
            unsafe { (dnn.api.stream_destroy)(self.0) };
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::tests::{direct_reference, test_shapes};
    use crate::cpu::onednn::library::tests::loaded;

    #[test]
    fn matches_direct_convolution() {
        let Some(dnn) = loaded() else { return };
        for (shape, x, weight, bias) in test_shapes() {
            for bias in [Some(bias.as_slice()), None] {
                let got = dnn.conv2d(&x, &weight, bias, shape, None).unwrap();
                // Packed weights: made on the first call, reused on the second.
                let mut slot = None;
                for _ in 0..2 {
                    let packed = dnn
                        .conv2d(&x, &weight, bias, shape, Some((&mut slot, Box::new(()))))
                        .unwrap();
                    assert_eq!(packed, got);
                }
                let zeros = vec![0.0; shape.weight[0]];
                let want = direct_reference(&x, &weight, bias.unwrap_or(&zeros), shape);
                assert_eq!(got.len(), want.len());
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                        "{shape:?} bias {} [{i}]: {g} vs {r}",
                        bias.is_some()
                    );
                }
            }
        }
    }

    /// Convolutions called from several threads at once, with packed weights, give the
    /// results of sequential calls.
    #[test]
    fn concurrent_calls_match_sequential_ones() {
        let Some(dnn) = loaded() else { return };
        let cases = test_shapes();
        let want: Vec<Vec<f32>> = cases
            .iter()
            .map(|(shape, x, w, b)| dnn.conv2d(x, w, Some(b), *shape, None).unwrap())
            .collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (cases, want) = (&cases, &want);
                s.spawn(move || {
                    let mut slots: Vec<PackSlot> = cases.iter().map(|_| None).collect();
                    for round in 0..10 {
                        for i in 0..cases.len() {
                            let i = (i + t + round) % cases.len();
                            let (shape, x, w, b) = &cases[i];
                            let got = dnn
                                .conv2d(x, w, Some(b), *shape, Some((&mut slots[i], Box::new(()))))
                                .unwrap();
                            assert_eq!(got, want[i], "thread {t} round {round} case {i}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn rejects_mismatched_slices() {
        let Some(dnn) = loaded() else { return };
        let shape = Conv2dShape {
            input: [1, 2, 4, 4],
            weight: [3, 2, 3, 3],
            padding: [1; 4],
            stride: [1, 1],
        };
        let err = dnn
            .conv2d(&[0.0; 31], &[0.0; 54], None, shape, None)
            .unwrap_err();
        assert!(err.contains("do not match"), "{err}");
    }
}
