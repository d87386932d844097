//! Convolution primitives and the reorders around them, built once per shape and cached.

use std::ffi::{CStr, c_char, c_int};
use std::sync::Arc;

use super::library::{
    Api, CONVOLUTION_DIRECT, ConvolutionDesc, Dims, F32, FORWARD_INFERENCE, Handle, MemoryDesc,
    OneDnn, QUERY_DST_MD, QUERY_IMPL_INFO_STR, QUERY_SRC_MD, QUERY_WEIGHTS_MD, TAG_A, TAG_ABCD,
    TAG_ANY, check,
};
use crate::cpu::conv2d::Conv2dShape;

/// Built primitives kept at most; the cache is emptied when it would grow past this.
const MAX_PLANS: usize = 256;

/// What one convolution primitive is built for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    pub(super) shape: Conv2dShape,
    pub(super) bias: bool,
}

/// One operand's user (NCHW/OIHW) layout, the primitive's layout, and the reorder between
/// them when they differ.
pub(super) struct Operand {
    pub(super) user: Box<MemoryDesc>,
    /// Points into the convolution's primitive descriptor, which outlives it.
    pub(super) inner: *const MemoryDesc,
    pub(super) reorder: Option<(Handle, Handle)>,
}

/// A built convolution for one [`PlanKey`].
pub(super) struct Plan {
    api: *const Api,
    descriptor: Handle,
    pub(super) primitive: Handle,
    pub(super) src: Operand,
    pub(super) weights: Operand,
    pub(super) dst: Operand,
    pub(super) bias: Box<MemoryDesc>,
}

// SAFETY: see `OneDnn`; plans are read-only once built.
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: `api` is the process-wide `OneDnn`'s, which is never dropped; the handles
        // were created by it and are released once, here.
        unsafe {
            let api = &*self.api;
            for op in [&self.src, &self.weights, &self.dst] {
                if let Some((pd, p)) = op.reorder {
                    (api.primitive_destroy)(p);
                    (api.primitive_desc_destroy)(pd);
                }
            }
            (api.primitive_destroy)(self.primitive);
            (api.primitive_desc_destroy)(self.descriptor);
        }
    }
}

impl OneDnn {
    /// The primitive for `key`, built on first use.
    pub(super) fn plan(&self, key: PlanKey) -> Result<Arc<Plan>, String> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&key) {
            return Ok(p.clone());
        }
        let plan = Arc::new(self.build(key)?);
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(key, plan.clone());
        Ok(plan)
    }

    fn build(&self, key: PlanKey) -> Result<Plan, String> {
        let api = &self.api;
        let dims = |v: &[usize]| {
            let mut d: Dims = [0; 12];
            for (o, &i) in d.iter_mut().zip(v) {
                *o = i as i64;
            }
            d
        };
        let shape = key.shape;
        let out = shape
            .output()
            .ok_or("conv2d: kernel larger than the input")?;
        let desc = |d: &[usize], tag: c_int| -> Result<Box<MemoryDesc>, String> {
            let mut md = MemoryDesc::zeroed();
            // SAFETY: `md` is larger than `dnnl_memory_desc_t`; `dims` has 12 entries.
            check(
                unsafe {
                    (api.memory_desc_init_by_tag)(
                        &mut *md,
                        d.len() as c_int,
                        dims(d).as_ptr(),
                        F32,
                        tag,
                    )
                },
                "memory_desc_init_by_tag",
            )?;
            Ok(md)
        };
        let (src_user, weights_user, dst_user) = (
            desc(&shape.input, TAG_ABCD)?,
            desc(&shape.weight, TAG_ABCD)?,
            desc(&out, TAG_ABCD)?,
        );
        let (src_any, weights_any, dst_any) = (
            desc(&shape.input, TAG_ANY)?,
            desc(&shape.weight, TAG_ANY)?,
            desc(&out, TAG_ANY)?,
        );
        let bias = if key.bias {
            desc(&[shape.weight[0]], TAG_A)?
        } else {
            MemoryDesc::zeroed()
        };
        let [top, left, bottom, right] = shape.padding;
        let mut conv = ConvolutionDesc::zeroed();
        // SAFETY: the descriptors and the dims arrays are valid for the call; a zeroed bias
        // descriptor means "no bias" to oneDNN.
        unsafe {
            check(
                (api.convolution_forward_desc_init)(
                    &mut *conv,
                    FORWARD_INFERENCE,
                    CONVOLUTION_DIRECT,
                    &*src_any,
                    &*weights_any,
                    &*bias,
                    &*dst_any,
                    dims(&shape.stride).as_ptr(),
                    dims(&[top, left]).as_ptr(),
                    dims(&[bottom, right]).as_ptr(),
                ),
                "convolution_forward_desc_init",
            )?;
            let mut descriptor = std::ptr::null_mut();
            check(
                (api.primitive_desc_create)(
                    &mut descriptor,
                    (&*conv as *const ConvolutionDesc).cast(),
                    std::ptr::null_mut(),
                    self.engine,
                    std::ptr::null_mut(),
                ),
                "primitive_desc_create (convolution)",
            )?;
            let mut plan = Plan {
                api,
                descriptor,
                primitive: std::ptr::null_mut(),
                src: Operand {
                    user: src_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_SRC_MD, 0),
                    reorder: None,
                },
                weights: Operand {
                    user: weights_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_WEIGHTS_MD, 0),
                    reorder: None,
                },
                dst: Operand {
                    user: dst_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_DST_MD, 0),
                    reorder: None,
                },
                bias,
            };
            // From here on `plan`'s `Drop` releases whatever was created.
            check(
                (api.primitive_create)(&mut plan.primitive, descriptor),
                "primitive_create (convolution)",
            )?;
            for (op, to_inner) in [
                (&mut plan.src, true),
                (&mut plan.weights, true),
                (&mut plan.dst, false),
            ] {
                if op.inner.is_null() {
                    return Err("oneDNN returned no memory descriptor".into());
                }
                if (api.memory_desc_equal)(&*op.user, op.inner) != 0 {
                    continue;
                }
                let (from, to) = if to_inner {
                    (&*op.user as *const MemoryDesc, op.inner)
                } else {
                    (op.inner, &*op.user as *const MemoryDesc)
                };
                let mut pd = std::ptr::null_mut();
                check(
                    (api.reorder_primitive_desc_create)(
                        &mut pd,
                        from,
                        self.engine,
                        to,
                        self.engine,
                        std::ptr::null_mut(),
                    ),
                    "reorder_primitive_desc_create",
                )?;
                let mut p = std::ptr::null_mut();
                if let Err(e) = check(
                    (api.primitive_create)(&mut p, pd),
                    "primitive_create (reorder)",
                ) {
                    (api.primitive_desc_destroy)(pd);
                    return Err(e);
                }
                op.reorder = Some((pd, p));
            }
            Ok(plan)
        }
    }

    /// The name of the kernel oneDNN picked for `shape` (for tests and reports).
    pub fn implementation(&self, shape: Conv2dShape, bias: bool) -> Result<String, String> {
        let plan = self.plan(PlanKey { shape, bias })?;
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: the query writes a pointer to a string owned by the descriptor.
        unsafe {
            check(
                (self.api.primitive_desc_query)(
                    plan.descriptor,
                    QUERY_IMPL_INFO_STR,
                    0,
                    (&mut name as *mut *const c_char).cast(),
                ),
                "primitive_desc_query",
            )?;
            Ok(CStr::from_ptr(name).to_string_lossy().into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::onednn::library::tests::loaded;

    /// On an AVX-512 or AVX2 machine, a UNet-sized convolution runs one of oneDNN's JIT
    /// kernels, not its reference loop.
    #[test]
    fn picks_a_jit_kernel() {
        let Some(dnn) = loaded() else { return };
        let shape = Conv2dShape {
            input: [2, 64, 16, 16],
            weight: [64, 64, 3, 3],
            padding: [1; 4],
            stride: [1, 1],
        };
        let name = dnn.implementation(shape, true).unwrap();
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            assert!(!name.starts_with("ref"), "{name}");
        }
        assert!(!name.is_empty());
    }
}
